"""What a page of a replay's timeline costs in a long show (docs/REPLAYS.md, "Cost"): a database of 20 ended
shows with replays, one with 100,000 chat messages (one every 100 ms) and 19 with 20,000, analyzed; a page of
500 of the big show read at its start and in its middle (the cursor after 50,000 events) through
livehub/shop/replays.py, best of 5.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres flock /tmp/livehub-bench.lock \\
        python bench/replay_timeline.py [--big 100000] [--others 19] [--small 20000]

The script creates a database of its own on DATABASE_URL's server and drops it at the end.
"""

import argparse
import asyncio
import os
import secrets
import time

import asyncpg
from common import log, migrate, with_database

from livehub.shop import replays
from storage.db import init_connection


async def fill(conn, *, big: int, others: int, small: int):
    user = await conn.fetchval(
        "INSERT INTO users (email, display_name, password_hash) VALUES ('bench@example.test', 'B', 'x') RETURNING id"
    )
    seller = await conn.fetchval(
        "INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, 'Bench', 'approved') RETURNING id", user
    )
    first = None
    for count in [big] + [small] * others:
        stream = await conn.fetchval(
            """INSERT INTO streams (seller_id, host_id, title, status, started_at, ended_at)
               VALUES ($1, $2, 'Bench show', 'ended', now() - interval '3 hours', now()) RETURNING id""",
            seller,
            user,
        )
        first = first or stream
        await conn.execute(
            """INSERT INTO chat_messages (stream_id, "offset", user_id, text, created_at)
               SELECT $1, g, $2, 'message ' || g, now() - interval '3 hours' + g * interval '100 ms'
                 FROM generate_series(1, $3) g""",
            stream,
            user,
            count,
        )
        await conn.execute(
            """INSERT INTO stream_replays (stream_id, media_key, content_type, duration_s, size_bytes, started_at)
               SELECT id, 'bench', 'video/webm', 1, 1, started_at FROM streams WHERE id = $1""",
            stream,
        )
    await conn.execute("ANALYZE")
    return first


async def best_of(conn, stream, cursor, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        page = await replays.timeline(conn, stream, limit=500, cursor=cursor)
        times.append((time.perf_counter() - t) * 1000)
        assert len(page["items"]) == 500
    return min(times)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--others", type=int, default=19)
    parser.add_argument("--small", type=int, default=20_000)
    args = parser.parse_args()
    dsn = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"livehub_bench_timeline_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(with_database(dsn, name))
        try:
            await migrate(conn)
            await init_connection(conn)
            stream = await fill(conn, big=args.big, others=args.others, small=args.small)
            cursor = None
            for _ in range(args.big // 2 // 500):
                cursor = (await replays.timeline(conn, stream, limit=500, cursor=cursor))["next_cursor"]
            log(f"a page of 500 of a {args.big:,}-message show:")
            log(f"  start:  {await best_of(conn, stream, None):.1f} ms (best of 5)")
            log(f"  middle: {await best_of(conn, stream, cursor):.1f} ms (best of 5)")
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
