"""Flash sale over websockets on ONE server process: B signed-in buyers press buy on S units at once.

    python bench/flashsale.py                         # B=2000,10000 x S=200,B/2: baseline vs coalesced
    python bench/flashsale.py --quick                 # B=500, S=50,250: a smoke run
    python bench/flashsale.py --buyers 10000 --units 200 --batch-max 50,200 --window-ms 5
    python bench/flashsale.py --spread-ms 0,1000      # all at once, then spread evenly over one second
    python bench/flashsale.py --buyers 10000 --units 200 --no-baseline --profile /tmp/flash-prof
    python bench/flashsale.py --from-json out.json --plot docs/bench-flashsale.png   # report again, no run

What runs, for every row (B buyers, S units, one mode):

- A FRESH server process (``common.serve_livehub``: ``livehub.app.serve`` as run.py uses it, no access log,
  no REDIS_URL, so the in-process broker) on 127.0.0.1 and a free port, against DATABASE_URL (default
  ``postgresql://postgres@127.0.0.1:5432/livehub_bench_flash``, created if missing; ``test`` is refused).
  **baseline**: ``LIVEHUB_BUY_BATCH_MAX=1``, every buy its own ``buy_batch`` call and transaction (the
  coalescer still keeps one call in flight per variant, as the variant's row lock would anyway).
  **coalesced**: the shipped defaults, batch 50 and window 5 ms (``--batch-max``, ``--window-ms`` to vary).
- Setup: B buyers once per run by SQL (users, sessions with the server's token hash, a ``top_up`` each);
  the seller through REST (approved with ``set_seller_status``). Per row through REST: a product (10.00,
  stock B), a stream featuring it, started; the host starts a flash sale of S units at 4.00 over its
  websocket (per-buyer limit 1, the default).
- B buyers on ``/ws/streams/{id}?token=`` from ``--procs`` load-generator processes (``common.RawWebsocket``
  on uvloop when installed). Once the sale's event has reached them, every buyer sends one
  ``{"type": "buy", "variant_id", "quantity": 1, "flash_sale_id", "request_id"}``: all at once
  (``--spread-ms 0``, the default: each generator writes its frames back to back) or buyer i at
  start + i/B x spread.
- Measured: settled/s = replies / (last reply read - first buy written), over all generators (one machine,
  one monotonic clock); per buyer, buy written -> ``purchase`` reply read (p50 / p99 by nearest rank, max);
  CPU over the burst of the server, of all ``postgres`` processes, of the generators and of everything
  else (/proc/stat), 100 % = one core; the room's ``events`` frames per buyer during the burst.
- Checked in the database afterwards: exactly S ``ok`` replies and S orders for the stream, the same ids;
  no buyer twice; every order at the flash price; the stock fell by S and equals its movements; the sale
  sold S of S and ended ``sold_out``; ``check_books()`` balanced. Any failure marks the row FAILED.
- The machine may be shared: before each row the script waits (up to ``--wait-quiet`` s) for other
  processes to use under ``--busy-cpu`` % CPU, and prints the load average with every row. Wrap
  measured runs in ``flock /tmp/livehub-bench.lock``.
- ``--profile DIR``: py-spy records the server during each coalesced burst (raw stacks to DIR, a summary
  printed); such rows are marked "py-spy" and left out of ratios, targets and the plot.

Every phase is bounded (connect budget, ``--timeout`` for replies); the server and the generators are
stopped on exit, Ctrl-C or failure, and die with this process if it is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from common import (
    CHEAP_PASSWORD_HASHING,
    CLK_TCK,
    HOST,
    RawWebsocket,
    ask_all,
    cpu_ticks,
    ensure_database,
    free_port,
    handshake_request,
    ints,
    loadavg,
    log,
    machine_busy,
    machine_facts,
    masked_text_frame,
    migrate,
    nearest_rank,
    proc_ticks_named,
    quiet_options,
    run_generator,
    run_orchestrator,
    serve_livehub,
    signed_in_users,
    spawn_server,
    start_generators,
    stop_generators,
    stop_process,
    ticks_between,
    wait_quiet,
    wait_ready,
    within,
)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/livehub_bench_flash"
PRICE = 1000  # list price, cents
FLASH_PRICE = 400
WALLET = 1_000_000  # cents per buyer: far more than any run spends
PASSWORD = "flashsale bench password"
CONNECTS_IN_FLIGHT = 50  # per generator: handshakes started and not yet welcomed
CONNECT_TIMEOUT_S = 30.0  # one buyer: TCP connect + handshake + welcome
CONNECT_ATTEMPTS = 3  # a buyer told 1013 (try again) reconnects, as the viewer page does
SEND_YIELD_EVERY = 100  # all at once: the generator reads replies between every this many sends
# The server process times its garbage collections and writes the totals to this file on SIGUSR1.
GC_FILE_ENV = "LIVEHUB_BENCH_GC_FILE"


# -- the server's garbage collector --------------------------------------------------------------------


def gc_probe() -> None:
    """In the server process: time every collection (gc.callbacks); on SIGUSR1 write the totals so far,
    the collector's thresholds and how many objects it tracks (and has frozen) to $LIVEHUB_BENCH_GC_FILE."""
    import gc

    path = os.environ.get(GC_FILE_ENV)
    if not path:
        return
    totals = {"s": 0.0, "runs": [0, 0, 0], "s_by_gen": [0.0, 0.0, 0.0], "max_s": 0.0}
    started = [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        took, gen = time.perf_counter() - started[0], info["generation"]
        totals["s"] += took
        totals["runs"][gen] += 1
        totals["s_by_gen"][gen] += took
        totals["max_s"] = max(totals["max_s"], took)

    def dump(_signum, _frame) -> None:
        facts = {
            "tracked": len(gc.get_objects()),
            "frozen": gc.get_freeze_count(),
            "threshold": gc.get_threshold(),
            "stats": gc.get_stats(),
        }
        tmp = f"{path}.tmp"
        Path(tmp).write_bytes(orjson.dumps(totals | facts))
        os.replace(tmp, path)

    gc.callbacks.append(timed)
    signal.signal(signal.SIGUSR1, dump)


def read_gc(pid: int, path: Path, timeout_s: float = 5.0) -> dict | None:
    """Ask the server for its collector's totals (SIGUSR1) and read them; None if it did not answer."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return orjson.loads(path.read_bytes())
        time.sleep(0.02)
    return None


# -- load generators ---------------------------------------------------------------------------------


class Buyer(RawWebsocket):
    """A signed-in buyer: sends one prepared `buy` frame and times its `purchase` reply; counts the room's
    `events` frames meanwhile (not decoded)."""

    __slots__ = ("gen", "frame", "sent_ns", "reply_ns", "status", "order_id")

    def __init__(self, gen: Generator, request: bytes, ready: asyncio.Future):
        super().__init__(request, ready)
        self.gen = gen
        self.frame = b""
        self.sent_ns = 0
        self.reply_ns = 0
        self.status: str | None = None
        self.order_id: str | None = None

    def on_text(self, payload: bytearray) -> None:
        if payload.startswith(b'{"type":"events"'):
            self.gen.events += 1
        elif payload.startswith((b'{"type":"purchase"', b'{"type":"error"')):
            now = time.monotonic_ns()
            msg = orjson.loads(payload)
            if self.sent_ns and self.status is None:
                self.reply_ns = now
                self.status = msg["status"] if msg["type"] == "purchase" else "error:" + str(msg.get("code"))
                self.order_id = msg.get("order_id")
                self.gen.replied()
        elif not self.opened and payload.startswith(b'{"type":"welcome"'):
            self.opened = True
            self.ready.set_result(None)

    def on_closed(self, code: int) -> None:
        self.gen.closed[code] += 1


class Generator:
    def __init__(self, index: int, procs: int):
        self.index = index
        self.procs = procs
        self.buyers: list[Buyer] = []
        self.events = 0
        self.closed: Counter[int] = Counter()
        self.waiting = 0
        self.all_replied: asyncio.Future | None = None

    def replied(self) -> None:
        self.waiting -= 1
        if self.waiting <= 0 and not self.all_replied.done():
            self.all_replied.set_result(None)

    async def _one(self, gate: asyncio.Semaphore, port: int, path: str) -> str | None:
        async with gate:
            loop = asyncio.get_running_loop()
            for attempt in range(CONNECT_ATTEMPTS):
                buyer = Buyer(self, handshake_request(HOST, port, path), loop.create_future())
                self.buyers.append(buyer)  # so that close() aborts it too if the budget cuts it off
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        await loop.create_connection(lambda b=buyer: b, HOST, port)
                        await buyer.ready
                    return None
                except (OSError, TimeoutError, ConnectionError) as exc:
                    buyer.abort()
                    self.buyers.remove(buyer)
                    error = f"{type(exc).__name__}: {exc}"[:200]
                    # 1013: the server could not sign in or open the room right now; the viewer page
                    # (room.js) reconnects after a pause, and so does a buyer here.
                    if "(1013)" not in error or attempt == CONNECT_ATTEMPTS - 1:
                        return error
                    await asyncio.sleep(0.5 * (attempt + 1))
            return None

    async def connect(self, port: int, stream_id: str, tokens: list[str], budget_s: float) -> dict:
        self.close()
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        tasks = [asyncio.create_task(self._one(gate, port, f"/ws/streams/{stream_id}?token={t}")) for t in tokens]
        errors, cut_off = await within(tasks, budget_s)
        return {"failed": len(errors) + cut_off, "errors": errors[:2] + (["budget exhausted"] if cut_off else [])}

    def alive(self) -> list[Buyer]:
        return [b for b in self.buyers if b.opened and not b.done]

    async def fire(self, variant: str, sale: str, at_ns: int, spread_ns: int, total: int, tag: str, timeout: float):
        buyers = self.alive()
        n, k, g = len(buyers), self.procs, self.index
        body = {"type": "buy", "variant_id": variant, "quantity": 1, "flash_sale_id": sale}
        for j, b in enumerate(buyers):
            b.frame = masked_text_frame(orjson.dumps(body | {"request_id": f"{tag}-{g}-{j}"}))
        # Buyer j of generator g is buyer g + j*k of all B: a spread interleaves the generators.
        due = [at_ns + (g + j * k) * spread_ns // max(1, total) for j in range(n)]
        self.events, self.waiting = 0, n
        self.all_replied = asyncio.get_running_loop().create_future()
        if n == 0:
            self.all_replied.set_result(None)
        await asyncio.sleep(max(0.0, (at_ns - time.monotonic_ns()) / 1e9))
        j = 0
        while j < n:
            now, stop = time.monotonic_ns(), j + SEND_YIELD_EVERY
            while j < n and j < stop and due[j] <= now:
                b = buyers[j]
                b.sent_ns = time.monotonic_ns()
                b.transport.write(b.frame)
                j += 1
            if j < n:
                await asyncio.sleep(max(0.0, (due[j] - time.monotonic_ns()) / 1e9))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.all_replied), timeout)
        return {
            "sent_ns": [b.sent_ns for b in buyers],
            "reply_ns": [b.reply_ns for b in buyers],
            "status": [b.status for b in buyers],
            "order_ids": [b.order_id for b in buyers if b.status == "ok"],
            "closed": dict(self.closed),
            "events": self.events,
        }

    def close(self) -> None:
        for b in self.buyers:
            b.abort()
        self.buyers = []
        self.closed = Counter()


async def _generator(conn, index: int, procs: int) -> None:
    loop = asyncio.get_running_loop()
    gen = Generator(index, procs)
    try:
        while True:
            op, *args = await loop.run_in_executor(None, conn.recv)
            if op == "quit":
                return
            if op == "connect":
                conn.send(await gen.connect(*args))
            elif op == "alive":
                conn.send(len(gen.alive()))
            elif op == "fire":
                conn.send(await gen.fire(*args))
            elif op == "close":
                gen.close()
                conn.send(None)
    finally:
        gen.close()


def generator_main(conn, index: int, procs: int) -> None:
    run_generator(_generator, conn, index, procs)


# -- the orchestrator ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A server other than the shipped one, for side-by-side rows: another checkout's code, other settings."""

    label: str = ""
    tree: str = ""
    env: dict[str, str] = field(default_factory=dict)


NO_VARIANT = Variant()


@dataclass
class Row:
    buyers: int
    units: int
    spread_ms: float
    mode: str  # baseline | coalesced
    batch_max: int
    window_ms: float
    load: str = ""
    sent: int = 0
    replied: int = 0
    burst_s: float = 0.0  # first buy written -> last reply read
    settled_per_s: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    statuses: dict[str, int] = field(default_factory=dict)
    orders: int = -1
    books: str = ""
    server_cpu: float = 0.0
    postgres_cpu: float = 0.0
    gen_cpu: float = 0.0
    others_cpu: float = 0.0
    events_per_buyer: float = 0.0
    server_ms_per_buy: float = float("nan")  # server CPU over the burst / buys sent
    gc_ms: float = float("nan")  # time inside the server's garbage collector over the burst
    gc_full: int = -1  # full (generation 2) collections over the burst
    variant: str = ""  # --server-tree / --compare: what this row's server had instead of the shipped one
    profiled: bool = False
    failed: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return bool(self.replied) and not self.profiled

    def line(self) -> str:
        st = dict(self.statuses)
        ok, sold_out = st.pop("ok", 0), st.pop("sold_out", 0)
        other = ", ".join(f"{k} {v}" for k, v in sorted(st.items())) or "0"
        verdict = "ok" if not self.failed else "FAILED: " + "; ".join(self.failed)
        mode = self.mode if self.mode == "baseline" else f"coalesced {self.batch_max}/{self.window_ms:g} ms"
        if self.variant:
            mode += f", {self.variant}"
        return (
            f"| {self.buyers:,} | {self.units:,} | {self.spread_ms:g} | {mode} | {self.settled_per_s:,.0f} "
            f"| {self.p50_ms:.0f} | {self.p99_ms:.0f} | {self.max_ms:.0f} | {ok} | {sold_out} | {other} "
            f"| {self.orders} | {self.books} | {self.server_cpu:.0f} | {self.postgres_cpu:.0f} | {self.gen_cpu:.0f} "
            f"| {self.others_cpu:.0f} | {self.server_ms_per_buy:.3f} | {self.gc_ms:.0f} | {self.gc_full} "
            f"| {self.events_per_buyer:.0f} | {self.load} "
            f"| {verdict}{' (py-spy attached)' if self.profiled else ''} |"
        )


HEADER = (
    "| B | S | spread ms | mode (batch/window) | settled/s | p50 ms | p99 ms | max ms | ok | sold_out | other "
    "| orders | books | server CPU % | postgres CPU % | generators CPU % | others CPU % | server CPU ms/buy "
    "| GC ms | full GCs | room frames/buyer | loadavg | result |\n"
    "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
)


class Bench:
    def __init__(self, args: argparse.Namespace, dsn: str):
        self.args = args
        self.dsn = dsn
        self.tag = secrets.token_hex(3)
        self.seq = 0
        self.tokens: list[str] = []
        self.seller_token = ""
        self.live_stream = ""  # the seller's stream a row started and has not ended
        self.pipes: list = []
        self.gens: list = []
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=args.procs, thread_name_prefix="pipe")
        self.server: subprocess.Popen | None = None
        self.logfile = None
        self.gc_file = Path(tempfile.gettempdir()) / f"livehub-flash-gc-{os.getpid()}.json"

    async def sql(self, query: str, *params):
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(query, *params)
        finally:
            await conn.close()

    # -- accounts and the shop -------------------------------------------------------------------

    async def make_buyers(self, n: int) -> None:
        t0 = time.perf_counter()
        conn = await asyncpg.connect(self.dsn)
        try:
            await migrate(conn)  # a new database: the tables, as the server would make them
            ids, self.tokens = await signed_in_users(conn, f"flash-{self.tag}", n)
            await conn.execute("SELECT top_up(u, $2, 'flashsale bench') FROM unnest($1::uuid[]) u", ids, WALLET)
        finally:
            await conn.close()
        log(f"{n:,} buyers (users, sessions, wallet top-ups) by SQL in {time.perf_counter() - t0:.1f} s")

    async def rest(self, http: aiohttp.ClientSession, path: str, body: dict | None = None, status: int = 200):
        headers = {"Authorization": f"Bearer {self.seller_token}"} if self.seller_token else {}
        async with http.post(path, json=body, headers=headers) as res:
            if res.status != status:
                raise RuntimeError(f"POST {path}: {res.status} {await res.text()}")
            return await res.json()

    async def make_seller(self, http: aiohttp.ClientSession) -> None:
        email = f"flash-seller-{self.tag}@bench.test"
        body = {"email": email, "password": PASSWORD, "display_name": "Flash seller"}
        registered = await self.rest(http, "/api/auth/register", body, 201)
        self.seller_token = registered["token"]
        http.cookie_jar.clear()
        # Applying to sell needs a verified email (the emailed link, which a bench does not read).
        await self.sql("UPDATE users SET email_verified_at = now() WHERE id = $1", registered["user"]["id"])
        seller = (await self.rest(http, "/api/sellers/apply", {"shop_name": f"Flash {self.tag}"}, 201))["seller"]
        await self.sql("SELECT set_seller_status($1, 'approved', NULL)", seller["id"])

    async def make_stream(self, http: aiohttp.ClientSession, stock: int) -> tuple[str, str]:
        self.seq += 1
        variant = {"sku": f"FLASH-{self.tag}-{self.seq}", "price_cents": PRICE, "stock": stock}
        product = await self.rest(http, "/api/products", {"title": "Flash item", "variants": [variant]}, 201)
        product = product["product"]
        body = {"title": f"Flash sale {self.seq}", "products": [{"product_id": product["id"]}]}
        stream_id = (await self.rest(http, "/api/streams", body, 201))["stream"]["id"]
        if self.live_stream:
            # A row that stopped early (buyers that could not connect) left its stream live: a shop is live
            # in one stream at a time.
            with contextlib.suppress(RuntimeError):
                await self.rest(http, f"/api/streams/{self.live_stream}/end")
        await self.rest(http, f"/api/streams/{stream_id}/start")
        self.live_stream = stream_id
        return stream_id, product["variants"][0]["id"]

    # -- processes -------------------------------------------------------------------------------

    def start_generators(self) -> None:
        self.gens, self.pipes = start_generators(generator_main, [(i, self.args.procs) for i in range(self.args.procs)])

    def stop_generators(self) -> None:
        stop_generators(self.gens, self.pipes)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def ask(self, msg: tuple, timeout: float) -> list:
        return await ask_all(self.executor, self.pipes, [msg] * len(self.pipes), timeout)

    def start_server(self, env: dict[str, str], port: int, tree: str = "") -> None:
        self.logfile = tempfile.NamedTemporaryFile(prefix="livehub-flash-server-", suffix=".log", delete=False)
        # Cheap hashing only makes registering the seller fast; buyers are made by SQL.
        env = env | {"DATABASE_URL": self.dsn, GC_FILE_ENV: str(self.gc_file), **CHEAP_PASSWORD_HASHING}
        if tree:
            # This script serves, but `livehub` (and `storage`) are imported from the other checkout.
            env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, os.environ.get("PYTHONPATH")) if p)
        self.server = spawn_server(Path(__file__).resolve(), port, env, self.logfile)

    def stop_server(self) -> None:
        if self.server is None:
            return
        stop_process(self.server)
        self.server = None
        self.logfile.close()
        text = Path(self.logfile.name).read_text(errors="replace")
        os.unlink(self.logfile.name)
        bad = [ln for ln in text.splitlines() if " WARNING " in ln or " ERROR " in ln or "Traceback" in ln]
        if bad:
            log(f"  the server logged {len(bad)} warnings/errors, first: " + " | ".join(bad[:3]))

    async def wait_quiet(self) -> float:
        """Others' CPU % over one second, after waiting (up to --wait-quiet s) for it to fall under --busy-cpu."""
        ours = [os.getpid(), *(g.pid for g in self.gens)]
        return await wait_quiet(lambda: {pid: cpu_ticks(pid) for pid in ours}, self.args.busy_cpu, self.args.wait_quiet)

    # -- one row ---------------------------------------------------------------------------------

    async def row(
        self, b: int, s: int, spread_ms: float, batch_max: int, window_ms: float, variant: Variant = NO_VARIANT
    ) -> Row:
        args = self.args
        mode = "baseline" if batch_max == 1 else "coalesced"
        row = Row(b, s, spread_ms, mode, batch_max, window_ms, variant=variant.label)
        others = await self.wait_quiet()
        row.load = loadavg()
        log(f"B={b:,} S={s:,} spread {spread_ms:g} ms, {row.mode} (batch {batch_max}, window {window_ms:g} ms): ")
        log(f"  loadavg {row.load}, others {others:.0f} % CPU")
        await self.sql("VACUUM ANALYZE")  # no row inherits the previous one's dead tuples
        port = free_port()
        settings = {"LIVEHUB_BUY_BATCH_MAX": str(batch_max), "LIVEHUB_BUY_WINDOW_MS": f"{window_ms:g}"}
        self.start_server(settings | variant.env, port, variant.tree)
        profiler = prof_path = None
        results: list[dict] = []
        try:
            base = f"http://{HOST}:{port}"
            await wait_ready(base, self.server)
            async with aiohttp.ClientSession(base) as http:
                if not self.seller_token:
                    await self.make_seller(http)
                stream_id, variant_id = await self.make_stream(http, stock=b)
                k = len(self.pipes)
                budget = max(60.0, b / 100)
                t0 = time.perf_counter()
                connects = await ask_all(
                    self.executor,
                    self.pipes,
                    [("connect", port, stream_id, self.tokens[i:b:k], budget) for i in range(k)],
                    budget + 30,
                )
                failed = sum(r["failed"] for r in connects)
                log(f"  {b:,} buyers connected in {time.perf_counter() - t0:.1f} s, {failed} failed")
                if failed:
                    row.failed.append(f"{failed} buyers could not connect: {connects[0]['errors']}")
                    return row
                # The host connects last: a socket nobody reads while 10,000 buyers join fills up and is
                # closed as too slow (4008).
                async with http.ws_connect(f"/ws/streams/{stream_id}", params={"token": self.seller_token}) as host:
                    sale = {"type": "flash_sale", "variant_id": variant_id, "price_cents": FLASH_PRICE}
                    await host.send_json(sale | {"quantity": s, "duration_s": 600})
                    sale_id = await _sale_started(host)
                    await asyncio.sleep(args.settle)  # every buyer has had the sale's event; the room is idle
                    if sum(await self.ask(("alive",), 30)) < b:
                        row.failed.append("buyers dropped before the sale")
                        return row
                    gc0 = read_gc(self.server.pid, self.gc_file)  # before py-spy: its own cost is not profiled
                    if args.profile and mode == "coalesced":
                        prof_path, profiler = self.start_profiler(row)
                        row.profiled = True
                    server0, gens0 = cpu_ticks(self.server.pid), sum(cpu_ticks(g.pid) for g in self.gens)
                    self0, busy0, pg0 = cpu_ticks(os.getpid()), machine_busy()[0], proc_ticks_named("postgres")
                    w0 = time.perf_counter()
                    fire = ("fire", variant_id, sale_id, time.monotonic_ns() + 300_000_000, int(spread_ms * 1e6), b)
                    results = await self.ask(
                        (*fire, f"{self.tag}{self.seq}", args.timeout), args.timeout + spread_ms / 1000 + 30
                    )
                    wall = time.perf_counter() - w0
                    server1, gens1 = cpu_ticks(self.server.pid), sum(cpu_ticks(g.pid) for g in self.gens)
                    self1, busy1, pg1 = cpu_ticks(os.getpid()), machine_busy()[0], proc_ticks_named("postgres")
                    spy = 0
                    if profiler is not None:
                        spy = cpu_ticks(profiler.pid)
                        stop_profiler(profiler)
                    # After every CPU reading and py-spy: the dump's own cost is in neither.
                    gc1 = read_gc(self.server.pid, self.gc_file)
                    if gc0 and gc1:
                        row.gc_ms = 1000 * (gc1["s"] - gc0["s"])
                        row.gc_full = gc1["runs"][2] - gc0["runs"][2]
                        log(
                            f"  server GC: {gc0['tracked']:,} objects tracked, {gc0['frozen']:,} frozen, thresholds "
                            f"{gc0['threshold']}; over the burst {row.gc_ms:.0f} ms in "
                            f"{[a - z for a, z in zip(gc1['runs'], gc0['runs'], strict=True)]} collections by "
                            f"generation, longest so far {1000 * gc1['max_s']:.0f} ms"
                        )
                    pg = ticks_between(pg0, pg1)
                    row.server_cpu = 100 * (server1 - server0) / CLK_TCK / wall
                    row.server_ms_per_buy = 1000 * (server1 - server0) / CLK_TCK / b
                    row.gen_cpu = 100 * (gens1 - gens0) / CLK_TCK / wall
                    row.postgres_cpu = 100 * pg / CLK_TCK / wall
                    ours = (server1 - server0) + (gens1 - gens0) + (self1 - self0) + pg + spy
                    row.others_cpu = max(0.0, 100 * (busy1 - busy0 - ours) / CLK_TCK / wall)
                    await self.ask(("close",), 60)
                await self.rest(http, f"/api/streams/{stream_id}/end")
                self.live_stream = ""
        finally:
            if profiler is not None and profiler.poll() is None:
                stop_profiler(profiler)
            self.stop_server()
        tally(row, results)
        await self.check(row, stream_id, variant_id, sale_id, results)
        if prof_path is not None:
            log(summarize_profile(prof_path, args.profile_rate, row.burst_s))
        return row

    def start_profiler(self, row: Row) -> tuple[Path, subprocess.Popen]:
        out = Path(self.args.profile)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"flash-B{row.buyers}-S{row.units}-batch{row.batch_max}-w{row.window_ms:g}.txt"
        spy = Path(sys.executable).with_name("py-spy")
        cmd = [str(spy if spy.exists() else "py-spy"), "record", "--pid", str(self.server.pid), "--nonblocking"]
        cmd += ["--rate", str(self.args.profile_rate), "--format", "raw", "--output", str(path)]
        if self.args.profile_native:
            cmd.append("--native")  # C frames too: the collector, the websocket reader, orjson
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.logfile, start_new_session=True)
        time.sleep(0.5)  # let it attach before the burst
        return path, proc

    async def check(self, row: Row, stream_id: str, variant_id: str, sale_id: str, results: list[dict]) -> None:
        if not results:
            return
        s, b = row.units, row.buyers
        if row.replied < b:
            row.failed.append(f"{b - row.replied} of {b} buys unanswered within {self.args.timeout:g} s")
        if row.statuses.get("ok", 0) != s:
            row.failed.append(f"{row.statuses.get('ok', 0)} ok replies, not {s}")
        if unexpected := {k: v for k, v in row.statuses.items() if k not in ("ok", "sold_out")}:
            row.failed.append(f"unexpected statuses {unexpected}")
        orders = await self.sql("SELECT id::text, buyer_id, total_cents FROM orders WHERE stream_id = $1", stream_id)
        ((stock, moved),) = await self.sql(
            "SELECT stock, (SELECT sum(delta) FROM stock_movements WHERE variant_id = $1) FROM variants WHERE id = $1",
            variant_id,
        )
        sale = (await self.sql("SELECT quantity, sold, ended_reason FROM flash_sales WHERE id = $1", sale_id))[0]
        books = orjson.loads((await self.sql("SELECT check_books()::text"))[0][0])
        row.orders = len(orders)
        row.books = "balanced" if books.get("balanced") else "NOT balanced"
        if row.orders != s:
            row.failed.append(f"{row.orders} orders for the stream, not {s}")
        if {o["id"] for o in orders} != {i for r in results for i in r["order_ids"]}:
            row.failed.append("the orders in the database are not the ok replies' orders")
        if len({o["buyer_id"] for o in orders}) != len(orders):
            row.failed.append("a buyer got more than one unit (per-buyer limit 1)")
        if any(o["total_cents"] != FLASH_PRICE for o in orders):
            row.failed.append("an order not at the flash price")
        if b - stock != s or stock != moved:
            row.failed.append(f"stock fell by {b - stock} (now {stock}, movements say {moved}), not {s}")
        if (sale["sold"], sale["quantity"], sale["ended_reason"]) != (s, s, "sold_out"):
            row.failed.append(f"flash sale {dict(sale)}: not sold {s} of {s} and ended sold_out")
        if not books.get("balanced"):
            row.failed.append(f"check_books: {books}")

    async def run(self) -> list[Row]:
        args = self.args
        await self.make_buyers(max(args.buyers))
        coalesced = [(n, w) for n in args.batch_max for w in args.window_ms]
        variants = [Variant(f"server of {args.server_tree}", tree=args.server_tree)] if args.server_tree else []
        variants += [Variant(", ".join(env), env=dict(kv.split("=", 1) for kv in env)) for env in args.compare]
        modes = (
            ([] if args.no_baseline else [(1, args.window_ms[0], NO_VARIANT)])
            + [(n, w, v) for n, w in coalesced for v in variants]
            + [(n, w, NO_VARIANT) for n, w in coalesced]
        )
        rows = []
        for spread in args.spread_ms:
            for b in args.buyers:
                for s in sorted({min(b, u or b // 2) for u in args.units}):
                    for batch_max, window_ms, variant in modes:
                        rows.append(await self.row(b, s, spread, batch_max, window_ms, variant))
                        log(rows[-1].line())
        return rows


async def _sale_started(host: aiohttp.ClientWebSocketResponse) -> str:
    async with asyncio.timeout(15):
        while True:
            frame = await host.receive_json()
            if frame["type"] == "error":
                raise RuntimeError(f"flash sale refused: {frame}")
            for e in frame.get("events", []) if frame["type"] == "events" else []:
                if e["type"] == "flash_sale" and not e["flash_sale"].get("ended"):
                    return e["flash_sale"]["id"]


def stop_profiler(proc: subprocess.Popen) -> None:
    """Ctrl-C makes py-spy write its file; it may take a while."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def tally(row: Row, results: list[dict]) -> None:
    sent = [t for r in results for t in r["sent_ns"] if t]
    pairs = [(s, r) for res in results for s, r in zip(res["sent_ns"], res["reply_ns"], strict=True) if s and r]
    row.sent, row.replied = len(sent), len(pairs)
    row.statuses = dict(Counter(st or "no reply" for r in results for st in r["status"]))
    if not pairs:
        return
    row.burst_s = (max(r for _, r in pairs) - min(sent)) / 1e9
    row.settled_per_s = row.replied / row.burst_s
    lat = sorted((r - s) / 1e6 for s, r in pairs)
    row.p50_ms, row.p99_ms, row.max_ms = nearest_rank(lat, 0.50), nearest_rank(lat, 0.99), lat[-1]
    row.events_per_buyer = sum(r["events"] for r in results) / row.sent
    closed = Counter()
    for r in results:
        closed.update({int(k): v for k, v in r["closed"].items()})
    if closed:
        row.failed.append(f"buyers closed during the burst: {dict(closed)}")


# Where a sample of the server's main thread goes: the first bucket whose marker is in the stack wins.
PROFILE_BUCKETS = (
    ("send(): room fan-out (FanOut.flush)", ("FanOut.flush", "beat_forever", "Room.tick")),
    ("buy_batch call: asyncpg, JSON", ("asyncpg", "Checkout._settle", "orjson")),
    ("frame validation (pydantic)", ("live/protocol.py", "_pydantic_core")),
    ("buy bookkeeping (room, checkout, reply)", ("live/commands.py", "Checkout.buy", "Checkout._drain", "ws.py")),
    ("reading frames (aiohttp websocket reader)", ("web_ws.py", "reader_c", "_read_ready")),
    ("waiting for I/O (epoll)", ("epoll_wait", "EpollSelector.select")),
)


def summarize_profile(path: Path, rate: int, burst_s: float, top: int = 15) -> str:
    """py-spy's raw stacks (`frame;frame;... count` lines) of the server's main thread: shares by bucket,
    then by function (self and inclusive)."""
    if not path.exists():
        return f"profile: {path} was not written"
    stacks: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit() and "Thread._bootstrap" not in stack:
            stacks[stack] += int(count)
    total = sum(stacks.values())
    if not total:
        return f"profile: {path} is empty"
    buckets: Counter[str] = Counter()
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for stack, n in stacks.items():
        buckets[next((b for b, marks in PROFILE_BUCKETS if any(m in stack for m in marks)), "other")] += n
        frames = [_frame_name(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    pct = [(f"    {100 * n / total:5.1f} %  {name}") for name, n in buckets.most_common()]
    return "\n".join(
        [
            f"profile {path}: {total} samples at {rate}/s over a {burst_s:.2f} s burst",
            "  by bucket:",
            *pct,
            "  self:",
            *(f"    {100 * n / total:5.1f} %  {f}" for f, n in own.most_common(top)),
            "  inclusive:",
            *[f"    {100 * n / total:5.1f} %  {f}" for f, n in incl.most_common() if n < 0.95 * total][:top],
        ]
    )


def _frame_name(frame: str) -> str:
    """py-spy's "func (path/to/file.py:123)" -> "func (file.py)"."""
    func, _, where = frame.partition(" (")
    return f"{func} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else func


def ratios(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        if r.mode != "coalesced" or not r.measured:
            continue
        base = next((x for x in rows if x.mode == "baseline" and x.measured and _same(x, r)), None)
        if base is not None:
            out.append(
                f"B={r.buyers:,} S={r.units:,} spread {r.spread_ms:g} ms: coalesced (batch {r.batch_max}, window "
                f"{r.window_ms:g} ms{_variant(r)}) {r.settled_per_s:,.0f}/s vs baseline {base.settled_per_s:,.0f}/s "
                f"= {r.settled_per_s / base.settled_per_s:.1f}x"
            )
    return out


def _variant(row: Row) -> str:
    return f", {row.variant}" if row.variant else ""


def _same(a: Row, b: Row) -> bool:
    return (a.buyers, a.units, a.spread_ms) == (b.buyers, b.units, b.spread_ms)


def targets(rows: list[Row]) -> list[str]:
    out = []
    for r in rows:
        if r.mode == "coalesced" and r.measured:
            out.append(
                f"B={r.buyers:,} S={r.units:,} spread {r.spread_ms:g} ms (batch {r.batch_max}{_variant(r)}): "
                f"settled/s {r.settled_per_s:,.0f} {'>=' if r.settled_per_s >= 10_000 else '<'} 10,000; "
                f"p99 {r.p99_ms:.0f} ms {'<' if r.p99_ms < 250 else '>='} 250; "
                f"{'exactly S orders, books balanced' if not r.failed else 'CHECK FAILED'}"
            )
    return out


def plot(rows: list[Row], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.measured]
    labels = list(dict.fromkeys(f"B={r.buyers:,}\nS={r.units:,}\nspread {r.spread_ms:g} ms" for r in rows))

    def label(r: Row) -> str:
        return "baseline" if r.mode == "baseline" else f"coalesced {r.batch_max}{_variant(r)}"

    modes = list(dict.fromkeys(label(r) for r in rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        got = [r for r in rows if label(r) == mode]
        xs = [
            labels.index(f"B={r.buyers:,}\nS={r.units:,}\nspread {r.spread_ms:g} ms")
            + (i - (len(modes) - 1) / 2) * width
            for r in got
        ]
        ax1.bar(xs, [r.settled_per_s for r in got], width, label=mode)
        ax2.bar(xs, [r.p99_ms for r in got], width, label=mode)
    ax1.axhline(10_000, color="grey", linestyle="--", linewidth=1, label="target 10,000/s")
    ax2.axhline(250, color="grey", linestyle="--", linewidth=1, label="target p99 250 ms")
    ax2.set_yscale("log")
    for ax, title in ((ax1, "buy attempts settled per second"), (ax2, "p99 buy -> reply (ms, log scale)")):
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Flash sale over websockets, one server process, 2 shared cores (bench/flashsale.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")


async def postgres_facts(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        version = await conn.fetchval("SHOW server_version")
        settings = [f"{n}={await conn.fetchval(f'SHOW {n}')}" for n in ("synchronous_commit", "shared_buffers")]
    finally:
        await conn.close()
    return f"PostgreSQL {version}, " + ", ".join(settings)


def report(facts: dict, rows: list[Row]) -> str:
    return "\n".join(
        [
            f"{facts['date_utc']} at {facts['commit']}; {facts['cores']} cores ({facts['cpu']}), "
            f"{facts['mem_total_gib']} GiB; Python {facts['python']}, aiohttp {facts['aiohttp']}; "
            f"{facts['postgres']}; {facts['procs']} load generators on the same cores; "
            f"loadavg at start {facts['loadavg_at_start']}, at end {facts['loadavg_at_end']}.",
            "",
            HEADER,
            *(r.line() for r in rows),
            "",
            "coalesced / baseline (settled/s, same B, S and spread):",
            *ratios(rows),
            "",
            "targets (>= 10,000 settled/s, p99 < 250 ms, exactly S orders; >= 4x the baseline above):",
            *targets(rows),
        ]
    )


def bench(args: argparse.Namespace) -> None:
    dsn = os.environ.get("DATABASE_URL") or DEFAULT_DSN
    asyncio.run(ensure_database(dsn))
    facts = machine_facts() | {"postgres": asyncio.run(postgres_facts(dsn)), "procs": args.procs}
    log("machine:", orjson.dumps(facts).decode())
    runner = Bench(args, dsn)
    try:
        runner.start_generators()
        rows = asyncio.run(runner.run())
    finally:
        runner.stop_server()
        runner.stop_generators()
    facts["loadavg_at_end"] = loadavg()
    if args.json:
        Path(args.json).write_bytes(orjson.dumps({"facts": facts, "rows": [asdict(r) for r in rows]}))
    if args.plot:
        plot(rows, args.plot)
    print(report(facts, rows))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--buyers", type=ints, help="comma-separated B (default 2000,10000)")
    ap.add_argument("--units", type=ints, help="comma-separated S; 0 means B/2 (default 200,0)")
    ap.add_argument("--spread-ms", type=ints, default=[0], help="0 = all at once (default), N = evenly over N ms")
    ap.add_argument("--batch-max", type=ints, default=[50], help="LIVEHUB_BUY_BATCH_MAX when coalesced (default 50)")
    ap.add_argument("--window-ms", type=ints, default=[5], help="LIVEHUB_BUY_WINDOW_MS (default 5)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the LIVEHUB_BUY_BATCH_MAX=1 rows")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes (default 2)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between the sale's start and the burst")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every reply (default 120)")
    quiet_options(ap, retries=False)
    ap.add_argument("--profile", help="py-spy the server during coalesced bursts; raw stacks go to this directory")
    ap.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second (default 200)")
    ap.add_argument("--profile-native", action="store_true", help="py-spy --native: C frames (the collector) too")
    ap.add_argument(
        "--server-tree",
        help="also run each coalesced row with the server imported from this checkout (a git worktree of an "
        "earlier commit): before and after side by side",
    )
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        type=lambda v: [kv for kv in v.split(",") if kv],
        metavar="ENV=VALUE[,ENV=VALUE]",
        help="also run each coalesced row with these server settings (e.g. LIVEHUB_GC_FREEZE_INTERVAL_S=0); repeatable",
    )
    ap.add_argument("--quick", action="store_true", help="B=500, S=50 and 250")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--plot", help="also draw settled/s and p99 per row to this PNG (needs matplotlib)")
    ap.add_argument("--from-json", help="no run: report (and --plot) an earlier --json file")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: be the server on this port
    args = ap.parse_args(argv)
    if args.quick:
        args.buyers, args.units = args.buyers or [500], args.units or [50, 0]
    args.buyers = args.buyers or [2000, 10000]
    args.units = args.units if args.units is not None else [200, 0]
    if min(args.buyers) < 1 or min(args.units) < 0 or min(args.spread_ms) < 0 or args.procs < 1:
        ap.error("--buyers and --procs must be positive; --units and --spread-ms not negative")
    if min(args.batch_max) < 2 or min(args.window_ms) < 0:
        ap.error("--batch-max must be at least 2 (1 is the baseline); --window-ms not negative")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve_livehub(args.serve, prepare=gc_probe)
    elif args.from_json:
        data = orjson.loads(Path(args.from_json).read_bytes())
        nan = float("nan")  # JSON has no NaN: a row without replies comes back with nulls
        rows = [Row(**{k: nan if v is None else v for k, v in r.items()}) for r in data["rows"]]
        print(report(data["facts"], rows))
        if args.plot:
            plot(rows, args.plot)
    else:
        run_orchestrator(lambda: bench(args))


if __name__ == "__main__":
    main()
