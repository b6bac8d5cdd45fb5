"""Live-room fan-out on ONE server process: how many viewers one room holds, and how late chat reaches them.

    python bench/fanout.py                                    # 1000,2000,5000,10000 viewers; 10 and 100 chat/s
    python bench/fanout.py --viewers 1000,2000 --rates 10 --seconds 10
    python bench/fanout.py --quick                            # 200,500 viewers, 5 s per rate: a smoke run
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/livehub_bench python bench/fanout.py --json out.json

What runs:

- ONE server process (``create_app`` + ``web.run_app``, as ``run.py`` does with one worker, but without
  the access log) on 127.0.0.1 and a free port, against DATABASE_URL (default
  ``postgresql://postgres@127.0.0.1:5432/livehub_bench``, created if missing; the database named ``test``
  is refused) and with no REDIS_URL, so the in-process broker. The per-user chat limit is raised for
  every user of this server (so for the senders) through ``LIVEHUB_CHAT_RATE_PER_S`` /
  ``LIVEHUB_CHAT_BURST``, and the chat goes round-robin over ``--senders`` accounts; password hashing
  is made cheap (``LIVEHUB_PASSWORD_*``) only to register the few accounts quickly. Every other setting
  is the default (``tick_ms`` 50, viewer queue 256 frames).
- Setup through the REST API: a seller (approved with ``set_seller_status`` in SQL), a product, a stream,
  started; the sender accounts.
- Viewers: anonymous websockets on ``/ws/streams/{id}``, spread evenly over ``--procs`` load-generator
  processes. The ramp is cumulative: each step adds viewers up to the next N, lets the room settle, then
  runs each chat rate for ``--seconds``. By default the viewers are a minimal asyncio websocket client
  (``--client raw``: handshake, frame parsing, pong and close, and a regex over ``events`` frames for the
  chat texts); ``--client aiohttp`` uses aiohttp's client websockets instead, at a higher cost per frame
  on the same cores as the server.
- Chat: M messages/s for ``--seconds`` from the sender sockets, each text ``t=<time.time_ns()> s=<step>:<seq>``.
  Every viewer records send-to-receipt delay of every chat event it gets (a histogram with 0.1 ms
  buckets, so p50/p99 are upper bucket edges; the max is exact). After the last message the script waits
  up to ``--drain`` seconds for the deliveries still on their way; a message that some viewer still lacks
  then counts as missed. Latency includes the room's tick (up to ``tick_ms``) and the time the viewer's
  own process takes to get to the frame.
- Measured during the chat window: the server's CPU (utime + stime from /proc/<pid>/stat; 100 % = one
  core), the load generators' CPU, the CPU of every *other* process on the machine (busy jiffies from
  /proc/stat minus ours), and the server's RSS (VmRSS) before any viewer connected and after each step;
  KB per viewer = (RSS after connecting and settling - RSS before any viewer) / N. deliveries/s counts
  from the first send to the last delivery.
- The machine may be shared: before each window the script waits (up to ``--wait-quiet`` s) for other
  processes to use under ``--busy-cpu`` % CPU, and a window they disturbed anyway is run again
  (``--retries``); the row kept is the attempt with the least CPU used by others (chosen on that alone,
  never on its latency), and says which attempt it is. The other attempts are in ``--json``.

A rate *fails* at N when a viewer was refused or dropped, a message was missed, a send was refused, or
p99 went over ``--p99-limit-ms`` (default 1000); it is not run at larger N. The ramp stops when every rate
has failed or connecting the next step failed. Every phase is bounded in time; the server and the load
generators are stopped on exit, Ctrl-C or failure (and die with this process if it is killed).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import concurrent.futures
import contextlib
import ctypes
import json
import multiprocessing
import os
import platform
import re
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from common import ROOT, floats, ints, log, with_database

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/livehub_bench"
HOST = "127.0.0.1"
PASSWORD = "fanout bench password"
BUCKET_US = 100  # histogram resolution: 0.1 ms
BUCKETS = 600_000  # 60 s at 0.1 ms; later deliveries go to the last bucket (the max stays exact)
CONNECTS_IN_FLIGHT = 50  # per load generator: handshakes started and not yet welcomed
CONNECT_TIMEOUT_S = 30.0  # one viewer: TCP connect + handshake + welcome
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHAT_RE = re.compile(rb'"text":"t=(\d+) s=(\d+):(\d+)"')
CHAT_RE_STR = re.compile(r'"text":"t=(\d+) s=(\d+):(\d+)"')


# -- process hygiene ---------------------------------------------------------------------------------


def raise_nofile(want: int = 65536) -> int:
    """Lift the open-files limit to `want`, the hard limit too when allowed (root); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    return soft


