"""place_order, now writing through write_orders (buy_batch's set-based writer), answers, raises and writes
exactly what it did when it wrote one order at a time through create_order.

The old place_order is kept as the benchmark's baseline (bench/sql/place_order_loop.sql, `place_order_loop`,
which calls create_order_loop from bench/sql/buy_batch_loop.sql). Here both files are installed inside a
transaction that is rolled back at the end, and both functions get the same cart in the same random world
(each call in a savepoint rolled back before the other runs): two or three shops (one may be suspended),
products with several variants (archived ones, digital ones with or without enough codes, shipped ones with
little stock), a stream of the first shop or of another, live or not, with a host on commission or hosted
by the shop itself, live prices, per-buyer limits, a flash sale, shipping profiles, a buyer with or without
money, saved addresses, a ban and earlier orders in the stream; carts of one to four lines across shops,
repeated variants, quantities of 0, unknown variants, the shop's own products; an address inline (valid or
not), saved, unknown or the default. What each call answers (the order ids, or the error's code, message and
detail) and writes (orders, items, stock movements, ledger entries with their balance chains and
transactions, earnings, events, codes, accounts, flash sales, stock) is compared, with generated ids and
numbers replaced by the order's position in the answer.
"""

import json
import random
import uuid
from pathlib import Path

import asyncpg
import pytest

BENCH_SQL = Path(__file__).resolve().parents[1] / "bench" / "sql"
BASELINES = (BENCH_SQL / "buy_batch_loop.sql", BENCH_SQL / "place_order_loop.sql")
WORLDS = 90
CARTS = 4  # place_order calls compared in each world, each from the world as it was made


async def new_users(db, n: int, prefix: str) -> list[uuid.UUID]:
    rows = await db.fetch(
        """INSERT INTO users (email, display_name, password_hash)
           SELECT $1 || i || '@example.test', 'u', 'x' FROM generate_series(1, $2) i RETURNING id""",
        f"{prefix}-{uuid.uuid4().hex[:8]}-",
        n,
    )
    return [r["id"] for r in rows]


async def random_shop(db, rnd: random.Random, user) -> tuple[uuid.UUID, list[tuple[uuid.UUID, uuid.UUID]]]:
    """(seller id, [(product, variant)]) with one to three products of one to three variants."""
    seller = await db.fetchval(
        "INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, 'S', 'approved') RETURNING id", user
    )
    if rnd.random() < 0.5:
        await db.execute(
            """INSERT INTO shipping_profiles (seller_id, flat_rate_cents, free_over_cents, countries)
               VALUES ($1, $2, $3, $4)""",
            seller,
            rnd.choice([0, 250, 499]),
            rnd.choice([None, 2000]),
            rnd.choice([[], ["US"], ["US", "DE"]]),
        )
    variants = []
    for _ in range(rnd.randint(1, 3)):
        digital = rnd.random() < 0.3
        product = await db.fetchval(
            "SELECT create_product($1, 'T', '', NULL, '{}'::jsonb, $2)",
            user,
            [
                {
                    "sku": f"K-{uuid.uuid4().hex[:8]}",
                    "price_cents": rnd.choice([0, 999, 1000, 2500]),
                    "stock": 0 if digital else rnd.choice([0, 1, 3, 8, 20, 20]),
                    "digital": digital,
                }
                for _ in range(rnd.randint(1, 3))
            ],
        )
        for (variant,) in await db.fetch("SELECT id FROM variants WHERE product_id = $1 ORDER BY id", product):
            variants.append((product, variant))
            for i in range(
                rnd.choice([0, 1, 3, 8, 8]) if digital else 0
            ):  # one import each: their order is the import order
                await db.fetchval("SELECT count(*) FROM import_units($1, $2, $3)", variant, [f"CODE-{i}"], user)
        if rnd.random() < 0.03:
            await db.execute("UPDATE products SET status = 'archived' WHERE id = $1", product)
    if rnd.random() < 0.03:
        await db.execute("UPDATE sellers SET status = 'suspended' WHERE id = $1", seller)
    return seller, variants


