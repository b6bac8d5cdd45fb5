"""Live-room fan-out: how many viewers one room holds, how late chat reaches them and what a delivery costs
the server; tick batching against one frame per event; one server process against two sharing Redis.

    python bench/fanout.py --json fanout.json --plot docs/bench-fanout.png   # everything (~15 min)
    python bench/fanout.py --quick                                          # smoke run: 200,500 viewers, 5 s
    python bench/fanout.py --servers '' --viewers 1000,2000                 # only tick against per-event
    python bench/fanout.py --modes '' --idle 0 --viewers 5000,10000         # only 1 against 2 processes
    python bench/fanout.py --modes tick,fixed --servers '' --idle 0 --viewers 5000,10000   # adaptive tick vs fixed
    python bench/fanout.py --modes '' --servers 1,2,4 --idle 0 --viewers 4000 \
        --server-env LIVEHUB_TICK_MS=200                                     # CPU per delivery, 1/2/4 processes
    python bench/fanout.py --from-json fanout.json --plot docs/bench-fanout.png   # tables and plot, no run
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/livehub_bench REDIS_URL=redis://127.0.0.1:6379/0 ...

Configurations, each with server process(es) of its own, run one after the other in one invocation:

- ``idle``: (``--idle 1``, the default) one ``tick`` server; viewers connected step by step with no chat
  and no reactions at all. KB per idle viewer = (server RSS after connecting and settling - RSS before
  any viewer) / N.
- ``tick x1``, ``fixed x1`` and ``per-event x1``, one per ``--modes`` entry: ONE server process,
  in-process broker (no REDIS_URL), as ``python run.py`` serves. ``tick`` is the server as shipped
  (``LIVEHUB_TICK_MODE=adaptive``): every viewer gets one ``events`` frame per tick carrying everything
  since its last one; the tick is ``tick_ms`` (50) in a small room and grows with the room's viewers to
  keep the room within ``LIVEHUB_TICK_WRITES_PER_S`` writes a second, viewers sent in slices of
  ``LIVEHUB_TICK_SLICE_VIEWERS`` on a fixed clock. ``fixed`` is the engine before that
  (``LIVEHUB_TICK_MODE=fixed``): every viewer at once, ``tick_ms`` after each flush ends.
  ``per-event`` is the baseline: the server runs with ``LIVEHUB_FANOUT=per_event``
  (``livehub.live.fanout.one_frame_per_event``): the same bookkeeping (the tick's reaction deltas go to
  the counters, state events are coalesced to their latest value per tick, a viewer that joined mid-tick
  skips what its welcome had) but every event is sent as a frame of its own,
  ``{"type":"events","events":[event]}``, encoded once per event (websocket header included) and written
  to every viewer, so a tick with E events costs N x E writes instead of N (on the shipped clock).
  Both modes carry the same events and release them at the same tick, so the comparison isolates frame
  batching: neither the tick's wait nor the coalescing of reactions into one count per tick is removed.
- ``tick xS redis``, one per ``--servers`` entry S: S server processes, each on its own port, sharing
  Redis (REDIS_URL, default redis://127.0.0.1:6379/0; LIVEHUB_REDIS_PREFIX unique to the run, its keys
  deleted afterwards) and the same database. Viewers are spread evenly over the servers; the senders
  are on the first. Server CPU is the sum over the servers; Redis's own CPU is a column of its own.

Every server: ``livehub.app.serve`` as ``run.py`` uses it (no access log), on 127.0.0.1 and a free port,
against DATABASE_URL (default ``postgresql://postgres@127.0.0.1:5432/livehub_bench``, created if missing;
the database named ``test`` is refused). The per-user chat and reaction limits are raised for every
user of these servers (so for the senders) through ``LIVEHUB_CHAT_RATE_PER_S``, ``LIVEHUB_CHAT_BURST``
and ``LIVEHUB_REACTIONS_PER_S``; password hashing is made cheap (``LIVEHUB_PASSWORD_*``) only to register
the few accounts quickly. ``--server-env NAME=VALUE`` (repeatable) sets more for every server, e.g. a
tick budget to try. Every other setting is the default (``tick_ms`` 50, 256 KiB per viewer buffer).
Setup goes through the REST API: a seller (approved with ``set_seller_status`` in SQL), a product, a
stream, started; the sender accounts.

Viewers: anonymous websockets on ``/ws/streams/{id}``, spread evenly over ``--procs`` load-generator
processes (on uvloop when it is installed, ``--gen-loop``). The ramp is cumulative: each step adds viewers
up to the next N, lets the room settle, then runs each chat rate for ``--seconds``. The default viewer
(``--client raw``) is a minimal asyncio websocket client (handshake, frame parsing, pong and close) that
counts, in every ``events`` frame, the events it carries (``bytes.count`` of ``"type":"``, of chat and of
reaction-count events: C-speed scans, no JSON decoding) and so checks every viewer's chat count; a
sample of ``--sample`` viewers (default 1,000, evenly spread over generators and servers, chosen anew
each window; 0 = all) also times every chat event it gets and checks its sequence. ``--client aiohttp``
uses aiohttp's client websockets, at a higher cost per frame on the same cores as the server.

Load per window: M chat messages/s (``--rates``) and R reactions/s (``--reactions``, default 1,000) for
``--seconds``, paced together, round-robin over the ``--senders`` sockets. Each chat text is
``t=<time.time_ns()> s=<step>:<seq>``; a timed viewer records the send-to-receipt delay of every chat
event (0.1 ms histogram buckets: p50/p99 are upper bucket edges; the max is exact, over the sample).
After the window the script waits up to ``--drain`` s for chat acks and for every viewer to have every
acked message; a message some timed viewer lacks then counts as missed, and a viewer whose count of
chat events is short counts as short. Latency includes the room's tick (up to ``tick_ms``) and the time
the viewer's own process takes to get to the frame.

Event deliveries = chat events + reaction-count events + viewers events (+ any other event) received by
viewers; deliveries/s counts from the first send to the last delivery. Deliveries per server core-second
= deliveries / CPU seconds the server process(es) used from the first send to the end of the drain
(i.e. deliveries/s divided by the server's CPU fraction). CPU (100 % = one core) from /proc/<pid>/stat
over the window: the server(s), the load generators, Redis (redis configurations) and every other
process on the machine (busy jiffies from /proc/stat minus the above and this script).

Honesty rules, because the 2 cores are shared: the load generators and this script run on the same cores
as the servers, so a server never has the machine to itself, and two servers plus generators on 2 cores
cannot show a true 2x. Before each window the script waits (up to ``--wait-quiet`` s) for processes
outside the benchmark to use under ``--busy-cpu`` % CPU, and a window they disturbed anyway is run again
(``--retries``); the row kept is the attempt with the least CPU used by others (chosen on that alone,
never on its result), and says which attempt it is; the others are in ``--json``. Wrap measured runs in
``flock /tmp/livehub-bench.lock`` so that benchmarks never overlap.

A rate *fails* at N when a viewer was refused or dropped, a message was missed, a viewer was short, a
send was refused, or p99 went over ``--p99-limit-ms`` (default 1000); it is not run at larger N in that
configuration. Every phase is bounded in time; servers and load generators are stopped on exit, Ctrl-C
or failure (and die with this process if it is killed).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import gc
import json
import math
import os
import re
import secrets
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import common
from common import (
    CHEAP_PASSWORD_HASHING,
    CLK_TCK,
    HOST,
    ROOT,
    RawWebsocket,
    ask_all,
    cpu_split,
    cpu_ticks,
    drop_redis_prefix,
    drop_server_log,
    ensure_database,
    floats,
    free_port,
    handshake_request,
    ints,
    least_disturbed,
    loadavg,
    log,
    machine_busy,
    pids_named,
    quiet_options,
    rank,
    rss_kb,
    run_generator,
    run_orchestrator,
    serve_livehub,
    spawn_server,
    start_generators,
    stop_generators,
    stop_process,
    wait_quiet,
    wait_ready,
    within,
)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/livehub_bench"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
PASSWORD = "fanout bench password"
REACTION_KINDS = ("heart", "fire", "clap", "laugh", "wow")
BUCKET_US = 100  # histogram resolution: 0.1 ms
BUCKETS = 600_000  # 60 s at 0.1 ms; later deliveries go to the last bucket (the max stays exact)
CONNECTS_IN_FLIGHT = 50  # per load generator: handshakes started and not yet welcomed
CONNECT_TIMEOUT_S = 30.0  # one viewer: TCP connect + handshake + welcome
CHAT_RE = re.compile(rb'"text":"t=(\d+) s=(\d+):(\d+)"')
CHAT_RE_STR = re.compile(r'"text":"t=(\d+) s=(\d+):(\d+)"')
EVENTS = b'{"type":"events"'
TYPE_MARK = b'"type":"'  # once for the frame itself, once per event inside it
CHAT_MARK = b'"type":"chat"'
REACTIONS_MARK = b'"type":"reactions"'


# -- process readings common.py does not have ---------------------------------------------------------


def wait_ns(pid: int) -> int:
    """Nanoseconds the process's main thread (a server's event loop) spent runnable but waiting for a CPU."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class GcPauses:
    """The garbage collector's pauses in this process, by generation (a gc.callbacks entry), so that a
    latency tail can be told apart from a collection. Logged to stderr at exit."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.started = 0.0
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self.long: list[str] = []  # pauses over 20 ms: when (UTC), generation, how long

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        gen, took = info["generation"], time.perf_counter() - self.started
        self.count[gen] += 1
        self.total[gen] += took
        self.longest[gen] = max(self.longest[gen], took)
        if took > 0.02:
            self.long.append(f"{time.strftime('%H:%M:%S', time.gmtime())} gen{gen} {1000 * took:.0f} ms")

    def install(self) -> None:
        import atexit
        import sys

        gc.callbacks.append(self)
        atexit.register(lambda: print(self.summary(), file=sys.stderr, flush=True))

    def summary(self) -> str:
        return (
            f"{self.who} gc pauses: "
            + "; ".join(
                f"gen{g} {self.count[g]} x, {1000 * self.total[g]:.0f} ms in all, "
                f"longest {1000 * self.longest[g]:.1f} ms"
                for g in range(3)
            )
            + (f"; over 20 ms: {', '.join(self.long)}" if self.long else "")
        )


# -- the server --------------------------------------------------------------------------------------


def serve(port: int, mode: str) -> None:
    """A server process: one aiohttp app, settings from the environment the parent prepared (the
    per-event baseline is the server's own `LIVEHUB_FANOUT=per_event` strategy)."""
    serve_livehub(port, prepare=GcPauses(f"server {port}").install)


def start_server(args: argparse.Namespace, dsn: str, port: int, mode: str, redis: dict | None, logfile):
    env = {
        "DATABASE_URL": dsn,
        "LIVEHUB_CHAT_RATE_PER_S": str(args.sender_rate),
        "LIVEHUB_CHAT_BURST": str(args.sender_burst),
        "LIVEHUB_REACTIONS_PER_S": str(args.sender_reactions),
        # Every viewer comes from 127.0.0.1: the per-address cap on anonymous sockets must not be what stops them.
        "LIVEHUB_ANONYMOUS_SOCKETS_PER_ADDRESS": "1000000",
        **CHEAP_PASSWORD_HASHING,
        "LIVEHUB_LOG_LEVEL": "WARNING",
        "LIVEHUB_FANOUT": "per_event" if mode == "per-event" else "tick",
        **dict(args.server_env),
    }
    if mode == "fixed":
        env["LIVEHUB_TICK_MODE"] = "fixed"
    if redis:
        env.update(REDIS_URL=redis["url"], LIVEHUB_REDIS_PREFIX=redis["prefix"])
    return spawn_server(Path(__file__).resolve(), port, env, logfile, ("--serve-mode", mode))


async def setup_room(base: str, dsn: str, senders: int) -> tuple[str, list[str]]:
    """A live stream and `senders` signed-in chat accounts, made through the REST API."""
    tag = secrets.token_hex(4)
    async with aiohttp.ClientSession(base) as http:
        stream_id, _ = await common.live_stream(http, dsn, f"fanout-{tag}")
        tokens = [
            (await common.register(http, f"fanout-sender{i}-{tag}@bench.test", f"Fanout sender{i}", PASSWORD))[1]
            for i in range(senders)
        ]
    return stream_id, tokens


# -- load generators ---------------------------------------------------------------------------------


class Stats:
    """What one load generator's viewers saw in the current window."""

    def __init__(self) -> None:
        self.begin(-1, 0)

    def begin(self, step: int, messages: int) -> None:
        self.step = step
        self.hist = array.array("q", bytes(8 * BUCKETS))
        self.max_us = 0
        self.timed = 0  # chat deliveries timed (to sampled viewers)
        self.per_seq = array.array("q", bytes(8 * messages))  # per message: sampled viewers that got it
        self.stray = 0  # timed chat events of another step, or beyond the expected count
        self.closed = 0  # viewers closed during the window
        self.close_codes: dict[int, int] = {}
        self.frames = 0
        self.bytes = 0
        self.events = 0  # event deliveries of every kind, to every viewer
        self.chat = 0
        self.reactions = 0
        self.last_ns = 0  # wall clock of the last frame carrying an event

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
            self.timed += 1

    def lost(self, code: int) -> None:
        self.closed += 1
        self.close_codes[code] = self.close_codes.get(code, 0) + 1


class RawViewer(RawWebsocket):
    """A viewer on the minimal websocket client. Counts the events of every `events` frame with byte scans;
    a timed viewer also parses its chat texts."""

    __slots__ = ("stats", "port", "timed", "chat")

    def __init__(self, stats: Stats, request: bytes, ready: asyncio.Future, port: int):
        super().__init__(request, ready)
        self.stats = stats
        self.port = port
        self.timed = False  # in this window's latency sample
        self.chat = 0  # chat events received in this window

    def text_at(self, data, start: int, end: int) -> None:
        stats = self.stats
        stats.frames += 1
        stats.bytes += end - start
        if data.startswith(EVENTS, start):
            events = data.count(TYPE_MARK, start, end) - 1
            if events > 0:
                now = time.time_ns()
                stats.events += events
                stats.last_ns = now
                chat = data.count(CHAT_MARK, start, end)
                if chat:
                    stats.chat += chat
                    self.chat += chat
                    if self.timed:
                        stats.chats(CHAT_RE.findall(data, start, end), now)
                if events > chat:
                    stats.reactions += data.count(REACTIONS_MARK, start, end)
        elif not self.opened and data.startswith(b'{"type":"welcome"', start):
            self.opened = True  # got its welcome frame: a viewer in the room
            if not self.ready.done():
                self.ready.set_result(None)

    def on_closed(self, code: int) -> None:
        self.stats.lost(code)


class AiohttpViewer:
    """The same reader on aiohttp's client websocket (autoping on)."""

    def __init__(self, stats: Stats, port: int):
        self.stats = stats
        self.port = port
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.task: asyncio.Task | None = None
        self.opened = False  # got its welcome frame: a viewer in the room
        self.done = False
        self.timed = False
        self.chat = 0

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
                    events = data.count('"type":"') - 1
                    if events > 0:
                        now = time.time_ns()
                        stats.events += events
                        stats.last_ns = now
                        chat = data.count('"type":"chat"')
                        if chat:
                            stats.chat += chat
                            self.chat += chat
                            if self.timed:
                                stats.chats(CHAT_RE_STR.findall(data), now)
                        stats.reactions += data.count('"type":"reactions"')
                elif not self.opened and data.startswith('{"type":"welcome"'):
                    self.opened = True
                    if not ready.done():
                        ready.set_result(None)
        finally:
            if not self.opened:
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

    def __init__(self, path: str, client: str):
        self.path = path
        self.client = client
        self.stats = Stats()
        self.viewers: list = []
        self.session: aiohttp.ClientSession | None = None

    async def _one(self, gate: asyncio.Semaphore, port: int) -> str | None:
        async with gate:
            viewer = None
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    if self.client == "raw":
                        loop = asyncio.get_running_loop()
                        ready = loop.create_future()
                        viewer = RawViewer(self.stats, handshake_request(HOST, port, self.path), ready, port)
                        self.viewers.append(viewer)
                        await loop.create_connection(lambda: viewer, HOST, port)
                        await ready
                    else:
                        viewer = AiohttpViewer(self.stats, port)
                        self.viewers.append(viewer)
                        await viewer.start(self.session, f"http://{HOST}:{port}{self.path}")
                return None
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                if viewer is not None:
                    viewer.abort()
                return f"{type(exc).__name__}: {exc}"[:200]

    async def connect(self, targets: dict[int, int], budget_s: float) -> dict:
        """Open viewers until this process holds targets[port] on each server (counting those that closed)."""
        if self.client == "aiohttp" and self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
        have = collections.Counter(v.port for v in self.viewers)
        t0 = time.perf_counter()
        tasks = []
        # Interleave the servers, so that each gets its share at the same pace.
        wants = {port: max(0, total - have[port]) for port, total in targets.items()}
        while any(wants.values()):
            for port in wants:
                if wants[port]:
                    wants[port] -= 1
                    tasks.append(asyncio.create_task(self._one(gate, port)))
        errors, cut_off = await within(tasks, budget_s)
        failed = len(errors) + cut_off
        return {
            "opened": len(tasks) - failed,
            "failed": failed,
            "errors": errors[:3] + (["connect budget exhausted"] if cut_off else []),
            "seconds": time.perf_counter() - t0,
        }

    def alive_viewers(self) -> list:
        return [v for v in self.viewers if v.opened and not v.done]

    def begin(self, step: int, messages: int, fraction: float) -> dict:
        """A new window: counters to zero, and a new latency sample, evenly spaced on every server."""
        self.stats.begin(step, messages)
        by_port: dict[int, list] = {}
        for v in self.viewers:
            v.chat = 0
            v.timed = False
            if v.opened and not v.done:
                by_port.setdefault(v.port, []).append(v)
        timed = 0
        for vs in by_port.values():
            k = len(vs) if fraction >= 1 else round(len(vs) * fraction)
            for i in range(k):
                vs[i * len(vs) // k].timed = True
            timed += k
        return {"alive": sum(map(len, by_port.values())), "timed": timed}

    def progress(self) -> dict:
        s = self.stats
        return {"chat": s.chat, "events": s.events, "closed": s.closed, "alive": len(self.alive_viewers())}

    def collect(self, acked: int) -> dict:
        s = self.stats
        alive = self.alive_viewers()
        out = {
            "hist": {i: c for i, c in enumerate(s.hist) if c},
            "max_us": s.max_us,
            "last_ns": s.last_ns,
            "timed": s.timed,
            "timed_alive": sum(1 for v in alive if v.timed),
            "per_seq": s.per_seq.tolist(),
            "stray": s.stray,
            "closed": s.closed,
            "close_codes": s.close_codes,
            "frames": s.frames,
            "bytes": s.bytes,
            "events": s.events,
            "chat": s.chat,
            "reactions": s.reactions,
            "alive": len(alive),
            # Every viewer's count of chat events against what the server acked.
            "short": sum(1 for v in alive if v.chat < acked),
            "missing": sum(acked - v.chat for v in alive if v.chat < acked),
            "over": sum(1 for v in alive if v.chat > acked),
        }
        s.step = -1
        return out

    async def close(self) -> None:
        for viewer in self.viewers:
            viewer.abort()
        if self.session is not None:
            await self.session.close()


def generator_main(conn, path: str, client: str, loop_choice: str) -> None:
    run_generator(_generator, conn, path, client, loop=loop_choice)


async def _generator(conn, path: str, client: str) -> None:
    loop = asyncio.get_running_loop()
    gen = Generator(path, client)
    pauses = GcPauses(f"generator {os.getpid()}")
    gc.callbacks.append(pauses)  # (a multiprocessing child skips atexit: logged in `finally` instead)
    try:
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            op = msg[0]
            if op == "connect":
                reply = await gen.connect(msg[1], msg[2])
            elif op == "begin":
                reply = gen.begin(msg[1], msg[2], msg[3])
            elif op == "progress":
                reply = gen.progress()
            elif op == "collect":
                reply = gen.collect(msg[1])
            elif op == "loop":
                reply = type(loop).__module__
            elif op == "quit":
                await gen.close()
                conn.send("bye")
                return
            else:
                reply = {"error": f"unknown command {op!r}"}
            conn.send(reply)
    finally:
        await gen.close()
        log(pauses.summary())


# -- the orchestrator ---------------------------------------------------------------------------------


@dataclass
class Config:
    mode: str  # tick | fixed | per-event
    servers: int
    broker: str  # local | redis
    idle: bool = False  # connect only: memory per idle viewer

    @property
    def name(self) -> str:
        if self.idle:
            return "idle"
        return f"{self.mode} x{self.servers}" + (" redis" if self.broker == "redis" else "")


@dataclass
class Row:
    config: str
    viewers: int
    rate: float
    reactions_rate: float = 0.0
    sent: int = 0
    reactions_sent: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    timed_viewers: int = 0
    timed: int = 0  # chat deliveries timed
    deliveries: int = 0  # event deliveries of every kind to every viewer
    chat_deliveries: int = 0
    reaction_deliveries: int = 0
    other_deliveries: int = 0  # viewers counts (and anything else)
    deliveries_per_s: float = 0.0
    per_core_s: float = 0.0  # deliveries per server core-second
    frames: int = 0
    frames_per_core_s: float = 0.0
    missed_messages: int = 0
    viewers_short: int = 0
    missing_deliveries: int = 0
    dropped_viewers: int = 0
    send_errors: int = 0
    reaction_errors: int = 0
    server_cpu: float = 0.0  # over the window, summed over the servers
    server_cpu_each: list[float] = field(default_factory=list)
    server_kernel: float = 0.0  # % of the servers' CPU spent in the kernel (stime)
    server_wait: float = 0.0  # % of the window a server's event loop waited for a CPU (the largest)
    server_core_s: float = 0.0  # CPU seconds of the server(s) from the first send to the end of the drain
    gen_cpu: float = 0.0
    redis_cpu: float = 0.0
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
    window_utc: str = ""  # when the window's load was sent, HH:MM:SS-HH:MM:SS UTC

    def line(self) -> str:
        verdict = "held" if not self.failed else "FAILED: " + "; ".join(self.failed)
        if self.tries > 1:
            verdict += f" (attempt {self.attempts} of {self.tries})"
        if not self.rate:  # a step whose viewers did not all connect
            return f"| {self.viewers:,} |" + " |" * 15 + f" {self.server_rss_mb:.0f} | {verdict} |"
        cpu = f"{self.server_cpu:.0f}"
        if len(self.server_cpu_each) > 1:
            cpu += " (" + " + ".join(f"{c:.0f}" for c in self.server_cpu_each) + ")"
        return (
            f"| {self.viewers:,} | {self.rate:g} | {self.reactions_rate:g} | {self.p50_ms:.1f} | {self.p99_ms:.1f} "
            f"| {self.max_ms:.1f} | {self.deliveries_per_s:,.0f} | {cpu} | {self.server_kernel:.0f} "
            f"| {self.server_wait:.0f} "
            f"| {self.per_core_s:,.0f} "
            f"| {self.frames_per_core_s:,.0f} | {self.gen_cpu:.0f} | {self.redis_cpu:.0f} | {self.others_cpu:.0f} "
            f"| {self.frames_per_viewer_s:.1f} | {self.server_rss_mb:.0f} | {verdict} |"
        )


HEADER = (
    "| viewers | chat msg/s | reactions/s | p50 ms | p99 ms | max ms | deliveries/s | server CPU % "
    "| of which kernel % | server waited for CPU % "
    "| deliveries per server core-s | frames per server core-s | generators CPU % | Redis CPU % | others CPU % "
    "| frames/viewer/s | server RSS MB | result |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def quantile_ms(hist: dict[int, int], total: int, q: float) -> float:
    if not total:
        return float("nan")
    want = rank(q, total)
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= want:
            return (bucket + 1) * BUCKET_US / 1000  # the bucket's upper edge
    return float("nan")


class Session:
    """One configuration: its server process(es), a room, load generators and senders; the ramp."""

    def __init__(self, args: argparse.Namespace, config: Config, dsn: str):
        self.args = args
        self.config = config
        self.dsn = dsn
        self.servers: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.logs: list = []
        self.gens: list = []
        self.pipes: list = []
        self.senders: list[aiohttp.ClientWebSocketResponse] = []
        self.readers: list[asyncio.Task] = []
        self.acks = 0
        self.errors: list[str] = []
        self.reaction_errors = 0
        self.step = 0
        self.redis = None
        if config.broker == "redis":
            self.redis = {"url": args.redis_url, "prefix": f"fanout-{secrets.token_hex(4)}"}
        self.redis_pids: list[int] = pids_named("redis-server") if self.redis else []
        # Pipe calls block a thread each; a pool of our own is not joined by asyncio.run on Ctrl-C.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.procs), thread_name_prefix="pipe")
        self.facts: dict = {"config": asdict(config), "name": config.name}

    # -- lifecycle

    async def start(self) -> tuple[str, list[str]]:
        args = self.args
        for i in range(self.config.servers):
            port = free_port()
            logfile = tempfile.NamedTemporaryFile(prefix=f"livehub-fanout-server{i}-", suffix=".log", delete=False)
            self.logs.append(logfile)
            # One after the other: each runs the migrations at startup.
            server = start_server(args, self.dsn, port, self.config.mode, self.redis, logfile)
            self.servers.append(server)
            self.ports.append(port)
            await wait_ready(f"http://{HOST}:{port}", server)
            log(f"[{self.config.name}] server {i + 1} pid {server.pid} on port {port} (log {logfile.name})")
        stream_id, tokens = await setup_room(f"http://{HOST}:{self.ports[0]}", self.dsn, args.senders)
        gen_args = (f"/ws/streams/{stream_id}", args.client, args.gen_loop)
        self.gens, self.pipes = start_generators(generator_main, [gen_args] * args.procs, name="fanout-gen")
        loops = await self.ask_all([("loop",)] * len(self.pipes), 30)
        self.facts["generator_loop"] = loops[0]
        return stream_id, tokens

    def stop(self) -> None:
        """Synchronous, for `finally`: generators, servers, their logs, the run's Redis keys."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        stop_generators(self.gens, self.pipes)
        for server in self.servers:
            stop_process(server)
        for logfile in self.logs:
            drop_server_log(logfile, f"[{self.config.name}] ")
        if self.redis:
            drop_redis_prefix(self.redis["url"], self.redis["prefix"])

    async def ask_all(self, msgs: list[tuple], timeout: float) -> list:
        return await ask_all(self.pool, self.pipes, msgs, timeout)

    async def _sender_reader(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if msg.data.startswith('{"type":"ack"'):
                self.acks += 1
            elif msg.data.startswith('{"type":"error"'):
                if '"request_id":"c' in msg.data:
                    self.errors.append(msg.data[:200])
                else:
                    self.reaction_errors += 1
                    if self.reaction_errors <= 3:
                        log("  reaction refused:", msg.data[:200])
        if ws.close_code is not None:
            self.errors.append(f"a sender socket closed ({ws.close_code})")

    async def connect_senders(self, session: aiohttp.ClientSession, stream_id: str, tokens: list[str]) -> None:
        base = f"http://{HOST}:{self.ports[0]}"
        for token in tokens:
            ws = await session.ws_connect(f"{base}/ws/streams/{stream_id}", params={"token": token})
            first = await ws.receive_json(timeout=10)
            if first.get("type") != "welcome" or first["you"]["role"] != "viewer":
                raise RuntimeError(f"sender not welcomed as a signed-in viewer: {str(first)[:200]}")
            self.senders.append(ws)
            self.readers.append(asyncio.create_task(self._sender_reader(ws)))

    async def main(self) -> tuple[list[Row], list[dict]]:
        stream_id, tokens = await self.start()
        async with aiohttp.ClientSession() as session:
            try:
                if not self.config.idle:
                    await self.connect_senders(session, stream_id, tokens)
                return await self.ramp()
            finally:
                for ws in self.senders:
                    await ws.close()
                for task in self.readers:
                    task.cancel()

    # -- measuring

    def _cpu(self) -> dict:
        return {
            "servers": [cpu_ticks(s.pid) for s in self.servers],
            "wait": [wait_ns(s.pid) for s in self.servers],
            "kernel": sum(cpu_split(s.pid)[1] for s in self.servers),
            "gens": sum(cpu_ticks(g.pid) for g in self.gens),
            "self": cpu_ticks(os.getpid()),
            "redis": sum(map(cpu_ticks, self.redis_pids)),
            "busy": machine_busy(),
        }

    def _our_ticks(self) -> dict[int, int]:
        """CPU ticks by pid of the servers, the generators, this script and Redis."""
        pids = [*(s.pid for s in self.servers), *(g.pid for g in self.gens), os.getpid(), *self.redis_pids]
        return {pid: cpu_ticks(pid) for pid in pids}

    async def wait_quiet(self) -> float:
        """Wait (up to --wait-quiet s) until processes outside the benchmark use under --busy-cpu % CPU
        over one second; returns what they used in the last second sampled."""
        return await wait_quiet(self._our_ticks, self.args.busy_cpu, self.args.wait_quiet)

    async def send_load(self, step: int, rate: float, reactions: float, seconds: float) -> tuple[int, int, float]:
        """`rate` chat messages/s and `reactions` reactions/s for `seconds`, paced together, round-robin
        over the sender sockets. Returns (chat sent, reactions sent, wall seconds)."""
        total = max(1, round(rate * seconds))
        total_r = round(reactions * seconds)
        senders = self.senders
        chat = react = 0
        t0 = time.perf_counter()
        while chat < total or react < total_r:
            now = time.perf_counter() - t0
            while chat < total and chat / rate <= now:
                ws = senders[chat % len(senders)]
                text = f"t={time.time_ns()} s={step}:{chat}"
                await ws.send_str(f'{{"type":"chat","text":"{text}","request_id":"c{step}-{chat}"}}')
                chat += 1
            while react < total_r and react / reactions <= now:
                kind = REACTION_KINDS[react % len(REACTION_KINDS)]
                await senders[react % len(senders)].send_str(f'{{"type":"react","kind":"{kind}"}}')
                react += 1
            due = min(chat / rate if chat < total else math.inf, react / reactions if react < total_r else math.inf)
            delay = due - (time.perf_counter() - t0)
            if delay > 0 and due != math.inf:
                await asyncio.sleep(delay)
        # The window ends one interval after the last chat: `total` messages at `rate` span total / rate.
        delay = t0 + max(total / rate, seconds) - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return total, total_r, time.perf_counter() - t0

    async def window(self, row: Row, rate: float, alive: int) -> None:
        """One window of chat and reactions; wait for the acks and for every viewer to get every message."""
        args = self.args
        self.step += 1
        step = self.step
        total = max(1, round(rate * args.seconds))
        fraction = 1.0 if not args.sample else min(1.0, args.sample / max(1, alive))
        begun = await self.ask_all([("begin", step, total, fraction)] * len(self.pipes), 30)
        row.timed_viewers = sum(b["timed"] for b in begun)
        acks0, errors0, rerr0 = self.acks, len(self.errors), self.reaction_errors
        c0 = self._cpu()
        t0_ns = time.time_ns()
        started = time.strftime("%H:%M:%S", time.gmtime())
        row.sent, row.reactions_sent, wall = await self.send_load(step, rate, args.reactions, args.seconds)
        row.window_utc = f"{started}-{time.strftime('%H:%M:%S', time.gmtime())}"
        c1 = self._cpu()
        row.seconds = wall
        server_ticks = [b - a for a, b in zip(c0["servers"], c1["servers"], strict=True)]
        row.server_cpu_each = [100 * t / CLK_TCK / wall for t in server_ticks]
        row.server_cpu = sum(row.server_cpu_each)
        row.server_kernel = 100 * (c1["kernel"] - c0["kernel"]) / max(1, sum(server_ticks))
        row.server_wait = max(100 * (b - a) / 1e9 / wall for a, b in zip(c0["wait"], c1["wait"], strict=True))
        row.gen_cpu = 100 * (c1["gens"] - c0["gens"]) / CLK_TCK / wall
        row.redis_cpu = 100 * (c1["redis"] - c0["redis"]) / CLK_TCK / wall
        row.machine_busy = 100 * (c1["busy"][0] - c0["busy"][0]) / max(1, c1["busy"][1] - c0["busy"][1])
        ours = sum(server_ticks) + (c1["gens"] - c0["gens"]) + (c1["self"] - c0["self"]) + (c1["redis"] - c0["redis"])
        row.others_cpu = max(0.0, 100 * (c1["busy"][0] - c0["busy"][0] - ours) / CLK_TCK / wall)

        # Drain: acks first, then deliveries, bounded by --drain seconds in all.
        t1 = time.perf_counter()
        deadline = t1 + args.drain
        while self.acks - acks0 + len(self.errors) - errors0 < total and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        acked = self.acks - acks0
        row.send_errors = total - acked
        row.reaction_errors = self.reaction_errors - rerr0
        if len(self.errors) > errors0:
            log("  send errors:", self.errors[errors0 : errors0 + 3])
        while time.perf_counter() < deadline:
            progress = await self.ask_all([("progress",)] * len(self.pipes), 30)
            if sum(p["chat"] for p in progress) >= acked * sum(p["alive"] for p in progress):
                break
            await asyncio.sleep(0.1)
        row.drain_s = time.perf_counter() - t1
        c2 = self._cpu()
        row.server_core_s = (sum(c2["servers"]) - sum(c0["servers"])) / CLK_TCK

        results = await self.ask_all([("collect", acked)] * len(self.pipes), 60)
        hist: dict[int, int] = {}
        per_seq = [0] * total
        for r in results:
            for b, c in r["hist"].items():
                hist[b] = hist.get(b, 0) + c
            for i, c in enumerate(r["per_seq"]):
                per_seq[i] += c
            row.timed += r["timed"]
            row.deliveries += r["events"]
            row.chat_deliveries += r["chat"]
            row.reaction_deliveries += r["reactions"]
            row.frames += r["frames"]
            row.dropped_viewers += r["closed"]
            row.viewers_short += r["short"]
            row.missing_deliveries += r["missing"]
            if r["close_codes"]:
                log("  viewers closed:", r["close_codes"])
            if r["stray"] or r["over"]:
                log(f"  {r['stray']} timed chat events of another step; {r['over']} viewers got more than sent")
        row.other_deliveries = row.deliveries - row.chat_deliveries - row.reaction_deliveries
        timed_alive = sum(r["timed_alive"] for r in results)
        row.span = max(wall, (max(r["last_ns"] for r in results) - t0_ns) / 1e9)
        row.deliveries_per_s = row.deliveries / row.span
        row.per_core_s = row.deliveries / row.server_core_s if row.server_core_s else float("nan")
        row.frames_per_core_s = row.frames / row.server_core_s if row.server_core_s else float("nan")
        row.frames_per_viewer_s = row.frames / max(1, alive) / wall
        row.missed_messages = sum(1 for c in per_seq[:acked] if c < timed_alive)
        row.p50_ms = quantile_ms(hist, row.timed, 0.50)
        row.p99_ms = quantile_ms(hist, row.timed, 0.99)
        row.max_ms = max(r["max_us"] for r in results) / 1000 if row.timed else float("nan")

        if row.dropped_viewers:
            row.failed.append(f"{row.dropped_viewers} viewers dropped")
        if row.send_errors:
            row.failed.append(f"{row.send_errors} sends not acked")
        if row.reaction_errors:
            row.failed.append(f"{row.reaction_errors} reactions refused")
        if row.missed_messages:
            row.failed.append(f"{row.missed_messages} messages missed by some timed viewer")
        if row.viewers_short:
            row.failed.append(f"{row.viewers_short} viewers short of {row.missing_deliveries} chat events")
        if not row.p99_ms <= args.p99_limit_ms:
            row.failed.append(f"p99 over {args.p99_limit_ms:g} ms")

    async def attempt(
        self, n: int, rate: float, alive: int, connect_s: float, kb_per_viewer: float, attempt: int
    ) -> Row:
        """Attempt `attempt` at the window of `rate` chat messages/s to `n` viewers (`alive` connected)."""
        row = Row(self.config.name, n, rate, self.args.reactions, load=loadavg(), connect_s=connect_s)
        row.kb_per_viewer = kb_per_viewer
        row.attempts = attempt
        await self.window(row, rate, alive)
        row.server_rss_mb = sum(rss_kb(srv.pid) for srv in self.servers) / 1024
        return row

    async def ramp(self) -> tuple[list[Row], list[dict]]:
        args = self.args
        name = self.config.name
        await asyncio.sleep(args.settle)
        base_rss = [rss_kb(s.pid) for s in self.servers]
        self.facts["server_rss_before_viewers_mb"] = round(sum(base_rss) / 1024, 1)
        log(f"[{name}] server RSS before viewers: {sum(base_rss) / 1024:.1f} MB (loadavg {loadavg()})")
        rows: list[Row] = []
        idle: list[dict] = []
        active = list(args.rates)
        k, s = len(self.pipes), len(self.ports)
        for n in args.viewers:
            load = loadavg()
            per_server = [n // s + (1 if i < n % s else 0) for i in range(s)]
            targets = [
                {port: ns // k + (1 if g < ns % k else 0) for port, ns in zip(self.ports, per_server, strict=True)}
                for g in range(k)
            ]
            budget = max(60.0, n / 50)
            t0 = time.perf_counter()
            replies = await self.ask_all([("connect", t, budget) for t in targets], budget + 60)
            connect_s = time.perf_counter() - t0
            failed = sum(r["failed"] for r in replies)
            errors = [e for r in replies for e in r["errors"]]
            log(f"[{name}] N={n}: connected in {connect_s:.1f} s, {failed} failed {errors[:3] if errors else ''}")
            await asyncio.sleep(args.settle)
            progress = await self.ask_all([("progress",)] * k, 30)
            alive = sum(p["alive"] for p in progress)
            conn_rss = [rss_kb(srv.pid) for srv in self.servers]
            kb_per_viewer = (sum(conn_rss) - sum(base_rss)) / n
            ok = not failed and alive >= n
            if self.config.idle:
                idle.append(
                    {
                        "viewers": n,
                        "alive": alive,
                        "connect_s": round(connect_s, 1),
                        "server_rss_mb": round(sum(conn_rss) / 1024, 1),
                        "kb_per_viewer": round(kb_per_viewer, 1),
                        "failed": None if ok else f"{failed} failed, {n - alive} not connected",
                    }
                )
                log(f"[{name}] N={n}: RSS {sum(conn_rss) / 1024:.1f} MB, {kb_per_viewer:.1f} KB per idle viewer")
                if not ok:
                    break
                continue
            if not ok:
                row = Row(name, n, 0, load=load, connect_s=connect_s, server_rss_mb=sum(conn_rss) / 1024)
                row.kb_per_viewer = kb_per_viewer
                row.failed.append(f"{failed} connections failed, {n - alive} of {n} not connected after settling")
                rows.append(row)
                log(row.line())
                break
            for rate in list(active):
                attempt = functools.partial(self.attempt, n, rate, alive, connect_s, kb_per_viewer)
                row = await least_disturbed(
                    self.wait_quiet, attempt, args.retries, args.busy_cpu, stop=lambda r: r.dropped_viewers
                )
                rows.append(row)
                log(
                    f"[{name}] " + row.line() + f"  (machine busy {row.machine_busy:.0f} %, drain {row.drain_s:.1f} s; "
                    f"window {row.window_utc})"
                )
                if row.failed:
                    active.remove(rate)
                await asyncio.sleep(1.0)
            if not active:
                break
        return rows, idle


def run_session(args: argparse.Namespace, config: Config, dsn: str) -> dict:
    session = Session(args, config, dsn)
    try:
        rows, idle = asyncio.run(session.main())
        dead = [s.returncode for s in session.servers if s.poll() is not None]
        if dead:
            raise RuntimeError(f"a server exited ({dead}) during the run")
    finally:
        session.stop()
    return {
        "name": config.name,
        "config": asdict(config),
        "facts": session.facts,
        "rows": [asdict(r) for r in rows],
        "idle": idle,
    }


# -- the report ----------------------------------------------------------------------------------------


def git_facts() -> dict:
    def git(*cmd: str) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        return ""

    return {
        "commit": git("log", "-1", "--format=%h"),
        "uncommitted_in_livehub": bool(git("status", "--porcelain", "--", "livehub")),
    }


def machine_facts(args: argparse.Namespace) -> dict:
    return {
        **common.machine_facts(),
        **git_facts(),
        "load_generators": args.procs,
        "client": args.client,
        "senders": args.senders,
        "server_env": {
            "LIVEHUB_CHAT_RATE_PER_S": args.sender_rate,
            "LIVEHUB_CHAT_BURST": args.sender_burst,
            "LIVEHUB_REACTIONS_PER_S": args.sender_reactions,
            **dict(args.server_env),
        },
    }


def _by_key(result: dict | None) -> dict:
    return {(r["viewers"], r["rate"]): r for r in (result or {}).get("rows", []) if r["rate"]}


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and not (math.isnan(a) or math.isnan(b)) else "—"


def _verdict(r: dict) -> str:
    return "held" if not r["failed"] else "failed"


def report(results: dict) -> str:
    facts, args = results["facts"], results["args"]
    out = [
        f"{facts['date_utc']}; commit {facts.get('commit', '?')}"
        + (" (with uncommitted changes in livehub/)" if facts.get("uncommitted_in_livehub") else "")
        + f"; {facts['cores']} cores ({facts['cpu']}), {facts['mem_total_gib']} GiB; Python {facts['python']}, "
        f"aiohttp {facts['aiohttp']}; loadavg at start {facts['loadavg_at_start']}.",
        f"{args['procs']} load-generator processes ({args['client']} client, loop "
        f"{next((c['facts'].get('generator_loop') for c in results['configs']), '?')}) and the senders on the same "
        f"machine as the servers; {args['senders']} sender sockets; {args['seconds']:g} s windows; latency over a "
        f"sample of {args['sample'] or 'all'} viewers per window; server env {json.dumps(facts['server_env'])}.",
    ]
    by_name = {c["name"]: c for c in results["configs"]}
    idle = by_name.get("idle")
    if idle:
        out += [
            "",
            "Memory per idle viewer (no chat, no reactions; one tick server):",
            "",
            "| viewers | server RSS MB | KB per idle viewer | connect s |",
            "|---:|---:|---:|---:|",
            *(
                f"| {r['viewers']:,} | {r['server_rss_mb']:.0f} | {r['kb_per_viewer']:.1f} | {r['connect_s']:.1f} |"
                + (f" {r['failed']}" if r["failed"] else "")
                for r in idle["idle"]
            ),
            f"(server RSS before any viewer {idle['facts'].get('server_rss_before_viewers_mb')} MB)",
        ]
    for c in results["configs"]:
        if c["name"] == "idle":
            continue
        out += ["", f"{c['name']} (server RSS before viewers {c['facts'].get('server_rss_before_viewers_mb')} MB):"]
        out += ["", HEADER, *(Row(**r).line() for r in c["rows"])]
    tick, per_event = _by_key(by_name.get("tick x1")), _by_key(by_name.get("per-event x1"))
    common = sorted(set(tick) & set(per_event))
    if common:
        out += [
            "",
            "Tick batching against one frame per event (one process each, in-process broker):",
            "",
            "| viewers | chat msg/s | deliveries per core-s: tick | per-event | tick / per-event "
            "| frames per core-s: tick | per-event | p99 ms: tick | per-event | p99 tick / per-event "
            "| result: tick | per-event |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for key in common:
            t, p = tick[key], per_event[key]
            out.append(
                f"| {key[0]:,} | {key[1]:g} | {t['per_core_s']:,.0f} | {p['per_core_s']:,.0f} "
                f"| {_ratio(t['per_core_s'], p['per_core_s'])} | {t['frames_per_core_s']:,.0f} "
                f"| {p['frames_per_core_s']:,.0f} | {t['p99_ms']:.1f} | {p['p99_ms']:.1f} "
                f"| {_ratio(t['p99_ms'], p['p99_ms'])} | {_verdict(t)} | {_verdict(p)} |"
            )
    fixed = _by_key(by_name.get("fixed x1"))
    common = sorted(set(tick) & set(fixed))
    if common:
        out += [
            "",
            "The adaptive tick (as shipped) against the fixed tick (one process each, in-process broker):",
            "",
            "| viewers | chat msg/s | p99 ms: adaptive | fixed | p50 ms: adaptive | fixed "
            "| deliveries per core-s: adaptive | fixed | adaptive / fixed | server CPU %: adaptive | fixed "
            "| frames/viewer/s: adaptive | fixed | generators CPU %: adaptive | fixed | result: adaptive | fixed |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for key in common:
            a, f = tick[key], fixed[key]
            out.append(
                f"| {key[0]:,} | {key[1]:g} | {a['p99_ms']:.1f} | {f['p99_ms']:.1f} | {a['p50_ms']:.1f} "
                f"| {f['p50_ms']:.1f} | {a['per_core_s']:,.0f} | {f['per_core_s']:,.0f} "
                f"| {_ratio(a['per_core_s'], f['per_core_s'])} | {a['server_cpu']:.0f} | {f['server_cpu']:.0f} "
                f"| {a['frames_per_viewer_s']:.1f} | {f['frames_per_viewer_s']:.1f} | {a['gen_cpu']:.0f} "
                f"| {f['gen_cpu']:.0f} | {_verdict(a)} | {_verdict(f)} |"
            )
    out += per_million_table(results)
    one, two = _by_key(by_name.get("tick x1 redis")), _by_key(by_name.get("tick x2 redis"))
    common = sorted(set(one) & set(two))
    if common:
        out += [
            "",
            "One server process against two, sharing Redis (same offered load; the generators share the 2 cores):",
            "",
            "| viewers | chat msg/s | deliveries/s: 1 process | 2 processes | 2 / 1 | server CPU %: 1 | 2 "
            "| deliveries per core-s: 1 | 2 | p99 ms: 1 | 2 | result: 1 | 2 |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for key in common:
            a, b = one[key], two[key]
            out.append(
                f"| {key[0]:,} | {key[1]:g} | {a['deliveries_per_s']:,.0f} | {b['deliveries_per_s']:,.0f} "
                f"| {_ratio(b['deliveries_per_s'], a['deliveries_per_s'])} | {a['server_cpu']:.0f} "
                f"| {b['server_cpu']:.0f} | {a['per_core_s']:,.0f} | {b['per_core_s']:,.0f} "
                f"| {a['p99_ms']:.1f} | {b['p99_ms']:.1f} | {_verdict(a)} | {_verdict(b)} |"
            )
    out += ["", "Targets:", "", *targets(results)]
    return "\n".join(out)


def redis_configs(results: dict) -> list[dict]:
    """The `tick xS redis` configurations, by S."""
    configs = [c for c in results["configs"] if c["config"]["broker"] == "redis" and c["config"]["mode"] == "tick"]
    return sorted(configs, key=lambda c: c["config"]["servers"])


def per_million_table(results: dict) -> list[str]:
    """Server CPU-seconds per million deliveries at each process count (the work per delivery)."""
    configs = redis_configs(results)
    if len(configs) < 2:
        return []
    out = [
        "",
        "Server CPU-seconds per million deliveries, by server processes sharing Redis (same room, viewers spread "
        "evenly; the senders on server 1):",
        "",
        "| viewers | chat msg/s | processes | deliveries | server CPU-s | CPU-s per M deliveries | vs 1 process "
        "| frames/viewer/s | p99 ms | result |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    first = _by_key(configs[0])
    for c in configs:
        for key, r in sorted(_by_key(c).items()):
            per_m = r["server_core_s"] / r["deliveries"] * 1e6 if r["deliveries"] else float("nan")
            base = first.get(key)
            base_m = base["server_core_s"] / base["deliveries"] * 1e6 if base and base["deliveries"] else float("nan")
            out.append(
                f"| {key[0]:,} | {key[1]:g} | {c['config']['servers']} | {r['deliveries']:,} "
                f"| {r['server_core_s']:.2f} | {per_m:.3f} | {_ratio(per_m, base_m)} | {r['frames_per_viewer_s']:.1f} "
                f"| {r['p99_ms']:.1f} | {_verdict(r)} |"
            )
    return out


def targets(results: dict) -> list[str]:
    """Each target of the issue, and where this run puts it."""
    by_name = {c["name"]: c for c in results["configs"]}
    out = []

    def rows(name):
        return [r for r in by_name.get(name, {}).get("rows", []) if r["rate"]]

    tick = rows("tick x1")
    at10k = [r for r in tick if r["viewers"] == 10_000 and r["rate"] == 100 and r["reactions_rate"] == 1000]
    if at10k:
        r = at10k[0]
        ok = not r["failed"] and r["p99_ms"] < 250
        out.append(
            f"- 10,000 viewers, one process, 100 chat/s + 1,000 reactions/s, every message to every viewer, p99 "
            f"< 250 ms: {'MET' if ok else 'NOT MET'} (p99 {r['p99_ms']:.0f} ms, {_verdict(r)}"
            + (f": {'; '.join(r['failed'])}" if r["failed"] else "")
            + ")"
        )
    at10k = [r for r in tick if r["viewers"] == 10_000]
    if at10k:
        r = at10k[0]
        fixed = [f for f in rows("fixed x1") if f["viewers"] == 10_000 and f["rate"] == r["rate"]]
        out.append(
            f"- deliveries per server core-second at 10,000 viewers >= 1.47 M (the fixed tick's in 2026-11): "
            f"{'MET' if r['per_core_s'] >= 1.47e6 else 'NOT MET'} ({r['per_core_s'] / 1e6:.2f} M"
            + (f"; the fixed tick in this run {fixed[0]['per_core_s'] / 1e6:.2f} M" if fixed else "")
            + ")"
        )
    configs = redis_configs(results)
    if len(configs) >= 2:
        spread = []
        for key in sorted(set.intersection(*(set(_by_key(c)) for c in configs))):
            per_m = [_by_key(c)[key]["server_core_s"] / max(1, _by_key(c)[key]["deliveries"]) * 1e6 for c in configs]
            spread.append(f"{key[0]:,} viewers: {max(per_m) / min(per_m) - 1:.0%} apart")
        names = "/".join(str(c["config"]["servers"]) for c in configs)
        out.append(f"- server CPU-s per million deliveries at {names} processes within 10 %: " + "; ".join(spread))
    if tick:
        r = max(tick, key=lambda r: r["per_core_s"])
        out.append(
            f"- >= 1,000,000 event deliveries per server core-second through tick batching: "
            f"{'MET' if r['per_core_s'] >= 1e6 else 'NOT MET'} (best {r['per_core_s']:,.0f} at {r['viewers']:,} "
            f"viewers, {r['rate']:g} chat/s; {r['per_core_s'] / 1e6:.2f} M)"
        )
    per_event = rows("per-event x1")
    if per_event:
        r = max(per_event, key=lambda r: r["frames_per_core_s"])
        out.append(
            f"- per-frame baseline (issue: about 100,000 frames/s): {r['frames_per_core_s']:,.0f} frames per server "
            f"core-second at best ({r['viewers']:,} viewers)"
        )
    idle = by_name.get("idle", {}).get("idle", [])
    if idle:
        worst = max(r["kb_per_viewer"] for r in idle)
        each = ", ".join(f"{r['kb_per_viewer']:.1f} KB at {r['viewers']:,}" for r in idle)
        out.append(f"- memory per idle viewer <= 30 KB: {'MET' if worst <= 30 else 'NOT MET'} ({each})")
    one, two = by_name.get("tick x1 redis"), by_name.get("tick x2 redis")
    if one and two:
        same = sorted(set(_by_key(one)) & set(_by_key(two)))
        if same:
            a, b = _by_key(one)[same[-1]], _by_key(two)[same[-1]]
            ratio = b["deliveries_per_s"] / a["deliveries_per_s"] if a["deliveries_per_s"] else float("nan")
            out.append(
                f"- 2 processes with Redis >= 1.7x one: {'MET' if ratio >= 1.7 else 'NOT MET'} at the largest "
                f"common step ({same[-1][0]:,} viewers, same offered load): {ratio:.2f}x deliveries/s, p99 "
                f"{a['p99_ms']:.0f} -> {b['p99_ms']:.0f} ms, server CPU {a['server_cpu']:.0f} % -> "
                f"{b['server_cpu']:.0f} % (summed)"
            )
    return out


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {c["name"]: c for c in results["configs"]}
    rate = max((r["rate"] for c in results["configs"] for r in c["rows"]), default=0)

    def series(name: str, key: str):
        rows = [r for r in by_name.get(name, {}).get("rows", []) if r["rate"] == rate]
        return [r["viewers"] for r in rows], [r[key] for r in rows], [bool(r["failed"]) for r in rows]

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    styles = {
        "tick x1": ("tab:blue", "o"),
        "fixed x1": ("tab:orange", "v"),
        "per-event x1": ("tab:red", "s"),
        "tick x1 redis": ("tab:green", "^"),
        "tick x2 redis": ("tab:purple", "D"),
    }

    def draw(ax, name, key, scale=1.0):
        x, y, failed = series(name, key)
        if not x:
            return
        color, marker = styles.get(name, ("gray", "x"))
        y = [v / scale for v in y]
        ax.plot(x, y, color=color, marker=marker, label=name)
        fx = [a for a, f in zip(x, failed, strict=True) if f]
        fy = [b for b, f in zip(y, failed, strict=True) if f]
        if fx:
            ax.scatter(fx, fy, s=140, facecolors="none", edgecolors="black", zorder=3)

    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(results["args"]["viewers"], [f"{n:,}" for n in results["args"]["viewers"]])
        ax.minorticks_off()
    ax = axes[0]
    for name in ("tick x1", "fixed x1", "per-event x1"):
        draw(ax, name, "p99_ms")
    ax.axhline(250, color="gray", linestyle="--", linewidth=1, label="target 250 ms")
    ax.set_yscale("log")
    ax.set_title(f"chat p99 (1 process), {rate:g} chat/s + {results['args']['reactions']:g} reactions/s")
    ax.set_ylabel("p99 send-to-receipt, ms (log)")

    ax = axes[1]
    for name in ("tick x1", "fixed x1", "per-event x1", "tick x1 redis", "tick x2 redis"):
        draw(ax, name, "per_core_s", 1e6)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1, label="target 1 M")
    ax.set_title("event deliveries per server core-second")
    ax.set_ylabel("millions")

    ax = axes[2]
    for name in ("tick x1 redis", "tick x2 redis"):
        draw(ax, name, "deliveries_per_s", 1e6)
    ax.set_title("event deliveries/s, 1 vs 2 processes (Redis)")
    ax.set_ylabel("millions per second")

    for ax in axes:
        ax.set_xlabel("viewers in the room")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    facts = results["facts"]
    fig.suptitle(
        f"bench/fanout.py, commit {facts.get('commit', '?')}, {facts['date_utc']}, {facts['cores']} shared cores "
        "(servers + load generators); circled points failed",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot written to {path}")


# -- main ------------------------------------------------------------------------------------------------


def configs_of(args: argparse.Namespace) -> list[Config]:
    configs = [Config("tick", 1, "local", idle=True)] if args.idle else []
    configs += [Config(mode, 1, "local") for mode in args.modes]
    configs += [Config("tick", s, "redis") for s in args.servers]
    return configs


def bench(args: argparse.Namespace) -> dict:
    dsn = os.environ.get("DATABASE_URL") or DEFAULT_DSN
    asyncio.run(ensure_database(dsn))
    facts = machine_facts(args)
    log("machine:", json.dumps(facts))
    results = {"facts": facts, "args": {k: v for k, v in vars(args).items() if k not in ("serve", "serve_mode")}}
    results["configs"] = configs = []
    for config in configs_of(args):
        log(f"== {config.name} ==")
        configs.append(run_session(args, config, dsn))
        time.sleep(2.0)
    return results


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("LIVEHUB_"):
        raise argparse.ArgumentTypeError("NAME=VALUE with a LIVEHUB_ name")
    return name, value


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def names(choices):
        def parse(text: str) -> list[str]:
            items = [x.strip() for x in text.split(",") if x.strip()]
            bad = [x for x in items if x not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
            return items

        return parse

    ap.add_argument(
        "--viewers", type=ints, help="comma-separated viewer counts, ascending (default 500,1000,2000,5000,10000)"
    )
    ap.add_argument("--rates", type=floats, help="comma-separated chat messages per second (default 100)")
    ap.add_argument("--reactions", type=float, default=1000.0, help="reactions per second alongside (default 1000)")
    ap.add_argument(
        "--modes",
        type=names(("tick", "fixed", "per-event")),
        default=["tick", "fixed"],
        help="one-process configurations, in-process broker: tick (as shipped), fixed (the tick before the "
        "adaptive one), per-event ('' for none; default tick,fixed)",
    )
    ap.add_argument(
        "--servers",
        type=ints,
        default=[1, 2],
        help="server processes sharing Redis, one configuration each (default 1,2)",
    )
    ap.add_argument("--idle", type=int, choices=(0, 1), default=1, help="1: measure memory per idle viewer first")
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS, help="for --servers")
    ap.add_argument("--seconds", type=float, default=20.0, help="chat window per rate and step (default 20)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after connecting before chat (default 3)")
    ap.add_argument("--drain", type=float, default=5.0, help="seconds to wait for late deliveries (default 5)")
    ap.add_argument("--procs", type=int, default=max(2, os.cpu_count() or 2), help="load-generator processes")
    ap.add_argument("--client", choices=("raw", "aiohttp"), default="raw", help="viewer client (default raw)")
    ap.add_argument("--gen-loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="generators' loop")
    ap.add_argument("--sample", type=int, default=1000, help="viewers timing every chat event (0 = all; default 1000)")
    ap.add_argument("--senders", type=int, default=2, help="sender sockets, load round-robin over them (default 2)")
    ap.add_argument("--sender-rate", type=float, default=1000.0, help="LIVEHUB_CHAT_RATE_PER_S for the servers")
    ap.add_argument("--sender-burst", type=int, default=1000, help="LIVEHUB_CHAT_BURST for the servers")
    ap.add_argument("--sender-reactions", type=float, default=100000.0, help="LIVEHUB_REACTIONS_PER_S for the servers")
    ap.add_argument(
        "--server-env",
        type=env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for every server (repeatable), e.g. LIVEHUB_TICK_WRITES_PER_S=40000",
    )
    ap.add_argument("--p99-limit-ms", type=float, default=1000.0, help="a rate fails above this p99 (default 1000)")
    quiet_options(ap)
    ap.add_argument("--quick", action="store_true", help="200,500 viewers, 5 s windows")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--plot", help="also draw the results to this PNG (needs matplotlib)")
    ap.add_argument("--from-json", help="no run: print the tables (and --plot) of an earlier --json file")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: be a server on this port
    ap.add_argument("--serve-mode", default="tick", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve or args.from_json:
        return args
    if args.quick:
        args.viewers = args.viewers or [200, 500]
        args.seconds = min(args.seconds, 5.0)
    args.viewers = args.viewers or [500, 1000, 2000, 5000, 10000]
    args.rates = args.rates or [100.0]
    if min(args.viewers) < 1 or args.viewers != sorted(args.viewers):
        ap.error("--viewers takes positive counts in ascending order")
    if min(args.rates) <= 0 or args.reactions < 0 or args.seconds <= 0 or args.settle < 0 or args.drain <= 0:
        ap.error("--rates, --seconds and --drain must be positive, --reactions not negative")
    if args.procs < 1 or args.senders < 1 or args.sample < 0 or any(s < 1 for s in args.servers):
        ap.error("--procs, --senders and --servers must be at least 1, --sample not negative")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve, args.serve_mode)
        return
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        print(report(results))
        if args.plot:
            plot(results, args.plot)
        return
    results = run_orchestrator(lambda: bench(args), stopped="the servers and load generators")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(report(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