def die_with_parent() -> None:
    """Linux: get SIGKILL when the process that started this one goes away, however it went."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the whole line)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# -- the server --------------------------------------------------------------------------------------


def serve(port: int) -> None:
    """The server process: one aiohttp app, settings from the environment the parent prepared."""
    die_with_parent()
    raise_nofile()
    import logging

    from aiohttp import web

    from livehub.app import create_app
    from livehub.settings import Settings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(create_app(Settings()), host=HOST, port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def ensure_database(dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    if not name or name == "test":
        raise SystemExit(f"refusing database {name!r}: name another one in DATABASE_URL")
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
            log(f"created database {name}")
    finally:
        await admin.close()


# -- load generators ---------------------------------------------------------------------------------


class Stats:
    """What one load generator's viewers saw in the current step."""

    def __init__(self) -> None:
        self.step = -1
        self.hist = array.array("q", bytes(8 * BUCKETS))
        self.max_us = 0
        self.deliveries = 0
        self.per_seq = array.array("q")
        self.stray = 0  # chat events of another step, or beyond the expected count
        self.closed = 0  # viewers closed during the step
        self.close_codes: dict[int, int] = {}
        self.frames = 0
        self.bytes = 0
        self.last_ns = 0

    def begin(self, step: int, messages: int) -> None:
        self.step = step
        self.hist = array.array("q", bytes(8 * BUCKETS))
        self.max_us = 0
        self.deliveries = 0
        self.per_seq = array.array("q", bytes(8 * messages))
        self.stray = 0
        self.closed = 0
        self.close_codes = {}
        self.frames = 0
        self.bytes = 0
        self.last_ns = 0

    def chats(self, matches, now_ns: int) -> None:
        step, per_seq, hist = self.step, self.per_seq, self.hist
        for t, s, q in matches:
            seq = int(q)
            if int(s) != step or seq >= len(per_seq):
                self.stray += 1
                continue
            us = (now_ns - int(t)) // 1000
            if us < 0:
                us = 0
            if us > self.max_us:
                self.max_us = us
            b = us // BUCKET_US
            hist[b if b < BUCKETS else BUCKETS - 1] += 1
            per_seq[seq] += 1
            self.deliveries += 1
            self.last_ns = now_ns

    def lost(self, code: int) -> None:
        self.closed += 1
        self.close_codes[code] = self.close_codes.get(code, 0) + 1


class RawViewer(asyncio.Protocol):
    """A minimal websocket client: handshake, unmasked server frames, pong, close; reads only chat texts."""

    __slots__ = ("stats", "request", "ready", "transport", "buf", "upgraded", "welcomed", "done")

    def __init__(self, stats: Stats, request: bytes, ready: asyncio.Future):
        self.stats = stats
        self.request = request
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.welcomed = False  # got its welcome frame: a viewer in the room
        self.done = False  # closed, lost or given up on

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._fail(f"handshake refused: {bytes(buf[:40])!r}")
                return
            self.upgraded = True
            del buf[: end + 4]
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:  # a masked server frame: not websocket
                self._fail("masked frame from the server")
                return
            end = pos + head + length
            if end > n:
                break
            self._frame(buf[pos] & 0x0F, buf[pos + head : end])
            pos = end
        if pos:
            del buf[:pos]

    def _frame(self, opcode: int, payload: bytearray) -> None:
        stats = self.stats
        if opcode == 1:
            stats.frames += 1
            stats.bytes += len(payload)
            if payload.startswith(b'{"type":"events"'):
                if b'"text":"t=' in payload:
                    stats.chats(CHAT_RE.findall(payload), time.time_ns())
            elif not self.welcomed and payload.startswith(b'{"type":"welcome"'):
                self.welcomed = True
                if not self.ready.done():
                    self.ready.set_result(None)
        elif opcode == 9:  # ping: answer with a pong carrying the same payload (zero mask key)
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + bytes(payload))
        elif opcode == 8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            with contextlib.suppress(Exception):
                self.transport.write(b"\x88\x82\0\0\0\0" + code.to_bytes(2, "big"))
            self._closed(code)
            self.transport.close()

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        self.done = True
        self.transport.abort()

    def _closed(self, code: int) -> None:
        if self.done:
            return
        self.done = True
        if self.welcomed:
            self.stats.lost(code)
        elif not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the welcome ({code})"))

    def connection_lost(self, exc) -> None:
        self._closed(1006)

    def abort(self) -> None:
        self.done = True
        if self.ready is not None and not self.ready.done():
            self.ready.cancel()
        if self.transport is not None:
            self.transport.abort()


