"""Orders through the REST API against a real PostgreSQL: concurrent buyers, prices from the database,
multi-seller checkouts, digital codes, visibility, Idempotency-Key and the cart."""

import asyncio
import hashlib
import secrets
import uuid
from datetime import datetime

import pytest

from livehub.app import create_app
from tests.helpers import balance, error_of, give_addresses, import_codes, top_up


def U(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


async def stock(db, variant_id) -> int:
    return await db.fetchval("SELECT stock FROM variants WHERE id = $1", U(variant_id))


async def order_count(db) -> int:
    return await db.fetchval("SELECT count(*) FROM orders")


async def books(client, admin) -> dict:
    res = await client.get("/api/admin/books", headers=admin.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def buy(client, account, items, *, stream_id=None, headers=None, **extra):
    body = {"items": items, **extra}
    if stream_id is not None:
        body["stream_id"] = str(stream_id)
    return await client.post("/api/orders", json=body, headers={**account.headers, **(headers or {})})


async def bought(client, account, variant_id, quantity: int = 1, **kw) -> dict:
    res = await buy(client, account, [{"variant_id": variant_id, "quantity": quantity}], **kw)
    assert res.status == 201, await res.text()
    return (await res.json())["order"]


async def one_variant(make, seller, *, price: int = 1000, stock: int = 10, **variant) -> tuple[dict, str]:
    product = await make.product(seller, variants=[{"sku": sku(), "price_cents": price, "stock": stock, **variant}])
    return product, product["variants"][0]["id"]


async def bulk_buyers(db, n: int, cents: int) -> list[tuple[uuid.UUID, dict]]:
    """n accounts with a session and `cents` in the wallet, made with SQL (registration hashes passwords).
    Returns [(user id, auth headers)]."""
    tag = uuid.uuid4().hex[:8]
    ids = [
        r["id"]
        for r in await db.fetch(
            """INSERT INTO users (email, display_name, password_hash)
               SELECT 'bulk-' || $1 || '-' || i || '@example.test', 'Bulk ' || i, 'x'
                 FROM generate_series(1, $2) i RETURNING id""",
            tag,
            n,
        )
    ]
    tokens = [secrets.token_urlsafe(32) for _ in ids]
    await db.execute(
        """INSERT INTO sessions (token_hash, user_id, expires_at)
           SELECT h, u, now() + interval '1 hour' FROM unnest($1::bytea[], $2::uuid[]) AS t(h, u)""",
        [hashlib.sha256(t.encode()).digest() for t in tokens],
        ids,
    )
    # top_up() is what POST /api/wallet/top-up ends in once the provider has charged.
    await db.execute("SELECT top_up(u, $2, 'test funding') FROM unnest($1::uuid[]) u", ids, cents)
    await give_addresses(db, ids)
    return [(i, {"Authorization": f"Bearer {t}"}) for i, t in zip(ids, tokens, strict=True)]


async def live_stream(db, seller, host_id=None, *, status: str = "live", commission_bps: int = 0) -> uuid.UUID:
    return await db.fetchval(
        """INSERT INTO streams (seller_id, host_id, title, status, host_commission_bps)
           VALUES ($1, $2, 'Live', $3, $4) RETURNING id""",
        U(seller.seller["id"]),
        U(host_id or seller.id),
        status,
        commission_bps,
    )


async def feature(db, stream_id, product_id, live_price=None, limit=None) -> None:
    await db.execute(
        "INSERT INTO stream_products (stream_id, product_id, live_price_cents, per_buyer_limit) VALUES ($1,$2,$3,$4)",
        stream_id,
        U(product_id),
        live_price,
        limit,
    )


# -- concurrency ----------------------------------------------------------------------------------------


@pytest.fixture
async def patient_client(aiohttp_client, settings, db):
    """An app whose requests wait up to 30 s for a pooled connection: the crowd tests ask about stock and money
    when 300 buyers arrive at once, not about shedding load, and on a small machine busy with other work the
    last of 300 requests (over 10 connections) can wait past the default 1 s and get 503."""
    return await aiohttp_client(create_app(settings.model_copy(update={"db_acquire_timeout_s": 30})))


async def test_300_concurrent_buyers_for_50_units(patient_client, make, db):
    client = patient_client
    admin = await make.admin()
    seller = await make.seller()
    _, vid = await one_variant(make, seller, price=1000, stock=50)
    funds = 5000
    buyers = await bulk_buyers(db, 300, funds)

    async def attempt(headers):
        res = await client.post("/api/orders", json={"items": [{"variant_id": vid, "quantity": 1}]}, headers=headers)
        return res.status, await res.json()

    results = await asyncio.gather(*(attempt(h) for _, h in buyers))

    created = [(buyers[i][0], body) for i, (status, body) in enumerate(results) if status == 201]
    refused = [body for status, body in results if status != 201]
    assert len(created) == 50, [s for s, _ in results if s not in (201, 409)]
    assert len(refused) == 250
    assert all(body["error"]["code"] == "out_of_stock" for body in refused), refused[:3]
    assert all(status == 409 for status, _ in results if status != 201)

    # Each 201 names the buyer who asked, and the database holds exactly those orders.
    winners = {user_id for user_id, _ in created}
    assert all(U(body["order"]["buyer_id"]) == user_id for user_id, body in created)
    rows = await db.fetch("SELECT buyer_id, total_cents FROM orders WHERE status = 'paid'")
    assert len(rows) == 50 and {r["buyer_id"] for r in rows} == winners
    assert {U(b["order"]["id"]) for _, b in created} == {r["id"] for r in await db.fetch("SELECT id FROM orders")}

    # Every charged wallet has an order; no wallet was charged without one.
    balances = dict(
        await db.fetch(
            "SELECT user_id, balance_cents FROM accounts WHERE kind = 'wallet' AND user_id = ANY($1::uuid[])",
            [b for b, _ in buyers],
        )
    )
    for user_id, _ in buyers:
        assert balances[user_id] == (funds - 1000 if user_id in winners else funds), user_id

    assert await stock(db, vid) == 0
    moves = await db.fetch(
        "SELECT delta, stock_after, reason FROM stock_movements WHERE variant_id = $1 AND reason = 'sale' ORDER BY id",
        U(vid),
    )
    assert len(moves) == 50
    assert all(m["delta"] == -1 for m in moves)
    assert [m["stock_after"] for m in moves] == list(range(49, -1, -1))  # never negative, one unit at a time
    assert (await books(client, admin))["balanced"] is True


async def test_insufficient_funds_writes_nothing(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    _, vid = await one_variant(make, seller, price=2500, stock=5)
    await top_up(client, buyer, 2000)
    entries_before = await db.fetchval("SELECT count(*) FROM ledger_entries")
    moves_before = await db.fetchval("SELECT count(*) FROM stock_movements")

    res = await buy(client, buyer, [{"variant_id": vid, "quantity": 1}])
    err = await error_of(res, 409, "insufficient_funds")
    assert err["details"].get("balance_cents") == 2000

    assert await order_count(db) == 0
    assert await db.fetchval("SELECT count(*) FROM order_items") == 0
    assert await db.fetchval("SELECT count(*) FROM earnings") == 0
    assert await stock(db, vid) == 5
    assert await balance(client, buyer) == 2000
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == entries_before
    assert await db.fetchval("SELECT count(*) FROM stock_movements") == moves_before


async def test_out_of_stock_says_what_is_available(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    _, vid = await one_variant(make, seller, price=100, stock=2)
    await top_up(client, buyer, 10_000)
    err = await error_of(await buy(client, buyer, [{"variant_id": vid, "quantity": 3}]), 409, "out_of_stock")
    assert err["details"]["available"] == 2
    assert await stock(db, vid) == 2 and await order_count(db) == 0
    assert await balance(client, buyer) == 10_000


# -- shape and prices -----------------------------------------------------------------------------------


async def test_order_shape_and_snapshots(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    product, vid = await one_variant(make, seller, price=1250, stock=10, options={"size": "M"})
    await top_up(client, buyer, 20_000)

    address = {"name": "Ann", "line1": "1 Main St", "city": "Oslo", "country": "NO"}
    res = await buy(client, buyer, [{"variant_id": vid, "quantity": 2}], address=address)
    assert res.status == 201, await res.text()
    body = await res.json()
    assert set(body) == {"order", "orders"} and body["orders"] == [body["order"]]
    order = body["order"]
    assert {
        "id",
        "number",
        "status",
        "buyer_id",
        "seller_id",
        "stream_id",
        "items",
        "total_cents",
        "created_at",
    } <= set(order)
    uuid.UUID(order["id"])
    assert order["number"].startswith("LH-") and len(order["number"]) > 3
    assert order["status"] == "paid"
    assert order["buyer_id"] == buyer.id
    assert order["seller_id"] == seller.seller["id"]
    assert order["stream_id"] is None
    assert order["total_cents"] == 2500
    assert order["address"] == {**address, "line2": None, "region": None, "postal_code": None, "phone": None}
    datetime.fromisoformat(order["created_at"].replace("Z", "+00:00"))
    assert len(order["items"]) == 1
    item = order["items"][0]
    assert {k: item[k] for k in ("variant_id", "title", "unit_price_cents", "quantity")} == {
        "variant_id": vid,
        "title": product["title"],
        "unit_price_cents": 1250,
        "quantity": 2,
    }
    assert await balance(client, buyer) == 17_500
    assert await stock(db, vid) == 8

    # The seller renames the product and changes the price: the order keeps what was bought.
    res = await client.patch(f"/api/products/{product['id']}", json={"title": "Renamed"}, headers=seller.headers)
    assert res.status == 200, await res.text()
    res = await client.patch(f"/api/variants/{vid}", json={"price_cents": 9999}, headers=seller.headers)
    assert res.status == 200, await res.text()
    res = await client.get(f"/api/orders/{order['id']}", headers=buyer.headers)
    assert res.status == 200, await res.text()
    again = (await res.json())["order"]
    assert again["items"][0]["title"] == product["title"]
    assert again["items"][0]["unit_price_cents"] == 1250
    assert again["total_cents"] == 2500
    # ... and the next order pays today's price under today's title.
    fresh = await bought(client, buyer, vid)
    assert fresh["items"][0]["unit_price_cents"] == 9999 and fresh["items"][0]["title"] == "Renamed"
    assert fresh["number"] != order["number"]


async def test_client_supplied_price_is_refused(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    _, vid = await one_variant(make, seller, price=1000)
    await top_up(client, buyer, 10_000)

    res = await buy(client, buyer, [{"variant_id": vid, "quantity": 1, "unit_price_cents": 1}])
    err = await error_of(res, 422, "validation_error")
    assert any("unit_price_cents" in e["loc"] for e in err["details"]["errors"]), err
    res = await buy(client, buyer, [{"variant_id": vid, "quantity": 1}], total_cents=1)
    err = await error_of(res, 422, "validation_error")
    assert any("total_cents" in e["loc"] for e in err["details"]["errors"]), err
    assert await order_count(db) == 0
    assert await balance(client, buyer) == 10_000


async def test_price_comes_from_the_database(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    await top_up(client, buyer, 100_000)
    product, vid = await one_variant(make, seller, price=1000, stock=20)
    flash_product, flash_vid = await one_variant(make, seller, price=1000, stock=20)

    live = await live_stream(db, seller)
    await feature(db, live, product["id"], live_price=700)
    await feature(db, live, flash_product["id"], live_price=800)
    ended = await live_stream(db, seller, status="ended")
    await feature(db, ended, product["id"], live_price=500)
    await db.execute(
        """INSERT INTO flash_sales (stream_id, variant_id, price_cents, quantity, ends_at)
           VALUES ($1, $2, 300, 5, now() + interval '1 hour')""",
        live,
        U(flash_vid),
    )

    assert (await bought(client, buyer, vid))["items"][0]["unit_price_cents"] == 1000  # list price
    in_stream = await bought(client, buyer, vid, stream_id=live)
    assert in_stream["items"][0]["unit_price_cents"] == 700 and in_stream["total_cents"] == 700
    assert in_stream["stream_id"] == str(live)
    # A stream that is not live sells nothing in its name (no live price, no commission).
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": vid}], "stream_id": str(ended)}, headers=buyer.headers
    )
    await error_of(res, 409, "conflict")
    # A running flash sale beats the live price; outside the stream the list price applies.
    flash = await bought(client, buyer, flash_vid, 2, stream_id=live)
    assert flash["items"][0]["unit_price_cents"] == 300 and flash["total_cents"] == 600
    assert await db.fetchval("SELECT sold FROM flash_sales WHERE variant_id = $1", U(flash_vid)) == 2
    assert (await bought(client, buyer, flash_vid))["items"][0]["unit_price_cents"] == 1000
    # Once the sale has ended, the live price is back.
    await db.execute("UPDATE flash_sales SET ends_at = now() - interval '1 second'")
    assert (await bought(client, buyer, flash_vid, stream_id=live))["items"][0]["unit_price_cents"] == 800

    assert await balance(client, buyer) == 100_000 - (1000 + 700 + 600 + 1000 + 800)


async def test_stream_id_of_another_sellers_stream_diverts_no_earnings(client, make, db):
    """A buyer names a stream that does not feature the product (another shop's, with a host on 100%
    commission). The product's seller must not lose the sale's earnings to that host: either the order
    is refused, or it is priced and paid out as if bought outside the stream."""
    victim = await make.seller()
    other = await make.seller()
    host = await make.user()
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    _, vid = await one_variant(make, victim, price=1000)
    foreign = await live_stream(db, other, host.id, commission_bps=10_000)

    res = await buy(client, buyer, [{"variant_id": vid, "quantity": 1}], stream_id=foreign)
    if res.status != 201:
        assert 400 <= res.status < 500, await res.text()
        await res.read()
        return
    order = (await res.json())["order"]
    host_earned = await db.fetchval(
        "SELECT coalesce(sum(amount_cents), 0)::bigint FROM earnings WHERE user_id = $1", U(host.id)
    )
    seller_earned = await db.fetchval(
        "SELECT amount_cents FROM earnings WHERE order_id = $1 AND role = 'seller'", U(order["id"])
    )
    assert host_earned == 0, f"host of another shop's stream earned {host_earned} of a {order['total_cents']} sale"
    assert seller_earned == 900


# -- several sellers ------------------------------------------------------------------------------------


async def test_multi_seller_order_splits_per_seller(client, make, db):
    admin = await make.admin()
    a, b = await make.seller(), await make.seller()
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    _, va = await one_variant(make, a, price=1000)
    _, vb = await one_variant(make, b, price=2500)

    res = await buy(client, buyer, [{"variant_id": va, "quantity": 2}, {"variant_id": vb, "quantity": 1}])
    assert res.status == 201, await res.text()
    body = await res.json()
    orders = body["orders"]
    assert len(orders) == 2 and body["order"] == orders[0]
    by_seller = {o["seller_id"]: o for o in orders}
    assert set(by_seller) == {a.seller["id"], b.seller["id"]}
    assert by_seller[a.seller["id"]]["total_cents"] == 2000
    assert [i["variant_id"] for i in by_seller[a.seller["id"]]["items"]] == [va]
    assert by_seller[b.seller["id"]]["total_cents"] == 2500
    assert [i["variant_id"] for i in by_seller[b.seller["id"]]["items"]] == [vb]
    assert orders[0]["checkout_id"] == orders[1]["checkout_id"]
    assert orders[0]["id"] != orders[1]["id"] and orders[0]["number"] != orders[1]["number"]

    res = await client.get("/api/wallet/transactions", headers=buyer.headers)
    entries = [e for e in (await res.json())["items"] if e["type"] == "purchase"]
    assert sorted((e["order_id"], e["amount_cents"]) for e in entries) == sorted(
        (o["id"], -o["total_cents"]) for o in orders
    )
    assert await balance(client, buyer) == 10_000 - 4500
    assert (await books(client, admin))["balanced"] is True


async def test_repeated_variant_lines_combine(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    _, vid = await one_variant(make, seller, price=100, stock=3)
    await top_up(client, buyer, 10_000)
    res = await buy(client, buyer, [{"variant_id": vid, "quantity": 2}, {"variant_id": vid, "quantity": 2}])
    await error_of(res, 409, "out_of_stock")  # 4 in all, 3 in stock
    order = (await (await buy(client, buyer, [{"variant_id": vid}, {"variant_id": vid, "quantity": 2}])).json())[
        "order"
    ]
    assert [(i["variant_id"], i["quantity"]) for i in order["items"]] == [(vid, 3)]
    assert order["total_cents"] == 300 and await stock(db, vid) == 0


async def test_pagination_through_orders_of_one_checkout(client, make, db):
    """Orders split from one checkout share created_at: the cursor must still step through each once."""
    sellers = [await make.seller() for _ in range(3)]
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    items = [{"variant_id": (await one_variant(make, s, price=100))[1]} for s in sellers]
    res = await buy(client, buyer, items)
    assert res.status == 201, await res.text()
    placed = {o["id"] for o in (await res.json())["orders"]}
    single = await bought(client, buyer, items[0]["variant_id"])

    seen, cursor = [], None
    for _ in range(10):
        res = await client.get("/api/orders?limit=1" + (f"&cursor={cursor}" if cursor else ""), headers=buyer.headers)
        page = await res.json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[0] == single["id"]
    assert len(seen) == 4 and set(seen[1:]) == placed
    res = await client.get("/api/orders?status=cancelled", headers=buyer.headers)
    assert (await res.json())["items"] == []
    res = await client.get("/api/orders?status=paid&limit=100", headers=buyer.headers)
    assert len((await res.json())["items"]) == 4


# -- digital --------------------------------------------------------------------------------------------


async def test_digital_codes_shown_to_the_buyer_only(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    _, vid = await one_variant(make, seller, price=500, stock=0, digital=True)
    await import_codes(client, seller, vid, ["CODE-A", "CODE-B", "CODE-C"])

    order = await bought(client, buyer, vid, 2)
    res = await client.get(f"/api/orders/{order['id']}", headers=buyer.headers)
    codes = (await res.json())["order"]["items"][0]["codes"]
    assert len(codes) == 2 and set(codes) <= {"CODE-A", "CODE-B", "CODE-C"}
    assert order["items"][0]["codes"] == codes  # also in the purchase response
    sold = await db.fetch("SELECT code FROM digital_units WHERE order_id = $1 AND status = 'sold'", U(order["id"]))
    assert sorted(r["code"] for r in sold) == sorted(codes)
    assert await stock(db, vid) == 1

    res = await client.get(f"/api/orders/{order['id']}", headers=seller.headers)
    assert res.status == 200, await res.text()
    assert (await res.json())["order"]["items"][0]["codes"] is None
    res = await client.get("/api/seller/orders", headers=seller.headers)
    listed = (await res.json())["items"]
    assert [o["id"] for o in listed] == [order["id"]]
    assert listed[0]["items"][0]["codes"] is None
    res = await client.get("/api/orders", headers=buyer.headers)
    assert (await res.json())["items"][0]["items"][0]["codes"] == codes


async def test_concurrent_buyers_never_share_a_code(client, make, db):
    seller = await make.seller()
    _, vid = await one_variant(make, seller, price=500, stock=0, digital=True)
    await import_codes(client, seller, vid, [f"KEY-{i}" for i in range(5)])
    buyers = await bulk_buyers(db, 12, 5000)

    async def attempt(headers):
        res = await client.post("/api/orders", json={"items": [{"variant_id": vid}]}, headers=headers)
        return res.status, await res.json(), headers

    results = await asyncio.gather(*(attempt(h) for _, h in buyers))
    ok = [(body["order"], headers) for status, body, headers in results if status == 201]
    assert len(ok) == 5
    assert all(s == 409 and b["error"]["code"] == "out_of_stock" for s, b, _ in results if s != 201)
    codes = []
    for order, headers in ok:
        res = await client.get(f"/api/orders/{order['id']}", headers=headers)
        item_codes = (await res.json())["order"]["items"][0]["codes"]
        assert len(item_codes) == 1
        codes += item_codes
    assert sorted(codes) == [f"KEY-{i}" for i in range(5)]
    assert await db.fetchval("SELECT count(DISTINCT order_id) FROM digital_units WHERE variant_id = $1", U(vid)) == 5
    assert await stock(db, vid) == 0


# -- who sees what --------------------------------------------------------------------------------------


async def test_visibility_and_pagination(client, make, db):
    seller = await make.seller()
    other_seller = await make.seller()
    buyer, stranger = await make.user(), await make.user()
    await top_up(client, buyer, 100_000)
    await top_up(client, stranger, 100_000)
    _, vid = await one_variant(make, seller, price=100, stock=100)

    mine = [await bought(client, buyer, vid) for _ in range(5)]
    theirs = await bought(client, stranger, vid)

    res = await client.get(f"/api/orders/{mine[0]['id']}", headers=stranger.headers)
    await error_of(res, 404, "not_found")
    res = await client.get(f"/api/orders/{mine[0]['id']}", headers=other_seller.headers)
    await error_of(res, 404, "not_found")
    res = await client.get(f"/api/orders/{mine[0]['id']}")
    await error_of(res, 401, "unauthorized")

    # Own orders only, newest first, two at a time.
    seen, cursor, pages = [], None, 0
    while True:
        url = "/api/orders?limit=2" + (f"&cursor={cursor}" if cursor else "")
        res = await client.get(url, headers=buyer.headers)
        assert res.status == 200, await res.text()
        page = await res.json()
        assert len(page["items"]) <= 2
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert [o["id"] for o in seen] == [o["id"] for o in reversed(mine)]
    assert all(o["buyer_id"] == buyer.id for o in seen)

    res = await client.get("/api/orders", headers=stranger.headers)
    assert [o["id"] for o in (await res.json())["items"]] == [theirs["id"]]

    # The seller sees every order for its products in /api/seller/orders, not among its own purchases.
    res = await client.get("/api/seller/orders?limit=100", headers=seller.headers)
    assert {o["id"] for o in (await res.json())["items"]} == {o["id"] for o in mine} | {theirs["id"]}
    res = await client.get("/api/orders", headers=seller.headers)
    assert (await res.json())["items"] == []
    res = await client.get("/api/seller/orders", headers=other_seller.headers)
    assert (await res.json())["items"] == []
    res = await client.get("/api/seller/orders", headers=buyer.headers)
    await error_of(res, 403, "forbidden")
    res = await client.get("/api/orders?cursor=zz", headers=buyer.headers)
    await error_of(res, 422, "validation_error")


# -- Idempotency-Key ------------------------------------------------------------------------------------


async def test_idempotent_order(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    _, vid = await one_variant(make, seller, price=1000, stock=10)
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    items = [{"variant_id": vid, "quantity": 1}]

    first = await buy(client, buyer, items, headers=key)
    assert first.status == 201, await first.text()
    assert "Idempotent-Replayed" not in first.headers
    first_body = await first.json()
    retry = await buy(client, buyer, items, headers=key)
    assert retry.status == 201, await retry.text()
    assert retry.headers.get("Idempotent-Replayed") == "true"
    assert (await retry.json())["order"]["id"] == first_body["order"]["id"]
    assert await order_count(db) == 1
    assert await balance(client, buyer) == 9000
    assert await stock(db, vid) == 9

    res = await buy(client, buyer, [{"variant_id": vid, "quantity": 2}], headers=key)
    await error_of(res, 422, "idempotency_mismatch")
    assert await order_count(db) == 1 and await balance(client, buyer) == 9000

    # Two copies of one request in flight at once still buy once.
    key2 = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    a, b = await asyncio.gather(buy(client, buyer, items, headers=key2), buy(client, buyer, items, headers=key2))
    assert a.status == b.status == 201, (await a.text(), await b.text())
    assert (await a.json())["order"]["id"] == (await b.json())["order"]["id"]
    assert await order_count(db) == 2 and await balance(client, buyer) == 8000

    # A key is the buyer's own: another account using the same key places its own order.
    other = await make.user()
    await top_up(client, other, 5000)
    res = await buy(client, other, items, headers=key)
    assert res.status == 201 and "Idempotent-Replayed" not in res.headers
    assert (await res.json())["order"]["buyer_id"] == other.id


async def test_idempotent_top_up(client, make, db):
    user = await make.user()
    key = {"Idempotency-Key": "topup-1", **user.headers}
    first = await client.post("/api/wallet/top-up", json={"amount_cents": 1500}, headers=key)
    assert first.status == 200, await first.text()
    first_body = await first.json()
    retry = await client.post("/api/wallet/top-up", json={"amount_cents": 1500}, headers=key)
    assert retry.status == 200 and retry.headers.get("Idempotent-Replayed") == "true"
    assert await retry.json() == first_body
    assert await balance(client, user) == 1500
    assert (
        await db.fetchval(
            """SELECT count(*) FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
            WHERE a.user_id = $1 AND a.kind = 'wallet' AND e.type = 'deposit'""",
            U(user.id),
        )
        == 1
    )
    res = await client.post("/api/wallet/top-up", json={"amount_cents": 2000}, headers=key)
    await error_of(res, 422, "idempotency_mismatch")
    assert await balance(client, user) == 1500


async def test_idempotent_refund(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    await top_up(client, buyer, 5000)
    _, vid = await one_variant(make, seller, price=1000)
    order = await bought(client, buyer, vid)
    key = {"Idempotency-Key": "refund-1", **seller.headers}
    body = {"amount_cents": 300, "reason": "scratched"}

    first = await client.post(f"/api/orders/{order['id']}/refund", json=body, headers=key)
    assert first.status == 200, await first.text()
    retry = await client.post(f"/api/orders/{order['id']}/refund", json=body, headers=key)
    assert retry.status == 200 and retry.headers.get("Idempotent-Replayed") == "true"
    assert (await retry.json())["order"]["refunded_cents"] == 300
    assert (await first.json())["order"]["status"] == "partially_refunded"
    assert await balance(client, buyer) == 4300
    assert await db.fetchval("SELECT refunded_cents FROM orders WHERE id = $1", U(order["id"])) == 300
    res = await client.post(
        f"/api/orders/{order['id']}/refund", json={"amount_cents": 400, "reason": "scratched"}, headers=key
    )
    await error_of(res, 422, "idempotency_mismatch")
    assert await balance(client, buyer) == 4300


async def test_idempotent_checkout(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    await top_up(client, buyer, 5000)
    _, vid = await one_variant(make, seller, price=1000)
    res = await client.post("/api/cart/items", json={"variant_id": vid, "quantity": 2}, headers=buyer.headers)
    assert res.status == 200, await res.text()
    key = {"Idempotency-Key": "checkout-1", **buyer.headers}

    first = await client.post("/api/cart/checkout", json={}, headers=key)
    assert first.status == 201, await first.text()
    first_ids = [o["id"] for o in (await first.json())["orders"]]
    retry = await client.post("/api/cart/checkout", json={}, headers=key)
    assert retry.status == 201 and retry.headers.get("Idempotent-Replayed") == "true"
    assert [o["id"] for o in (await retry.json())["orders"]] == first_ids
    assert await order_count(db) == 1
    assert await balance(client, buyer) == 3000
    res = await client.post("/api/cart/checkout", json={"address_id": str(uuid.uuid4())}, headers=key)
    await error_of(res, 422, "idempotency_mismatch")


# -- cart -----------------------------------------------------------------------------------------------


async def cart(client, account) -> dict:
    res = await client.get("/api/cart", headers=account.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def test_cart_lines(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    _, va = await one_variant(make, seller, price=1000, stock=5)
    _, vb = await one_variant(make, seller, price=250, stock=3)

    assert (await cart(client, buyer))["items"] == [] and (await cart(client, buyer))["subtotal_cents"] == 0
    for variant, qty in ((va, 1), (va, 2), (vb, 1)):
        res = await client.post("/api/cart/items", json={"variant_id": variant, "quantity": qty}, headers=buyer.headers)
        assert res.status == 200, await res.text()
        await res.read()
    body = await cart(client, buyer)
    lines = {i["variant_id"]: i for i in body["items"]}
    assert lines[va]["quantity"] == 3 and lines[vb]["quantity"] == 1
    assert lines[va]["unit_price_cents"] == 1000 and lines[va]["available"] == 5 and lines[va]["purchasable"]
    assert body["subtotal_cents"] == 3250

    res = await client.patch(f"/api/cart/items/{vb}", json={"quantity": 4}, headers=buyer.headers)
    assert res.status == 200, await res.text()
    line = next(i for i in (await res.json())["items"] if i["variant_id"] == vb)
    assert line["quantity"] == 4 and line["available"] == 3 and line["purchasable"] is False

    # Today's price and stock, not those of when the item was added.
    res = await client.patch(f"/api/variants/{va}", json={"price_cents": 1200}, headers=seller.headers)
    assert res.status == 200
    await res.read()
    res = await client.post(
        f"/api/variants/{va}/stock", json={"delta": -4, "reason": "damaged"}, headers=seller.headers
    )
    assert res.status == 200, await res.text()
    line = next(i for i in (await cart(client, buyer))["items"] if i["variant_id"] == va)
    assert line["unit_price_cents"] == 1200 and line["available"] == 1 and line["purchasable"] is False

    res = await client.delete(f"/api/cart/items/{vb}", headers=buyer.headers)
    assert res.status == 200
    assert [i["variant_id"] for i in (await res.json())["items"]] == [va]
    res = await client.patch(f"/api/cart/items/{vb}", json={"quantity": 1}, headers=buyer.headers)
    await error_of(res, 404, "not_found")
    res = await client.post("/api/cart/items", json={"variant_id": str(uuid.uuid4())}, headers=buyer.headers)
    await error_of(res, 404, "not_found")
    res = await client.post("/api/cart/items", json={"variant_id": va, "quantity": 0}, headers=buyer.headers)
    await error_of(res, 422, "validation_error")
    # Another user's cart is their own.
    assert (await cart(client, await make.user()))["items"] == []


async def test_cart_checkout(client, make, db):
    a, b = await make.seller(), await make.seller()
    buyer = await make.user()
    _, va = await one_variant(make, a, price=1000, stock=2)
    _, vb = await one_variant(make, b, price=500, stock=5)
    for variant, qty in ((va, 2), (vb, 3)):
        res = await client.post("/api/cart/items", json={"variant_id": variant, "quantity": qty}, headers=buyer.headers)
        assert res.status == 200
        await res.read()

    # Not enough money: nothing bought, the cart kept.
    await top_up(client, buyer, 3000)
    res = await client.post("/api/cart/checkout", json={}, headers=buyer.headers)
    await error_of(res, 409, "insufficient_funds")
    assert len((await cart(client, buyer))["items"]) == 2
    assert await order_count(db) == 0 and await balance(client, buyer) == 3000

    # Not enough stock: the same.
    await top_up(client, buyer, 10_000)
    res = await client.post(f"/api/variants/{va}/stock", json={"delta": -1, "reason": "lost"}, headers=a.headers)
    assert res.status == 200
    await res.read()
    res = await client.post("/api/cart/checkout", json={}, headers=buyer.headers)
    await error_of(res, 409, "out_of_stock")
    assert len((await cart(client, buyer))["items"]) == 2
    assert await order_count(db) == 0 and await balance(client, buyer) == 13_000
    assert await stock(db, vb) == 5

    res = await client.patch(f"/api/cart/items/{va}", json={"quantity": 1}, headers=buyer.headers)
    assert res.status == 200
    await res.read()
    oslo = {"name": "Ann", "line1": "1 Main St", "city": "Oslo", "country": "NO"}
    res = await client.post("/api/cart/checkout", json={"address": oslo}, headers=buyer.headers)
    assert res.status == 201, await res.text()
    orders = (await res.json())["orders"]
    assert sorted((o["seller_id"], o["total_cents"]) for o in orders) == sorted(
        [(a.seller["id"], 1000), (b.seller["id"], 1500)]
    )
    assert len({o["checkout_id"] for o in orders}) == 1
    assert all(o["address"]["city"] == "Oslo" for o in orders)
    emptied = await cart(client, buyer)
    assert emptied["items"] == [] and emptied["subtotal_cents"] == 0 and emptied["sellers"] == []
    assert await balance(client, buyer) == 13_000 - 2500
    assert await stock(db, va) == 0 and await stock(db, vb) == 2

    res = await client.post("/api/cart/checkout", json={}, headers=buyer.headers)
    await error_of(res, 422, "validation_error")  # an empty cart
    assert await order_count(db) == 2


async def test_orders_need_a_user_and_valid_items(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    _, vid = await one_variant(make, seller, price=1000)
    await top_up(client, buyer, 5000)
    res = await client.post("/api/orders", json={"items": [{"variant_id": vid}]})
    await error_of(res, 401, "unauthorized")
    await error_of(await buy(client, buyer, []), 422, "validation_error")
    await error_of(await buy(client, buyer, [{"variant_id": vid, "quantity": 0}]), 422, "validation_error")
    await error_of(await buy(client, buyer, [{"variant_id": str(uuid.uuid4())}]), 404, "not_found")
    await error_of(await buy(client, buyer, [{"variant_id": vid}], stream_id=uuid.uuid4()), 404, "not_found")
    # Sellers cannot buy their own products (it would pay them from their own wallet).
    await top_up(client, seller, 5000)
    await error_of(await buy(client, seller, [{"variant_id": vid}]), 403, "forbidden")
    assert await order_count(db) == 0
