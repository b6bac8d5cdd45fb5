"""Stock adjustments: serialised under concurrency, audited, never negative."""

import asyncio
import uuid
from collections import Counter

import asyncpg
import pytest

from tests.helpers import error_of


async def physical_variant(make, seller, stock: int, **variant) -> str:
    product = await make.product(
        seller, variants=[{"sku": f"STK-{uuid.uuid4().hex[:8]}", "price_cents": 1000, "stock": stock, **variant}]
    )
    return product["variants"][0]["id"]


async def adjust(client, seller, variant_id: str, delta: int, reason: str = "count", **extra):
    return await client.post(
        f"/api/variants/{variant_id}/stock", json={"delta": delta, "reason": reason, **extra}, headers=seller.headers
    )


async def available(client, db, variant_id: str) -> int:
    """The variant's `available` as GET /api/products/{id} shows it."""
    product_id = await db.fetchval("SELECT product_id FROM variants WHERE id = $1", uuid.UUID(variant_id))
    res = await client.get(f"/api/products/{product_id}")
    assert res.status == 200, await res.text()
    return next(v["available"] for v in (await res.json())["product"]["variants"] if v["id"] == variant_id)


async def movements(db, variant_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT delta, stock_after, reason, actor_id, reference FROM stock_movements WHERE variant_id = $1 ORDER BY id",
        uuid.UUID(variant_id),
    )


def assert_chain(rows) -> None:
    """Movements in id order replay to each row's stock_after: no two adjustments interleaved."""
    stock = 0
    for row in rows:
        stock += row["delta"]
        assert row["stock_after"] == stock, rows


async def test_adjust_stock_is_audited(make, client, db):
    seller = await make.seller()
    vid = await physical_variant(make, seller, 5)
    res = await adjust(client, seller, vid, 3, "restock from supplier", reference="PO-17")
    assert res.status == 200, await res.text()
    assert await res.json() == {"variant_id": vid, "available": 8}
    res = await adjust(client, seller, vid, -2, "damaged in storage")
    assert await res.json() == {"variant_id": vid, "available": 6}
    assert await available(client, db, vid) == 6

    rows = await movements(db, vid)
    assert [(r["delta"], r["stock_after"], r["reason"], r["reference"]) for r in rows] == [
        (5, 5, "initial stock", None),
        (3, 8, "restock from supplier", "PO-17"),
        (-2, 6, "damaged in storage", None),
    ]
    assert {r["actor_id"] for r in rows} == {uuid.UUID(seller.id)}


async def test_concurrent_decrements_never_oversell(make, client, db):
    seller = await make.seller()
    vid = await physical_variant(make, seller, 50)

    responses = await asyncio.gather(*(adjust(client, seller, vid, -1, "sold at market") for _ in range(100)))
    statuses = Counter(r.status for r in responses)
    assert statuses == {200: 50, 409: 50}, statuses
    ok = [await r.json() for r in responses if r.status == 200]
    # Each success saw its own stock level: every value from 49 down to 0 exactly once.
    assert sorted(b["available"] for b in ok) == list(range(50))
    for r in responses:
        if r.status == 409:
            error = await error_of(r, 409, "conflict")
            assert error["details"] == {"stock": 0}

    assert await available(client, db, vid) == 0
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(vid)) == 0
    rows = await movements(db, vid)
    assert len(rows) == 51
    assert (rows[0]["delta"], rows[0]["stock_after"], rows[0]["reason"]) == (50, 50, "initial stock")
    assert all(r["delta"] == -1 and r["reason"] == "sold at market" for r in rows[1:])
    assert sorted(r["stock_after"] for r in rows[1:]) == list(range(50))
    assert_chain(rows)


async def test_concurrent_mixed_adjustments_add_up(make, client, db):
    seller = await make.seller()
    vid = await physical_variant(make, seller, 50)
    deltas = [+1] * 60 + [-1] * 40 + [+5] * 5 + [-3] * 5
    responses = await asyncio.gather(*(adjust(client, seller, vid, d) for d in deltas))
    assert [r.status for r in responses] == [200] * len(deltas)

    expected = 50 + sum(deltas)
    assert expected == 80
    assert await available(client, db, vid) == expected
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(vid)) == expected
    rows = await movements(db, vid)
    assert len(rows) == 1 + len(deltas)
    assert sum(r["delta"] for r in rows) == expected
    assert Counter(r["delta"] for r in rows[1:]) == Counter(deltas)
    assert_chain(rows)


