"""REST catalog under load on ONE server process: latency of the catalog reads at fixed request rates.

    python bench/rest.py                                   # 10,000 products; 5 scenarios at 250,500,1000,2000 req/s
    python bench/rest.py --scenarios list --rates 1000 --seconds 30
    python bench/rest.py --quick                           # 100,250 req/s, 4 s each: a smoke run
    python bench/rest.py --json rest.json --plot docs/bench-rest.png
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/livehub_bench_rest python bench/rest.py --fresh

What runs:

- ONE server process, started with the launcher the benchmarks share (``common.spawn_server`` and
  ``common.serve_livehub``: ``livehub.app.serve`` as ``run.py`` does with one worker, no access log), on
  127.0.0.1 and a free port, against DATABASE_URL
  (default ``postgresql://postgres@127.0.0.1:5432/livehub_bench_rest``, created if missing; the database
  named ``test`` is refused) and with no REDIS_URL. Every setting is the default (DB pool 2..20).
- The catalog, seeded once per database and reused by later runs (``--fresh`` drops and recreates the
  database first; only allowed for names starting with ``livehub_bench``): ``--sellers`` approved shops
  (users and sellers rows inserted directly, as ``livehub/demo.py`` does), a two-level category tree
  (6 top-level categories with 4 subcategories each), and ``--products`` products of ``--variants``
  variants each, every one made by the storage function ``create_product`` (so ``add_variants`` writes the
  variants and their initial stock movements), 1,000 per statement over
  ``unnest(...) WITH ORDINALITY``. Titles ("<colour> <brand> <noun>") and 12-20 word descriptions come
  from fixed word lists with a fixed random seed, so the search vectors are like a real shop's; about
  10 % of variants are out of stock. Afterwards ``created_at`` is spread over the past year (one UPDATE;
  ``create_product`` stamps ``now()``, which would make the whole catalog one instant), one seller in
  twenty is suspended and every 50th product archived (both leave the listing), then VACUUM ANALYZE.
- Scenarios, each a GET on the public (anonymous) API, the path picked at random per request:
  ``list`` ``/api/products`` (first page, default limit 20); ``search`` ``/api/products?q=…`` over 12
  queries (one word, prefix, two words, rare and common); ``category`` ``/api/products?category=…``
  over all 30 categories (a top-level one includes its subcategories); ``detail``
  ``/api/products/{id}`` over every product id; ``mix`` 35 % detail, 35 % list, 15 % search,
  15 % category.
- Load: ``--procs`` load-generator processes with a minimal HTTP/1.1 keep-alive client (asyncio protocol,
  one request at a time per connection, up to ``--conns`` connections per process). Open loop: request
  i of a window is *scheduled* at start + i / rate (the processes interleave), sent when due whatever the
  earlier ones are doing (on an idle connection, a new one, or queued for the next free one when all
  ``--conns`` are busy), and its latency is measured from the scheduled time, so a server that falls
  behind is charged for the queueing it causes (no coordinated omission). Each scenario first runs
  ``--warmup`` s at the lowest rate, unmeasured.
- Each window lasts ``--seconds``; then the generators wait up to ``--drain`` s for the answers still
  due, and a request unanswered by then counts as *unfinished* (an infinite latency in the percentiles)
  and its connection is closed. Percentiles are nearest-rank over every request scheduled (exact, no
  histogram). Errors: a non-200 status, a body of the wrong shape, a connection error. req/s achieved =
  200 answers / (last answer - window start). ``client late`` (p99) is how late the generator got
  round to a request (its own scheduling delay, before any wait for a free connection), to tell a slow
  server from a slow client.
- CPU over each window (100 % = one core, utime + stime from /proc): the server process; the PostgreSQL
  backends connected to the benchmark's database (from pg_stat_activity; other databases' backends are
  not counted); the load generators; and every *other* process on the machine (busy jiffies from
  /proc/stat minus ours). Before a window the script waits (up to ``--wait-quiet`` s) until others use
  under ``--busy-cpu`` % and the server is idle; a window others disturbed anyway is run again
  (``--retries``) and the attempt with the least CPU used by others is kept (chosen on that alone).

A rate *saturates* a scenario when answers fall under 95 % of the offered rate, something is unfinished
or errors, or p99 goes over ``--p99-limit-ms`` (default 1000); higher rates of that scenario are not run.
The issue's target (``--target-ms``, listing p99 under 50 ms at 1,000 requests/s) is reported for the
``list`` scenario. The server and the generators are stopped on exit, Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import random
import re
import tempfile
import time
from array import array
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import asyncpg
from common import (
    CLK_TCK,
    HOST,
    ask_all,
    cpu_ticks,
    drop_server_log,
    ensure_database,
    floats,
    free_port,
    least_disturbed,
    loadavg,
    log,
    machine_busy,
    machine_facts,
    migrate,
    nearest_rank,
    quiet_options,
    run_generator,
    run_orchestrator,
    serve_livehub,
    spawn_server,
    start_generators,
    stop_generators,
    stop_process,
    ticks_between,
    wait_quiet,
    wait_ready,
    with_database,
)

from storage.db import encode_json, init_connection

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/livehub_bench_rest"
SCENARIOS = ("list", "search", "category", "detail", "mix")
SELLER_EMAIL = "rest-bench-seller-{}@bench.test"
SEED = 20261122
CHUNK = 1000  # products per create_product statement while seeding
UNFINISHED_MS = 30_000  # where the plot draws a percentile that fell on an unanswered request

# -- the catalog ------------------------------------------------------------------------------------

CATEGORIES = {
    "fashion": {
        "sneakers": ["sneakers", "trainers", "runners", "high-tops"],
        "jackets": ["jacket", "parka", "windbreaker", "rain shell"],
        "dresses": ["dress", "sundress", "maxi dress", "wrap dress"],
        "bags": ["backpack", "tote", "crossbody bag", "duffel"],
    },
    "beauty": {
        "skincare": ["serum", "moisturiser", "cleanser", "face mask"],
        "makeup": ["lipstick", "mascara", "foundation", "eyeliner"],
        "fragrance": ["eau de parfum", "body mist", "cologne", "perfume oil"],
        "haircare": ["shampoo", "conditioner", "hair oil", "styling cream"],
    },
    "electronics": {
        "audio": ["earbuds", "headphones", "speaker", "soundbar"],
        "phones": ["phone case", "charger", "power bank", "screen protector"],
        "cameras": ["action camera", "tripod", "lens", "ring light"],
        "wearables": ["smartwatch", "fitness band", "smart ring", "watch strap"],
    },
    "home": {
        "kitchen": ["knife set", "frying pan", "kettle", "blender"],
        "lighting": ["desk lamp", "floor lamp", "string lights", "bulb"],
        "bedding": ["duvet", "pillow", "sheet set", "throw blanket"],
        "decor": ["vase", "candle", "wall art", "cushion"],
    },
    "sports": {
        "running": ["running shorts", "running vest", "water bottle", "socks"],
        "cycling": ["bike helmet", "bike light", "cycling gloves", "saddle"],
        "yoga": ["yoga mat", "yoga block", "leggings", "strap"],
        "camping": ["tent", "sleeping bag", "camp stove", "headlamp"],
    },
    "toys": {
        "puzzles": ["jigsaw", "puzzle cube", "brain teaser", "3d puzzle"],
        "plush": ["teddy bear", "plush bunny", "plush dragon", "plush whale"],
        "building": ["brick set", "magnetic tiles", "marble run", "robot kit"],
        "outdoor-toys": ["kite", "water blaster", "frisbee", "sand set"],
    },
}
COLOURS = (
    "red blue green black white grey navy ochre teal coral ivory olive plum amber crimson silver gold "
    "rose mint lilac sand charcoal cobalt"
).split()
BRANDS = (
    "Aurora Harbor Pulse Glow Nimbus Vertex Lumen Summit Drift Ember Cascade Orbit Zephyr Kestrel Tundra "
    "Marlow Sable Quill Nova Fable Cedar Halcyon Rook Solace Willow Brio Atlas Juniper Vale Lark"
).split()
WORDS = (
    "lightweight durable soft handmade recycled organic waterproof breathable compact portable classic "
    "modern vintage premium everyday travel gift limited edition bestseller new season comfort fit warm "
    "cool quick dry stretch cotton wool linen leather canvas bamboo steel ceramic glass wireless "
    "rechargeable long lasting battery fast charging noise cancelling ergonomic adjustable foldable "
    "washable hypoallergenic fragrance free vegan cruelty natural gentle rich smooth matte glossy bright "
    "calm cosy sturdy stable safe fun colourful easy clean care perfect for home office outdoor kids "
    "adults running yoga camping cycling weekend evening summer winter autumn spring the and with of in"
).split()
QUERIES = [
    "red",  # a colour: ~1/23 of the catalog
    "aurora",  # a brand: ~1/30
    "sneakers",
    "sne",  # prefix of a noun
    "wireless",  # a description word: common
    "red sneakers",  # two words, rare
    "navy jacket",
    "yoga mat",
    "glow serum",
    "lamp",
    "waterproof tent",
    "plush dragon",
]


def leaf_nouns() -> list[tuple[str, str, list[str]]]:
    return [(top, leaf, nouns) for top, leaves in CATEGORIES.items() for leaf, nouns in leaves.items()]


def options_for(top: str, j: int) -> dict[str, str]:
    if top == "fashion" or top == "sports":
        return {"size": ("S", "M", "L", "XL")[j % 4]}
    if top == "beauty":
        return {"volume_ml": ("30", "50", "100", "200")[j % 4]}
    return {"colour": ("black", "white", "grey", "blue")[j % 4]}


def make_products(n: int, variants: int, sellers: int, rng: random.Random) -> list[tuple]:
    """(seller index, title, description, leaf slug, attributes, variants) per product, oldest first."""
    leaves = leaf_nouns()
    out = []
    for i in range(n):
        top, leaf, nouns = leaves[rng.randrange(len(leaves))]
        colour, brand, noun = rng.choice(COLOURS), rng.choice(BRANDS), rng.choice(nouns)
        title = f"{colour.capitalize()} {brand} {noun}"
        description = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 20))).capitalize() + "."
        attributes = {"brand": brand, "colour": colour, "material": rng.choice(("cotton", "steel", "wool", "n/a"))}
        price = rng.randrange(500, 50_000, 100)
        vs = [
            {
                "sku": f"RB-{i:06d}-{j}",
                "options": options_for(top, j),
                "price_cents": price + 200 * j,
                "stock": 0 if rng.random() < 0.1 else rng.randint(1, 200),
            }
            for j in range(variants)
        ]
        out.append((i % sellers, title, description, f"bench-{leaf}", attributes, vs))
    return out


async def seed_catalog(dsn: str, products: int, variants: int, sellers: int) -> dict:
    """Seed the catalog unless this database already has exactly this one; returns what the load needs."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        await migrate(conn)
        have = await conn.fetchrow(
            """SELECT count(DISTINCT s.id) AS sellers, count(DISTINCT p.id) AS products, count(v.id) AS variants
                 FROM users u JOIN sellers s ON s.user_id = u.id
                 JOIN products p ON p.seller_id = s.id JOIN variants v ON v.product_id = p.id
                WHERE u.email LIKE 'rest-bench-seller-%@bench.test'"""
        )
        want = (sellers, products, products * variants)
        if have["products"]:
            if (have["sellers"], have["products"], have["variants"]) != want:
                raise SystemExit(
                    f"this database holds another bench catalog ({have['sellers']} sellers, {have['products']} "
                    f"products, {have['variants']} variants): run with --fresh, or with matching options"
                )
            log(f"reusing the catalog already seeded: {products:,} products, {products * variants:,} variants")
        else:
            if await conn.fetchval("SELECT count(*) FROM products"):
                raise SystemExit("this database has products that are not the bench catalog's: use another one")
            t0 = time.perf_counter()
            await _seed(conn, products, variants, sellers)
            log(f"seeded {products:,} products with {variants} variants each in {time.perf_counter() - t0:.1f} s")
            t0 = time.perf_counter()
            await conn.execute("VACUUM ANALYZE")
            log(f"VACUUM ANALYZE in {time.perf_counter() - t0:.1f} s")
        categories = [
            r["id"] for r in await conn.fetch("SELECT id FROM categories WHERE slug LIKE 'bench-%' ORDER BY slug")
        ]
        ids = [r["id"] for r in await conn.fetch("SELECT id FROM products ORDER BY created_at")]
        facts = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM products p JOIN sellers s ON s.id = p.seller_id
                        WHERE p.status = 'active' AND s.status = 'approved') AS listed,
                      pg_size_pretty(pg_total_relation_size('products')) AS products_size,
                      pg_size_pretty(pg_total_relation_size('variants')) AS variants_size"""
        )
        return {"categories": [str(c) for c in categories], "product_ids": [str(i) for i in ids], **dict(facts)}
    finally:
        await conn.close()


async def _seed(conn: asyncpg.Connection, products: int, variants: int, sellers: int) -> None:
    rng = random.Random(SEED)
    async with conn.transaction():
        users = []
        for i in range(sellers):
            users.append(
                await conn.fetchval(
                    """INSERT INTO users (email, display_name, password_hash) VALUES ($1, $2, 'not-a-hash')
                       RETURNING id""",
                    SELLER_EMAIL.format(i),
                    f"Bench seller {i}",
                )
            )
            await conn.execute(
                """INSERT INTO sellers (user_id, shop_name, status, approved_at) VALUES ($1, $2, 'approved', now())""",
                users[-1],
                f"Bench shop {i}",
            )
        slug_ids = {}
        for pos, (top, leaves) in enumerate(CATEGORIES.items()):
            top_id = await conn.fetchval(
                "INSERT INTO categories (slug, name, position) VALUES ($1, $2, $3) RETURNING id",
                f"bench-{top}",
                top.capitalize(),
                pos,
            )
            for leaf in leaves:
                slug_ids[f"bench-{leaf}"] = await conn.fetchval(
                    "INSERT INTO categories (slug, name, parent_id) VALUES ($1, $2, $3) RETURNING id",
                    f"bench-{leaf}",
                    leaf.replace("-", " ").capitalize(),
                    top_id,
                )
        rows = make_products(products, variants, sellers, rng)
        # Spread over the past year, oldest first, a few minutes of jitter each.
        now = datetime.now(UTC)
        span = timedelta(days=365) / products
        stamps = [now - (products - i) * span + timedelta(seconds=rng.randrange(0, 300)) for i in range(products)]
        all_ids = []
        for start in range(0, products, CHUNK):
            part = rows[start : start + CHUNK]
            ids = await conn.fetch(
                # JSON as text: asyncpg would take a list of variant lists for a 2-D array.
                """SELECT create_product(u, t, d, c, a::jsonb, v::jsonb) AS id
                     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[])
                          WITH ORDINALITY AS x (u, t, d, c, a, v, n)
                    ORDER BY n""",
                [users[r[0]] for r in part],
                [r[1] for r in part],
                [r[2] for r in part],
                [slug_ids[r[3]] for r in part],
                [encode_json(r[4]) for r in part],
                [encode_json(r[5]) for r in part],
            )
            ids = [r["id"] for r in ids]
            all_ids += ids
            at = stamps[start : start + CHUNK]
            await conn.execute(
                """UPDATE products p SET created_at = x.at, updated_at = x.at
                     FROM unnest($1::uuid[], $2::timestamptz[]) AS x (id, at) WHERE p.id = x.id""",
                ids,
                at,
            )
            await conn.execute(
                """UPDATE variants v SET created_at = x.at
                     FROM unnest($1::uuid[], $2::timestamptz[]) AS x (id, at) WHERE v.product_id = x.id""",
                ids,
                at,
            )
            log(f"  {start + len(part):,} products")
        # One shop in twenty suspended and every 50th product archived: both leave the listing.
        await conn.execute(
            "UPDATE sellers SET status = 'suspended' WHERE user_id = ANY($1::uuid[])", users[sellers - 1 :: 20]
        )
        await conn.execute("UPDATE products SET status = 'archived' WHERE id = ANY($1::uuid[])", all_ids[49::50])


async def recreate_database(dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    if not name.startswith("livehub_bench"):
        raise SystemExit(f"--fresh drops the database: only for names starting with livehub_bench, not {name!r}")
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        log(f"dropped database {name}")
    finally:
        await admin.close()


def scenario_paths(name: str, catalog: dict) -> list[str]:
    lists = {
        "list": ["/api/products"],
        "search": [f"/api/products?q={quote(q)}" for q in QUERIES],
        "category": [f"/api/products?category={c}" for c in catalog["categories"]],
        "detail": [f"/api/products/{i}" for i in catalog["product_ids"]],
    }
    if name != "mix":
        return lists[name]
    # 35 % detail, 35 % list, 15 % search, 15 % category, as lists the generator picks from uniformly.
    rng = random.Random(SEED)
    return (
        rng.sample(lists["detail"], 700)
        + lists["list"] * 700
        + [rng.choice(lists["search"]) for _ in range(300)]
        + [rng.choice(lists["category"]) for _ in range(300)]
    )


# -- load generators --------------------------------------------------------------------------------

CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Window:
    """What one generator saw in one window."""

    def __init__(self) -> None:
        self.latency_us = array("q")  # from the scheduled time, every answer (200 or not)
        self.service_us = array("q")  # from the actual send
        self.late_us = array("q")  # how late the generator got round to each request
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.first_ns = 0
        self.last_ns = 0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, gen: Generator):
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.sched = 0.0
        self.sent = 0.0
        self.need = -1  # bytes of the whole response once its headers are in
        self.status = 0
        self.prefix = b""
        self.window: Window | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, request: bytes, prefix: bytes, sched: float, window: Window) -> None:
        self.busy = True
        self.sched = sched
        self.prefix = prefix
        self.window = window
        self.need = -1
        self.sent = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            m = CONTENT_LENGTH.search(buf, 0, end + 2)
            if m is None or not buf.startswith(b"HTTP/1.1 "):
                self._broken("no content-length")
                return
            self.status = int(buf[9:12])
            self.need = end + 4 + int(m.group(1))
            self.body_at = end + 4
        if len(buf) < self.need:
            return
        body_ok = buf.startswith(self.prefix, self.body_at)
        del buf[: self.need]
        self.need = -1
        self.busy = False
        self.gen.answered(self, self.status, body_ok)

    def _broken(self, why: str) -> None:
        if self.busy:
            self.busy = False
            self.window.error(why)
            self.gen.failed_one()
        self.gen.drop(self)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        self._broken("connection lost")


class Generator:
    """One load-generator process: a pool of connections and the fixed-rate schedule of a window."""

    def __init__(self, port: int, max_conns: int):
        self.port = port
        self.max_conns = max_conns
        self.idle: list[Conn] = []
        self.conns: set[Conn] = set()
        self.opening = 0
        self.queue: deque = deque()
        self.window = Window()
        self.pending = 0
        self.done = asyncio.Event()

    def request(self, path: str) -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nAccept: application/json\r\n\r\n".encode()

    def fire(self, req: bytes, prefix: bytes, sched: float) -> None:
        self.pending += 1
        self.window.late_us.append(int((time.perf_counter() - sched) * 1e6))
        if self.idle:
            conn = self.idle.pop()
            conn.send(req, prefix, sched, self.window)
        else:
            self.queue.append((req, prefix, sched))
            if len(self.conns) + self.opening < self.max_conns:
                self.opening += 1
                asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: Conn(self), HOST, self.port)
        except OSError as exc:
            self.opening -= 1
            if self.queue:
                self.queue.popleft()
                self.window.error(f"connect: {type(exc).__name__}")
                self.failed_one()
            return
        self.opening -= 1
        self.conns.add(conn)
        self._next(conn)

    def _next(self, conn: Conn) -> None:
        if self.queue:
            req, prefix, sched = self.queue.popleft()
            conn.send(req, prefix, sched, self.window)
        else:
            self.idle.append(conn)

    def answered(self, conn: Conn, status: int, body_ok: bool) -> None:
        now = time.perf_counter()
        w = conn.window
        w.latency_us.append(int((now - conn.sched) * 1e6))
        w.service_us.append(int((now - conn.sent) * 1e6))
        ns = time.time_ns()
        w.last_ns = ns
        if status != 200:
            w.error(f"HTTP {status}")
        elif not body_ok:
            w.error("unexpected body")
        else:
            w.ok += 1
        self.pending -= 1
        if w is self.window:
            self._next(conn)
            if self.pending == 0:
                self.done.set()
        else:  # an answer from a window already closed: the connection is not reused
            conn._broken("late")

    def failed_one(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.done.set()

    def drop(self, conn: Conn) -> None:
        self.conns.discard(conn)
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    async def run(
        self,
        paths: list[str],
        prefix: bytes,
        rate: float,
        offset: float,
        start_wall: float,
        seconds: float,
        drain: float,
        seed: int,
    ) -> dict:
        """Requests at start + offset + i / rate for `seconds`; answers awaited up to `drain` s after."""
        rng = random.Random(seed)
        reqs = [self.request(p) for p in paths]
        self.window = w = Window()
        self.pending = 0
        self.done = asyncio.Event()
        n = int(seconds * rate)
        start = time.perf_counter() + (start_wall - time.time()) + offset
        period = 1.0 / rate
        w.first_ns = int((start_wall + offset) * 1e9)
        i = 0
        while i < n:
            now = time.perf_counter()
            due = start + i * period
            if due > now:
                await asyncio.sleep(due - now)
                continue
            while i < n and start + i * period <= now:
                self.fire(reqs[rng.randrange(len(reqs))], prefix, start + i * period)
                i += 1
        self.done.clear()  # it was set whenever nothing was in flight during the window
        if self.pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), drain)
        unfinished = self.pending
        # Whatever is still in flight is given up: its connection closes, its queue entry goes.
        self.queue.clear()
        for conn in list(self.conns):
            if conn.busy:
                conn.window = Window()  # its late answer, if any, is not this window's
                conn.busy = False
                self.drop(conn)
                conn.transport.abort()
        self.pending = 0
        return {
            "scheduled": n,
            "latency_us": w.latency_us.tobytes(),
            "service_us": w.service_us.tobytes(),
            "late_us": w.late_us.tobytes(),
            "ok": w.ok,
            "errors": w.errors,
            "unfinished": unfinished,
            "first_ns": w.first_ns,
            "last_ns": w.last_ns,
            "conns": len(self.conns),
        }


def generator_main(conn, port: int, max_conns: int) -> None:
    run_generator(_generator, conn, port, max_conns, loop="asyncio")


async def _generator(conn, port: int, max_conns: int) -> None:
    loop = asyncio.get_running_loop()
    gen = Generator(port, max_conns)
    paths: list[str] = []
    while True:
        msg = await loop.run_in_executor(None, conn.recv)
        if msg[0] == "paths":
            paths = msg[1]
            conn.send(len(paths))
        elif msg[0] == "run":
            conn.send(await gen.run(paths, *msg[1:]))
        elif msg[0] == "quit":
            for c in list(gen.conns):
                c.transport.abort()
            return


# -- the orchestrator -------------------------------------------------------------------------------

HEADER = (
    "| scenario | offered req/s | achieved req/s | p50 ms | p90 ms | p99 ms | max ms | errors | unfinished "
    "| server CPU % | Postgres CPU % | generators CPU % | others CPU % | client late p99 ms | result |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


@dataclass
class Row:
    scenario: str
    rate: float
    load: str = ""
    scheduled: int = 0
    ok: int = 0
    errors: dict = field(default_factory=dict)
    unfinished: int = 0
    achieved: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    service_p99_ms: float = 0.0
    late_p99_ms: float = 0.0
    server_cpu: float = 0.0
    pg_cpu: float = 0.0
    gen_cpu: float = 0.0
    others_cpu: float = 0.0
    conns: int = 0
    attempt: int = 1
    tries: int = 1
    verdict: str = ""
    discarded: list = field(default_factory=list)

    def line(self) -> str:
        errors = sum(self.errors.values())
        err = f"{errors:,}" + (f" ({', '.join(f'{k}: {v}' for k, v in self.errors.items())})" if errors else "")

        def ms(v: float) -> str:
            return "∞" if v == float("inf") else f"{v:.1f}"

        return (
            f"| {self.scenario} | {self.rate:,.0f} | {self.achieved:,.0f} | {ms(self.p50_ms)} | {ms(self.p90_ms)} "
            f"| {ms(self.p99_ms)} | {ms(self.max_ms)} | {err} | {self.unfinished:,} | {self.server_cpu:.0f} "
            f"| {self.pg_cpu:.0f} | {self.gen_cpu:.0f} | {self.others_cpu:.0f} | {self.late_p99_ms:.1f} "
            f"| {self.verdict} |"
        )


class Orchestrator:
    def __init__(self, args, dsn: str, server_pid: int, pipes: list, gen_pids: list[int]):
        self.args = args
        self.dsn = dsn
        self.db_name = urlsplit(dsn).path.lstrip("/")
        self.server_pid = server_pid
        self.pipes = pipes
        self.gen_pids = gen_pids
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(pipes)))
        self.monitor: asyncpg.Connection | None = None

    async def ask_all(self, msgs: list[tuple], timeout: float) -> list:
        return await ask_all(self.pool, self.pipes, msgs, timeout)

    async def backend_ticks(self) -> dict[int, int]:
        """CPU ticks of the PostgreSQL backends connected to the benchmark's database."""
        pids = await self.monitor.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.db_name)
        out = {}
        for r in pids:
            with contextlib.suppress(OSError, IndexError, ValueError):
                out[r["pid"]] = cpu_ticks(r["pid"])
        return out

    def our_ticks(self) -> dict[str, int]:
        return {
            "server": cpu_ticks(self.server_pid),
            "gens": sum(cpu_ticks(p) for p in self.gen_pids),
            "self": cpu_ticks(os.getpid()),
        }

    async def wait_quiet(self) -> float:
        """Wait (up to --wait-quiet s) until the server is idle and other processes use under --busy-cpu %."""

        async def ours() -> dict[int, int]:
            pids = [self.server_pid, *self.gen_pids, os.getpid()]
            return {pid: cpu_ticks(pid) for pid in pids} | await self.backend_ticks()

        return await wait_quiet(ours, self.args.busy_cpu, self.args.wait_quiet, idle_pid=self.server_pid)

    async def window(self, scenario: str, rate: float, seconds: float) -> Row:
        args = self.args
        k = len(self.pipes)
        prefix = b'{"product"' if scenario == "detail" else (b"{" if scenario == "mix" else b'{"items"')
        start_wall = time.time() + 0.5
        ours0, pg0, busy0 = self.our_ticks(), await self.backend_ticks(), machine_busy()[0]
        t0 = time.monotonic()
        msgs = [
            ("run", prefix, rate / k, i / rate, start_wall, seconds, args.drain, hash((scenario, rate, i, time.time())))
            for i in range(k)
        ]
        replies = await self.ask_all(msgs, seconds + args.drain + 60)
        elapsed = time.monotonic() - t0 - 0.5
        ours1, pg1, busy1 = self.our_ticks(), await self.backend_ticks(), machine_busy()[0]
        row = Row(scenario, rate, load=loadavg())
        row.scheduled = sum(r["scheduled"] for r in replies)
        row.ok = sum(r["ok"] for r in replies)
        row.unfinished = sum(r["unfinished"] for r in replies)
        row.conns = sum(r["conns"] for r in replies)
        for r in replies:
            for what, count in r["errors"].items():
                row.errors[what] = row.errors.get(what, 0) + count
        lat = sorted(v / 1000 for r in replies for v in array("q", r["latency_us"]))
        lat += [float("inf")] * row.unfinished
        service = sorted(v / 1000 for r in replies for v in array("q", r["service_us"]))
        late = sorted(v / 1000 for r in replies for v in array("q", r["late_us"]))
        row.p50_ms, row.p90_ms, row.p99_ms = (nearest_rank(lat, q) for q in (0.5, 0.9, 0.99))
        row.max_ms = lat[-1] if lat else float("nan")
        row.service_p99_ms = nearest_rank(service, 0.99)
        row.late_p99_ms = nearest_rank(late, 0.99)
        last_ns = max(r["last_ns"] for r in replies)
        span = (last_ns / 1e9 - start_wall) if last_ns else seconds
        row.achieved = row.ok / max(span, seconds * 0.999)
        pg = ticks_between(pg0, pg1)
        row.server_cpu = 100 * (ours1["server"] - ours0["server"]) / CLK_TCK / elapsed
        row.pg_cpu = 100 * pg / CLK_TCK / elapsed
        row.gen_cpu = 100 * (ours1["gens"] - ours0["gens"]) / CLK_TCK / elapsed
        ours = sum(ours1.values()) - sum(ours0.values()) + pg
        row.others_cpu = max(0.0, 100 * (busy1 - busy0 - ours) / CLK_TCK / elapsed)
        why = []
        if row.achieved < 0.95 * rate:
            why.append(f"achieved {row.achieved / rate:.0%} of offered")
        if row.unfinished:
            why.append("unfinished")
        if row.errors:
            why.append("errors")
        if row.p99_ms > args.p99_limit_ms:
            why.append(f"p99 over {args.p99_limit_ms:g} ms")
        row.verdict = "saturated: " + ", ".join(why) if why else "held"
        return row

    async def run(self, catalog: dict) -> list[Row]:
        args = self.args
        self.monitor = await asyncpg.connect(with_database(self.dsn, "postgres"))
        rows: list[Row] = []
        try:
            for scenario in args.scenarios:
                paths = scenario_paths(scenario, catalog)
                await self.ask_all([("paths", paths)] * len(self.pipes), 30)
                await self.wait_quiet()
                warm = await self.window(scenario, min(args.rates), args.warmup)
                log(f"{scenario}: warm-up {args.warmup:g} s at {min(args.rates):g} req/s: p99 {warm.p99_ms:.1f} ms")
                for rate in args.rates:

                    async def attempt(k: int, scenario=scenario, rate=rate) -> Row:
                        row = await self.window(scenario, rate, args.seconds)
                        row.attempt = k
                        return row

                    row = await least_disturbed(self.wait_quiet, attempt, args.retries, args.busy_cpu, who="others")
                    rows.append(row)
                    log(row.line() + f"  (service p99 {row.service_p99_ms:.1f} ms, conns {row.conns}, load {row.load})")
                    if row.verdict != "held":
                        break
        finally:
            await self.monitor.close()
        return rows


