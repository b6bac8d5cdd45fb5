"""The set-based buy_batch decides and writes exactly what the loop it replaced did.

The loop is kept as the benchmark's baseline (bench/sql/buy_batch_loop.sql, `buy_batch_loop`). Here it is
installed inside a transaction that is rolled back at the end, and both functions get the same batch in
the same random world (each call in a savepoint rolled back before the other runs): a shop that may be
suspended, an archived product, a digital variant with codes or one that ships, a stream of the shop or
of another, live or not, with a host on commission, live prices, per-buyer limits, a flash sale, a
shipping profile, buyers with and without money, addresses or bans, earlier orders, retried and foreign
request ids, quantities of 0. What each call answers and writes (orders, items, stock movements, ledger
entries with their balance chains and transactions, earnings, events, codes, accounts, the flash sale) is
compared, with generated ids and numbers replaced by the position of the request that made the order.
"""

import random
import uuid
from pathlib import Path

import pytest
from written_rows import mark, new_users, written_since

BASELINE = Path(__file__).resolve().parents[1] / "bench" / "sql" / "buy_batch_loop.sql"
WORLDS = 40


async def random_world(db, rnd: random.Random) -> tuple:
    """(variant, stream, batch) after a first batch through the baseline (earlier orders)."""
    seller_user, host, other_user = await new_users(db, 3, "staff")
    seller = await db.fetchval(
        "INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, 'S', 'approved') RETURNING id", seller_user
    )
    other_seller = await db.fetchval(
        "INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, 'O', 'approved') RETURNING id", other_user
    )
    digital = rnd.random() < 0.25
    product = await db.fetchval(
        "SELECT create_product($1, 'T', '', NULL, '{}'::jsonb, $2)",
        seller_user,
        [
            {
                "sku": f"K-{uuid.uuid4().hex[:8]}",
                "price_cents": rnd.choice([0, 999, 1000, 2500]),
                "stock": 0 if digital else rnd.randint(0, 20),
                "digital": digital,
            }
        ],
    )
    variant = await db.fetchval("SELECT id FROM variants WHERE product_id = $1", product)
    for i in range(rnd.randint(0, 12) if digital else 0):  # one import each: their order is the import order
        await db.fetchval("SELECT count(*) FROM import_units($1, $2, $3)", variant, [f"CODE-{i}"], seller_user)
    if rnd.random() < 0.04:
        await db.execute("UPDATE products SET status = 'archived' WHERE id = $1", product)
    if rnd.random() < 0.04:
        await db.execute("UPDATE sellers SET status = 'suspended' WHERE id = $1", seller)

    stream, flash = None, None
    kind = rnd.choice(["own"] * 8 + ["another shop's", "none", "not live"])
    if kind != "none":
        owner, owner_user = (other_seller, other_user) if kind == "another shop's" else (seller, seller_user)
        stream = await db.fetchval(
            """INSERT INTO streams (seller_id, host_id, title, status, host_commission_bps)
               VALUES ($1, $2, 'Live', $3, $4) RETURNING id""",
            owner,
            rnd.choice([host, owner_user]),
            "scheduled" if kind == "not live" else "live",
            rnd.choice([0, 1000, 3333, 10000]),
        )
        if rnd.random() < 0.9:
            await db.execute(
                """INSERT INTO stream_products (stream_id, product_id, live_price_cents, per_buyer_limit)
                   VALUES ($1, $2, $3, $4)""",
                stream,
                product,
                rnd.choice([None, None, 700]),
                rnd.choice([None, None, 1, 2, 3]),
            )
        if rnd.random() < 0.4:
            flash = await db.fetchval(
                """INSERT INTO flash_sales (stream_id, variant_id, price_cents, quantity, per_buyer_limit, ends_at)
                   VALUES ($1, $2, $3, $4, $5, now() + interval '5 minutes') RETURNING id""",
                stream,
                variant,
                rnd.choice([300, 0]),
                rnd.randint(1, 8),
                rnd.choice([None, 1, 2]),
            )
    if rnd.random() < 0.5:
        await db.execute(
            """INSERT INTO shipping_profiles (seller_id, flat_rate_cents, free_over_cents, countries)
               VALUES ($1, $2, $3, $4)""",
            seller,
            rnd.choice([0, 250]),
            rnd.choice([None, 2000]),
            rnd.choice([[], ["US"], ["US", "DE"]]),
        )

    buyers = await new_users(db, rnd.randint(1, 6), "buyer")
    for buyer in buyers:
        if rnd.random() < 0.7:
            await db.execute(
                """INSERT INTO addresses (user_id, name, line1, city, country, is_default)
                   VALUES ($1, 'n', 'l', 'c', $2, true)""",
                buyer,
                rnd.choice(["US", "US", "DE", "FR"]),
            )
        if rnd.random() < 0.2:
            await db.execute(
                """INSERT INTO addresses (user_id, name, line1, city, country, is_default)
                   VALUES ($1, 'n', 'l', 'c', $2, false)""",
                buyer,
                rnd.choice(["US", "FR"]),
            )
        if rnd.random() < 0.85:
            await db.execute("SELECT top_up($1, $2, 't')", buyer, rnd.choice([1, 999, 1000, 1500, 2600, 100000]))
        if stream is not None and rnd.random() < 0.04:
            await db.execute(
                "INSERT INTO seller_bans (seller_id, user_id) SELECT seller_id, $2 FROM streams WHERE id = $1",
                stream,
                buyer,
            )
    who = buyers + ([seller_user] if rnd.random() < 0.05 else [])
    addresses = [r["id"] for r in await db.fetch("SELECT id FROM addresses WHERE user_id = ANY ($1::uuid[])", buyers)]

    def batch(n: int, tag: str) -> list[dict]:
        out = []
        for _ in range(n):
            request = {
                "request_id": rnd.choice([f"{tag}{rnd.randint(0, 4)}", f"earlier{rnd.randint(0, 3)}", None]),
                "buyer_id": str(rnd.choice(who)),
                "quantity": rnd.choice([1] * 8 + [2, 3, 0]),
            }
            if flash and rnd.random() < 0.5:
                request["flash_sale_id"] = str(flash if rnd.random() < 0.8 else uuid.uuid4())
            if addresses and rnd.random() < 0.2:
                request["address_id"] = str(rnd.choice(addresses))
            out.append(request)
        return out

    earlier = batch(rnd.randint(0, 5), "earlier")
    if earlier:
        await db.fetchval("SELECT buy_batch_loop($1, $2, $3, 500, 3600)", variant, stream, earlier)
    return variant, stream, batch(rnd.randint(0, 14), "r")