async def random_world(db, rnd: random.Random) -> list[dict]:
    """The arguments of CARTS place_order calls (buyer, cart, stream, address), after the buyer's earlier
    orders (through the baseline)."""
    shop_users = await new_users(db, rnd.randint(2, 3), "shop")
    host, buyer = await new_users(db, 2, "person")
    shops = [await random_shop(db, rnd, user) for user in shop_users]
    everything = [v for _, variants in shops for v in variants]

    stream = None
    kind = rnd.choice(["own"] * 12 + ["another shop's", "none", "none", "none", "not live"])
    if kind != "none":
        owner = 1 if kind == "another shop's" else 0
        stream = await db.fetchval(
            """INSERT INTO streams (seller_id, host_id, title, status, host_commission_bps)
               VALUES ($1, $2, 'Live', $3, $4) RETURNING id""",
            shops[owner][0],
            rnd.choice([host, host, shop_users[owner]]),
            "scheduled" if kind == "not live" else "live",
            rnd.choice([0, 1000, 3333, 10000]),
        )
        featured = {p for p, _ in everything if rnd.random() < 0.93}
        for product in featured:
            await db.execute(
                """INSERT INTO stream_products (stream_id, product_id, live_price_cents, per_buyer_limit)
                   VALUES ($1, $2, $3, $4)""",
                stream,
                product,
                rnd.choice([None, None, 700]),
                rnd.choice([None, None, 1, 2, 4]),
            )
        if rnd.random() < 0.6:  # one running flash sale per stream
            await db.execute(
                """INSERT INTO flash_sales (stream_id, variant_id, price_cents, quantity, per_buyer_limit,
                                                ends_at)
                       VALUES ($1, $2, $3, $4, $5, now() + interval '5 minutes')""",
                stream,
                rnd.choice(everything)[1],
                rnd.choice([300, 0]),
                rnd.randint(1, 5),
                rnd.choice([None, 1, 2]),
            )
        if rnd.random() < 0.05:
            await db.execute(
                "INSERT INTO seller_bans (seller_id, user_id) SELECT seller_id, $2 FROM streams WHERE id = $1",
                stream,
                buyer,
            )

    saved = []
    for default, country in ((True, rnd.choice(["US", "US", "DE", "FR"])), (False, rnd.choice(["US", "FR"]))):
        if rnd.random() < (0.8 if default else 0.4):
            saved.append(
                await db.fetchval(
                    """INSERT INTO addresses (user_id, name, line1, city, country, is_default)
                       VALUES ($1, 'n', 'l', 'c', $2, $3) RETURNING id""",
                    buyer,
                    country,
                    default,
                )
            )
    if rnd.random() < 0.9:
        await db.execute("SELECT top_up($1, $2, 't')", buyer, rnd.choice([1, 999, 2000, 5000, 100000, 100000]))

    def cart() -> list[dict]:
        lines = []
        for _ in range(rnd.randint(1, 4)):
            variant = rnd.choice(everything)[1] if rnd.random() < 0.97 else uuid.uuid4()
            lines.append({"variant_id": str(variant), "quantity": rnd.choice([1] * 12 + [2, 3, 0])})
        return lines

    who = buyer if rnd.random() < 0.95 else shop_users[0]
    for _ in range(rnd.randint(0, 2)):  # earlier orders, in the stream, count towards its limits
        attempt = db.transaction()
        await attempt.start()
        try:
            await db.fetchval(
                "SELECT place_order_loop($1, $2, $3, NULL, 500, 3600)", who, cart()[:2], stream, timeout=30
            )
            await attempt.commit()
        except asyncpg.PostgresError:
            await attempt.rollback()

    def call() -> dict:
        address, address_id = None, None
        where = rnd.choice(["default"] * 12 + ["inline", "inline", "saved", "saved", "unknown", "bad"])
        if where == "inline":
            address = {"name": "n", "line1": "l", "city": "c", "country": rnd.choice(["US", "DE", "FR"])}
        elif where == "bad":
            address = {"name": "n", "line1": "l", "city": "c", "country": rnd.choice(["", "usa"])}
        elif where == "saved" and saved:
            address_id = rnd.choice(saved)
        elif where == "unknown":
            address_id = uuid.uuid4()
        return {"buyer": who, "items": cart(), "stream": stream, "address": address, "address_id": address_id}

    return [call() for _ in range(CARTS)]


ORDER_FIELDS = (
    "buyer_id",
    "seller_id",
    "stream_id",
    "status",
    "total_cents",
    "fee_cents",
    "host_id",
    "host_commission_cents",
    "address",
    "request_id",
    "shipping_cents",
)


