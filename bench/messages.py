"""How fast the job queue delivers notification emails: `notify_users()` for N new users in one
transaction, one node's job worker (livehub/jobs.py), a real SMTP server (aiosmtpd) on loopback.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/messages.py [--counts 1,200]

For each count: how long the statement took, when the first email arrived after the commit, when the last
did (emails a second), and how many arrived twice (should be none). The script creates a database of its own
on DATABASE_URL's server and drops it at the end. docs/MESSAGES.md has the figures.
"""

import argparse
import asyncio
import os
import secrets
import socket
import threading
import time

import asyncpg
from aiosmtpd.controller import Controller
from common import ints, log, migrate, with_database

from livehub.jobs import Jobs
from livehub.mail import Mailer
from livehub.settings import Settings
from storage.db import create_pool


class Collect:
    def __init__(self) -> None:
        self.received: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        with self.lock:
            self.received.extend((time.monotonic(), rcpt) for rcpt in envelope.rcpt_tos)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run(admin_dsn: str, count: int) -> str:
    name = f"livehub_bench_messages_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(admin_dsn, name)
    collect, port = Collect(), free_port()
    smtp = Controller(collect, hostname="127.0.0.1", port=port)
    smtp.start()
    settings = Settings(database_url=dsn, smtp_url=f"smtp://127.0.0.1:{port}")
    pool = await create_pool(dsn, min_size=2, max_size=10)
    jobs = None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        users = await pool.fetch(
            """INSERT INTO users (email, display_name, password_hash)
               SELECT 'bench' || g || '@example.test', 'Bench ' || g, 'x' FROM generate_series(1, $1) g
               RETURNING id""",
            count,
        )
        jobs = Jobs(settings, pool, None, Mailer(settings))
        await jobs.start()
        payload = {"stream_id": "00000000-0000-0000-0000-000000000001", "title": "Bench", "shop_name": "Shop"}
        started = time.monotonic()
        await pool.execute("SELECT notify_users($1, 'stream_live', $2)", [u["id"] for u in users], payload)
        committed = time.monotonic()
        deadline = committed + 120
        while len(collect.received) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        with collect.lock:
            times = sorted(t for t, _ in collect.received)
            twice = len(collect.received) - len({r for _, r in collect.received})
        if len(times) < count:
            return f"N={count}: only {len(times)} emails in 120 s"
        total = times[-1] - committed
        return (
            f"N={count}: notify_users {1000 * (committed - started):.0f} ms; first email "
            f"{1000 * (times[0] - committed):.0f} ms after the commit, last {total:.2f} s "
            f"({count / total:.0f} emails/s); arrived twice: {twice}"
        )
    finally:
        if jobs is not None:
            await jobs.close()
        await pool.close()
        smtp.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=ints, default=[1, 200], help="notifications per run (default 1,200)")
    args = ap.parse_args()
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server this script may create a database on")
    for count in args.counts:
        log(asyncio.run(run(dsn, count)))


if __name__ == "__main__":
    main()
