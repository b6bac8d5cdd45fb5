"""Prometheus metrics: their definitions, and the scrape (docs/OPERATIONS.md, "Metrics").

Counters, histograms and gauges are module globals that the code updating them imports. Hot paths bind
labelled children once (at import here, or once per room or job) and call plain `inc`/`observe`, never a
label lookup per viewer or per frame.

Several processes (`livehub serve --workers N`): the CLI points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start, so every process keeps its values in memory-mapped files there and a
scrape answered by any one worker sums them all (MultiProcessCollector). Gauges say how processes combine
(`multiprocess_mode`): a count of this process's things is summed over the live processes.

Some figures are the cluster's rather than a process's (the top rooms' viewers, the job queue, the books):
they are read at scrape time by `ClusterFigures`, from PostgreSQL and the backplane, with short timeouts
and a cache, so a scrape never waits long nor adds load however often it comes.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator

import asyncpg
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from livehub.shop import wallet

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus reads (generate_latest writes it; our names need no more).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Sub-millisecond to a second: a beat, a flush, a pool acquire or a publish round trip.
FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# A request or a batch's statement: a millisecond to ten seconds.
SLOW = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# -- HTTP ------------------------------------------------------------------------------------------
HTTP_REQUEST_SECONDS = Histogram(
    "livehub_http_request_duration_seconds",
    "REST and page requests: time to the response, by route template (never the raw path) and status class",
    ["method", "route", "status"],
    buckets=SLOW,
)

# -- live rooms ------------------------------------------------------------------------------------
WEBSOCKETS = Gauge(
    "livehub_websocket_connections",
    "Open websockets: kind room (/ws/streams/{id}) or me (/ws/me)",
    ["kind"],
    multiprocess_mode="livesum",
)
ROOM_SOCKETS = WEBSOCKETS.labels(kind="room")
ME_SOCKETS = WEBSOCKETS.labels(kind="me")
TICK_SECONDS = Histogram(
    "livehub_tick_duration_seconds",
    "One beat of a room's clock: reactions out, a slice of viewers sent",
    buckets=FAST,
)
FLUSH_SECONDS = Histogram(
    "livehub_flush_duration_seconds", "Encoding and writing one beat's frames to its slice of viewers", buckets=FAST
)
FRAMES_SENT = Counter("livehub_frames_sent_total", "Room frames handed to viewers' sockets by the fan-out")
BYTES_SENT = Counter("livehub_frame_bytes_sent_total", "Bytes of the room frames handed to viewers' sockets")
SLOW_CLOSES = Counter("livehub_slow_viewer_closes_total", "Viewers closed with 4008: too far behind to keep up")
BUY_BATCH_SIZE = Histogram(
    "livehub_buy_batch_size", "Buys settled by one buy_batch call", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)
BUY_SETTLE_SECONDS = Histogram(
    "livehub_buy_settle_duration_seconds", "Settling one batch of buys (buy_batch, splits included)", buckets=SLOW
)
AUCTION_BIDS = Counter("livehub_auction_bids_total", "Auction bids decided, by outcome", ["status"])
for _outcome in ("leading", "outbid", "too_low", "insufficient_funds", "ended", "not_allowed", "error"):
    AUCTION_BIDS.labels(status=_outcome)  # bid_batch's outcomes, exported from the start (at 0)
CHAT_ARCHIVE_QUEUE = Gauge(
    "livehub_chat_archive_queue", "Chat messages waiting to be archived", multiprocess_mode="livesum"
)
CHAT_ARCHIVE_DROPPED = Counter(
    "livehub_chat_archive_dropped_total",
    "Chat messages dropped: the buffer was full while the database was away",
)
CHAT_ARCHIVE_SET_ASIDE = Counter(
    "livehub_chat_archive_set_aside_total", "Chat messages the database refused on their own (never archived)"
)

# -- the backplane ---------------------------------------------------------------------------------
BROKER_PUBLISH_SECONDS = Histogram(
    "livehub_broker_publish_duration_seconds", "One batch of publishes to Redis, retries included", buckets=FAST
)
BROKER_RECONNECTS = Counter("livehub_broker_reconnects_total", "Redis pub/sub connections lost (and made again)")
BROKER_RESETS = Counter("livehub_broker_resets_total", "Rooms whose history had a gap after a reconnect (reset sent)")

# -- jobs, media, database -------------------------------------------------------------------------
JOB_RUNS = Counter("livehub_job_runs_total", "Durable job attempts run on this node, by job", ["job"])
JOB_FAILURES = Counter("livehub_job_failures_total", "Durable job attempts that raised, by job", ["job"])
MEDIA_SESSIONS = Gauge(
    "livehub_media_sessions", "WebRTC sessions relayed by this node, by role", ["role"], multiprocess_mode="livesum"
)
MEDIA_PACKETS = Counter("livehub_media_relay_packets_total", "Encoded media packets forwarded to viewers")
DB_POOL = Gauge(
    "livehub_db_pool_connections",
    "The node's database pool: connections open (size), in use, and its maximum",
    ["state"],
    multiprocess_mode="livesum",
)
DB_POOL_SIZE, DB_POOL_IN_USE, DB_POOL_MAX = (DB_POOL.labels(state=s) for s in ("size", "in_use", "max"))
DB_ACQUIRE_SECONDS = Histogram(
    "livehub_db_acquire_duration_seconds", "Waiting for a pooled database connection", buckets=FAST
)
DB_ACQUIRE_ERRORS = Counter(
    "livehub_db_acquire_errors_total", "Pooled connections not had: timeout (pool exhausted) or error", ["error"]
)
_ACQUIRE_TIMEOUTS = DB_ACQUIRE_ERRORS.labels(error="timeout")
_ACQUIRE_FAILURES = DB_ACQUIRE_ERRORS.labels(error="error")


def observe_db_acquire(seconds: float, error: BaseException | None) -> None:
    """The node's pool reports each acquire here (storage/db.py's acquire hook)."""
    if error is None:
        DB_ACQUIRE_SECONDS.observe(seconds)
    elif isinstance(error, TimeoutError):
        _ACQUIRE_TIMEOUTS.inc()
    elif isinstance(error, Exception):
        _ACQUIRE_FAILURES.inc()


def sample_process(pool: asyncpg.Pool | None, media) -> None:
    """Gauges of this process's own things, set every few seconds and before a scrape."""
    if pool is not None:
        size = pool.get_size()
        DB_POOL_SIZE.set(size)
        DB_POOL_IN_USE.set(size - pool.get_idle_size())
        DB_POOL_MAX.set(pool.get_max_size())
    if media is not None:
        roles = {"publisher": 0, "viewer": 0}
        for session in list(media.sessions.values()):
            roles[session.role] = roles.get(session.role, 0) + 1
        for role, count in roles.items():
            MEDIA_SESSIONS.labels(role=role).set(count)


