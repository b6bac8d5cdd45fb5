"""Purchases per second on ONE hot variant: batched in-stream buying vs one REST order per transaction.

    python bench/purchases.py                 # full matrix
    python bench/purchases.py --quick         # a smaller one, for a smoke run
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/purchases.py
    DATABASE_URL=... python bench/purchases.py --modes buy_batch_loop,buy_batch --batch-sizes 100,200 \
        --connections 1,4 --purchases 10000                      # the set-based buy_batch against its baseline
    DATABASE_URL=... python bench/purchases.py --modes place_order_loop,place_order --connections 1,4 \
        --purchases 3000                                         # place_order against its baseline

Modes, each with C concurrent asyncpg connections (its own pool) hammering the same variant:

- ``buy_batch``: ``SELECT buy_batch(variant, stream, [N requests], ...)`` -- what the live rooms call, N
  buyers per call and per transaction;
- ``buy_batch_loop``: the same call to the baseline, buy_batch as it was before it became set-based (a
  plpgsql loop of some twenty statements per purchase), kept in ``bench/sql/buy_batch_loop.sql`` and
  installed into this script's own database only;
- ``place_order``: ``SELECT place_order(buyer, [{variant, 1}], stream, ...)`` -- one order per call and per
  transaction, as the REST API does it;
- ``place_order_loop``: the same call to the baseline, place_order as it was before it wrote through
  buy_batch's set-based writer (create_order's fifteen-odd statements per order), kept in
  ``bench/sql/place_order_loop.sql`` and installed into this script's own database only.

Every configuration is bounded in purchases (``--purchases``, raised to N x C so that each connection
makes at least one call) and in time (``--seconds``); a call already running when time is up finishes.
One untimed warm-up call per connection comes first (plpgsql compiles its plans per connection), and
the database is vacuumed before each configuration so that none inherits the previous one's dead rows.
Each row also gives the CPU time of the PostgreSQL backends serving the run's connections (from
/proc/<pid>/stat, so client and server must share the machine), per purchase, and the rows a purchase
writes (orders, items, stock movements, ledger entries, earnings, events) are counted at the end: the two
give the database's cost per written row. One more call per configuration, untimed, runs under
``EXPLAIN (ANALYZE, WAL)`` for the WAL it writes per purchase. ``--db-setting NAME=VALUE`` sets a
parameter for the benchmark's database, for experiments that show what limits the figures (information
only: LiveHub keeps durability and its foreign keys), e.g. ``synchronous_commit=off``, or
``session_replication_role=replica`` (a superuser's setting: no foreign-key checks). ``--disable-trigger
TABLE.TRIGGER`` leaves a trigger off in it, to measure its cost (``variants.variants_low_stock``: the
low-stock check every fall of a variant's stock runs, once per ``buy_batch`` call). ``--stock N`` sells
N units per configuration down to zero, as a flash sale's end does (the last batch crosses a low-stock
threshold).

The script creates a database of its own -- on DATABASE_URL's server if set, else on an embedded
PostgreSQL it starts in a temporary directory -- migrates it with ``storage.db.migrate``, and drops it
at the end. Stock and wallets are sized so that nothing runs out: every call should succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from common import cpu_ticks, give_addresses, ints, log, migrate, with_database

from storage.db import create_pool, init_connection

FEE_BPS = 500
HOLD_S = 7 * 24 * 3600
PRICE = 1000
STOCK = 100_000_000
WALLET = 1_000_000_000  # cents per buyer: a million purchases each
# The baselines, in this order (place_order_loop calls buy_batch_loop.sql's create_order_loop).
BASELINE_SQL = (
    Path(__file__).parent / "sql" / "buy_batch_loop.sql",
    Path(__file__).parent / "sql" / "place_order_loop.sql",
)
BATCHED_MODES = ("buy_batch", "buy_batch_loop")
MODES = (*BATCHED_MODES, "place_order", "place_order_loop")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# What a purchase writes: counted over the whole run, divided by the orders.
PURCHASE_TABLES = ("orders", "order_items", "stock_movements", "ledger_entries", "earnings", "order_events")


@dataclass
class World:
    variant: str
    stream: str
    buyers: list[str]
    seller_user: str


@dataclass
class Result:
    mode: str
    batch: int
    conns: int
    purchases: int = 0
    calls: int = 0
    failed: int = 0  # requests that did not end in a purchase (should stay 0)
    seconds: float = 0.0
    backend_cpu_s: float = 0.0  # CPU of the PostgreSQL backends serving the run's connections
    wal_bytes_per_purchase: float = float("nan")  # of one extra call, untimed
    latencies: list[float] = field(default_factory=list)

    def row(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        rate = self.purchases / self.seconds if self.seconds else 0.0
        cpu_us = self.backend_cpu_s / self.purchases * 1e6 if self.purchases else float("nan")
        return (
            f"| {self.mode} | {self.batch} | {self.conns} | {self.purchases} | {self.calls} | {self.seconds:.2f} "
            f"| {rate:,.0f} | {p50:.1f} | {p99:.1f} | {cpu_us:,.0f} | {self.wal_bytes_per_purchase:,.0f} |"
            + (f" {self.failed} failed |" if self.failed else "")
        )


HEADER = (
    "| mode | batch size | connections | purchases | calls | seconds | purchases/s | p50 call ms | p99 call ms "
    "| backend CPU µs/purchase | WAL bytes/purchase |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


async def seed(conn: asyncpg.Connection, buyers: int) -> World:
    tag = secrets.token_hex(4)
    seller_user = await conn.fetchval(
        "INSERT INTO users (email, display_name, password_hash) VALUES ($1, 'Bench seller', 'x') RETURNING id",
        f"seller-{tag}@bench.test",
    )
    seller = await conn.fetchval(
        "INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, 'Bench shop', 'approved') RETURNING id",
        seller_user,
    )
    product = await conn.fetchval(
        "SELECT create_product($1, 'Hot item', '', NULL, '{}'::jsonb, $2)",
        seller_user,
        [{"sku": f"HOT-{tag}", "price_cents": PRICE, "stock": STOCK}],
    )
    variant = await conn.fetchval("SELECT id FROM variants WHERE product_id = $1", product)
    # A live stream hosted by someone else (commission 10 %), the product on it at its list price.
    host = await conn.fetchval(
        "INSERT INTO users (email, display_name, password_hash) VALUES ($1, 'Bench host', 'x') RETURNING id",
        f"host-{tag}@bench.test",
    )
    stream = await conn.fetchval(
        """INSERT INTO streams (seller_id, host_id, title, status, host_commission_bps, started_at)
           VALUES ($1, $2, 'Bench live', 'live', 1000, now()) RETURNING id""",
        seller,
        host,
    )
    await conn.execute("INSERT INTO stream_products (stream_id, product_id) VALUES ($1, $2)", stream, product)
    ids = await conn.fetch(
        """INSERT INTO users (email, display_name, password_hash)
           SELECT 'buyer-' || $1 || '-' || i || '@bench.test', 'Buyer ' || i, 'x' FROM generate_series(1, $2) i
           RETURNING id""",
        tag,
        buyers,
    )
    buyer_ids = [r["id"] for r in ids]
    await give_addresses(conn, buyer_ids)
    await conn.execute("SELECT top_up(u, $2, 'bench') FROM unnest($1::uuid[]) u", buyer_ids, WALLET)
    await conn.execute("ANALYZE")
    return World(str(variant), str(stream), [str(b) for b in buyer_ids], str(seller_user))


class Run:
    """One configuration: C workers, each on its own connection, claiming calls until a bound is hit."""

    def __init__(self, world: World, mode: str, batch: int, conns: int, target: int, seconds: float, key: str):
        self.world, self.mode, self.batch, self.conns = world, mode, batch, conns
        self.target, self.seconds, self.key = target, seconds, key
        self.issued = 0  # purchases handed out to calls so far
        self.seq = 0
        self.result = Result(mode, batch, conns)

    def _requests(self, n: int) -> list[dict]:
        out = []
        for _ in range(n):
            self.seq += 1
            buyer = self.world.buyers[self.seq % len(self.world.buyers)]
            out.append({"request_id": f"{self.key}-{self.seq}", "buyer_id": buyer, "quantity": 1})
        return out

    async def _call(self, conn: asyncpg.Connection, reqs: list[dict]) -> int:
        """Makes one call; returns how many purchases it made."""
        w = self.world
        if self.mode in BATCHED_MODES:
            out = await conn.fetchval(
                f"SELECT {self.mode}($1, $2, $3, $4, $5)", w.variant, w.stream, reqs, FEE_BPS, HOLD_S
            )
            return sum(1 for r in out["results"] if r["status"] == "ok")
        (req,) = reqs
        ids = await conn.fetchval(
            f"SELECT {self.mode}($1, $2, $3, NULL, $4, $5)",
            req["buyer_id"],
            [{"variant_id": w.variant, "quantity": 1}],
            w.stream,
            FEE_BPS,
            HOLD_S,
        )
        return len(ids)

    async def _wal_per_purchase(self, conn: asyncpg.Connection) -> float:
        """The WAL one more call writes, per purchase (EXPLAIN's WAL counters cover the functions it runs)."""
        w, reqs = self.world, self._requests(self.batch)
        if self.mode not in BATCHED_MODES:
            call = f"{self.mode}($1, $2, $3, NULL, $4, $5)"
            args = [reqs[0]["buyer_id"], [{"variant_id": w.variant, "quantity": 1}], w.stream, FEE_BPS, HOLD_S]
        else:
            call, args = f"{self.mode}($1, $2, $3, $4, $5)", [w.variant, w.stream, reqs, FEE_BPS, HOLD_S]
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, WAL, FORMAT JSON) SELECT {call}", *args)
        return plan[0]["Plan"]["WAL Bytes"] / len(reqs)

    async def _worker(self, conn: asyncpg.Connection, deadline: float) -> None:
        r = self.result
        while self.issued < self.target and time.perf_counter() < deadline:
            n = min(self.batch, self.target - self.issued)
            self.issued += n
            reqs = self._requests(n)
            t0 = time.perf_counter()
            made = await self._call(conn, reqs)
            r.latencies.append(time.perf_counter() - t0)
            r.calls += 1
            r.purchases += made
            r.failed += n - made

    async def go(self, dsn: str) -> Result:
        pool = await create_pool(dsn, min_size=self.conns, max_size=self.conns)
        try:
            conns = [await pool.acquire() for _ in range(self.conns)]
            try:
                # Warm-up, untimed and uncounted: one small call per connection.
                for conn in conns:
                    await self._call(conn, self._requests(1))
                backends = [await conn.fetchval("SELECT pg_backend_pid()") for conn in conns]
                ticks = sum(cpu_ticks(pid) for pid in backends)
                t0 = time.perf_counter()
                await asyncio.gather(*(self._worker(c, t0 + self.seconds) for c in conns))
                self.result.seconds = time.perf_counter() - t0
                self.result.backend_cpu_s = (sum(cpu_ticks(pid) for pid in backends) - ticks) / CLK_TCK
                self.result.wal_bytes_per_purchase = await self._wal_per_purchase(conns[0])
            finally:
                for conn in conns:
                    await pool.release(conn)
        finally:
            await pool.close()
        return self.result