async def outcome(db, function: str, variant, stream, batch) -> dict:
    """What one call answered and wrote, with its orders named by the position of their request."""
    since = await mark(db)
    out = await db.fetchval(f"SELECT {function}($1, $2, $3, 500, 3600)", variant, stream, batch)

    made = {r["order_id"]: i for i, r in enumerate(out["results"]) if r["status"] == "ok"}

    def order(order_id) -> object:
        order_id = None if order_id is None else str(order_id)
        return ("request", made[order_id]) if order_id in made else order_id

    results = []
    for r in out["results"]:
        seen = {k: v for k, v in r.items() if k not in ("order_id", "order_number")}
        if "order_id" in r:
            seen["order"] = order(r["order_id"])
            seen["numbered"] = r["order_number"] is not None
        results.append(seen)
    return {
        "results": results,
        "available": out["available"],
        "flash_sale": out["flash_sale"],
        **await written_since(db, since, order),
    }


@pytest.mark.parametrize("first", range(0, WORLDS, 10))
async def test_buy_batch_answers_and_writes_what_the_loop_did(db, first):
    outer = db.transaction()  # rolled back: the baseline never stays in the test database
    await outer.start()
    try:
        await db.execute(BASELINE.read_text())
        statuses = set()
        for seed in range(first, first + 10):
            variant, stream, batch = await random_world(db, random.Random(seed))
            seen = {}
            for function in ("buy_batch_loop", "buy_batch"):
                attempt = db.transaction()
                await attempt.start()
                seen[function] = await outcome(db, function, variant, stream, batch)
                await attempt.rollback()
            assert seen["buy_batch"] == seen["buy_batch_loop"], f"world {seed}: {batch}"
            assert seen["buy_batch"]["balanced"], f"world {seed}"
            statuses |= {r["status"] for r in seen["buy_batch"]["results"]}
    finally:
        await outer.rollback()
    # The worlds are varied enough to sell and to refuse.
    assert {"ok", "sold_out", "duplicate"} <= statuses, statuses
