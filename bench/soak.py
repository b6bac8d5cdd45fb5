"""Soak: two server processes under a steady mixed load for minutes, one restarted in the middle, sampled
every 10 s for memory, open files, asyncio tasks and database connections; then the books and the orders
checked.

    python bench/soak.py --plot docs/bench-soak.png        # 10 minutes, 2,000 viewers (the documented run)
    python bench/soak.py --minutes 1 --viewers 200         # a short run while developing
    python bench/soak.py --from-csv /tmp/livehub-soak/samples.csv --plot docs/bench-soak.png   # plot again, no run
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/livehub_bench_soak REDIS_URL=redis://127.0.0.1:6379/0 ...

What runs:

- Two nodes (``livehub.app.serve`` as ``run.py`` uses it, no access log), each a process of its own on
  127.0.0.1 and a free port, on one database (DATABASE_URL, default ``livehub_bench_soak``, created if
  missing; ``test`` is refused) and one Redis (REDIS_URL, default redis://127.0.0.1:6379/0, under a key
  prefix of the run's own, deleted afterwards). Every setting is the default except cheap password hashing
  (to register the seller quickly), the per-address cap on anonymous sockets (every viewer comes from
  127.0.0.1), a data directory of the run's own (order emails are written there as files) and the log level.
- A seller's live stream (made through the REST API) featuring one product, pinned by the host, whose
  websocket is on node A. Every ``--flash-every`` s (60) the host starts a flash sale of ``--flash-units``
  (100) for 20 s.
- ``--viewers`` (2,000) viewers on the stream's websocket, half on each node, from ``--procs`` load-generator
  processes (separate from the servers, so their CPU is not the servers'). ``--signed-in`` (half) of them
  are signed in (accounts made by SQL, each topped up once through ``POST /api/wallet/top-up``, the dev
  payment provider); the others are anonymous, each with a ``client_id`` of its own.
- Churn: every ``--churn-every`` s (5) a ``--churn`` share (2 %) of the viewers leave (a close frame) and as
  many new ones join the same node, signed in or not as the leaver was.
- Chat (``--chat-per-s``, 10/s in all) and reactions (``--reactions-per-s``, 50/s) from random signed-in
  viewers; buys (``--buys-per-s``, 2/s): a random signed-in viewer tops its wallet up through REST, then buys
  the pinned product over its websocket; a flash sale's start makes each signed-in viewer that sees it buy
  with ``--flash-share`` (30 %) probability.
- At ``--restart-at`` (0.4) of the run node B gets SIGTERM (it closes its sockets with 1001) and is started
  again on the same port. Its viewers reconnect as static/js/room.js does: the same node, backoff 0.5 s
  doubling to 8 s with jitter, ``?since=&epoch=`` of the last durable offset they applied. Every viewer
  checks that durable offsets arrive without gaps or repeats, and counts recovered and fresh welcomes.

Sampled every ``--sample-s`` (10) s per server process: RSS (VmRSS), open file descriptors (/proc/PID/fd),
asyncio tasks and the interpreter's allocated blocks (``sys.getallocatedblocks``), read with SIGUSR1 from a
probe this script installs in its own server processes (``common.install_probe``: nothing in the server
changes), and the database's connections (``pg_stat_activity`` for the bench database). Samples go to
``<out>/samples.csv``, the summary to ``<out>/summary.json``, the plot to ``--plot``.

At the end, still under load, one more sample per node right after the collector's sweep (``swept_facts``:
``gc.unfreeze(); gc.collect(); gc.freeze()``, what a node does by itself every ``LIVEHUB_GC_SWEEP_INTERVAL_S``,
15 min, longer than a default run): reference cycles among objects frozen out of the collector's walks are
freed only by a sweep, so growth that a sweep takes back is deferred collection, not a leak. That sample is
reported apart and left out of the growth figures.

Growth over the last half of the run, per node and metric: a least-squares line through the samples of the
last half, its rise over that span as a share of where it starts; for the restarted node (and the database's
connections) only from the first sample at which 95 % of its viewers were back. Target: under 5 % for RSS
and tasks.

Checked afterwards: ``check_books()`` balanced; every order a buyer was told ``ok`` exists for the stream,
and every order of the stream is one a buyer was told ``ok`` or one whose reply never came (its socket was
closed by the restart); the variant's stock never went negative (no movement left it below 0) and equals
its movements; no flash sale sold more than its quantity, and each one's order items add up to its sold.

Every loop is bounded in time and in count; servers and load generators are stopped on exit, Ctrl-C or
failure, and die with this process if it is killed. Run it under ``flock /tmp/livehub-bench.lock``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import csv
import json
import os
import random
import re
import secrets
import shutil
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from common import (
    CHEAP_PASSWORD_HASHING,
    HOST,
    PROBE_ENV,
    RawWebsocket,
    ask_all,
    drop_redis_prefix,
    drop_server_log,
    ensure_database,
    free_port,
    handshake_request,
    install_probe,
    live_stream,
    loadavg,
    log,
    machine_facts,
    masked_text_frame,
    migrate,
    open_fds,
    read_probe,
    rss_kb,
    run_generator,
    run_orchestrator,
    serve_livehub,
    signed_in_users,
    spawn_server,
    start_generators,
    stop_generators,
    stop_process,
    wait_ready,
)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/livehub_bench_soak"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
PRICE = 1000  # the product's list price, cents (common.live_stream)
FLASH_PRICE = 400
FLASH_DURATION_S = 20
STOCK = 10_000_000  # far more than a run sells
FIRST_TOP_UP = 20_000  # cents: every signed-in account, once, before the load (pays for flash buys)
REACTION_KINDS = ("heart", "fire", "clap", "laugh", "wow")
FINAL_CODES = (4001, 4003, 4004)  # reconnecting cannot help (as static/js/room.js)
CONNECTS_IN_FLIGHT = 50  # per generator: handshakes started and not yet welcomed
CONNECT_TIMEOUT_S = 30.0
CONNECT_ATTEMPTS = 30  # per (re)connect; backoff 0.5 s doubling to 8 s: several minutes at most
BUYS_IN_FLIGHT = 20  # per generator: regular buys (top-up + buy) waiting
DRAIN_S = 15.0  # at the end: how long replies still due may take
OFFSET_RE = re.compile(rb'"offset":(\d+)')
EVENTS = b'{"type":"events"'
WELCOME = b'{"type":"welcome"'
REPLIES = (b'{"type":"ack"', b'{"type":"purchase"', b'{"type":"error"')
FLASH_MARK = b'"type":"flash_sale"'
CLOSE_FRAME = b"\x88\x82\0\0\0\0\x03\xe8"  # a masked close frame, 1000


# -- the server ----------------------------------------------------------------------------------------


def server_facts() -> dict:
    """What the probe reports: asyncio tasks (and the coroutines most of them run), allocated blocks."""
    import sys

    tasks = asyncio.all_tasks(asyncio.get_running_loop())
    names = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in tasks)
    return {"tasks": len(tasks), "blocks": sys.getallocatedblocks(), "top_tasks": names.most_common(8)}


def swept_facts() -> dict:
    """The facts after the sweep the node's collector makes every LIVEHUB_GC_SWEEP_INTERVAL_S (15 min, longer
    than a default run; livehub/collector.py): reference cycles among objects frozen out of the collector's
    walks (sockets closed since) are freed only then, so the growth they make is told apart from a leak."""
    import gc

    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return server_facts() | {"swept": found}


def serve(port: int) -> None:
    def prepare() -> None:
        install_probe(server_facts)
        install_probe(swept_facts, signal.SIGUSR2)

    serve_livehub(port, prepare=prepare)


# -- load generators -----------------------------------------------------------------------------------


class Socket(RawWebsocket):
    """One connection of a seat; frames go to the seat."""

    __slots__ = ("seat",)

    def __init__(self, seat: Seat, request: bytes, ready: asyncio.Future):
        super().__init__(request, ready)
        self.seat = seat

    def text_at(self, data, start: int, end: int) -> None:
        self.seat.frame(self, data, start, end)

    def on_closed(self, code: int) -> None:
        self.seat.closed(self, code)


class Seat:
    """A viewer as a page is one: it stays in the room across reconnects, keeping the last durable offset
    and epoch it applied."""

    __slots__ = ("gen", "node", "token", "client_id", "offset", "epoch", "since", "sock", "leaving", "sales", "buying")

    def __init__(self, gen: Generator, node: int, token: str | None):
        self.gen, self.node, self.token = gen, node, token
        self.client_id = None if token else secrets.token_hex(8)
        self.offset: int | None = None
        self.epoch: str | None = None
        self.since: int | None = None  # the offset the current connection asked to recover from
        self.sock: Socket | None = None
        self.leaving = False
        self.sales: set[str] = set()  # flash sales seen starting
        self.buying = 0  # buys waiting for their answer

    @property
    def up(self) -> bool:
        return self.sock is not None and self.sock.opened and not self.sock.done

    def path(self) -> str:
        q = {"token": self.token} if self.token else {"client_id": self.client_id}
        if self.offset is not None and self.epoch:
            q |= {"since": str(self.offset), "epoch": self.epoch}
        return f"/ws/streams/{self.gen.cfg['stream_id']}?" + "&".join(f"{k}={v}" for k, v in q.items())

    async def connect(self) -> None:
        """Connect, and again after a failure, backing off as static/js/room.js does; bounded in attempts
        and by the run's end."""
        gen, loop = self.gen, asyncio.get_running_loop()
        port = gen.cfg["ports"][self.node]
        for attempt in range(CONNECT_ATTEMPTS):
            if self.leaving or gen.stopping:
                return
            async with gen.gate:
                self.since = self.offset if self.epoch else None
                sock = Socket(self, handshake_request(HOST, port, self.path()), loop.create_future())
                self.sock = sock
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        await loop.create_connection(lambda s=sock: s, HOST, port)
                        await sock.ready
                    return
                except asyncio.CancelledError:
                    sock.abort()
                    raise
                except (OSError, TimeoutError, ConnectionError) as exc:
                    sock.abort()
                    gen.stats["connect_failures"] += 1
                    if "(400" in str(exc) or "4004" in str(exc):
                        gen.errors[f"connect: {str(exc)[:120]}"] += 1
            delay = min(8.0, 0.5 * 2 ** min(attempt, 4)) * (0.75 + random.random() / 2)
            await asyncio.sleep(delay)
        gen.stats["gave_up"] += 1

    def leave(self) -> None:
        self.leaving = True
        if self.sock is not None and self.sock.transport is not None and not self.sock.done:
            self.sock.done = True
            self.sock.transport.write(CLOSE_FRAME)
            self.sock.transport.close()

    def closed(self, sock: Socket, code: int) -> None:
        gen = self.gen
        if sock is not self.sock or self.leaving or gen.stopping:
            return
        gen.closes[code] += 1
        if code not in FINAL_CODES:
            gen.spawn(self.connect())

    def send(self, body: dict, kind: str) -> bool:
        if not self.up:
            return False
        gen = self.gen
        gen.seq += 1
        rid = f"{gen.tag}{gen.seq}"
        gen.pending[rid] = (kind, self)
        self.sock.transport.write(masked_text_frame(orjson.dumps(body | {"request_id": rid})))
        gen.sent[kind] += 1
        return True

    # -- frames ---------------------------------------------------------------------------------------

    def frame(self, sock: Socket, data, start: int, end: int) -> None:
        gen = self.gen
        if data.startswith(EVENTS, start):
            for m in OFFSET_RE.finditer(data, start, end):
                o = int(m.group(1))
                if self.offset is None or o == self.offset + 1:
                    self.offset = o
                elif o <= self.offset:
                    gen.stats["repeated_offsets"] += 1
                else:
                    gen.stats["offset_gaps"] += 1
                    self.offset = o
            gen.stats["event_frames"] += 1
            if self.token and data.find(FLASH_MARK, start, end) >= 0:
                self.flash(orjson.loads(bytes(data[start:end]))["events"])
        elif data.startswith(REPLIES, start):
            gen.reply(self, orjson.loads(bytes(data[start:end])))
        elif data.startswith(WELCOME, start):
            msg = orjson.loads(bytes(data[start:end]))
            if self.since is None:
                self.offset = msg["offset"]
            elif msg["recovered"]:
                gen.stats["recovered"] += 1  # the missed events follow, from self.offset + 1
            else:
                gen.stats["not_recovered"] += 1
                self.offset = msg["offset"]
            self.epoch = msg["epoch"]
            if not sock.opened:
                sock.opened = True
                sock.ready.set_result(None)

    def flash(self, events: list[dict]) -> None:
        for e in events:
            sale = e.get("flash_sale") if e.get("type") == "flash_sale" else None
            if sale and not sale["ended"] and sale["id"] not in self.sales:
                self.sales.add(sale["id"])
                if random.random() < self.gen.cfg["flash_share"]:
                    body = {"type": "buy", "variant_id": sale["variant_id"], "flash_sale_id": sale["id"]}
                    self.send(body | {"quantity": 1}, "flash")


