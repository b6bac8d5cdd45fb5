"""Idempotency-Key on writes that move stock: a retry replays the first response and acts once."""

import asyncio
import uuid

import pytest

from helpers import error_of


@pytest.fixture
async def stocked(make):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "IDEM-1", "price_cents": 500, "stock": 10}])
    return seller, product["variants"][0]["id"]


async def stock_of(db, variant_id: str) -> int:
    return await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(variant_id))


async def movements(db, variant_id: str) -> int:
    return await db.fetchval("SELECT count(*) FROM stock_movements WHERE variant_id = $1", uuid.UUID(variant_id))


async def adjust(client, seller, variant_id, body, key=None):
    headers = {**seller.headers, **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"/api/variants/{variant_id}/stock", json=body, headers=headers)


async def test_retry_with_the_same_key_replays_and_moves_stock_once(client, db, stocked):
    seller, vid = stocked
    first = await adjust(client, seller, vid, {"delta": -3, "reason": "damaged"}, key="k-1")
    assert first.status == 200 and "Idempotent-Replayed" not in first.headers
    again = await adjust(client, seller, vid, {"delta": -3, "reason": "damaged"}, key="k-1")
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json() == {"variant_id": vid, "available": 7}
    assert await stock_of(db, vid) == 7
    assert await movements(db, vid) == 2  # the initial stock and one adjustment


async def test_without_a_key_each_request_acts(client, db, stocked):
    seller, vid = stocked
    for _ in range(2):
        assert (await adjust(client, seller, vid, {"delta": -3, "reason": "damaged"})).status == 200
    assert await stock_of(db, vid) == 4


async def test_same_key_with_another_body_is_refused(client, db, stocked):
    seller, vid = stocked
    assert (await adjust(client, seller, vid, {"delta": -3, "reason": "damaged"}, key="k-2")).status == 200
    res = await adjust(client, seller, vid, {"delta": -4, "reason": "damaged"}, key="k-2")
    await error_of(res, 422, "idempotency_mismatch")
    assert await stock_of(db, vid) == 7


async def test_concurrent_retries_act_once(client, db, stocked):
    seller, vid = stocked
    results = await asyncio.gather(
        *(adjust(client, seller, vid, {"delta": 5, "reason": "restock"}, key="burst") for _ in range(20))
    )
    assert [r.status for r in results] == [200] * 20
    assert {(await r.json())["available"] for r in results} == {15}
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 19
    assert await stock_of(db, vid) == 15
    assert await movements(db, vid) == 2


async def test_a_failed_request_is_not_remembered(client, db, stocked):
    seller, vid = stocked
    body = {"delta": -12, "reason": "sold at the market"}
    await error_of(await adjust(client, seller, vid, body, key="k-3"), 409, "conflict")
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    assert (await adjust(client, seller, vid, {"delta": 5, "reason": "restock"})).status == 200
    retried = await adjust(client, seller, vid, body, key="k-3")
    assert retried.status == 200 and "Idempotent-Replayed" not in retried.headers
    assert await stock_of(db, vid) == 3


async def test_keys_belong_to_one_account(client, db, make, stocked):
    seller, vid = stocked
    other = await make.seller()
    theirs = (await make.product(other, variants=[{"sku": "IDEM-2", "price_cents": 1, "stock": 1}]))["variants"][0]
    assert (await adjust(client, seller, vid, {"delta": 1, "reason": "r"}, key="shared")).status == 200
    res = await adjust(client, other, theirs["id"], {"delta": 1, "reason": "r"}, key="shared")
    assert res.status == 200 and "Idempotent-Replayed" not in res.headers
    assert await stock_of(db, theirs["id"]) == 2


async def test_unit_import_replays_its_report(client, db, make):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "CODES", "price_cents": 100, "digital": True}])
    vid = product["variants"][0]["id"]
    headers = {**seller.headers, "Content-Type": "text/csv", "Idempotency-Key": "import-1"}
    first = await client.post(f"/api/variants/{vid}/units", data=b"code\nA1\nA2\n", headers=headers)
    again = await client.post(f"/api/variants/{vid}/units", data=b"code\nA1\nA2\n", headers=headers)
    assert await first.json() == await again.json() == {"imported": 2, "rejected": []}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await stock_of(db, vid) == 2


@pytest.mark.parametrize("key", ["x" * 256, "tab\there"])
async def test_malformed_keys_are_refused(client, db, stocked, key):
    seller, vid = stocked
    await error_of(await adjust(client, seller, vid, {"delta": 1, "reason": "r"}, key=key), 422, "validation_error")
    assert await stock_of(db, vid) == 10
