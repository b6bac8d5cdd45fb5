"""In-stream batch buying (`buy_batch`) against a real PostgreSQL: arrival order, money, limits, prices,
concurrency across connections, host commission with its refund, and the append-only ledger.

Rows are built with SQL (not the REST API) so each test states exactly the world it buys in.
"""

import asyncio
import uuid
from collections import Counter

import asyncpg
import pytest

from helpers import assert_books_balanced, give_addresses
from storage.db import create_pool, init_connection

FEE_BPS = 500
HOLD_S = 3600
WALLET = 10_000  # 100.00


# -- building the world -------------------------------------------------------------------------------


async def new_users(db, n: int, prefix: str = "buyer") -> list[uuid.UUID]:
    tag = uuid.uuid4().hex[:8]
    rows = await db.fetch(
        """INSERT INTO users (email, display_name, password_hash)
           SELECT $1 || '-' || i || '@example.test', $1 || ' ' || i, 'x' FROM generate_series(1, $2) i
           RETURNING id""",
        f"{prefix}-{tag}",
        n,
    )
    ids = [r["id"] for r in rows]
    await give_addresses(db, ids)  # goods that ship need an address; sellers get one too, unused
    return ids


async def new_user(db, prefix: str = "user") -> uuid.UUID:
    return (await new_users(db, 1, prefix))[0]


async def fund(db, users, cents: int = WALLET) -> None:
    await db.execute("SELECT top_up(u, $2, 'test') FROM unnest($1::uuid[]) u", list(users), cents)


async def new_seller(db) -> tuple[uuid.UUID, uuid.UUID]:
    """(seller's user id, sellers.id) of an approved shop."""
    user = await new_user(db, "seller")
    seller = await db.fetchval(
        "INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, 'Shop', 'approved') RETURNING id", user
    )
    return user, seller


async def new_variant(db, seller_user, *, price: int = 1000, stock: int = 10) -> tuple[uuid.UUID, uuid.UUID]:
    """(product id, variant id) of a one-variant product."""
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    product = await db.fetchval(
        "SELECT create_product($1, 'Thing', '', NULL, '{}'::jsonb, $2)",
        seller_user,
        [{"sku": sku, "price_cents": price, "stock": stock}],
    )
    variant = await db.fetchval("SELECT id FROM variants WHERE product_id = $1", product)
    return product, variant


async def new_stream(db, seller, host, *, status: str = "live", commission_bps: int = 0) -> uuid.UUID:
    return await db.fetchval(
        """INSERT INTO streams (seller_id, host_id, title, status, host_commission_bps)
           VALUES ($1, $2, 'Live', $3, $4) RETURNING id""",
        seller,
        host,
        status,
        commission_bps,
    )


async def put_on_stream(db, stream, product, *, live_price: int | None = None, limit: int | None = None) -> None:
    await db.execute(
        """INSERT INTO stream_products (stream_id, product_id, live_price_cents, per_buyer_limit)
           VALUES ($1, $2, $3, $4)""",
        stream,
        product,
        live_price,
        limit,
    )


async def new_flash_sale(db, stream, variant, *, price: int, quantity: int, limit: int | None = None) -> uuid.UUID:
    return await db.fetchval(
        """INSERT INTO flash_sales (stream_id, variant_id, price_cents, quantity, per_buyer_limit, ends_at)
           VALUES ($1, $2, $3, $4, $5, now() + interval '5 minutes') RETURNING id""",
        stream,
        variant,
        price,
        quantity,
        limit,
    )


def requests(buyers, *, quantity: int = 1, prefix: str = "r") -> list[dict]:
    return [{"request_id": f"{prefix}{i}", "buyer_id": str(b), "quantity": quantity} for i, b in enumerate(buyers)]


async def buy(db, variant, stream, reqs, *, fee_bps: int = FEE_BPS, feature: bool = True) -> dict:
    """One batch. In-stream buying is for what the stream features, so by default the variant's product
    is featured first (as the live room would only offer featured products)."""
    if stream is not None and feature:
        await db.execute(
            """INSERT INTO stream_products (stream_id, product_id)
               SELECT $1, product_id FROM variants WHERE id = $2 ON CONFLICT DO NOTHING""",
            stream,
            variant,
        )
    return await db.fetchval("SELECT buy_batch($1, $2, $3, $4, $5)", variant, stream, reqs, fee_bps, HOLD_S)


async def wallet(db, user) -> int:
    return await db.fetchval(
        "SELECT coalesce((SELECT balance_cents FROM accounts WHERE user_id = $1 AND kind = 'wallet'), 0)", user
    )


async def balance(db, user, kind: str) -> int:
    return await db.fetchval(
        "SELECT coalesce((SELECT balance_cents FROM accounts WHERE user_id = $1 AND kind = $2), 0)", user, kind
    )