class Generator:
    """One load-generator process: its share of the viewers, the churn, and its share of chat, reactions
    and buys."""

    def __init__(self, index: int, cfg: dict):
        self.index, self.cfg = index, cfg
        self.tag = f"g{index}-"
        self.seq = 0
        self.seats: list[Seat] = []
        self.free_tokens: list[str] = list(cfg["tokens"])
        random.shuffle(self.free_tokens)
        self.pending: dict[str, tuple[str, Seat]] = {}
        self.sent: Counter[str] = Counter()
        self.answers: Counter[str] = Counter()  # "<kind> <status>"
        self.orders: dict[str, list[str]] = {"buy": [], "flash": []}
        self.closes: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.tasks: set[asyncio.Task] = set()
        self.stopping = False
        self.gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        self.buy_gate = asyncio.Semaphore(BUYS_IN_FLIGHT)
        self.http: aiohttp.ClientSession | None = None
        self.joined = 0

    def spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def new_seat(self, signed_in: bool, node: int | None = None) -> Seat:
        if node is None:  # the first viewers alternate, so each node gets half of every kind
            node = (self.index + self.joined) % 2
        self.joined += 1
        token = self.free_tokens.pop() if signed_in and self.free_tokens else None
        seat = Seat(self, node, token)
        self.seats.append(seat)
        return seat

    def reply(self, seat: Seat, msg: dict) -> None:
        entry = self.pending.pop(msg.get("request_id"), None)
        if entry is None:
            return
        kind = entry[0]
        if kind in ("buy", "flash"):
            seat.buying -= 1
        if msg["type"] == "purchase":
            self.answers[f"{kind} {msg['status']}"] += 1
            if msg["status"] == "error":  # what went wrong, for the report
                self.errors[f"{kind} error: {str(msg.get('message'))[:100]}"] += 1
            if msg["status"] == "ok":
                self.orders[kind].append(msg["order_id"])
        elif msg["type"] == "error":
            self.answers[f"{kind} error:{msg.get('code')}"] += 1
        else:
            self.answers[f"{kind} ok"] += 1

    def signed_in_up(self) -> Seat | None:
        for _ in range(10):
            seat = random.choice(self.seats) if self.seats else None
            if seat is not None and seat.token and seat.up:
                return seat
        return None

    # -- the load -------------------------------------------------------------------------------------

    async def top_up(self, seat: Seat, cents: int) -> bool:
        url = f"http://{HOST}:{self.cfg['ports'][seat.node]}/api/wallet/top-up"
        headers = {"Authorization": f"Bearer {seat.token}", "Idempotency-Key": secrets.token_hex(12)}
        try:
            async with self.http.post(url, json={"amount_cents": cents}, headers=headers) as res:
                self.answers[f"top_up {res.status}"] += 1
                return res.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.answers[f"top_up {type(exc).__name__}"] += 1
            return False

    async def start(self) -> dict:
        """Every account topped up once through REST, then the first viewers connected."""
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        cfg = self.cfg
        seats = [self.new_seat(i < cfg["signed_in_seats"]) for i in range(cfg["seats"])]
        top_ups = [Seat(self, i % 2, t) for i, t in enumerate(cfg["tokens"])]
        gate = asyncio.Semaphore(20)

        async def first_top_up(seat: Seat) -> bool:
            async with gate:
                return await self.top_up(seat, FIRST_TOP_UP)

        funded = sum(await asyncio.gather(*(first_top_up(s) for s in top_ups)))
        t0 = time.monotonic()
        async with asyncio.timeout(max(60.0, len(seats) / 10)):
            await asyncio.gather(*(s.connect() for s in seats))
        return {"funded": funded, "up": sum(s.up for s in seats), "connect_s": time.monotonic() - t0}

    async def paced(self, per_s: float, seconds: float, action) -> None:
        """`action()` `per_s` times a second for `seconds` (at most per_s * seconds + 1 times)."""
        if per_s <= 0:
            return
        t0 = time.monotonic()
        for n in range(int(per_s * seconds) + 1):
            if self.stopping:
                return
            await asyncio.sleep(max(0.0, t0 + n / per_s - time.monotonic()))
            action()

    def chat(self) -> None:
        if (seat := self.signed_in_up()) is not None:
            seat.send({"type": "chat", "text": f"soak chat {self.tag}{self.seq}"}, "chat")

    def react(self) -> None:
        if (seat := self.signed_in_up()) is not None:
            seat.send({"type": "react", "kind": random.choice(REACTION_KINDS)}, "react")

    def buy(self) -> None:
        seat = self.signed_in_up()
        if seat is None or seat.buying or self.buy_gate.locked():
            self.stats["buys_skipped"] += 1
            return
        self.spawn(self._buy(seat))

    async def _buy(self, seat: Seat) -> None:
        async with self.buy_gate:
            seat.buying += 1
            if await self.top_up(seat, PRICE) and seat.send(
                {"type": "buy", "variant_id": self.cfg["variant_id"], "quantity": 1}, "buy"
            ):
                return
            seat.buying -= 1

    async def churn(self, seconds: float) -> None:
        cfg = self.cfg
        for _ in range(int(seconds / cfg["churn_every"]) + 1):
            await asyncio.sleep(cfg["churn_every"])
            if self.stopping:
                return
            leaving = random.sample(self.seats, min(len(self.seats), round(len(self.seats) * cfg["churn"])))
            for seat in leaving:
                seat.leave()
                self.seats.remove(seat)
                if seat.token:
                    self.free_tokens.insert(0, seat.token)  # the longest-idle account joins next
            for seat in leaving:
                self.spawn(self.new_seat(seat.token is not None, seat.node).connect())
            self.stats["left"] += len(leaving)

    def load(self, seconds: float) -> None:
        cfg = self.cfg
        self.spawn(self.churn(seconds))
        self.spawn(self.paced(cfg["chat_per_s"], seconds, self.chat))
        self.spawn(self.paced(cfg["reactions_per_s"], seconds, self.react))
        self.spawn(self.paced(cfg["buys_per_s"], seconds, self.buy))

    def snapshot(self) -> dict:
        up = [0, 0]
        for seat in self.seats:
            if seat.up:
                up[seat.node] += 1
        return {"up": up, "seats": len(self.seats)}

    async def finish(self) -> dict:
        """Stop the load, give the replies still due up to DRAIN_S, leave; everything counted."""
        self.stopping = True
        deadline = time.monotonic() + DRAIN_S
        while any(k in ("buy", "flash") for k, _ in self.pending.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for seat in self.seats:
            seat.leave()
        if self.http is not None:
            await self.http.close()
        return {
            "sent": dict(self.sent),
            "answers": dict(self.answers),
            "unanswered": dict(Counter(kind for kind, _ in self.pending.values())),
            "orders": self.orders,
            "closes": {str(k): v for k, v in self.closes.items()},
            "errors": dict(self.errors),
            "stats": dict(self.stats),
        }


async def _generator(conn, index: int, cfg: dict) -> None:
    loop = asyncio.get_running_loop()
    gen = Generator(index, cfg)
    while True:
        op, *args = await loop.run_in_executor(None, conn.recv)
        if op == "quit":
            return
        if op == "start":
            conn.send(await gen.start())
        elif op == "load":
            gen.load(*args)
            conn.send(None)
        elif op == "snapshot":
            conn.send(gen.snapshot())
        elif op == "finish":
            conn.send(await gen.finish())


def generator_main(conn, index: int, cfg: dict) -> None:
    run_generator(_generator, conn, index, cfg)


# -- the orchestrator ----------------------------------------------------------------------------------


class Node:
    """A server process that can be restarted on its port."""

    def __init__(self, name: str, port: int, env: dict[str, str]):
        self.name, self.port = name, port
        self.probe = Path(tempfile.gettempdir()) / f"livehub-soak-probe-{os.getpid()}-{name}.json"
        self.env = env | {PROBE_ENV: str(self.probe)}
        self.proc = None
        self.ready = False  # SIGUSR1 kills a process that has not installed the probe yet
        self.logfile = None
        self.started_at = 0.0  # seconds into the run

    async def start(self, at: float = 0.0) -> None:
        self.logfile = tempfile.NamedTemporaryFile(prefix=f"livehub-soak-{self.name}-", suffix=".log", delete=False)
        self.ready = False
        self.proc = spawn_server(Path(__file__).resolve(), self.port, self.env, self.logfile)
        self.started_at = at
        await wait_ready(f"http://{HOST}:{self.port}", self.proc, timeout=120)
        self.ready = True

    def stop(self) -> None:
        self.ready = False
        if self.proc is not None:
            stop_process(self.proc, grace=30)
            drop_server_log(self.logfile, f"node {self.name} (pid {self.proc.pid}) ", lines=8)
            self.proc = None

    def sample(self, sweep: bool = False) -> dict:
        """RSS, open files and the probe's facts; `sweep`: after the collector's sweep (`swept_facts`)."""
        pid = self.proc.pid if self.proc is not None else 0
        signum = signal.SIGUSR2 if sweep else signal.SIGUSR1
        facts = (read_probe(pid, self.probe, 30, signum) if pid and self.ready else None) or {}
        return {
            "node": self.name,
            "pid": pid,
            "rss_kib": rss_kb(pid) if pid else 0,
            "fds": open_fds(pid) if pid else 0,
            "tasks": facts.get("tasks", ""),
            "py_blocks": facts.get("blocks", ""),
            "top_tasks": facts.get("top_tasks", []),
            "swept": facts.get("swept", ""),
        }


class Host:
    """The host's websocket on node A: pins the product, starts flash sales, watches them start and end."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.sales: dict[str, dict] = {}
        self.started: asyncio.Future | None = None
        self.refused: list[dict] = []
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = orjson.loads(msg.data)
            if frame["type"] == "events":
                for e in frame["events"]:
                    if e["type"] == "flash_sale":
                        sale = e["flash_sale"]
                        self.sales[sale["id"]] = sale
                        if not sale["ended"] and self.started is not None and not self.started.done():
                            self.started.set_result(sale["id"])
            elif frame["type"] == "error":
                self.refused.append(frame)
                if self.started is not None and not self.started.done():
                    self.started.set_result(None)

    def running(self) -> bool:
        return any(not s["ended"] for s in self.sales.values())

    async def flash_sale(self, variant_id: str, units: int) -> str | None:
        self.started = asyncio.get_running_loop().create_future()
        body = {"type": "flash_sale", "variant_id": variant_id, "price_cents": FLASH_PRICE, "quantity": units}
        await self.ws.send_json(body | {"duration_s": FLASH_DURATION_S, "request_id": f"sale{len(self.sales)}"})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                return await self.started
        return None


class Soak:
    def __init__(self, args: argparse.Namespace, dsn: str, redis_url: str):
        self.args, self.dsn, self.redis_url = args, dsn, redis_url
        self.tag = secrets.token_hex(3)
        self.seconds = args.minutes * 60
        self.data_dir = Path(tempfile.mkdtemp(prefix="livehub-soak-data-"))
        self.prefix = f"soak-{self.tag}"
        env = {
            "DATABASE_URL": dsn,
            "REDIS_URL": redis_url,
            "LIVEHUB_REDIS_PREFIX": self.prefix,
            "LIVEHUB_DATA_DIR": str(self.data_dir),
            "LIVEHUB_ANONYMOUS_SOCKETS_PER_ADDRESS": "1000000",
            "LIVEHUB_LOG_LEVEL": "WARNING",
            **CHEAP_PASSWORD_HASHING,
        }
        self.nodes = [Node("A", free_port(), env), Node("B", free_port(), env)]
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=args.procs, thread_name_prefix="pipe")
        self.gens: list = []
        self.pipes: list = []
        self.samples: list[dict] = []
        self.t0 = 0.0
        self.restart: dict = {}
        self.sales: list[str] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def ask(self, msg: tuple, timeout: float) -> list:
        return await ask_all(self.executor, self.pipes, [msg] * len(self.pipes), timeout)

    async def db_connections(self) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            # Our own sampling connection is left out.
            return await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()

    async def sample(self, sweep: bool = False) -> None:
        loop = asyncio.get_running_loop()
        t = round(self.now(), 1)
        db = await self.db_connections()
        seen = await self.ask(("snapshot",), 30)
        for i, node in enumerate(self.nodes):
            row = await loop.run_in_executor(None, node.sample, sweep)
            row |= {"t_s": t, "db_connections": db, "viewers": sum(s["up"][i] for s in seen)}
            self.samples.append(row)
        a, b = self.samples[-2:]
        if sweep:
            log(f"  {t:6.0f} s  after the collector's sweep (objects freed: A {a['swept']}, B {b['swept']}):")
        log(
            f"  {t:6.0f} s  "
            + " | ".join(
                f"{r['node']}: {r['rss_kib'] / 1024:.0f} MiB, {r['tasks']} tasks, {r['fds']} fds, {r['viewers']} up"
                for r in (a, b)
            )
            + f" | db {db} | load {loadavg()}"
        )

    async def sampler(self) -> None:
        every = self.args.sample_s
        for n in range(1, int(self.seconds / every) + 1):
            await asyncio.sleep(max(0.0, n * every - self.now()))
            await self.sample()

    async def flash_sales(self, host: Host, variant_id: str) -> None:
        every = self.args.flash_every
        for n in range(int(self.seconds / every) + 1):
            at = every / 2 + n * every
            if at > self.seconds - FLASH_DURATION_S:
                return
            await asyncio.sleep(max(0.0, at - self.now()))
            sale = await host.flash_sale(variant_id, self.args.flash_units)
            log(f"  {self.now():6.0f} s  flash sale {'started ' + sale if sale else 'REFUSED or not seen'}")
            if sale:
                self.sales.append(sale)

    async def restart_b(self) -> None:
        await asyncio.sleep(max(0.0, self.args.restart_at * self.seconds - self.now()))
        node = self.nodes[1]
        t_stop = self.now()
        log(f"  {t_stop:6.0f} s  node B: SIGTERM")
        await asyncio.get_running_loop().run_in_executor(None, node.stop)
        t_down = self.now()
        await node.start(at=t_down)
        self.restart = {"sigterm_s": round(t_stop, 1), "stopped_s": round(t_down, 1), "ready_s": round(self.now(), 1)}
        took = f"stopped in {t_down - t_stop:.1f} s, ready {self.now() - t_down:.1f} s later"
        log(f"  {self.now():6.0f} s  node B back ({took})")

    async def run(self) -> dict:
        args = self.args
        conn = await asyncpg.connect(self.dsn)
        try:
            await migrate(conn)
            accounts = int(args.viewers * args.signed_in * 1.25) + args.procs
            _, tokens = await signed_in_users(conn, f"soak-{self.tag}", accounts)
        finally:
            await conn.close()
        await asyncio.gather(*(n.start() for n in self.nodes))
        base = f"http://{HOST}:{self.nodes[0].port}"
        async with aiohttp.ClientSession(base) as http:
            stream_id, host_token = await live_stream(http, self.dsn, f"soak-{self.tag}", stock=STOCK)
            async with http.ws_connect(f"/ws/streams/{stream_id}", params={"token": host_token}) as ws:
                welcome = await ws.receive_json()
                product = welcome["stream"]["products"][0]
                variant_id = product["variants"][0]["id"]
                await ws.send_json({"type": "pin", "product_id": product["id"], "request_id": "pin"})
                host = Host(ws)
                return await self.load(stream_id, variant_id, tokens, host)

    async def load(self, stream_id: str, variant_id: str, tokens: list[str], host: Host) -> dict:
        args, k = self.args, self.args.procs
        cfgs = []
        for i in range(k):
            seats = args.viewers // k + (i < args.viewers % k)
            cfgs.append(
                {
                    "ports": [n.port for n in self.nodes],
                    "stream_id": stream_id,
                    "variant_id": variant_id,
                    "tokens": tokens[i::k],
                    "seats": seats,
                    "signed_in_seats": round(seats * args.signed_in),
                    "chat_per_s": args.chat_per_s / k,
                    "reactions_per_s": args.reactions_per_s / k,
                    "buys_per_s": args.buys_per_s / k,
                    "churn": args.churn,
                    "churn_every": args.churn_every,
                    "flash_share": args.flash_share,
                }
            )
        self.gens, self.pipes = start_generators(generator_main, [(i, cfgs[i]) for i in range(k)], "soak-gen")
        t = time.perf_counter()
        started = await self.ask(("start",), 600)
        log(
            f"accounts funded through REST: {sum(s['funded'] for s in started):,}; viewers up: "
            f"{sum(s['up'] for s in started):,} of {args.viewers:,} in {time.perf_counter() - t:.0f} s"
        )
        self.t0 = time.monotonic()
        await self.sample()
        await self.ask(("load", self.seconds), 30)
        jobs = [self.sampler(), self.flash_sales(host, variant_id), self.restart_b()]
        await asyncio.gather(*jobs)
        await self.sample(sweep=True)  # still under load; left out of the growth figures
        if host.running():
            await host.ws.send_json({"type": "end_flash_sale", "request_id": "end"})
        results = await self.ask(("finish",), DRAIN_S + 120)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while host.running():
                    await asyncio.sleep(0.2)
        return {"stream_id": stream_id, "variant_id": variant_id, "generators": results, "host": host}

    def stop(self) -> None:
        stop_generators(self.gens, self.pipes)
        self.executor.shutdown(wait=False, cancel_futures=True)
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        drop_redis_prefix(self.redis_url, self.prefix)


# -- checks and figures --------------------------------------------------------------------------------


async def check(dsn: str, run: dict) -> dict:
    """Books, orders, stock and flash sales against what the load generators were told."""
    gens = run["generators"]
    told_ok = {o for g in gens for kind in ("buy", "flash") for o in g["orders"][kind]}
    unanswered = sum(g["unanswered"].get(k, 0) for g in gens for k in ("buy", "flash"))
    conn = await asyncpg.connect(dsn)
    try:
        books = json.loads(await conn.fetchval("SELECT check_books()::text"))
        rows = await conn.fetch("SELECT id::text FROM orders WHERE stream_id = $1", run["stream_id"])
        orders = {r["id"] for r in rows}
        stock, moved, lowest = await conn.fetchrow(
            """SELECT stock, (SELECT sum(delta) FROM stock_movements WHERE variant_id = $1),
                      (SELECT min(stock_after) FROM stock_movements WHERE variant_id = $1)
                 FROM variants WHERE id = $1""",
            run["variant_id"],
        )
        sales = await conn.fetch(
            """SELECT f.id::text, f.quantity, f.sold, f.ended_reason,
                      (SELECT coalesce(sum(quantity), 0) FROM order_items WHERE flash_sale_id = f.id) AS items
                 FROM flash_sales f WHERE f.stream_id = $1 ORDER BY f.starts_at""",
            run["stream_id"],
        )
    finally:
        await conn.close()
    failed = []
    if not books.get("balanced"):
        failed.append(f"check_books: {books}")
    if lost := told_ok - orders:
        failed.append(f"{len(lost)} orders a buyer was told ok are not in the database")
    if len(orders - told_ok) > unanswered:
        failed.append(f"{len(orders - told_ok)} orders nobody was told of, more than the {unanswered} unanswered buys")
    if lowest is not None and lowest < 0 or stock < 0 or stock != moved:
        failed.append(f"stock {stock}, movements {moved}, lowest {lowest}")
    for s in sales:
        if s["sold"] > s["quantity"] or s["items"] != s["sold"]:
            failed.append(f"flash sale {s['id']}: sold {s['sold']} of {s['quantity']}, order items {s['items']}")
    return {
        "books": "balanced" if books.get("balanced") else "NOT balanced",
        "orders_in_db": len(orders),
        "orders_told_ok": len(told_ok),
        "orders_without_reply": len(orders - told_ok),
        "buys_unanswered": unanswered,
        "stock": stock,
        "stock_lowest": lowest,
        "flash_sales": [dict(s) for s in sales],
        "failed": failed,
    }


def growth(samples: list[dict], node: str, key: str, since_s: float) -> dict | None:
    """The least-squares line through `key` of `node`'s samples from `since_s` on (of its last process):
    its rise over that span as a share of where it starts, with the first and last readings."""
    rows = [r for r in samples if r["node"] == node and r["t_s"] >= since_s and r[key] not in ("", None)]
    rows = [r for r in rows if r.get("swept") in ("", None)]  # the sweep at the end is reported apart
    if rows:
        rows = [r for r in rows if r["pid"] == rows[-1]["pid"]]
    if len(rows) < 3:
        return None
    xs, ys = [float(r["t_s"]) for r in rows], [float(r[key]) for r in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    start = my + slope * (xs[0] - mx)
    return {
        "from_s": xs[0],
        "to_s": xs[-1],
        "first": ys[0],
        "last": ys[-1],
        "fit_growth_pct": 100 * slope * (xs[-1] - xs[0]) / start if start else float("nan"),
    }


def back_at(samples: list[dict], restart: dict) -> float:
    """When the restarted node B had its viewers back: the first sample after it was ready with at least
    95 % of the viewers it had before its SIGTERM (it was ready long before they all had reconnected)."""
    if not restart:
        return 0.0
    b = [r for r in samples if r["node"] == "B"]
    before = max((r["viewers"] for r in b if r["t_s"] < restart["sigterm_s"]), default=0)
    after = [r["t_s"] for r in b if r["t_s"] >= restart["ready_s"] and r["viewers"] >= 0.95 * before]
    return after[0] if after else restart["ready_s"]


def figures(samples: list[dict], seconds: float, restart: dict) -> dict:
    """Growth over the last half per node and metric; the restarted node's (and the database's) only from
    when the node had its viewers back."""
    half = seconds / 2
    back = max(half, back_at(samples, restart))
    out = {}
    for node, since in (("A", half), ("B", back)):
        for key in ("rss_kib", "tasks", "fds", "py_blocks"):
            out[f"{node} {key}"] = growth(samples, node, key, since)
    out["db_connections"] = growth([r for r in samples if r["node"] == "A"], "A", "db_connections", back)
    return out


def swept_lines(samples: list[dict]) -> list[str]:
    """Each node's last sample under load beside the one taken right after the collector's sweep."""
    out = []
    for node in ("A", "B"):
        rows = [r for r in samples if r["node"] == node]
        swept = [r for r in rows if r.get("swept") not in ("", None)]
        before = [r for r in rows if r.get("swept") in ("", None)]
        if swept and before:
            a, b = before[-1], swept[-1]
            out.append(
                f"{node} after the sweep at the end ({b['swept']:,.0f} objects freed): RSS "
                f"{a['rss_kib'] / 1024:,.0f} -> {b['rss_kib'] / 1024:,.0f} MiB, allocated blocks "
                f"{a['py_blocks']:,.0f} -> {b['py_blocks']:,.0f}, tasks {a['tasks']} -> {b['tasks']}"
            )
    return out


def report(facts: dict, run: dict, checks: dict, figs: dict, samples: list[dict]) -> str:
    gens = run["generators"]

    def total(field: str) -> Counter:
        c = Counter()
        for g in gens:
            c.update(g[field])
        return c

    lines = [
        f"{facts['date_utc']} at {facts['commit']}; {facts['cores']} cores ({facts['cpu']}), "
        f"{facts['mem_total_gib']} GiB; Python {facts['python']}; {facts['minutes']:g} min, "
        f"{facts['viewers']:,} viewers; loadavg at start {facts['loadavg_at_start']}, "
        f"at end {facts['loadavg_at_end']}.",
        f"node B restart: {run['restart']}",
        "",
        "| node | metric | first (last half) | last | fitted growth over the last half |",
        "|---|---|---:|---:|---:|",
    ]
    for name, g in figs.items():
        node, _, key = name.partition(" ") if " " in name else ("A+B", "", name)
        if g is None:
            lines.append(f"| {node} | {key} | fewer than 3 samples in the window | | |")
            continue
        scale = 1024 if key == "rss_kib" else 1
        unit = " MiB" if key == "rss_kib" else ""
        lines.append(
            f"| {node} | {key.replace('rss_kib', 'RSS')} | {g['first'] / scale:,.0f}{unit} ({g['from_s']:.0f} s) "
            f"| {g['last'] / scale:,.0f}{unit} ({g['to_s']:.0f} s) | {g['fit_growth_pct']:+.1f} % |"
        )
    sent, answers = total("sent"), total("answers")
    lines += [
        "",
        *swept_lines(samples),
        "",
        "sent: " + ", ".join(f"{k} {v:,}" for k, v in sorted(sent.items())),
        "answers: " + ", ".join(f"{k} {v:,}" for k, v in sorted(answers.items())),
        "unanswered: " + (", ".join(f"{k} {v}" for k, v in sorted(total("unanswered").items())) or "none"),
        "closed by the server (reconnected): "
        + (", ".join(f"{k} x{v}" for k, v in sorted(total("closes").items())) or "none"),
        "viewers: " + ", ".join(f"{k} {v:,}" for k, v in sorted(total("stats").items())),
        f"flash sales: {len(checks['flash_sales'])}, "
        + ", ".join(f"{s['sold']}/{s['quantity']} {s['ended_reason']}" for s in checks["flash_sales"]),
        f"orders: {checks['orders_in_db']:,} in the database, {checks['orders_told_ok']:,} told ok, "
        f"{checks['orders_without_reply']} without a reply ({checks['buys_unanswered']} buys unanswered); "
        f"books {checks['books']}; stock {checks['stock']:,} (lowest {checks['stock_lowest']:,})",
        "checks: " + ("all passed" if not checks["failed"] else "FAILED: " + "; ".join(checks["failed"])),
    ]
    if errors := total("errors"):
        lines.append("errors: " + ", ".join(f"{k} x{v}" for k, v in errors.most_common(8)))
    return "\n".join(lines)


def plot(samples: list[dict], path: str, restart: dict, seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 7), sharex=True)
    panels = (
        ("rss_kib", "RSS (MiB)", 1024),
        ("py_blocks", "Python allocated blocks (thousands)", 1000),
        ("tasks", "asyncio tasks", 1),
        ("fds", "open file descriptors", 1),
    )
    for ax, (key, title, scale) in zip(axes.flat, panels, strict=False):
        for node in ("A", "B"):
            rows = [r for r in samples if r["node"] == node and r[key] not in ("", None) and r["rss_kib"]]
            load = [r for r in rows if r.get("swept") in ("", None)]
            line = ax.plot(
                [r["t_s"] / 60 for r in load], [float(r[key]) / scale for r in load], ".-", label=f"node {node}"
            )
            swept = [r for r in rows if r.get("swept") not in ("", None)]
            ax.plot(
                [r["t_s"] / 60 for r in swept],
                [float(r[key]) / scale for r in swept],
                "x",
                markersize=9,
                color=line[0].get_color(),
            )
        ax.set_title(title)
    axes.flat[5].remove()
    ax = axes.flat[4]
    rows = [r for r in samples if r["node"] == "A"]
    ax.plot([r["t_s"] / 60 for r in rows], [r["db_connections"] for r in rows], ".-", color="grey", label="database")
    ax2 = ax.twinx()
    for node in ("A", "B"):
        rows = [r for r in samples if r["node"] == node]
        ax2.plot([r["t_s"] / 60 for r in rows], [r["viewers"] for r in rows], ":", label=f"viewers on {node}")
    ax2.set_ylabel("viewers connected")
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=8, loc="lower right")
    ax.set_title("database connections (grey); viewers per node (dotted)")
    for ax in axes.flat[:5]:
        if restart:
            ax.axvline(restart["sigterm_s"] / 60, color="red", linewidth=1, linestyle="--")
        ax.axvspan(seconds / 2 / 60, seconds / 60, color="grey", alpha=0.08)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    axes[0][2].xaxis.set_tick_params(labelbottom=True)  # nothing under it: the sixth cell is empty
    for ax in (*axes[1][:2], axes[0][2]):
        ax.set_xlabel("minutes")
    fig.suptitle(
        "Soak (bench/soak.py): 2 nodes, churn, chat, reactions, buys, a flash sale a minute\n"
        "red: node B restarted (SIGTERM, started again); shaded: the last half, where growth is measured; "
        "x: after the collector's sweep",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    log(f"plot written to {path}")


CSV_FIELDS = (
    *("t_s", "node", "pid", "rss_kib", "fds", "tasks", "py_blocks", "db_connections", "viewers", "swept"),
    "top_tasks",
)


def write_csv(samples: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS)
        w.writeheader()
        for r in samples:
            w.writerow({k: json.dumps(r[k]) if k == "top_tasks" else r[k] for k in CSV_FIELDS})


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("t_s", "pid", "rss_kib", "fds", "tasks", "py_blocks", "db_connections", "viewers", "swept"):
            r[k] = float(r[k]) if r[k] not in ("", None) else ""
    return rows


def soak(args: argparse.Namespace) -> None:
    dsn = os.environ.get("DATABASE_URL") or DEFAULT_DSN
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    asyncio.run(ensure_database(dsn))
    facts = machine_facts() | {"minutes": args.minutes, "viewers": args.viewers}
    log("machine:", orjson.dumps(facts).decode())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = Soak(args, dsn, redis_url)
    try:
        run = asyncio.run(runner.run())
    finally:
        runner.stop()
    facts["loadavg_at_end"] = loadavg()
    run["restart"] = runner.restart
    host = run.pop("host")
    checks = asyncio.run(check(dsn, run))
    if host.refused:
        checks["failed"].append(f"the host was refused: {host.refused[:2]}")
    figs = figures(runner.samples, runner.seconds, runner.restart)
    write_csv(runner.samples, out / "samples.csv")
    summary = {"facts": facts, "restart": runner.restart, "checks": checks, "growth": figs}
    summary["generators"] = [{k: v for k, v in g.items() if k != "orders"} for g in run["generators"]]
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    if args.plot:
        plot(runner.samples, args.plot, runner.restart, runner.seconds)
    print(report(facts, run, checks, figs, runner.samples))


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the load (default 10)")
    ap.add_argument("--viewers", type=int, default=2000, help="viewers connected at a time (default 2000)")
    ap.add_argument("--signed-in", type=float, default=0.5, help="share of viewers signed in (default 0.5)")
    ap.add_argument("--churn", type=float, default=0.02, help="share of viewers replaced each churn (default 0.02)")
    ap.add_argument("--churn-every", type=float, default=5.0, help="seconds between churns (default 5)")
    ap.add_argument("--chat-per-s", type=float, default=10.0, help="chat messages per second in all (default 10)")
    ap.add_argument("--reactions-per-s", type=float, default=50.0, help="reactions per second in all (default 50)")
    ap.add_argument("--buys-per-s", type=float, default=2.0, help="top-up + buy per second in all (default 2)")
    ap.add_argument("--flash-every", type=float, default=60.0, help="seconds between flash sales (default 60)")
    ap.add_argument("--flash-units", type=int, default=100, help="units per flash sale (default 100)")
    ap.add_argument("--flash-share", type=float, default=0.3, help="signed-in viewers that buy in one (default 0.3)")
    ap.add_argument("--restart-at", type=float, default=0.4, help="node B restarts at this share of the run")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes (default 2)")
    ap.add_argument(
        "--out",
        default=str(Path(tempfile.gettempdir()) / "livehub-soak"),
        help="directory for samples.csv and summary.json (default: livehub-soak in the temporary directory)",
    )
    ap.add_argument("--plot", help="draw the samples to this PNG (needs matplotlib), e.g. docs/bench-soak.png")
    ap.add_argument("--from-csv", help="no run: plot an earlier samples.csv (with --plot)")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: be a server on this port
    args = ap.parse_args(argv)
    if args.minutes <= 0 or args.viewers < 2 or args.procs < 1 or not 0 < args.restart_at < 1:
        ap.error("--minutes positive, --viewers at least 2, --procs at least 1, --restart-at between 0 and 1")
    if not (0 <= args.signed_in <= 1 and 0 <= args.churn < 1 and 0 <= args.flash_share <= 1):
        ap.error("--signed-in, --churn and --flash-share are shares (0 to 1)")
    if args.churn_every <= 0 or args.sample_s <= 0 or args.flash_every < FLASH_DURATION_S + 5:
        ap.error(f"--churn-every and --sample-s positive; --flash-every at least {FLASH_DURATION_S + 5}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve)
    elif args.from_csv:
        samples = read_csv(Path(args.from_csv))
        seconds = max(r["t_s"] for r in samples)
        summary = Path(args.from_csv).with_name("summary.json")
        restart = json.loads(summary.read_text())["restart"] if summary.exists() else {}
        if args.plot:
            plot(samples, args.plot, restart, seconds)
        print(json.dumps(figures(samples, seconds, restart), indent=1))
    else:
        run_orchestrator(lambda: soak(args))


if __name__ == "__main__":
    main()