# -- the cluster's figures, read at scrape time --------------------------------------------------------


class ClusterFigures(Collector):
    """The top rooms by viewers (the rest summed as stream="other"), the job queue by status, and the books
    check: read from PostgreSQL and the backplane when a scrape comes, each at most once per `cache_s`
    (the books once per `books_every_s`: it reads the whole ledger)."""

    def __init__(self, pool: asyncpg.Pool, hub, *, top_rooms: int, books_every_s: float, cache_s: float = 5.0):
        self._pool, self._hub = pool, hub
        self._top, self._books_every_s, self._cache_s = top_rooms, books_every_s, cache_s
        self._rooms: list[tuple[str, int]] = []
        self._jobs: dict[str, int] = {}
        self._read_at = float("-inf")
        self._books: dict | None = None
        self._books_done_at = 0.0
        self._books_at = float("-inf")
        self._books_task: asyncio.Task | None = None
        self._closing = False
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:  # scrapes at once share one read
            now = time.monotonic()
            if now - self._read_at >= self._cache_s:
                self._read_at = now
                await self._read("rooms", self._read_rooms)
                await self._read("jobs", self._read_jobs)
            if now - self._books_at >= self._books_every_s and self._books_task is None:
                # It may take a while on a big ledger: in the background, the scrape gives the last result.
                self._books_task = asyncio.create_task(self._check_books(), name="metrics-books")

    async def close(self) -> None:
        self._closing = True
        if self._books_task is not None:
            self._books_task.cancel()
            await asyncio.gather(self._books_task, return_exceptions=True)

    async def _check_books(self) -> None:
        try:
            await self._read("books", self._read_books, timeout_s=None)
        finally:
            self._books_at = time.monotonic()
            self._books_task = None

    async def _read(self, what: str, read, *, timeout_s: float | None = 2.0) -> None:
        # A figure that cannot be read now keeps its last value: a scrape must not fail for it.
        try:
            async with asyncio.timeout(timeout_s):
                await read()
        except Exception as exc:
            if not self._closing:  # (a read cut off by the node's shutdown is no news)
                log.warning("metrics: reading %s failed, last value kept: %r", what, exc)

    async def _read_rooms(self) -> None:
        ids = [r["id"] for r in await self._pool.fetch("SELECT id FROM streams WHERE status = 'live' LIMIT 10000")]
        counts = await self._hub.viewer_counts(ids)
        self._rooms = sorted(((str(sid), n) for sid, n in counts.items()), key=lambda r: -r[1])

    async def _read_jobs(self) -> None:
        rows = await self._pool.fetch("SELECT status::text, count(*) AS n FROM pgqueuer GROUP BY status")
        self._jobs = {r["status"]: r["n"] for r in rows}

    async def _read_books(self) -> None:
        self._books = await wallet.books(self._pool)  # the long statement budget bounds it
        self._books_done_at = time.time()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        viewers = GaugeMetricFamily(
            "livehub_room_viewers",
            f"Viewers over all nodes of the {self._top} biggest live rooms; the other rooms summed as stream=other",
            labels=["stream"],
        )
        for stream, n in self._rooms[: self._top]:
            viewers.add_metric([stream], n)
        viewers.add_metric(["other"], sum(n for _, n in self._rooms[self._top :]))
        yield viewers
        yield GaugeMetricFamily("livehub_live_rooms", "Streams live now", value=len(self._rooms))
        jobs = GaugeMetricFamily("livehub_jobs", "Durable jobs in the queue table, by status", labels=["status"])
        for status in sorted({"queued", "picked", "failed"} | set(self._jobs)):
            jobs.add_metric([status], self._jobs.get(status, 0))
        yield jobs
        if self._books is not None:
            yield GaugeMetricFamily(
                "livehub_books_balanced",
                "1 when the last books check (check_books) found them balanced, else 0",
                value=1 if self._books.get("balanced") else 0,
            )
            yield GaugeMetricFamily(
                "livehub_books_checked_timestamp_seconds",
                "When the books check last gave its answer (Unix time)",
                value=self._books_done_at,
            )


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


@contextlib.contextmanager
def shared_by_worker_processes() -> Iterator[str]:
    """For `serve --workers N`, around starting the workers (which inherit the environment): a fresh
    directory for their metric files, so a scrape sums this run's processes and no earlier run's; removed
    when the run ends."""
    directory = tempfile.mkdtemp(prefix="livehub-metrics-")
    saved = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = directory
    try:
        yield directory
    finally:
        if saved is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = saved
        shutil.rmtree(directory, ignore_errors=True)


def forget_ended(pids: Iterable[int | None]) -> None:
    """Worker processes that ended: their live gauges (open sockets, pool connections) no longer count."""
    if multiprocess_dir():
        for pid in pids:
            if pid is not None:
                multiprocess.mark_process_dead(pid)


def exposition(cluster: ClusterFigures | None) -> bytes:
    """The scrape's body: every process's metrics (summed over the workers in multiprocess mode), then the
    cluster's figures."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    if cluster is not None:
        own = CollectorRegistry(auto_describe=False)
        own.register(cluster)
        body += generate_latest(own)
    return body