async def stock(db, variant) -> int:
    return await db.fetchval("SELECT stock FROM variants WHERE id = $1", variant)


@pytest.fixture
async def conn(db):
    """The clean test connection, with the app's jsonb codecs (dicts in, dicts out)."""
    await init_connection(db)
    return db


@pytest.fixture
async def shop(conn):
    """An approved seller with a live stream they host themselves (no commission)."""
    seller_user, seller = await new_seller(conn)
    stream = await new_stream(conn, seller, seller_user)
    return seller_user, seller, stream


# -- arrival order and money --------------------------------------------------------------------------


async def test_stock_goes_to_requests_in_arrival_order(conn, shop):
    seller_user, _, stream = shop
    _, variant = await new_variant(conn, seller_user, price=1000, stock=4)
    buyers = await new_users(conn, 10)
    await fund(conn, buyers)

    out = await buy(conn, variant, stream, requests(buyers))

    results = out["results"]
    assert [r["request_id"] for r in results] == [f"r{i}" for i in range(10)]
    assert [r["buyer_id"] for r in results] == [str(b) for b in buyers]
    assert [r["status"] for r in results] == ["ok"] * 4 + ["sold_out"] * 6
    for r in results[:4]:
        assert uuid.UUID(r["order_id"]) and r["order_number"].startswith("LH-")
    for r in results[4:]:
        assert r.get("order_id") is None and r.get("order_number") is None
    assert out["available"] == 0 and out["flash_sale"] is None
    assert await stock(conn, variant) == 0

    orders = await conn.fetch("SELECT id, number, buyer_id, total_cents, request_id, status FROM orders")
    assert len(orders) == 4
    assert {(str(o["id"]), o["number"]) for o in orders} == {(r["order_id"], r["order_number"]) for r in results[:4]}
    assert {o["buyer_id"] for o in orders} == set(buyers[:4])
    assert {o["total_cents"] for o in orders} == {1000} and {o["status"] for o in orders} == {"paid"}
    sales = await conn.fetch(
        "SELECT delta, stock_after FROM stock_movements WHERE variant_id = $1 AND reason = 'sale' ORDER BY id", variant
    )
    assert [(m["delta"], m["stock_after"]) for m in sales] == [(-1, 3), (-1, 2), (-1, 1), (-1, 0)]
    for b in buyers[:4]:
        assert await wallet(conn, b) == WALLET - 1000
    for b in buyers[4:]:
        assert await wallet(conn, b) == WALLET
    await assert_books_balanced(conn)


async def test_a_buyer_who_cannot_pay_consumes_no_stock(conn, shop):
    seller_user, _, stream = shop
    _, variant = await new_variant(conn, seller_user, price=1000, stock=2)
    poor, rich, rich2 = await new_users(conn, 3)
    await fund(conn, [poor], 999)
    await fund(conn, [rich, rich2])

    out = await buy(conn, variant, stream, requests([poor, rich, rich2]))

    assert [r["status"] for r in out["results"]] == ["insufficient_funds", "ok", "ok"]
    assert out["available"] == 0
    assert out["results"][0].get("order_id") is None
    assert await wallet(conn, poor) == 999
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM ledger_entries e JOIN accounts a ON a.id = e.account_id "
            "WHERE a.user_id = $1 AND e.type = 'purchase'",
            poor,
        )
        == 0
    )
    assert await conn.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1", poor) == 0
    assert await wallet(conn, rich) == await wallet(conn, rich2) == WALLET - 1000
    await assert_books_balanced(conn)


async def test_a_buyer_without_an_address_the_seller_ships_to_consumes_no_stock(conn, shop):
    """Goods that ship go to the buyer's default address (or the request's address_id) at the seller's rate;
    a buyer with none, or only one where the seller does not ship, is answered address_required and the
    unit goes to the next buyer, who pays the price plus shipping."""
    seller_user, seller, stream = shop
    await conn.execute(
        "INSERT INTO shipping_profiles (seller_id, flat_rate_cents, countries) VALUES ($1, 250, '{US}')", seller
    )
    _, variant = await new_variant(conn, seller_user, price=1000, stock=1)
    homeless, abroad, other, buyer = await new_users(conn, 4)
    await conn.execute("DELETE FROM addresses WHERE user_id = $1", homeless)
    await conn.execute("UPDATE addresses SET country = 'DE' WHERE user_id = $1", abroad)
    await fund(conn, [homeless, abroad, buyer])
    elsewhere = await conn.fetchval("SELECT id FROM addresses WHERE user_id = $1", other)
    reqs = requests([homeless, abroad, buyer, buyer], prefix="s")
    reqs[2]["address_id"] = str(elsewhere)  # not the buyer's own: as if it did not exist

    out = await buy(conn, variant, stream, reqs)

    assert [(r["status"], r.get("reason"), r.get("country")) for r in out["results"]] == [
        ("address_required", "missing", None),
        ("address_required", "not_shipped", "DE"),
        ("address_required", "missing", None),
        ("ok", None, None),
    ]
    assert out["available"] == 0
    order = await conn.fetchrow("SELECT * FROM orders WHERE buyer_id = $1", buyer)
    assert (order["total_cents"], order["shipping_cents"], order["address"]["country"]) == (1250, 250, "US")
    assert await wallet(conn, buyer) == WALLET - 1250
    assert await wallet(conn, homeless) == await wallet(conn, abroad) == WALLET
    # The seller earns the shipping; the fee is on the item only.
    assert await conn.fetchval("SELECT amount_cents FROM earnings WHERE order_id = $1", order["id"]) == (
        1000 - 1000 * FEE_BPS // 10000 + 250
    )
    await assert_books_balanced(conn)