def run_facts(args: argparse.Namespace, dsn: str) -> dict:
    """common.machine_facts, the PostgreSQL version and the load generators."""

    async def pg_version() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval("SELECT split_part(version(), ' on ', 1)")
        finally:
            await conn.close()

    return machine_facts() | {
        "postgres": asyncio.run(pg_version()),
        "load_generators": args.procs,
        "conns_per_generator": args.conns,
    }


def plot(series: list[tuple[str, list[Row]]], facts: dict, args: argparse.Namespace, path: str) -> None:
    """p99 (and p50 for a single run) against the offered rate per scenario, and achieved against offered;
    other runs (``--compare``) are drawn dashed, then dotted, in the same colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 6.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    rates = sorted({r.rate for _, rows in series for r in rows})
    for n, (label, rows) in enumerate(series):
        style = ("-", "--", ":", "-.")[n % 4]
        suffix = f" ({label})" if len(series) > 1 else ""
        for i, scenario in enumerate(SCENARIOS):
            rs = [r for r in rows if r.scenario == scenario]
            if not rs:
                continue
            colour = colours[i % len(colours)]
            x = [r.rate for r in rs]
            p99 = [min(r.p99_ms, UNFINISHED_MS) for r in rs]
            ax1.plot(x, p99, marker="o", linestyle=style, color=colour, label=f"{scenario} p99{suffix}")
            if len(series) == 1:
                p50 = [min(r.p50_ms, UNFINISHED_MS) for r in rs]
                ax1.plot(x, p50, marker=".", linestyle=":", color=colour, label=f"{scenario} p50")
            ax2.plot(
                x, [r.achieved for r in rs], marker="o", linestyle=style, color=colour, label=f"{scenario}{suffix}"
            )
            for r in rs:
                if r.verdict != "held":
                    ax1.annotate(
                        "saturated" + (" (p99 unfinished)" if r.p99_ms == float("inf") else ""),
                        (r.rate, min(r.p99_ms, UNFINISHED_MS)),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                        color=colour,
                    )
    ax1.axhline(args.target_ms, color="grey", linestyle="-.", linewidth=1)
    ax1.text(rates[0], args.target_ms * 1.15, f"target: listing p99 {args.target_ms:g} ms", fontsize=8, color="grey")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xticks(rates, [f"{r:g}" for r in rates])
    ax1.minorticks_off()
    ax1.set_xlabel("offered requests/s (open loop)")
    ax1.set_ylabel("latency from the scheduled send, ms (log)")
    ax1.set_title("Latency" + (" (p99 solid, p50 dotted)" if len(series) == 1 else ": p99"))
    ax1.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13), handlelength=3.5)
    ax1.grid(True, which="major", alpha=0.3)
    ax2.plot([0, rates[-1]], [0, rates[-1]], color="grey", linestyle="-.", linewidth=1, label="offered")
    ax2.set_xlabel("offered requests/s")
    ax2.set_ylabel("achieved requests/s (200 answers)")
    ax2.set_title("Throughput")
    ax2.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13), handlelength=3.5)
    ax2.grid(True, alpha=0.3)
    title = " vs ".join(label for label, _ in series)
    fig.suptitle(
        f"LiveHub REST catalog, one server process, {facts['products']:,} products, {title}: {facts['date_utc']}; "
        f"{facts['cores']} cores shared by server, PostgreSQL and load generators",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")


def report(facts: dict, args: argparse.Namespace, rows: list[Row]) -> str:
    target = next((r for r in rows if r.scenario == "list" and r.rate == 1000), None)
    if target is None:
        verdict = "listing at 1,000 req/s: not measured"
    else:
        met = target.p99_ms < args.target_ms and target.verdict == "held"
        p99 = "unfinished requests" if target.p99_ms == float("inf") else f"{target.p99_ms:.1f} ms"
        verdict = (
            f"listing at 1,000 req/s: p99 {p99} ({target.achieved:,.0f} req/s answered), target p99 under "
            f"{args.target_ms:g} ms {'MET' if met else 'NOT MET'}"
        )
    header = (
        f"{facts['date_utc']}; {facts['cores']} cores ({facts['cpu']}), {facts['mem_total_gib']} GiB; Python "
        f"{facts['python']}, aiohttp {facts['aiohttp']}, {facts['postgres']}; loadavg at start "
        f"{facts['loadavg_at_start']}.\n"
        f"Catalog: {facts['products']:,} products ({facts['listed']:,} listed), {facts['variants']:,} variants, "
        f"{facts['sellers']} sellers, 30 categories. One server process and {facts['load_generators']} "
        f"load-generator processes (open loop, up to {facts['conns_per_generator']} connections each) on the "
        f"same machine; {args.seconds:g} s per rate after {args.warmup:g} s of warm-up per scenario."
    )
    return "\n".join([header, "", HEADER, *(r.line() for r in rows), "", verdict])


def label_of(args: argparse.Namespace, i: int) -> str:
    return args.labels[i] if i < len(args.labels) else ("this run" if i == 0 else f"run {i + 1}")


def load_rows(path: str) -> tuple[dict, list[Row]]:
    data = json.loads(Path(path).read_text())
    return data["facts"], [Row(**r) for r in data["rows"]]


def bench(args: argparse.Namespace) -> str:
    dsn = os.environ.get("DATABASE_URL") or DEFAULT_DSN
    name = urlsplit(dsn).path.lstrip("/")
    if not name or name == "test":
        raise SystemExit(f"refusing database {name!r}: name another one in DATABASE_URL")
    if args.fresh:
        asyncio.run(recreate_database(dsn))
    asyncio.run(ensure_database(dsn))
    catalog = asyncio.run(seed_catalog(dsn, args.products, args.variants, args.sellers))
    facts = run_facts(args, dsn)
    facts.update(
        products=args.products,
        variants=args.products * args.variants,
        sellers=args.sellers,
        listed=catalog["listed"],
        products_size=catalog["products_size"],
        variants_size=catalog["variants_size"],
    )
    log("machine:", json.dumps(facts))
    port = free_port()
    base = f"http://{HOST}:{port}"
    server = None
    gens: list = []
    pipes: list = []
    rows: list[Row] = []
    logfile = tempfile.NamedTemporaryFile(prefix="livehub-rest-server-", suffix=".log", delete=False)
    try:
        server = spawn_server(
            Path(__file__).resolve(), port, {"DATABASE_URL": dsn, "LIVEHUB_LOG_LEVEL": "WARNING"}, logfile
        )
        asyncio.run(wait_ready(base, server))
        log(f"server pid {server.pid} on {base} (log {logfile.name})")
        gens, pipes = start_generators(generator_main, [(port, args.conns)] * args.procs, name="rest-gen")

        async def orchestrate():
            orch = Orchestrator(args, dsn, server.pid, pipes, [g.pid for g in gens])
            try:
                return await orch.run(catalog)
            finally:
                orch.pool.shutdown(wait=False, cancel_futures=True)

        rows = asyncio.run(orchestrate())
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} during the run")
    finally:
        stop_generators(gens, pipes)
        if server is not None:
            stop_process(server)
        drop_server_log(logfile)

    if args.json:
        Path(args.json).write_text(
            json.dumps({"facts": facts, "args": vars(args), "rows": [asdict(r) for r in rows]}, indent=2)
        )
    if args.plot and rows:
        series = [(label_of(args, 0), rows)]
        series += [(label_of(args, i + 1), load_rows(path)[1]) for i, path in enumerate(args.compare)]
        plot(series, facts, args, args.plot)
    return report(facts, args, rows)


def from_json(args: argparse.Namespace) -> str:
    """The table and plot of an earlier run (``--json``), without running anything."""
    facts, rows = load_rows(args.from_json)
    saved = json.loads(Path(args.from_json).read_text())["args"]
    args.seconds, args.warmup = saved["seconds"], saved["warmup"]
    if args.plot:
        series = [(label_of(args, 0), rows)]
        series += [(label_of(args, i + 1), load_rows(path)[1]) for i, path in enumerate(args.compare)]
        plot(series, facts, args, args.plot)
    return report(facts, args, rows)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scenarios",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(SCENARIOS),
        help=f"comma-separated, of {','.join(SCENARIOS)} (default all)",
    )
    ap.add_argument("--rates", type=floats, help="comma-separated requests/s, ascending (default 250,500,1000,2000)")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured window per rate (default 15)")
    ap.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per scenario (default 3)")
    ap.add_argument("--drain", type=float, default=10.0, help="seconds to wait for answers after a window (default 10)")
    ap.add_argument("--products", type=int, default=10_000, help="products in the catalog (default 10000)")
    ap.add_argument("--variants", type=int, default=3, help="variants per product (default 3)")
    ap.add_argument("--sellers", type=int, default=20, help="sellers (default 20; every 20th is suspended)")
    ap.add_argument("--fresh", action="store_true", help="drop and recreate the database, then seed")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes (default 2)")
    ap.add_argument("--conns", type=int, default=64, help="most connections per load generator (default 64)")
    ap.add_argument("--target-ms", type=float, default=50.0, help="the issue's listing p99 target (default 50)")
    ap.add_argument("--p99-limit-ms", type=float, default=1000.0, help="a rate saturates above this p99 (default 1000)")
    quiet_options(ap)
    ap.add_argument("--quick", action="store_true", help="100,250 req/s, 4 s each: a smoke run")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--plot", help="also draw the results to this PNG (needs matplotlib)")
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        help="a --json file of another run to draw in the same plot, dashed (repeat for more: dotted, ...)",
    )
    ap.add_argument(
        "--labels",
        type=lambda s: [x.strip() for x in s.split(",")],
        default=[],
        help="comma-separated names of this run and each --compare run, for the plot",
    )
    ap.add_argument("--from-json", help="print the table and draw --plot from this --json file; no run")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: be the server on this port
    args = ap.parse_args(argv)
    if args.serve:
        return args
    if args.quick:
        args.rates = args.rates or [100.0, 250.0]
        args.seconds = min(args.seconds, 4.0)
        args.warmup = min(args.warmup, 1.0)
    args.rates = args.rates or [250.0, 500.0, 1000.0, 2000.0]
    if unknown := set(args.scenarios) - set(SCENARIOS):
        ap.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if min(args.rates) <= 0 or args.rates != sorted(args.rates):
        ap.error("--rates takes positive rates in ascending order")
    if args.seconds <= 0 or args.warmup <= 0 or args.drain <= 0 or args.procs < 1 or args.conns < 1:
        ap.error("--seconds, --warmup, --drain, --procs and --conns must be positive")
    if args.products < 1 or args.variants < 1 or args.sellers < 1:
        ap.error("--products, --variants and --sellers must be positive")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve_livehub(args.serve)
        return
    if args.from_json:
        print(from_json(args))
        return
    print(run_orchestrator(lambda: bench(args)))


if __name__ == "__main__":
    main()