class AiohttpViewer:
    """The same reader on aiohttp's client websocket (autoping on)."""

    def __init__(self, stats: Stats):
        self.stats = stats
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task | None = None
        self.welcomed = False
        self.done = False

    async def start(self, session: aiohttp.ClientSession, url: str) -> None:
        self.ws = await session.ws_connect(url, autoping=True, max_msg_size=0)
        ready = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(self._read(ready))
        await ready

    async def _read(self, ready: asyncio.Future) -> None:
        stats = self.stats
        ws = self.ws
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = msg.data
                stats.frames += 1
                stats.bytes += len(data)
                if data.startswith('{"type":"events"'):
                    if '"text":"t=' in data:
                        stats.chats(CHAT_RE_STR.findall(data), time.time_ns())
                elif not self.welcomed and data.startswith('{"type":"welcome"'):
                    self.welcomed = True
                    if not ready.done():
                        ready.set_result(None)
        finally:
            if not self.welcomed:
                if not ready.done():
                    ready.set_exception(ConnectionError(f"closed before the welcome ({ws.close_code})"))
            elif not self.done:
                stats.lost(ws.close_code or 1006)
            self.done = True

    def abort(self) -> None:
        self.done = True
        if self.task is not None:
            self.task.cancel()


class Generator:
    """One load-generator process: its viewers, and the commands the orchestrator sends over a pipe."""

    def __init__(self, port: int, path: str, client: str):
        self.port = port
        self.path = path
        self.client = client
        self.stats = Stats()
        self.viewers: list = []
        self.session: aiohttp.ClientSession | None = None

    def _request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    async def _one(self, gate: asyncio.Semaphore) -> str | None:
        async with gate:
            viewer = None
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    if self.client == "raw":
                        loop = asyncio.get_running_loop()
                        ready = loop.create_future()
                        viewer = RawViewer(self.stats, self._request(), ready)
                        self.viewers.append(viewer)
                        await loop.create_connection(lambda: viewer, HOST, self.port)
                        await ready
                    else:
                        viewer = AiohttpViewer(self.stats)
                        self.viewers.append(viewer)
                        await viewer.start(self.session, f"http://{HOST}:{self.port}{self.path}")
                return None
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                if viewer is not None:
                    viewer.abort()
                return f"{type(exc).__name__}: {exc}"[:200]

    async def connect(self, total: int, budget_s: float) -> dict:
        """Open viewers until this process holds `total` (counting those that later closed)."""
        if self.client == "aiohttp" and self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        want = max(0, total - len(self.viewers))
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(self._one(gate)) for _ in range(want)]
        done, pending = await asyncio.wait(tasks, timeout=budget_s) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        errors = [t.result() for t in done if t.result() is not None]
        failed = len(errors) + len(pending)
        return {
            "opened": want - failed,
            "failed": failed,
            "errors": errors[:3] + (["connect budget exhausted"] if pending else []),
            "seconds": time.perf_counter() - t0,
        }

    def alive(self) -> int:
        return sum(1 for v in self.viewers if v.welcomed and not v.done)

    def collect(self) -> dict:
        s = self.stats
        out = {
            "hist": {i: c for i, c in enumerate(s.hist) if c},
            "max_us": s.max_us,
            "last_ns": s.last_ns,
            "deliveries": s.deliveries,
            "per_seq": s.per_seq.tolist(),
            "stray": s.stray,
            "closed": s.closed,
            "close_codes": s.close_codes,
            "frames": s.frames,
            "bytes": s.bytes,
            "alive": self.alive(),
        }
        s.step = -1
        return out

    async def close(self) -> None:
        for viewer in self.viewers:
            viewer.abort()
        if self.session is not None:
            await self.session.close()


def generator_main(conn, port: int, path: str, client: str) -> None:
    die_with_parent()
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator stops us
    try:
        asyncio.run(_generator(conn, port, path, client))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass


async def _generator(conn, port: int, path: str, client: str) -> None:
    loop = asyncio.get_running_loop()
    gen = Generator(port, path, client)
    try:
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            op = msg[0]
            if op == "connect":
                reply = await gen.connect(msg[1], msg[2])
            elif op == "begin":
                gen.stats.begin(msg[1], msg[2])
                reply = {"alive": gen.alive()}
            elif op == "progress":
                reply = {"deliveries": gen.stats.deliveries, "closed": gen.stats.closed, "alive": gen.alive()}
            elif op == "collect":
                reply = gen.collect()
            elif op == "quit":
                await gen.close()
                conn.send("bye")
                return
            else:
                reply = {"error": f"unknown command {op!r}"}
            conn.send(reply)
    finally:
        await gen.close()