async def test_a_second_unit_needs_money_for_it_too(conn, shop):
    seller_user, _, stream = shop
    _, variant = await new_variant(conn, seller_user, price=1000, stock=5)
    buyer, other = await new_users(conn, 2)
    await fund(conn, [buyer], 1500)
    await fund(conn, [other])

    out = await buy(conn, variant, stream, requests([buyer, buyer, other]))

    assert [r["status"] for r in out["results"]] == ["ok", "insufficient_funds", "ok"]
    assert out["available"] == 3
    assert await wallet(conn, buyer) == 500
    await assert_books_balanced(conn)


async def test_duplicate_request_ids_are_charged_once(conn, shop):
    seller_user, _, stream = shop
    _, variant = await new_variant(conn, seller_user, price=1000, stock=10)
    alice, bob = await new_users(conn, 2)
    await fund(conn, [alice, bob])
    same = {"request_id": "tap-1", "buyer_id": str(alice), "quantity": 1}
    # Bob may use the same request id as Alice: ids are per buyer.
    bobs = {"request_id": "tap-1", "buyer_id": str(bob), "quantity": 1}

    first = await buy(conn, variant, stream, [same, same, bobs])
    statuses = [r["status"] for r in first["results"]]
    assert statuses == ["ok", "duplicate", "ok"], first
    order_id, number = first["results"][0]["order_id"], first["results"][0]["order_number"]
    assert first["results"][1]["order_id"] == order_id and first["results"][1]["order_number"] == number

    later = await buy(conn, variant, stream, [same])
    assert later["results"] == [
        {
            "request_id": "tap-1",
            "buyer_id": str(alice),
            "status": "duplicate",
            "order_id": order_id,
            "order_number": number,
        }
    ]
    assert later["available"] == 8
    assert await conn.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1", alice) == 1
    assert await wallet(conn, alice) == WALLET - 1000
    assert await stock(conn, variant) == 8
    await assert_books_balanced(conn)


# -- limits and prices --------------------------------------------------------------------------------


@pytest.fixture
async def flash(conn, shop):
    """A live stream selling a 1000-cent variant at 700 live, with a flash sale at 300, 2 per buyer."""
    seller_user, _, stream = shop
    product, variant = await new_variant(conn, seller_user, price=1000, stock=10)
    await put_on_stream(conn, stream, product, live_price=700)
    sale = await new_flash_sale(conn, stream, variant, price=300, quantity=10, limit=2)
    return stream, variant, sale


async def test_per_buyer_limit_across_batches_at_the_flash_price(conn, flash):
    stream, variant, sale = flash
    (buyer,) = await new_users(conn, 1)
    await fund(conn, [buyer])

    statuses = []
    for i in range(3):
        out = await buy(conn, variant, stream, [{"request_id": f"t{i}", "buyer_id": str(buyer), "quantity": 1}])
        statuses.append(out["results"][0]["status"])
        assert out["flash_sale"]["id"] == str(sale)
    assert statuses == ["ok", "ok", "limit_reached"]
    totals = await conn.fetch("SELECT total_cents FROM orders WHERE buyer_id = $1", buyer)
    assert [t["total_cents"] for t in totals] == [300, 300]
    assert await conn.fetchval("SELECT DISTINCT unit_price_cents FROM order_items") == 300
    assert await conn.fetchval("SELECT DISTINCT flash_sale_id FROM order_items") == sale
    assert await wallet(conn, buyer) == WALLET - 600
    assert await conn.fetchval("SELECT sold FROM flash_sales WHERE id = $1", sale) == 2
    await assert_books_balanced(conn)