async def outcome(db, function: str, call: dict) -> dict:
    """What one call answered or raised and what it wrote, its orders named by their place in the answer."""
    marks = {
        t: await db.fetchval(f"SELECT coalesce(max(id), 0) FROM {t}")
        for t in ("ledger_entries", "order_events", "stock_movements")
    }
    earlier_orders = [r["id"] for r in await db.fetch("SELECT id FROM orders")]
    call_savepoint = db.transaction()  # an error rolls back the call only
    await call_savepoint.start()
    try:
        ids = await db.fetchval(
            f"SELECT {function}($1, $2, $3, $4, 500, 3600, $5)",
            call["buyer"],
            call["items"],
            call["stream"],
            call["address"],
            call["address_id"],
        )
        answer = ("orders", len(ids))
        await call_savepoint.commit()
    except asyncpg.PostgresError as e:
        await call_savepoint.rollback()
        ids = []
        answer = ("error", e.sqlstate, e.message, e.detail)
    made = {order_id: i for i, order_id in enumerate(ids)}

    def order(order_id) -> object:
        return ("order", made[order_id]) if order_id in made else str(order_id)

    new = "NOT (o.id = ANY ($1::uuid[]))"
    rows = await db.fetch(f"SELECT o.* FROM orders o WHERE {new} ORDER BY o.number", earlier_orders)
    checkouts: dict = {}
    orders = [
        (
            order(o["id"]),
            checkouts.setdefault(o["checkout_id"], len(checkouts)),
            o["delivered_at"] is not None,
            *[json.dumps(o[k], sort_keys=True, default=str) for k in ORDER_FIELDS],
        )
        for o in rows
    ]
    items = sorted(
        (order(r["order_id"]), str(r["variant_id"]), str(r["product_id"]), r["title"], r["sku"])
        + (json.dumps(r["options"], sort_keys=True), r["quantity"], r["unit_price_cents"], str(r["flash_sale_id"]))
        for r in await db.fetch(
            f"SELECT i.* FROM order_items i JOIN orders o ON o.id = i.order_id WHERE {new}", earlier_orders
        )
    )
    txns: dict[int, int] = {}
    ledger = [
        (
            order(e["order_id"]),
            txns.setdefault(e["txn_id"], len(txns)),
            e["kind"],
            str(e["user_id"]),
            e["type"],
            e["amount_cents"],
            e["balance_before_cents"],
            e["balance_after_cents"],
            str(e["actor_id"]),
            e["memo"] == next((o["number"] for o in rows if o["id"] == e["order_id"]), None),
        )
        for e in await db.fetch(
            """SELECT e.*, a.kind, a.user_id FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
                WHERE e.id > $1 ORDER BY e.id""",
            marks["ledger_entries"],
        )
    ]
    earnings = sorted(
        (order(r["order_id"]), str(r["user_id"]), r["role"], r["amount_cents"], r["status"])
        for r in await db.fetch(
            f"SELECT e.* FROM earnings e JOIN orders o ON o.id = e.order_id WHERE {new}", earlier_orders
        )
    )
    events = [
        (order(r["order_id"]), r["from_status"], r["to_status"], str(r["actor_id"]), r["reason"])
        for r in await db.fetch("SELECT * FROM order_events WHERE id > $1 ORDER BY id", marks["order_events"])
    ]
    numbers = {o["number"]: order(o["id"]) for o in rows}
    movements = [
        (
            str(r["variant_id"]),
            r["delta"],
            r["stock_after"],
            r["reason"],
            str(r["actor_id"]),
            numbers.get(r["reference"]),
        )
        for r in await db.fetch("SELECT * FROM stock_movements WHERE id > $1 ORDER BY id", marks["stock_movements"])
    ]
    codes = sorted(
        (str(r["variant_id"]), str(order(r["order_id"])), r["code"], r["status"])
        for r in await db.fetch("SELECT * FROM digital_units")
    )
    accounts = sorted(
        (str(r["user_id"]), r["kind"], r["balance_cents"]) for r in await db.fetch("SELECT * FROM accounts")
    )
    sales = [tuple(r) for r in await db.fetch("SELECT variant_id, sold, ended_reason FROM flash_sales ORDER BY id")]
    stock = [tuple(r) for r in await db.fetch("SELECT id, stock FROM variants ORDER BY id")]
    books = await db.fetchval("SELECT check_books()")
    return {
        "answer": answer,
        "orders": orders,
        "items": items,
        "ledger": ledger,
        "earnings": earnings,
        "events": events,
        "movements": movements,
        "codes": codes,
        "accounts": accounts,
        "flash_sales": sales,
        "stock": stock,
        "balanced": books["balanced"],
    }


@pytest.mark.parametrize("first", range(0, WORLDS, 30))
async def test_place_order_answers_and_writes_what_create_order_did(db, first):
    outer = db.transaction()  # rolled back: the baselines never stay in the test database
    await outer.start()
    try:
        for baseline in BASELINES:
            await db.execute(baseline.read_text())
        answers = []
        for seed in range(first, first + 30):
            for call in await random_world(db, random.Random(seed)):
                seen = {}
                for function in ("place_order_loop", "place_order"):
                    attempt = db.transaction()
                    await attempt.start()
                    seen[function] = await outcome(db, function, call)
                    await attempt.rollback()
                assert seen["place_order"] == seen["place_order_loop"], f"world {seed}: {call}"
                assert seen["place_order"]["balanced"], f"world {seed}"
                answers.append(seen["place_order"]["answer"])
    finally:
        await outer.rollback()
    # The worlds are varied enough to place orders for several shops and to refuse.
    assert any(a[0] == "orders" and a[1] > 1 for a in answers), answers
    assert any(a[0] == "error" for a in answers), answers