async def server_facts(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("synchronous_commit", "fsync", "shared_buffers", "max_connections")
        }
    finally:
        await conn.close()
    return f"PostgreSQL {version}; " + ", ".join(f"{k}={v}" for k, v in settings.items())


async def bench(server_dsn: str, args: argparse.Namespace) -> str:
    name = f"livehub_bench_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(server_dsn, name)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            for baseline in BASELINE_SQL:
                await conn.execute(baseline.read_text())
            for setting, value in args.db_setting:
                await conn.execute(f'ALTER DATABASE "{name}" SET {setting} = {value}')
            for table, trigger in args.disable_trigger:
                await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
            await init_connection(conn)
            world = await seed(conn, args.buyers)
        finally:
            await conn.close()
        facts = await server_facts(dsn)
        log(facts)

        configs = []
        # The batched modes side by side: for each batch size and connection count, each mode in turn.
        batched = [m for m in args.modes if m in BATCHED_MODES]
        configs += [(m, n, c) for n in args.batch_sizes for c in args.connections for m in batched]
        # One order per call, likewise each mode in turn for each connection count.
        single = [m for m in args.modes if m not in BATCHED_MODES]
        configs += [(m, 1, c) for c in args.connections for m in single]
        rows = []
        for i, (mode, n, c) in enumerate(configs):
            # Each configuration starts from a vacuumed database: the hot rows' dead versions left by the
            # previous one would otherwise slow it down (the later, the more).
            conn = await asyncpg.connect(dsn)
            try:
                if args.stock is not None:
                    # --stock: the units for sale, plus one per connection for the warm-ups, set with an
                    # audited adjustment so that the stock still matches its movements.
                    await init_connection(conn)
                    await conn.execute(
                        "SELECT adjust_stock($1, $2 - (SELECT stock FROM variants WHERE id = $1), 'bench', $3)",
                        world.variant,
                        args.stock + c,
                        world.seller_user,
                    )
                await conn.execute("VACUUM ANALYZE")
            finally:
                await conn.close()
            target = max(args.purchases, n * c)
            run = Run(world, mode, n, c, target, args.seconds, key=f"c{i}")
            result = await run.go(dsn)
            if args.stock is not None:
                result.wal_bytes_per_purchase = float("nan")  # the extra call found it sold out
            rows.append(result.row())
            log(result.row())

        conn = await asyncpg.connect(dsn)
        try:
            await init_connection(conn)
            books = await conn.fetchval("SELECT check_books()")
            stock_ok = await conn.fetchval(
                """SELECT v.stock = (SELECT sum(delta) FROM stock_movements m WHERE m.variant_id = v.id)
                     FROM variants v WHERE v.id = $1""",
                world.variant,
            )
            orders = await conn.fetchval("SELECT count(*) FROM orders")
            # Low-stock alerts the run queued (one per crossing: with --stock, one per configuration).
            alerts = "n/a (no job queue)"
            if await conn.fetchval("SELECT to_regclass('pgqueuer_log') IS NOT NULL"):
                alerts = await conn.fetchval(
                    "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = 'low_stock' AND status = 'queued'"
                )
            written = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in PURCHASE_TABLES}
            # The seed's top-ups wrote two ledger entries per buyer; no other table had rows before.
            written["ledger_entries"] -= 2 * len(world.buyers)
        finally:
            await conn.close()
        per_order = ", ".join(f"{t} {written[t] / orders:.2f}" for t in PURCHASE_TABLES) if orders else "-"
        check = (
            f"after the run: {orders} orders, books balanced={books['balanced']}, stock matches movements={stock_ok}"
            f", low-stock alerts queued: {alerts}"
            f"; rows written per purchase: {sum(written.values()) / max(orders, 1):.2f} ({per_order})"
        )
        log(check)
        return "\n".join([facts, "", HEADER, *rows, "", check])
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def db_setting(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    if not re.fullmatch(r"[a-z_.]+", name) or not re.fullmatch(r"[A-Za-z0-9_.]+", value):
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return name, value


def table_trigger(text: str) -> tuple[str, str]:
    table, _, trigger = text.partition(".")
    if not re.fullmatch(r"[a-z_]+", table) or not re.fullmatch(r"[a-z_]+", trigger):
        raise argparse.ArgumentTypeError(f"not TABLE.TRIGGER: {text!r}")
    return table, trigger


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--purchases", type=int, default=2000, help="purchases per configuration (default 2000)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time limit per configuration (default 20)")
    ap.add_argument("--buyers", type=int, default=2000, help="buyers with funded wallets (default 2000)")
    ap.add_argument(
        "--stock",
        type=int,
        help="units for sale per configuration, sold down to zero when --purchases equals it (a flash sale's "
        "end: the last batch crosses a low-stock threshold); default 100 M, never running out",
    )
    ap.add_argument("--quick", action="store_true", help="batch sizes 1 and 50, 1 and 8 connections, 500 purchases")
    ap.add_argument("--batch-sizes", type=ints, help="comma-separated batch sizes (default 1,10,50,200)")
    ap.add_argument("--connections", type=ints, help="comma-separated connection counts (default 1,8,32)")
    ap.add_argument(
        "--modes",
        default="buy_batch,buy_batch_loop,place_order,place_order_loop",
        help="comma-separated (default buy_batch,buy_batch_loop,place_order,place_order_loop)",
    )
    ap.add_argument(
        "--db-setting",
        action="append",
        type=db_setting,
        default=[],
        metavar="NAME=VALUE",
        help="a parameter for the benchmark's database, e.g. synchronous_commit=off (repeatable)",
    )
    ap.add_argument(
        "--disable-trigger",
        action="append",
        type=table_trigger,
        default=[],
        metavar="TABLE.TRIGGER",
        help="a trigger left off in the benchmark's database, to measure what it costs, e.g. "
        "variants.variants_low_stock (repeatable; information only)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.batch_sizes = args.batch_sizes or [1, 50]
        args.connections = args.connections or [1, 8]
        args.purchases, args.seconds = min(args.purchases, 500), min(args.seconds, 5.0)
    else:
        args.batch_sizes = args.batch_sizes or [1, 10, 50, 200]
        args.connections = args.connections or [1, 8, 32]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not set(args.modes) <= set(MODES) or not args.modes:
        ap.error(f"--modes takes some of {', '.join(MODES)}")
    if args.stock is not None and args.stock < 1:
        ap.error("--stock must be positive")
    if args.purchases < 1 or args.seconds <= 0 or args.buyers < 1:
        ap.error("--purchases, --seconds and --buyers must be positive")
    if min(args.batch_sizes) < 1 or min(args.connections) < 1:
        ap.error("batch sizes and connection counts must be positive")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if os.environ.get("DATABASE_URL"):
        print(asyncio.run(bench(os.environ["DATABASE_URL"], args)))
        return
    from storage.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="livehub-bench-"))
    base.chmod(0o755)  # as root the server runs as `nobody`, which must reach the data directory
    try:
        with EmbeddedPostgres(base / "pgdata") as pg:
            log(f"embedded PostgreSQL at {pg.dsn}")
            print(asyncio.run(bench(pg.dsn, args)))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(base)


if __name__ == "__main__":
    main()