async def test_per_buyer_limit_within_one_batch(conn, flash):
    """Three taps of one buyer arriving in the same batch, limit 2: the first two are sold.

    Fails today: buy_batch counts the batch's own earlier orders twice, once through units_bought()
    (which sees rows written earlier in the same transaction) and once through its `bought` map, so the
    second tap is already refused."""
    stream, variant, sale = flash
    (buyer,) = await new_users(conn, 1)
    await fund(conn, [buyer])

    out = await buy(conn, variant, stream, requests([buyer] * 3, prefix="tap"))

    assert [r["status"] for r in out["results"]] == ["ok", "ok", "limit_reached"], out
    assert await wallet(conn, buyer) == WALLET - 600
    assert await conn.fetchval("SELECT sold FROM flash_sales WHERE id = $1", sale) == 2
    await assert_books_balanced(conn)


async def test_stream_product_limit_within_one_batch(conn, shop):
    """The same double count with the stream product's per-buyer limit (no flash sale)."""
    seller_user, _, stream = shop
    product, variant = await new_variant(conn, seller_user, price=1000, stock=10)
    await put_on_stream(conn, stream, product, limit=2)
    (buyer,) = await new_users(conn, 1)
    await fund(conn, [buyer])

    out = await buy(conn, variant, stream, requests([buyer] * 3, prefix="tap"))

    assert [r["status"] for r in out["results"]] == ["ok", "ok", "limit_reached"], out
    assert await wallet(conn, buyer) == WALLET - 2000


async def test_flash_quantity_caps_sales_and_ends_the_sale(conn, shop):
    seller_user, _, stream = shop
    product, variant = await new_variant(conn, seller_user, price=1000, stock=10)
    await put_on_stream(conn, stream, product, live_price=700)
    sale = await new_flash_sale(conn, stream, variant, price=300, quantity=3)
    buyers = await new_users(conn, 5)
    await fund(conn, buyers)

    out = await buy(conn, variant, stream, requests(buyers))

    assert [r["status"] for r in out["results"]] == ["ok"] * 3 + ["sold_out"] * 2
    assert out["available"] == 7
    assert out["flash_sale"] == {"id": str(sale), "remaining": 0, "ended": True}
    row = await conn.fetchrow("SELECT sold, ended_at FROM flash_sales WHERE id = $1", sale)
    assert row["sold"] == 3 and row["ended_at"] is not None
    for b in buyers[:3]:
        assert await wallet(conn, b) == WALLET - 300
    # With the sale over, the next buyer pays the stream's live price.
    after = await buy(conn, variant, stream, requests(buyers[3:4], prefix="late"))
    assert after["results"][0]["status"] == "ok" and after["flash_sale"] is None
    assert await wallet(conn, buyers[3]) == WALLET - 700
    await assert_books_balanced(conn)


async def test_flash_sale_partly_sold_keeps_running(conn, flash):
    stream, variant, sale = flash
    buyers = await new_users(conn, 2)
    await fund(conn, buyers)
    out = await buy(conn, variant, stream, requests(buyers))
    assert [r["status"] for r in out["results"]] == ["ok", "ok"]
    assert out["flash_sale"] == {"id": str(sale), "remaining": 8, "ended": False}
    assert await conn.fetchval("SELECT ended_at FROM flash_sales WHERE id = $1", sale) is None


async def test_live_price_while_live_and_list_price_otherwise(conn, shop):
    seller_user, seller, live = shop
    product, variant = await new_variant(conn, seller_user, price=1000, stock=10)
    await put_on_stream(conn, live, product, live_price=700)
    scheduled = await new_stream(conn, seller, seller_user, status="scheduled")
    await put_on_stream(conn, scheduled, product, live_price=500)
    a, b, c = await new_users(conn, 3)
    await fund(conn, [a, b, c])

    await buy(conn, variant, live, requests([a], prefix="live"))
    # A stream that is not live sells nothing in its name (no live price, no host commission).
    out = await buy(conn, variant, scheduled, requests([b], prefix="sched"))
    assert out["results"][0]["status"] == "error"
    await buy(conn, variant, None, requests([c], prefix="none"))

    assert await wallet(conn, a) == WALLET - 700
    assert await wallet(conn, b) == WALLET
    assert await wallet(conn, c) == WALLET - 1000
    prices = dict(
        await conn.fetch(
            "SELECT o.buyer_id, oi.unit_price_cents FROM orders o JOIN order_items oi ON oi.order_id = o.id"
        )
    )
    assert prices == {a: 700, c: 1000}
    await assert_books_balanced(conn)


# -- concurrency --------------------------------------------------------------------------------------


