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

import random
import uuid
from pathlib import Path

import asyncpg
import pytest
from written_rows import mark, new_users, written_since

BENCH_SQL = Path(__file__).resolve().parents[1] / "bench" / "sql"
BASELINES = (BENCH_SQL / "buy_batch_loop.sql", BENCH_SQL / "place_order_loop.sql")
WORLDS = 90
CARTS = 4  # place_order calls compared in each world, each from the world as it was made


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


async def outcome(db, function: str, call: dict) -> dict:
    """What one call answered or raised and what it wrote, its orders named by their place in the answer."""
    since = await mark(db)
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

    return {"answer": answer, **await written_since(db, since, order)}


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