# -- the orchestrator ---------------------------------------------------------------------------------


@dataclass
class Row:
    viewers: int
    rate: float
    sent: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    deliveries: int = 0
    expected: int = 0
    missed_messages: int = 0
    missing_deliveries: int = 0
    dropped_viewers: int = 0
    send_errors: int = 0
    server_cpu: float = 0.0
    gen_cpu: float = 0.0
    machine_busy: float = 0.0
    others_cpu: float = 0.0  # CPU used by processes that are not part of this benchmark, 100 % = one core
    attempts: int = 1
    tries: int = 1
    discarded: list[str] = field(default_factory=list)  # other attempts at this step, as table lines
    server_rss_mb: float = 0.0
    kb_per_viewer: float = 0.0
    connect_s: float = 0.0
    load: str = ""
    drain_s: float = 0.0
    span: float = 0.0  # from the first send to the last delivery (at least the window)
    frames_per_viewer_s: float = 0.0
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.deliveries / self.span if self.span else 0.0
        verdict = "held" if not self.failed else "FAILED: " + "; ".join(self.failed)
        if self.tries > 1:
            verdict += f" (attempt {self.attempts} of {self.tries})"
        return (
            f"| {self.viewers:,} | {self.rate:g} | {self.p50_ms:.1f} | {self.p99_ms:.1f} | {self.max_ms:.1f} "
            f"| {rate:,.0f} | {self.missed_messages} | {self.server_cpu:.0f} | {self.gen_cpu:.0f} "
            f"| {self.others_cpu:.0f} | {self.frames_per_viewer_s:.1f} | {self.server_rss_mb:.0f} "
            f"| {self.kb_per_viewer:.1f} | {self.load} | {verdict} |"
        )


HEADER = (
    "| viewers | chat msg/s | p50 ms | p99 ms | max ms | deliveries/s | missed | server CPU % | generators CPU % "
    "| others CPU % | frames/viewer/s | server RSS MB | KB/viewer | load avg at start | result |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
)