async def test_concurrent_batches_from_many_connections_never_oversell(conn, shop, database_url):
    seller_user, _, stream = shop
    _, variant = await new_variant(conn, seller_user, price=1000, stock=50)
    buyers = await new_users(conn, 200)
    await fund(conn, buyers)
    groups = [buyers[i * 25 : (i + 1) * 25] for i in range(8)]

    pool = await create_pool(database_url, min_size=8, max_size=8)
    try:
        conns = [await pool.acquire() for _ in range(8)]
        try:
            start = asyncio.Event()

            async def one(c, group, n):
                await start.wait()
                return await buy(c, variant, stream, requests(group, prefix=f"g{n}-"))

            tasks = [asyncio.create_task(one(c, g, n)) for n, (c, g) in enumerate(zip(conns, groups, strict=True))]
            await asyncio.sleep(0.05)
            start.set()
            # Wait for every batch (also if one fails) before giving the connections back.
            outs = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        finally:
            for c in conns:
                await pool.release(c)
    finally:
        await pool.close()

    errors = [out for out in outs if isinstance(out, BaseException)]
    assert not errors, errors
    results = [r for out in outs for r in out["results"]]
    assert Counter(r["status"] for r in results) == {"ok": 50, "sold_out": 150}
    ok_buyers = {uuid.UUID(r["buyer_id"]) for r in results if r["status"] == "ok"}
    assert len(ok_buyers) == 50
    # The batches ran one after another on the variant's lock: two sold their 25, six found nothing.
    per_batch = sorted(Counter(r["status"] for r in out["results"])["ok"] for out in outs)
    assert per_batch == [0] * 6 + [25, 25]
    assert sorted(out["available"] for out in outs) == [0] * 7 + [25]
    assert await stock(conn, variant) == 0
    assert (
        await conn.fetchval(
            "SELECT min(stock_after) FROM stock_movements WHERE variant_id = $1 AND reason = 'sale'", variant
        )
        == 0
    )
    after = sorted(
        r["stock_after"]
        for r in await conn.fetch(
            "SELECT stock_after FROM stock_movements WHERE variant_id = $1 AND reason = 'sale'", variant
        )
    )
    assert after == list(range(50))  # every unit sold exactly once, in one serial chain

    charges = dict(
        await conn.fetch(
            """SELECT a.user_id, count(*) FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
                WHERE a.kind = 'wallet' AND e.type = 'purchase' GROUP BY a.user_id"""
        )
    )
    assert set(charges) == ok_buyers and set(charges.values()) == {1}
    balances = dict(
        await conn.fetch(
            "SELECT user_id, balance_cents FROM accounts WHERE kind = 'wallet' AND user_id = ANY ($1)", buyers
        )
    )
    for b in buyers:
        assert balances[b] == (WALLET - 1000 if b in ok_buyers else WALLET)
    assert await conn.fetchval("SELECT count(*) FROM orders") == 50
    assert await conn.fetchval("SELECT check_books()->>'balanced'") == "true"


# -- host commission and refund -----------------------------------------------------------------------


async def test_host_commission_and_its_reversal_on_refund(conn):
    seller_user, seller = await new_seller(conn)
    host = await new_user(conn, "host")
    stream = await new_stream(conn, seller, host, commission_bps=1000)
    product, variant = await new_variant(conn, seller_user, price=2000, stock=5)
    await put_on_stream(conn, stream, product)
    (buyer,) = await new_users(conn, 1)
    await fund(conn, [buyer])

    out = await buy(conn, variant, stream, requests([buyer]), fee_bps=500)
    assert out["results"][0]["status"] == "ok"
    order = uuid.UUID(out["results"][0]["order_id"])

    total, fee, commission = 2000, 100, 200
    row = await conn.fetchrow(
        "SELECT total_cents, fee_cents, host_id, host_commission_cents FROM orders WHERE id = $1", order
    )
    assert dict(row) == {"total_cents": total, "fee_cents": fee, "host_id": host, "host_commission_cents": commission}
    assert await balance(conn, seller_user, "earnings_pending") == total - fee - commission
    assert await balance(conn, host, "earnings_pending") == commission
    earnings = dict(await conn.fetch("SELECT role, amount_cents FROM earnings WHERE order_id = $1", order))
    assert earnings == {"seller": total - fee - commission, "host": commission}
    platform = await conn.fetch(
        """SELECT e.type, e.amount_cents FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
            WHERE a.kind = 'platform' AND e.order_id = $1""",
        order,
    )
    assert [(p["type"], p["amount_cents"]) for p in platform] == [("fee", fee)]
    assert await wallet(conn, buyer) == WALLET - total
    await assert_books_balanced(conn)

    await conn.execute("SELECT refund_order($1, $2, false, NULL, 'r')", order, seller_user)

    assert await conn.fetchval("SELECT status FROM orders WHERE id = $1", order) == "refunded"
    assert await wallet(conn, buyer) == WALLET
    assert await balance(conn, seller_user, "earnings_pending") == 0
    assert await balance(conn, host, "earnings_pending") == 0
    assert dict(await conn.fetch("SELECT role, reversed_cents FROM earnings WHERE order_id = $1", order)) == {
        "seller": total - fee - commission,
        "host": commission,
    }
    assert (
        await conn.fetchval(
            """SELECT sum(e.amount_cents) FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
            WHERE a.kind = 'platform' AND e.order_id = $1""",
            order,
        )
        == 0
    )
    assert await conn.fetchval("SELECT sum(amount_cents) FROM ledger_entries WHERE order_id = $1", order) == 0
    await assert_books_balanced(conn)


