"""What the low-stock check costs one fall of a variant's stock: the trigger `variants_low_stock` on and off.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/low_stock_trigger.py

Every statement that lowers a variant's stock runs the trigger once per row (migration 0015), which asks
low_stock_crossing() (storage/functions/stock_alerts.sql) whether the stock crossed its threshold: the
variant's own, else its shop's (one lookup). `buy_batch` updates its variant once per call, so this is the
cost per call, not per purchase. Measured inside the server (a DO block timing a loop with
clock_timestamp()), so no client round trip is in it: N single-row `UPDATE variants SET stock = stock - 1`,
each on a variant of its own (one update per row, as a call makes, and no row version chain), the trigger on
and off in turn, `--rounds` times. No update crosses a threshold (stock 1000 -> 999, threshold 5): the cost
of the check, not of queueing an alert (which happens once per crossing). The script creates a database of
its own on DATABASE_URL's server and drops it at the end.
"""

import argparse
import asyncio
import os
import secrets

import asyncpg
from common import log, migrate, with_database

from storage.db import init_connection


async def bench(server_dsn: str, n: int, rounds: int) -> None:
    name = f"livehub_bench_trigger_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(with_database(server_dsn, name))
        try:
            await migrate(conn)
            await init_connection(conn)
            user = await conn.fetchval(
                "INSERT INTO users (email, display_name, password_hash) VALUES ('s@bench.test', 'S', 'x') RETURNING id"
            )
            await conn.execute("INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, 'S', 'approved')", user)
            product = await conn.fetchval(
                "SELECT create_product($1, 'T', '', NULL, '{}'::jsonb, $2)",
                user,
                [{"sku": "FIRST", "price_cents": 1, "stock": 1}],
            )
            await conn.execute(
                """INSERT INTO variants (product_id, sku, price_cents, stock)
                   SELECT $1, 'V-' || lpad(i::text, 9, '0'), 1, 1000 FROM generate_series(1, $2) i""",
                product,
                2 * rounds * n,
            )
            await conn.execute(
                """CREATE TEMP TABLE todo AS
                   SELECT (row_number() OVER (ORDER BY sku) - 1)::integer AS n, id FROM variants WHERE sku LIKE 'V-%'"""
            )
            await conn.execute("ANALYZE")
            timings: list[float] = []
            conn.add_log_listener(lambda _c, message: timings.append(float(message.message)))
            results = {True: [], False: []}
            part = 0
            for r in range(rounds):
                for on in (True, False):
                    await conn.execute(
                        f"ALTER TABLE variants {'ENABLE' if on else 'DISABLE'} TRIGGER variants_low_stock"
                    )
                    await conn.execute(
                        f"""DO $$ DECLARE t0 timestamptz := clock_timestamp(); r record; BEGIN
                              FOR r IN SELECT id FROM todo WHERE n >= {part * n} AND n < {(part + 1) * n} LOOP
                                  UPDATE variants SET stock = stock - 1 WHERE id = r.id;
                              END LOOP;
                              RAISE NOTICE '%', extract(epoch FROM clock_timestamp() - t0);
                            END $$"""
                    )
                    part += 1
                    us = timings[-1] / n * 1e6
                    results[on].append(us)
                    log(f"round {r + 1}: trigger {'on ' if on else 'off'} {us:.2f} us per UPDATE")
            await conn.execute("ALTER TABLE variants ENABLE TRIGGER variants_low_stock")
        finally:
            await conn.close()
        on, off = results[True], results[False]
        print(
            f"{n} single-row stock updates per measurement, {rounds} rounds: "
            f"trigger on {min(on):.1f}-{max(on):.1f} us, off {min(off):.1f}-{max(off):.1f} us per UPDATE"
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--updates", type=int, default=20000, help="updates per measurement (default 20000)")
    ap.add_argument("--rounds", type=int, default=3, help="on/off pairs (default 3)")
    args = ap.parse_args()
    if not os.environ.get("DATABASE_URL"):
        ap.error("set DATABASE_URL (a PostgreSQL server this script may create a database on)")
    if not 1 <= args.updates <= 1_000_000 or not 1 <= args.rounds <= 20:
        ap.error("--updates 1 to 1,000,000, --rounds 1 to 20")
    asyncio.run(bench(os.environ["DATABASE_URL"], args.updates, args.rounds))


if __name__ == "__main__":
    main()