async def test_stock_adjustments_alongside_variant_edits(make, client, db):
    # A price edit and a stock adjustment of the same variant lock the same two rows; they must not
    # deadlock (which Postgres would break by failing one of them).
    seller = await make.seller()
    vid = await physical_variant(make, seller, 10)

    async def edit(i: int):
        return await client.patch(f"/api/variants/{vid}", json={"price_cents": 1000 + i}, headers=seller.headers)

    requests = []
    for i in range(25):
        requests += [adjust(client, seller, vid, 1), edit(i)]
    responses = await asyncio.gather(*requests)
    assert [r.status for r in responses] == [200] * 50, [await r.text() for r in responses if r.status != 200][:3]
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(vid)) == 35
    assert_chain(await movements(db, vid))


async def test_stock_cannot_go_negative(make, client, db):
    seller = await make.seller()
    vid = await physical_variant(make, seller, 2)
    res = await adjust(client, seller, vid, -3, "write-off")
    error = await error_of(res, 409, "conflict")
    assert error["details"] == {"stock": 2}
    assert await available(client, db, vid) == 2
    assert len(await movements(db, vid)) == 1

    res = await adjust(client, seller, vid, -2, "write-off")
    assert (await res.json())["available"] == 0

    # The database itself refuses, whatever path a write takes.
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE variants SET stock = -1 WHERE id = $1", uuid.UUID(vid))
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE variants SET stock = stock - 1 WHERE id = $1", uuid.UUID(vid))
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(vid)) == 0


async def test_stock_overflow_is_refused_not_a_crash(make, client, db):
    seller = await make.seller()
    vid = await physical_variant(make, seller, 0)
    await db.execute("UPDATE variants SET stock = 2147483000 WHERE id = $1", uuid.UUID(vid))
    res = await adjust(client, seller, vid, 10_000)
    await error_of(res, 422, "validation_error")
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(vid)) == 2147483000


async def test_digital_variant_refuses_stock_adjustment(make, client, db):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "CODE-1", "price_cents": 500, "digital": True}])
    vid = product["variants"][0]["id"]
    for delta in (5, -1):
        await error_of(await adjust(client, seller, vid, delta), 409, "conflict")
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(vid)) == 0
    assert await movements(db, vid) == []


async def test_negative_starting_stock_is_422(make, client, db):
    seller = await make.seller()
    for body in ({"title": "x", "variants": [{"sku": "NEG-1", "price_cents": 1, "stock": -1}]},):
        await error_of(await client.post("/api/products", json=body, headers=seller.headers), 422, "validation_error")
    product = await make.product(seller)
    res = await client.post(
        f"/api/products/{product['id']}/variants",
        headers=seller.headers,
        json={"variants": [{"sku": "NEG-2", "price_cents": 1, "stock": -5}]},
    )
    await error_of(res, 422, "validation_error")
    assert await db.fetchval("SELECT count(*) FROM variants WHERE stock < 0 OR sku LIKE 'NEG-%'") == 0


async def test_zero_delta_is_an_audited_no_op(make, client, db):
    # delta 0 is accepted: stock is unchanged and the check is recorded (e.g. "stock count verified").
    seller = await make.seller()
    vid = await physical_variant(make, seller, 4)
    res = await adjust(client, seller, vid, 0, "stock count verified")
    assert res.status == 200, await res.text()
    assert await res.json() == {"variant_id": vid, "available": 4}
    rows = await movements(db, vid)
    assert [(r["delta"], r["stock_after"], r["reason"]) for r in rows] == [
        (4, 4, "initial stock"),
        (0, 4, "stock count verified"),
    ]


async def test_bad_adjustments(make, client, db):
    seller = await make.seller()
    vid = await physical_variant(make, seller, 4)
    for body in (
        {"delta": 1},
        {"delta": 1, "reason": ""},
        {"delta": 1, "reason": "   "},
        {"reason": "x"},
        {"delta": 1.5, "reason": "x"},
        {"delta": "lots", "reason": "x"},
        {"delta": 10_000_001, "reason": "x"},
        {"delta": -10_000_001, "reason": "x"},
        {"delta": 1, "reason": "x" * 201},
        {"delta": 1, "reason": "x", "stock": 3},
    ):
        res = await client.post(f"/api/variants/{vid}/stock", json=body, headers=seller.headers)
        await error_of(res, 422, "validation_error")
    await error_of(await adjust(client, seller, str(uuid.uuid4()), 1), 404, "not_found")
    await error_of(await adjust(client, seller, "12345", 1), 404, "not_found")
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(vid)) == 4
    assert len(await movements(db, vid)) == 1