async def test_no_host_commission_on_another_sellers_product(conn):
    """A stream earns its host a commission only on its own seller's products that it features: a batch
    naming a product the stream does not feature sells nothing; one of another shop's products featured
    there sells, but the host gets nothing; place_order refuses the unfeatured product outright."""
    _, a_seller = await new_seller(conn)
    host = await new_user(conn, "host")
    a_stream = await new_stream(conn, a_seller, host, commission_bps=1000)
    c_user, _ = await new_seller(conn)
    _, c_variant = await new_variant(conn, c_user, price=2000, stock=5)
    buyer, other = await new_users(conn, 2)
    await fund(conn, [buyer, other])

    out = await buy(conn, c_variant, a_stream, requests([buyer]), fee_bps=500, feature=False)
    assert out["results"][0]["status"] == "error"
    assert await wallet(conn, buyer) == WALLET and out["available"] == 5

    out = await buy(conn, c_variant, a_stream, requests([buyer], prefix="again"), fee_bps=500)
    assert out["results"][0]["status"] == "ok"
    row = await conn.fetchrow("SELECT host_id, host_commission_cents, total_cents, fee_cents FROM orders")
    assert dict(row) == {"host_id": None, "host_commission_cents": 0, "total_cents": 2000, "fee_cents": 100}
    assert await balance(conn, host, "earnings_pending") == 0
    assert await balance(conn, c_user, "earnings_pending") == 2000 - 100

    await conn.execute("DELETE FROM stream_products")
    with pytest.raises(asyncpg.PostgresError) as refused:
        await conn.fetchval(
            "SELECT place_order($1, $2, $3, NULL, 500, $4)",
            other,
            [{"variant_id": str(c_variant), "quantity": 1}],
            a_stream,
            HOLD_S,
        )
    assert refused.value.sqlstate == "LH422"
    assert await wallet(conn, other) == WALLET
    assert await balance(conn, host, "earnings_pending") == 0
    await assert_books_balanced(conn)


# -- the hot path stays on indexes -------------------------------------------------------------------


async def seq_scans(db) -> dict[str, int]:
    """Sequential scans per table in the current transaction so far."""
    return dict(await db.fetch("SELECT relname, seq_scan FROM pg_stat_xact_user_tables"))


async def test_a_batch_reads_accounts_through_indexes(conn, shop):
    """With sequential scans priced out, a batch does none on `accounts`: account_of() runs several
    times per purchase under the variant's lock, and a scan would slow every purchase as users grow."""
    seller_user, _, stream = shop
    _, variant = await new_variant(conn, seller_user, price=1000, stock=10)
    buyers = await new_users(conn, 3)
    await fund(conn, buyers)
    await conn.execute("SET enable_seqscan = off")
    async with conn.transaction():
        before = await seq_scans(conn)
        out = await buy(conn, variant, stream, requests(buyers))
        after = await seq_scans(conn)
    assert [r["status"] for r in out["results"]] == ["ok"] * 3
    assert after.get("accounts", 0) - before.get("accounts", 0) == 0


# -- the ledger is append-only ------------------------------------------------------------------------


async def test_ledger_entries_cannot_be_updated_or_deleted(conn):
    (buyer,) = await new_users(conn, 1)
    await fund(conn, [buyer])
    before = [dict(r) for r in await conn.fetch("SELECT * FROM ledger_entries ORDER BY id")]
    assert len(before) == 2

    with pytest.raises(asyncpg.PostgresError) as update:
        await conn.execute("UPDATE ledger_entries SET amount_cents = amount_cents * 2")
    assert update.value.sqlstate == "LH409"
    with pytest.raises(asyncpg.PostgresError) as delete:
        await conn.execute(
            "DELETE FROM ledger_entries WHERE account_id IN (SELECT id FROM accounts WHERE user_id = $1)", buyer
        )
    assert delete.value.sqlstate == "LH409"

    assert [dict(r) for r in await conn.fetch("SELECT * FROM ledger_entries ORDER BY id")] == before
    assert await wallet(conn, buyer) == WALLET
    await assert_books_balanced(conn)


