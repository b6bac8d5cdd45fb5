"""What confirming in-stream purchases costs `buy_batch`: the one `orders_placed` job it queues per call, on
and off, and what that job's handler then costs per order (off the purchase's path).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/order_confirmations.py \
        [--units 5000] [--batch 200] [--rounds 4]

`buy_batch` writes no notification itself: it queues ONE job naming the batch's orders (storage/functions/
money.sql; docs/MESSAGES.md), whose handler writes each buyer's `order_placed` with `notify_orders_placed()`.
Here a drop of `--units` units (one new variant each round, featured in a live stream) is sold out in calls of
`--batch` buyers on one connection, with `buy_batch` as it is, and with a copy of it without the job
(`buy_batch_nojob`, the three lines that queue it taken out, installed into this script's own database only),
rounds alternating between the two after one untimed round of each. Each round: purchases per second (wall
time of the calls) and the CPU time of the backend serving the connection per purchase (from /proc, so client
and server must share the machine). After each `buy_batch` round, the handler's function runs once per batch,
as the job would: its wall time and backend CPU per order. No job worker runs here: the jobs queued stay in
the queue. The script creates a database of its own on DATABASE_URL's server, seeds it as bench/purchases.py
does, and drops it at the end.
"""

import argparse
import asyncio
import os
import re
import secrets
import statistics
import time

import asyncpg
from common import cpu_ticks, log, migrate, with_database
from purchases import seed

from storage.db import init_connection

MONEY_SQL = os.path.join(os.path.dirname(__file__), "..", "storage", "functions", "money.sql")
TICK = os.sysconf("SC_CLK_TCK")


def without_job(money_sql: str) -> str:
    """buy_batch's definition, renamed buy_batch_nojob, without the lines that queue orders_placed."""
    start = money_sql.index("CREATE OR REPLACE FUNCTION buy_batch(")
    body = money_sql[start : money_sql.index("END $$;", start) + len("END $$;")]
    stripped = re.sub(r"\n +-- The buyers' confirmations.*?WHERE u\.status = 'ok'\)\)\)\);", "", body, flags=re.S)
    if stripped == body or "orders_placed" in stripped:
        raise SystemExit("cannot find the orders_placed job in buy_batch: update this script")
    return stripped.replace("FUNCTION buy_batch(", "FUNCTION buy_batch_nojob(")


async def sell_out(conn, pid: int, fn: str, world, units: int, batch: int, tag: str) -> tuple[float, float, list]:
    product = await conn.fetchval(
        "SELECT create_product($1, 'Drop', '', NULL, '{}'::jsonb, $2)",
        world.seller_user,
        [{"sku": f"DROP-{tag}", "price_cents": 1000, "stock": units}],
    )
    variant = await conn.fetchval("SELECT id FROM variants WHERE product_id = $1", product)
    await conn.execute("INSERT INTO stream_products (stream_id, product_id) VALUES ($1, $2)", world.stream, product)
    await conn.execute("VACUUM ANALYZE")
    order_ids, sold = [], 0
    ticks, started = cpu_ticks(pid), time.perf_counter()
    for i in range(0, units, batch):
        requests = [
            {"request_id": f"{tag}-{j}", "buyer_id": world.buyers[j], "quantity": 1} for j in range(i, i + batch)
        ]
        result = await conn.fetchval(f"SELECT {fn}($1, $2, $3, 1000, 3600)", variant, world.stream, requests)
        ok = [r["order_id"] for r in result["results"] if r["status"] == "ok"]
        sold += len(ok)
        order_ids.append(ok)
    seconds, cpu_s = time.perf_counter() - started, (cpu_ticks(pid) - ticks) / TICK
    if sold != units:
        raise SystemExit(f"{fn} sold {sold} of {units}")
    return units / seconds, cpu_s / units * 1e6, order_ids


async def bench(server_dsn: str, units: int, batch: int, rounds: int) -> None:
    name = f"livehub_bench_confirm_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(with_database(server_dsn, name))
        try:
            await init_connection(conn)
            await migrate(conn)
            with open(MONEY_SQL) as f:
                await conn.execute(without_job(f.read()))
            world = await seed(conn, units)
            await conn.execute("TRUNCATE pgqueuer, pgqueuer_log")  # the seed's top-ups queued wallet pushes
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            seen: dict[str, list[tuple[float, float]]] = {"buy_batch": [], "buy_batch_nojob": []}
            handler: list[tuple[float, float]] = []
            # One untimed round of each first: the first sell-out of a database runs far slower (cold plans and
            # caches), whichever function it calls.
            for fn in ("buy_batch", "buy_batch_nojob"):
                await sell_out(conn, pid, fn, world, units, batch, f"warm-{fn}")
            for r in range(rounds * 2):
                fn = "buy_batch" if r % 2 == 0 else "buy_batch_nojob"
                rate, cpu_us, order_ids = await sell_out(
                    conn, pid, fn, world, units, batch, f"{r}-{secrets.token_hex(3)}"
                )
                seen[fn].append((rate, cpu_us))
                log(f"round {r + 1} {fn}: {rate:,.0f} purchases/s, backend {cpu_us:,.0f} µs CPU/purchase")
                if fn == "buy_batch":
                    jobs = await conn.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'orders_placed'")
                    ticks, started = cpu_ticks(pid), time.perf_counter()
                    for ids in order_ids:
                        await conn.execute("SELECT notify_orders_placed($1::uuid[])", ids)
                    handler.append(
                        ((time.perf_counter() - started) / units * 1e6, (cpu_ticks(pid) - ticks) / TICK / units * 1e6)
                    )
                    log(
                        f"  {jobs} orders_placed jobs queued so far; handler {handler[-1][0]:,.0f} µs wall, "
                        f"{handler[-1][1]:,.0f} µs backend CPU per order"
                    )
            print(f"\n{units:,} units per round, batches of {batch}, {rounds} rounds each, alternating")
            print("| buy_batch | purchases/s (median; runs) | backend CPU µs/purchase (median; runs) |\n|---|---|---|")
            for fn, rows in seen.items():
                rates, cpus = [x[0] for x in rows], [x[1] for x in rows]
                print(
                    f"| {'with the job' if fn == 'buy_batch' else 'without it'} | {statistics.median(rates):,.0f}; "
                    f"{', '.join(f'{x:,.0f}' for x in rates)} | {statistics.median(cpus):,.0f}; "
                    f"{', '.join(f'{x:,.0f}' for x in cpus)} |"
                )
            print(
                "orders_placed's handler per order: wall "
                + ", ".join(f"{w:,.0f}" for w, _ in handler)
                + " µs; backend CPU "
                + ", ".join(f"{c:,.0f}" for _, c in handler)
                + " µs"
            )
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each side, alternating")
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server this script may create a database on")
    asyncio.run(bench(dsn, args.units, args.batch, args.rounds))


if __name__ == "__main__":
    main()