def quantile_ms(hist: dict[int, int], total: int, q: float) -> float:
    if not total:
        return float("nan")
    rank = max(1, -(-int(q * total * 1000) // 1000))  # ceil(q * total), without float surprises
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) * BUCKET_US / 1000  # the bucket's upper edge
    return float("nan")


class Orchestrator:
    def __init__(self, args: argparse.Namespace, base: str, server_pid: int, pipes: list, gen_pids: list[int]):
        self.args = args
        self.base = base
        self.server_pid = server_pid
        self.pipes = pipes
        self.gen_pids = gen_pids
        self.senders: list[aiohttp.ClientWebSocketResponse] = []
        self.acks = 0
        self.errors: list[str] = []
        self.readers: list[asyncio.Task] = []
        self.step = 0
        # Pipe calls block a thread each; a pool of our own is not joined by asyncio.run on Ctrl-C.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(pipes), thread_name_prefix="pipe")

    async def ask_all(self, msgs: list[tuple], timeout: float) -> list:
        loop = asyncio.get_running_loop()

        def ask(conn, msg):
            conn.send(msg)
            if not conn.poll(timeout):
                raise TimeoutError(f"load generator did not answer {msg[0]!r} within {timeout:.0f} s")
            return conn.recv()

        return await asyncio.gather(
            *(loop.run_in_executor(self.pool, ask, c, m) for c, m in zip(self.pipes, msgs, strict=True))
        )

    async def _sender_reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if msg.data.startswith('{"type":"ack"'):
                self.acks += 1
            elif msg.data.startswith('{"type":"error"'):
                self.errors.append(msg.data[:200])
        if ws.close_code is not None:
            self.errors.append(f"a sender socket closed ({ws.close_code})")

    async def connect_senders(self, session: aiohttp.ClientSession, stream_id: str, tokens: list[str]) -> None:
        for token in tokens:
            ws = await session.ws_connect(f"{self.base}/ws/streams/{stream_id}", params={"token": token})
            first = await ws.receive_json(timeout=10)
            if first.get("type") != "welcome" or first["you"]["role"] != "viewer":
                raise RuntimeError(f"sender not welcomed as a signed-in viewer: {str(first)[:200]}")
            self.senders.append(ws)
            self.readers.append(asyncio.create_task(self._sender_reader(ws)))

    async def chat_window(self, row: Row, rate: float, alive: int) -> None:
        """Send rate x seconds messages, paced; wait for their acks and for every viewer to get them."""
        args = self.args
        self.step += 1
        step = self.step
        total = max(1, round(rate * args.seconds))
        await self.ask_all([("begin", step, total)] * len(self.pipes), 30)
        acks0, errors0 = self.acks, len(self.errors)
        server0, gens0, busy0 = cpu_ticks(self.server_pid), sum(map(cpu_ticks, self.gen_pids)), machine_busy()
        self0 = cpu_ticks(os.getpid())
        t0, t0_ns = time.perf_counter(), time.time_ns()
        for i in range(total):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            ws = self.senders[i % len(self.senders)]
            await ws.send_str(f'{{"type":"chat","text":"t={time.time_ns()} s={step}:{i}","request_id":"c{step}-{i}"}}')
        # The window ends one interval after the last send: `total` messages at `rate` span total / rate.
        delay = t0 + total / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        wall = time.perf_counter() - t0
        server1, gens1, busy1 = cpu_ticks(self.server_pid), sum(map(cpu_ticks, self.gen_pids)), machine_busy()
        self1 = cpu_ticks(os.getpid())
        row.seconds = wall
        row.sent = total
        row.server_cpu = 100 * (server1 - server0) / CLK_TCK / wall
        row.gen_cpu = 100 * (gens1 - gens0) / CLK_TCK / wall
        row.machine_busy = 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        ours = (server1 - server0) + (gens1 - gens0) + (self1 - self0)
        row.others_cpu = max(0.0, 100 * (busy1[0] - busy0[0] - ours) / CLK_TCK / wall)

        # Drain: acks first, then deliveries, bounded by --drain seconds in all.
        t1 = time.perf_counter()
        deadline = t1 + args.drain
        while self.acks - acks0 + len(self.errors) - errors0 < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        acked = self.acks - acks0
        row.send_errors = total - acked
        if len(self.errors) > errors0:
            log("  send errors:", self.errors[errors0 : errors0 + 3])
        while time.perf_counter() < deadline:
            progress = await self.ask_all([("progress",)] * len(self.pipes), 30)
            if sum(p["deliveries"] for p in progress) >= acked * sum(p["alive"] for p in progress):
                break
            await asyncio.sleep(0.1)
        row.drain_s = time.perf_counter() - t1

        results = await self.ask_all([("collect",)] * len(self.pipes), 60)
        hist: dict[int, int] = {}
        per_seq = [0] * total
        for r in results:
            for b, c in r["hist"].items():
                hist[b] = hist.get(b, 0) + c
            for i, c in enumerate(r["per_seq"]):
                per_seq[i] += c
            row.deliveries += r["deliveries"]
            row.dropped_viewers += r["closed"]
            if r["close_codes"]:
                log("  viewers closed:", r["close_codes"])
            if r["stray"]:
                log(f"  {r['stray']} chat events of another step or beyond the count")
        row.span = max(wall, (max(r["last_ns"] for r in results) - t0_ns) / 1e9)
        frames = sum(r["frames"] for r in results)
        row.frames_per_viewer_s = frames / max(1, alive) / wall
        # Every message acked by the server should reach every viewer connected at the start of the window.
        row.expected = acked * alive
        row.missed_messages = sum(1 for c in per_seq if c < alive)
        row.missing_deliveries = sum(max(0, alive - c) for c in per_seq)
        row.p50_ms = quantile_ms(hist, row.deliveries, 0.50)
        row.p99_ms = quantile_ms(hist, row.deliveries, 0.99)
        row.max_ms = max(r["max_us"] for r in results) / 1000 if row.deliveries else float("nan")

        if row.dropped_viewers:
            row.failed.append(f"{row.dropped_viewers} viewers dropped")
        if row.send_errors:
            row.failed.append(f"{row.send_errors} sends not acked")
        if row.missed_messages:
            row.failed.append(f"{row.missed_messages} messages missed by some viewer")
        if not row.p99_ms <= args.p99_limit_ms:
            row.failed.append(f"p99 over {args.p99_limit_ms:g} ms")
        if row.drain_s >= args.drain and row.missing_deliveries:
            row.failed.append(f"deliveries still missing after {args.drain:g} s")

    async def wait_quiet(self) -> float:
        """Wait (up to --wait-quiet s) until processes outside the benchmark use under --busy-cpu % CPU
        over one second; returns what they used in the last second sampled."""
        deadline = time.monotonic() + self.args.wait_quiet
        pids = [self.server_pid, *self.gen_pids, os.getpid()]
        while True:
            ours0, busy0 = sum(map(cpu_ticks, pids)), machine_busy()[0]
            await asyncio.sleep(1.0)
            ours1, busy1 = sum(map(cpu_ticks, pids)), machine_busy()[0]
            others = max(0.0, 100 * (busy1 - busy0 - (ours1 - ours0)) / CLK_TCK)
            if others <= self.args.busy_cpu or time.monotonic() >= deadline:
                return others
            log(f"  waiting: other processes use {others:.0f} % CPU (loadavg {loadavg()})")
            await asyncio.sleep(2.0)

    async def run(self, session: aiohttp.ClientSession, stream_id: str, tokens: list[str]) -> tuple[list[Row], dict]:
        args = self.args
        await self.connect_senders(session, stream_id, tokens)
        await asyncio.sleep(args.settle)
        base_rss = rss_kb(self.server_pid)
        facts = {"server_rss_before_viewers_mb": round(base_rss / 1024, 1)}
        log(f"server RSS before viewers: {base_rss / 1024:.1f} MB (loadavg {loadavg()})")
        rows: list[Row] = []
        active = list(args.rates)
        k = len(self.pipes)
        for n in args.viewers:
            load = loadavg()
            shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
            budget = max(60.0, n / 50)
            t0 = time.perf_counter()
            replies = await self.ask_all([("connect", s, budget) for s in shares], budget + 60)
            connect_s = time.perf_counter() - t0
            failed = sum(r["failed"] for r in replies)
            errors = [e for r in replies for e in r["errors"]]
            log(f"N={n}: connected in {connect_s:.1f} s, {failed} failed {errors[:3] if errors else ''}")
            await asyncio.sleep(args.settle)
            progress = await self.ask_all([("progress",)] * k, 30)
            alive = sum(p["alive"] for p in progress)
            conn_rss = rss_kb(self.server_pid)
            kb_per_viewer = (conn_rss - base_rss) / n
            if failed or alive < n:
                row = Row(n, 0, load=load, connect_s=connect_s, server_rss_mb=conn_rss / 1024)
                row.kb_per_viewer = kb_per_viewer
                row.failed.append(f"{failed} connections failed, {n - alive} of {n} not connected after settling")
                rows.append(row)
                log(row.line())
                break
            for rate in list(active):
                tried: list[Row] = []
                for attempt in range(1, args.retries + 2):
                    others = await self.wait_quiet()
                    row = Row(n, rate, load=loadavg(), connect_s=connect_s, kb_per_viewer=kb_per_viewer)
                    row.attempts = attempt
                    await self.chat_window(row, rate, alive)
                    row.server_rss_mb = rss_kb(self.server_pid) / 1024
                    tried.append(row)
                    if row.others_cpu <= args.busy_cpu or attempt > args.retries or row.dropped_viewers:
                        break
                    log(
                        f"  other processes used {row.others_cpu:.0f} % CPU during the window "
                        f"({others:.0f} % just before): running it again. This attempt: {row.line()}"
                    )
                # The attempt least disturbed by other processes (chosen on their CPU, not on the result).
                for r in tried:
                    r.tries = len(tried)
                row = min(tried, key=lambda r: r.others_cpu)
                row.discarded = [r.line() for r in tried if r is not row]
                rows.append(row)
                log(row.line() + f"  (machine busy {row.machine_busy:.0f} %, drain {row.drain_s:.1f} s)")
                if row.failed:
                    active.remove(rate)
                await asyncio.sleep(1.0)
            if not active:
                break
        return rows, facts


async def setup_room(base: str, dsn: str, senders: int) -> tuple[str, list[str]]:
    """A live stream and `senders` signed-in chat accounts, made through the REST API."""
    tag = secrets.token_hex(4)
    async with aiohttp.ClientSession(base) as http:

        async def register(who: str) -> dict:
            body = {"email": f"fanout-{who}-{tag}@bench.test", "password": PASSWORD, "display_name": f"Fanout {who}"}
            async with http.post("/api/auth/register", json=body) as res:
                if res.status != 201:
                    raise RuntimeError(f"register: {res.status} {await res.text()}")
                data = await res.json()
            http.cookie_jar.clear()
            return {"id": data["user"]["id"], "headers": {"Authorization": f"Bearer {data['token']}"}}

        seller = await register("seller")
        async with http.post(
            "/api/sellers/apply", json={"shop_name": f"Fanout {tag}"}, headers=seller["headers"]
        ) as res:
            if res.status != 201:
                raise RuntimeError(f"apply: {res.status} {await res.text()}")
            seller_id = (await res.json())["seller"]["id"]
        db = await asyncpg.connect(dsn)
        try:
            await db.execute("SELECT set_seller_status($1, 'approved', NULL)", seller_id)
        finally:
            await db.close()
        product = {"title": "Fanout item", "variants": [{"sku": f"FAN-{tag}", "price_cents": 1000, "stock": 100}]}
        async with http.post("/api/products", json=product, headers=seller["headers"]) as res:
            if res.status != 201:
                raise RuntimeError(f"product: {res.status} {await res.text()}")
            product_id = (await res.json())["product"]["id"]
        body = {"title": "Fanout live", "products": [{"product_id": product_id}]}
        async with http.post("/api/streams", json=body, headers=seller["headers"]) as res:
            if res.status != 201:
                raise RuntimeError(f"stream: {res.status} {await res.text()}")
            stream_id = (await res.json())["stream"]["id"]
        async with http.post(f"/api/streams/{stream_id}/start", headers=seller["headers"]) as res:
            if res.status != 200:
                raise RuntimeError(f"start: {res.status} {await res.text()}")
        tokens = []
        for i in range(senders):
            account = await register(f"sender{i}")
            tokens.append(account["headers"]["Authorization"].split(" ", 1)[1])
    return stream_id, tokens


async def wait_ready(base: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode} before it was ready")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as res:
                    if res.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s")


def machine_facts(args: argparse.Namespace) -> dict:
    with open("/proc/meminfo") as f:
        mem = {line.split(":")[0]: line.split()[1] for line in f}
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "cpu": model,
        "mem_total_gib": round(int(mem["MemTotal"]) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "loadavg_at_start": loadavg(),
        "load_generators": args.procs,
        "client": args.client,
        "senders": args.senders,
        "chat_limit_env": {"LIVEHUB_CHAT_RATE_PER_S": args.sender_rate, "LIVEHUB_CHAT_BURST": args.sender_burst},
    }


def start_server(args: argparse.Namespace, dsn: str, port: int, logfile) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LIVEHUB_REDIS_URL")}
    env.update(
        DATABASE_URL=dsn,
        LIVEHUB_CHAT_RATE_PER_S=str(args.sender_rate),
        LIVEHUB_CHAT_BURST=str(args.sender_burst),
        # Only makes registering the bench accounts fast; nothing in a room hashes passwords.
        LIVEHUB_PASSWORD_TIME_COST="1",
        LIVEHUB_PASSWORD_MEMORY_KIB="8192",
        LIVEHUB_PASSWORD_PARALLELISM="1",
        LIVEHUB_LOG_LEVEL="WARNING",
    )
    # A session of its own: Ctrl-C reaches only this script, which stops the server in order.
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)],
        env=env,
        cwd=str(ROOT),
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def bench(args: argparse.Namespace) -> str:
    dsn = os.environ.get("DATABASE_URL") or DEFAULT_DSN
    asyncio.run(ensure_database(dsn))
    facts = machine_facts(args)
    log("machine:", json.dumps(facts))
    port = free_port()
    base = f"http://{HOST}:{port}"
    spawn = multiprocessing.get_context("spawn")
    server = None
    gens: list = []
    pipes: list = []
    rows: list[Row] = []
    logfile = tempfile.NamedTemporaryFile(prefix="livehub-fanout-server-", suffix=".log", delete=False)
    try:
        server = start_server(args, dsn, port, logfile)
        asyncio.run(wait_ready(base, server))
        log(f"server pid {server.pid} on {base} (log {logfile.name})")
        stream_id, tokens = asyncio.run(setup_room(base, dsn, args.senders))
        log(f"stream {stream_id}; {len(tokens)} sender accounts")
        for i in range(args.procs):
            parent, child = spawn.Pipe()
            proc = spawn.Process(
                target=generator_main,
                args=(child, port, f"/ws/streams/{stream_id}", args.client),
                name=f"fanout-gen-{i}",
            )
            proc.daemon = True
            proc.start()
            gens.append(proc)
            pipes.append(parent)

        async def orchestrate():
            async with aiohttp.ClientSession() as session:
                orch = Orchestrator(args, base, server.pid, pipes, [g.pid for g in gens])
                try:
                    return await orch.run(session, stream_id, tokens)
                finally:
                    orch.pool.shutdown(wait=False, cancel_futures=True)
                    for ws in orch.senders:
                        await ws.close()
                    for task in orch.readers:
                        task.cancel()

        rows, more = asyncio.run(orchestrate())
        facts.update(more)
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} during the run")
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(("quit",))
        for proc in gens:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if server is not None:
            stop_process(server)
        logfile.close()
        tail = Path(logfile.name).read_text(errors="replace").strip().splitlines()[-20:]
        if tail:
            log("server log (last lines):\n  " + "\n  ".join(tail))
        with contextlib.suppress(OSError):
            os.unlink(logfile.name)

    held = {}
    for rate in args.rates:
        ok = [r for r in rows if r.rate == rate and not r.failed]
        held[str(rate)] = max((r.viewers for r in ok), default=0)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"facts": facts, "args": vars(args), "rows": [asdict(r) for r in rows], "held": held}, indent=2)
        )
    summary = ", ".join(f"{rate} msg/s: {n:,} viewers" for rate, n in held.items())
    header = (
        f"{facts['date_utc']}; {facts['cores']} cores ({facts['cpu']}), {facts['mem_total_gib']} GiB; Python "
        f"{facts['python']}, aiohttp {facts['aiohttp']}; loadavg at start {facts['loadavg_at_start']}.\n"
        f"One server process and {args.procs} load-generator processes ({args.client} client) on the same "
        f"machine; chat from {args.senders} sender account(s) with LIVEHUB_CHAT_RATE_PER_S={args.sender_rate} "
        f"LIVEHUB_CHAT_BURST={args.sender_burst}; {args.seconds:g} s per rate; server RSS before viewers "
        f"{facts.get('server_rss_before_viewers_mb', float('nan'))} MB."
    )
    return "\n".join([header, "", HEADER, *(r.line() for r in rows), "", f"largest N that held: {summary}"])


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--viewers", type=ints, help="comma-separated viewer counts, ascending (default 1000,2000,5000,10000)"
    )
    ap.add_argument("--rates", type=floats, help="comma-separated chat messages per second (default 10,100)")
    ap.add_argument("--seconds", type=float, default=20.0, help="chat window per rate and step (default 20)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after connecting before chat (default 3)")
    ap.add_argument("--drain", type=float, default=5.0, help="seconds to wait for late deliveries (default 5)")
    ap.add_argument("--procs", type=int, default=max(2, os.cpu_count() or 2), help="load-generator processes")
    ap.add_argument("--client", choices=("raw", "aiohttp"), default="raw", help="viewer client (default raw)")
    ap.add_argument("--senders", type=int, default=2, help="sender accounts, chat round-robin over them (default 2)")
    ap.add_argument("--sender-rate", type=float, default=1000.0, help="LIVEHUB_CHAT_RATE_PER_S for the server")
    ap.add_argument("--sender-burst", type=int, default=1000, help="LIVEHUB_CHAT_BURST for the server")
    ap.add_argument("--p99-limit-ms", type=float, default=1000.0, help="a rate fails above this p99 (default 1000)")
    ap.add_argument(
        "--busy-cpu",
        type=float,
        default=25.0,
        help="CPU %% of other processes (100 = one core) above which a window is waited for or rerun (default 25)",
    )
    ap.add_argument("--wait-quiet", type=float, default=20.0, help="longest wait for a quiet machine (default 20 s)")
    ap.add_argument("--retries", type=int, default=1, help="reruns of a window others disturbed (default 1)")
    ap.add_argument("--quick", action="store_true", help="200,500 viewers, 10 and 100 msg/s, 5 s each")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: be the server on this port
    args = ap.parse_args(argv)
    if args.serve:
        return args
    if args.quick:
        args.viewers = args.viewers or [200, 500]
        args.seconds = min(args.seconds, 5.0)
    args.viewers = args.viewers or [1000, 2000, 5000, 10000]
    args.rates = args.rates or [10.0, 100.0]
    if min(args.viewers) < 1 or args.viewers != sorted(args.viewers):
        ap.error("--viewers takes positive counts in ascending order")
    if min(args.rates) <= 0 or args.seconds <= 0 or args.settle < 0 or args.drain <= 0:
        ap.error("--rates, --seconds and --drain must be positive")
    if args.procs < 1 or args.senders < 1:
        ap.error("--procs and --senders must be at least 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    raise_nofile()

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        print(bench(args))
    except KeyboardInterrupt:
        log("interrupted; the server and load generators were stopped")
        sys.exit(130)


if __name__ == "__main__":
    main()