async def test_request_ids_are_per_variant(conn, shop):
    """A retry is a buy of the same variant; the same id on another variant is another purchase, so a
    client reusing ids across products can never make a batch (of everyone's buys) fail on a collision."""
    seller_user, _, stream = shop
    _, first = await new_variant(conn, seller_user, price=1000, stock=5)
    _, second = await new_variant(conn, seller_user, price=1000, stock=5)
    (buyer,) = await new_users(conn, 1)
    await fund(conn, [buyer])
    same = [{"request_id": "tap", "buyer_id": str(buyer), "quantity": 1}]

    assert (await buy(conn, first, stream, same))["results"][0]["status"] == "ok"
    assert (await buy(conn, second, stream, same))["results"][0]["status"] == "ok"
    assert (await buy(conn, first, stream, same))["results"][0]["status"] == "duplicate"
    # A request without an id after one with an id in the same batch is a purchase of its own.
    out = await buy(conn, second, stream, [*same, {"request_id": None, "buyer_id": str(buyer), "quantity": 1}])
    assert [r["status"] for r in out["results"]] == ["duplicate", "ok"]
    assert await wallet(conn, buyer) == WALLET - 3000
    await assert_books_balanced(conn)


# -- one batch, many orders: what the set-based writes must keep ---------------------------------------


async def test_refusals_in_a_batch_consume_nothing_and_a_buyer_spends_a_running_balance(conn, shop):
    """A mixed batch: a buyer who cannot pay, one who can pay for one unit of two, then buyers who can.
    Refused requests take no stock, so the units go on to the later buyers in arrival order."""
    seller_user, _, stream = shop
    _, variant = await new_variant(conn, seller_user, price=1000, stock=3)
    poor, once, b, c, d = await new_users(conn, 5)
    await fund(conn, [poor], 999)
    await fund(conn, [once], 1500)
    await fund(conn, [b, c, d])

    out = await buy(conn, variant, stream, requests([poor, once, once, b, c, d]))

    assert [r["status"] for r in out["results"]] == [
        "insufficient_funds",
        "ok",
        "insufficient_funds",
        "ok",
        "ok",
        "sold_out",
    ]
    assert out["available"] == 0
    assert await wallet(conn, poor) == 999
    assert await wallet(conn, once) == 500
    assert [await wallet(conn, u) for u in (b, c, d)] == [WALLET - 1000, WALLET - 1000, WALLET]
    buyers = await conn.fetch(
        """SELECT o.buyer_id, m.stock_after FROM stock_movements m JOIN orders o ON o.number = m.reference
            WHERE m.variant_id = $1 AND m.reason = 'sale' ORDER BY m.id""",
        variant,
    )
    assert [(r["buyer_id"], r["stock_after"]) for r in buyers] == [(once, 2), (b, 1), (c, 0)]
    await assert_books_balanced(conn)


async def test_a_retry_of_a_refused_request_in_the_same_batch_is_a_duplicate_without_an_order(conn, shop):
    seller_user, _, stream = shop
    _, variant = await new_variant(conn, seller_user, price=1000, stock=3)
    (poor,) = await new_users(conn, 1)
    await fund(conn, [poor], 10)
    tap = {"request_id": "tap", "buyer_id": str(poor), "quantity": 1}

    out = await buy(conn, variant, stream, [tap, tap])

    assert out["results"] == [
        {"request_id": "tap", "buyer_id": str(poor), "status": "insufficient_funds"},
        {"request_id": "tap", "buyer_id": str(poor), "status": "duplicate", "order_id": None, "order_number": None},
    ]
    assert out["available"] == 3


async def test_a_batch_posts_one_transaction_per_order_and_chains_each_accounts_balances(conn):
    """Buyers appearing several times, a host on commission: every order is its own ledger transaction
    (buyer, platform, seller, host, summing to zero), orders are numbered in arrival order, and every
    account's entries chain (each one's balance before is the previous one's after, the last after is the
    balance) however many of the batch's orders touched it."""
    seller_user, seller = await new_seller(conn)
    host = await new_user(conn, "host")
    stream = await new_stream(conn, seller, host, commission_bps=1000)
    _, variant = await new_variant(conn, seller_user, price=1000, stock=20)
    a, b, c = await new_users(conn, 3)
    await fund(conn, [a, b, c])
    # One earlier sale, so that the seller's and host's accounts hold something before the batch.
    await buy(conn, variant, stream, requests([c], prefix="before"))

    reqs = requests([a, b, a, c, a, b], prefix="batch")
    reqs[2]["quantity"] = 2
    out = await buy(conn, variant, stream, reqs)

    assert [r["status"] for r in out["results"]] == ["ok"] * 6
    assert out["available"] == 20 - 1 - 7
    numbers = [int(r["order_number"].removeprefix("LH-")) for r in out["results"]]
    assert numbers == sorted(numbers) and len(set(numbers)) == 6
    for r, req in zip(out["results"], reqs, strict=True):
        entries = await conn.fetch(
            """SELECT e.txn_id, e.type, e.amount_cents, a.kind, a.user_id FROM ledger_entries e
                 JOIN accounts a ON a.id = e.account_id WHERE e.order_id = $1 ORDER BY e.id""",
            uuid.UUID(r["order_id"]),
        )
        items = 1000 * req["quantity"]
        fee, commission = items * FEE_BPS // 10000, items * 1000 // 10000
        assert [(e["type"], e["amount_cents"], e["kind"], e["user_id"]) for e in entries] == [
            ("purchase", -items, "wallet", uuid.UUID(req["buyer_id"])),
            ("fee", fee, "platform", None),
            ("earning", items - fee - commission, "earnings_pending", seller_user),
            ("earning", commission, "earnings_pending", host),
        ]
        assert len({e["txn_id"] for e in entries}) == 1
        earned = await conn.fetch(
            "SELECT role, amount_cents FROM earnings WHERE order_id = $1 ORDER BY role DESC",
            uuid.UUID(r["order_id"]),
        )
        assert [tuple(e) for e in earned] == [("seller", items - fee - commission), ("host", commission)]
    txns = await conn.fetchval(
        "SELECT count(DISTINCT txn_id) FROM ledger_entries WHERE order_id = ANY ($1::uuid[])",
        [r["order_id"] for r in out["results"]],
    )
    assert txns == 6

    accounts = await conn.fetch("SELECT id, balance_cents FROM accounts WHERE balance_cents IS NOT NULL")
    for account in accounts:
        chain = await conn.fetch(
            """SELECT amount_cents, balance_before_cents, balance_after_cents FROM ledger_entries
                WHERE account_id = $1 ORDER BY id""",
            account["id"],
        )
        before = 0
        for entry in chain:
            assert entry["balance_before_cents"] == before
            assert entry["balance_after_cents"] == before + entry["amount_cents"]
            before = entry["balance_after_cents"]
        assert before == account["balance_cents"]
    assert await wallet(conn, a) == WALLET - 4000
    assert await balance(conn, host, "earnings_pending") == 800
    await assert_books_balanced(conn)


async def test_a_batch_of_digital_orders_gets_its_codes_in_arrival_order_and_is_delivered(conn, shop):
    seller_user, _, stream = shop
    product = await conn.fetchval(
        "SELECT create_product($1, 'Key', '', NULL, '{}'::jsonb, $2)",
        seller_user,
        [{"sku": f"KEY-{uuid.uuid4().hex[:8]}", "price_cents": 500, "stock": 0, "digital": True}],
    )
    variant = await conn.fetchval("SELECT id FROM variants WHERE product_id = $1", product)
    codes = [f"CODE-{i}" for i in range(5)]
    for code in codes:  # one import each, so that they were imported in this order
        await conn.fetchval("SELECT count(*) FROM import_units($1, $2, $3)", variant, [code], seller_user)
    a, b, c = await new_users(conn, 3)
    await conn.execute("DELETE FROM addresses WHERE user_id = ANY ($1::uuid[])", [a, b, c])  # none needed
    await fund(conn, [a, b, c])
    reqs = requests([a, b, c], prefix="key")
    reqs[0]["quantity"] = 2
    reqs[2]["quantity"] = 3  # one code too many: refused, the others served

    out = await buy(conn, variant, stream, reqs)

    assert [r["status"] for r in out["results"]] == ["ok", "ok", "sold_out"]
    assert out["available"] == 2
    for r, want in zip(out["results"][:2], [codes[:2], codes[2:3]], strict=True):
        order = await conn.fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(r["order_id"]))
        assert order["status"] == "delivered" and order["delivered_at"] is not None
        assert order["address"] is None and order["shipping_cents"] == 0
        got = await conn.fetch(
            "SELECT code FROM digital_units WHERE order_id = $1 AND status = 'sold' ORDER BY code", order["id"]
        )
        assert [g["code"] for g in got] == want
        events = await conn.fetch(
            "SELECT from_status, to_status FROM order_events WHERE order_id = $1 ORDER BY id", order["id"]
        )
        assert [tuple(e) for e in events] == [(None, "paid"), ("paid", "delivered")]
    assert await wallet(conn, a) == WALLET - 1000
    assert await wallet(conn, c) == WALLET
    await assert_books_balanced(conn)
