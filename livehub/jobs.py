"""Durable jobs: pgqueuer running inside every node (docs/MESSAGES.md).

A job is a row of pgqueuer's queue table, written in the transaction of what caused it (the storage
function `enqueue_job()`, or `notify_user()` for a notification), so it exists exactly when that commits.
Every node runs a QueueManager that takes jobs with FOR UPDATE SKIP LOCKED (each job runs on one node),
is woken by the queue's LISTEN/NOTIFY channel, and beats a heartbeat while a job runs: a job whose node
died (no beat for LIVEHUB_JOB_HEARTBEAT_TIMEOUT_S) is taken again by a live node. A job that raises is
queued again after LIVEHUB_JOB_RETRY_MIN_S, doubled per attempt up to LIVEHUB_JOB_RETRY_MAX_S, for
LIVEHUB_JOB_ATTEMPTS attempts in all; then it stays in the queue table with status 'failed' (visible, and
re-queueable with pgqueuer's tools). A SchedulerManager runs cron schedules, each due run on one node.

Registering work (from any module listed in MODULES, or imported by the app anyway):

    from livehub import jobs

    @jobs.job("send_due_reminders")
    async def send_due_reminders(ctx: jobs.Context, payload: dict) -> None: ...

    @jobs.schedule("release_earnings", "* * * * *")
    async def release(ctx: jobs.Context) -> None: ...

Queue one from SQL: `PERFORM enqueue_job('send_due_reminders', jsonb_build_object(...))`, or from Python with
`await jobs.enqueue(conn, name, payload)` inside the transaction of its cause.
"""

import asyncio
import contextlib
import importlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
from pgqueuer import AsyncpgPoolDriver, Job, Queries, QueueManager, SchedulerManager
from pgqueuer.executors import DatabaseRetryEntrypointExecutor, EntrypointExecutorParameters

from livehub.mail import Mailer
from livehub.metrics import JOB_FAILURES, JOB_RUNS
from livehub.settings import Settings
from livehub.tasks import cancel_all
from storage.db import close_pool, create_pool

log = logging.getLogger(__name__)

# A queue worker or scheduler that dies (the database away) is started again after this, doubled, capped.
RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0


@dataclass(frozen=True)
class Context:
    """What a job handler works with: the node's pool, settings, hub (pushes to sockets) and mailer."""

    pool: asyncpg.Pool
    settings: Settings
    hub: Any  # livehub.live.hub.Hub, or None in a tool
    mailer: Mailer
    attempt: int = 0  # 0 on the first run, 1 on the first retry...


JobHandler = Callable[[Context, dict], Awaitable[None]]
ScheduleHandler = Callable[[Context], Awaitable[None]]


@dataclass(frozen=True)
class _Schedule:
    cron: str | Callable[[Settings], str]  # or read from the settings when the node starts ("": off)
    handler: ScheduleHandler

    def expression(self, settings: Settings) -> str:
        return self.cron if isinstance(self.cron, str) else self.cron(settings)


ENTRYPOINTS: dict[str, JobHandler] = {}
SCHEDULES: dict[str, _Schedule] = {}

# Modules whose @job/@schedule registrations every node needs, imported when the queue starts. Add yours.
MODULES: list[str] = ["livehub.jobs", "livehub.shop.notices", "livehub.backups", "livehub.shop.card_payments"]


def job(name: str) -> Callable[[JobHandler], JobHandler]:
    """Register `handler(ctx, payload)` as the job named `name` (payload: the JSON object it was queued with)."""

    def register(handler: JobHandler) -> JobHandler:
        if ENTRYPOINTS.get(name, handler) is not handler:
            raise RuntimeError(f"job {name} registered twice")
        ENTRYPOINTS[name] = handler
        return handler

    return register


def schedule(name: str, cron: str | Callable[[Settings], str]) -> Callable[[ScheduleHandler], ScheduleHandler]:
    """Register `handler(ctx)` to run on the cron schedule (UTC; five fields, once a minute at most often;
    or a function of the settings giving it), each due run on exactly one node."""

    def register(handler: ScheduleHandler) -> ScheduleHandler:
        if name in SCHEDULES and SCHEDULES[name].handler is not handler:
            raise RuntimeError(f"schedule {name} registered twice")
        SCHEDULES[name] = _Schedule(cron, handler)
        return handler

    return register


async def enqueue(conn, name: str, payload: dict, *, delay_s: float = 0, dedupe: str | None = None) -> None:
    """Queue a job in the transaction `conn` is in (the same as SQL's enqueue_job)."""
    await conn.execute(
        "SELECT enqueue_job($1, $2::jsonb, make_interval(secs => $3), $4)", name, payload, float(delay_s), dedupe
    )


def _payload(job_: Job) -> dict:
    return json.loads(job_.payload) if job_.payload else {}


class _Retrying(DatabaseRetryEntrypointExecutor):
    """pgqueuer's retrying executor, with our attempts and backoff; a job out of attempts is held as failed."""


class Jobs:
    """A node's queue worker and scheduler, started and stopped with the app (livehub/app.py)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, hub: Any, mailer: Mailer) -> None:
        self.settings = settings
        self.pool = pool
        self.hub = hub
        self.mailer = mailer
        self._queue_pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task] = []
        self._closing = asyncio.Event()
        self.qm: QueueManager | None = None
        self.sm: SchedulerManager | None = None

    def context(self, attempt: int = 0) -> Context:
        return Context(self.pool, self.settings, self.hub, self.mailer, attempt)

    async def start(self) -> None:
        for module in MODULES:
            importlib.import_module(module)
        s = self.settings
        # A pool of its own: the worker keeps one connection LISTENing, and the node's pool stays the app's.
        self._queue_pool = await create_pool(
            s.database_url,
            min_size=1,
            max_size=4,
            acquire_timeout_s=max(s.db_acquire_timeout_s, 5.0),
            command_timeout_s=max(s.db_command_timeout_s, 10.0),
            statement_timeout_s=max(s.db_statement_timeout_s, 10.0),
        )
        self._tasks.append(asyncio.create_task(self._keep(self._run_queue, "jobs-queue"), name="jobs-queue"))
        if SCHEDULES:
            self._tasks.append(
                asyncio.create_task(self._keep(self._run_schedules, "jobs-schedules"), name="jobs-schedules")
            )

    async def _keep(self, run: Callable[[], Awaitable[None]], name: str) -> None:
        """Runs a manager until the node closes, starting a new one (capped backoff) if it dies: the
        database away for a while must not leave the node without a worker."""
        delay = RESTART_MIN_S
        while not self._closing.is_set():
            try:
                await run()
            except Exception:
                log.exception("%s died; starting it again in %.1f s", name, delay)
            else:
                if self._closing.is_set():
                    return
                log.warning("%s stopped; starting it again in %.1f s", name, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
            delay = min(delay * 2, RESTART_MAX_S)

    async def _run_queue(self) -> None:
        s = self.settings
        qm = QueueManager(Queries(AsyncpgPoolDriver(self._queue_pool)))
        for name, handler in ENTRYPOINTS.items():
            qm.register_executor(name, self._executor(name, handler))
        self.qm = qm
        if self._closing.is_set():
            return
        await qm.run(
            # pgqueuer's NOTIFY trigger fires on inserts only: a retry (an update) is found by this poll.
            dequeue_timeout=timedelta(seconds=s.job_poll_s),
            batch_size=10,
            heartbeat_timeout=timedelta(seconds=s.job_heartbeat_timeout_s),
        )

    async def _run_schedules(self) -> None:
        sm = SchedulerManager(Queries(AsyncpgPoolDriver(self._queue_pool)))
        for name, sched in SCHEDULES.items():
            # A schedule read from the settings may be turned off (an empty expression).
            if expression := sched.expression(self.settings):
                sm.schedule(name, expression)(self._scheduled(name, sched.handler))
        self.sm = sm
        if self._closing.is_set():
            return
        await sm.run()

    def _executor(self, name: str, handler: JobHandler) -> _Retrying:
        s = self.settings

        runs, failures = JOB_RUNS.labels(job=name), JOB_FAILURES.labels(job=name)

        async def run(job_: Job) -> None:
            runs.inc()
            try:
                await handler(self.context(job_.attempts), _payload(job_))
            except Exception:
                failures.inc()
                raise

        params = EntrypointExecutorParameters(concurrency_limit=0, func=run, accepts_context=False, on_failure="hold")
        return _Retrying(
            params,
            # pgqueuer counts the first run as attempt 0: max_attempts retries after it.
            max_attempts=s.job_attempts - 1,
            initial_delay=timedelta(seconds=s.job_retry_min_s),
            max_delay=timedelta(seconds=s.job_retry_max_s),
            backoff_multiplier=2.0,
        )

    def _scheduled(self, name: str, handler: ScheduleHandler):
        async def run(_schedule) -> None:
            try:
                await handler(self.context())
            except Exception:
                log.exception("scheduled job %s failed; it runs again at its next time", name)

        return run

    async def close(self) -> None:
        """Stop taking jobs; the ones running get LIVEHUB_JOB_DRAIN_S to finish. A job cut off after that
        is left 'picked' and taken again by a node once its heartbeat is stale (as after a crash)."""
        self._closing.set()
        for manager in (self.qm, self.sm):
            if manager is not None:
                manager.shutdown.set()
        if self._tasks:
            done, late = await asyncio.wait(self._tasks, timeout=self.settings.job_drain_s)
            if late and self._queue_pool is not None:
                # Cut off from the database first: a cancelled job then cannot record itself as done or
                # cancelled, stays 'picked', and a node takes it again once its heartbeat is stale.
                log.warning("jobs still running after %s s; left for another node", self.settings.job_drain_s)
                self._queue_pool.terminate()
            await cancel_all(list(late))
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("%s ended with %r", task.get_name(), task.exception())
        if self._queue_pool is not None and not self._queue_pool.is_closing():
            await close_pool(self._queue_pool)


# -- the jobs of messages ---------------------------------------------------------------------------


@job("deliver_notification")
async def deliver_notification(ctx: Context, payload: dict) -> None:
    from livehub.shop import messages

    await messages.deliver_notification(
        ctx.pool, ctx.settings, ctx.hub, ctx.mailer, UUID(payload["notification_id"]), push=ctx.attempt == 0
    )


@job("account_email")
async def account_email(ctx: Context, payload: dict) -> None:
    """payload {user_id, kind (verify_email | password_reset), data (the template's `data` and `payload`)}."""
    from livehub.shop import messages

    await messages.send_account_email(
        ctx.pool, ctx.settings, ctx.mailer, UUID(payload["user_id"]), payload["kind"], payload.get("data") or {}
    )


# -- periodic work ----------------------------------------------------------------------------------


@schedule("release_earnings", lambda settings: settings.earnings_release_cron)
async def release_earnings(ctx: Context) -> None:
    """Earnings whose hold (LIVEHUB_EARNINGS_HOLD_S) has passed become available (docs/MONEY.md)."""
    if released := await ctx.pool.fetchval("SELECT release_earnings()"):
        log.info("released %d earnings past their hold", released)


@schedule("prune_job_log", "17 3 * * *")
async def prune_job_log(ctx: Context) -> None:
    """pgqueuer_log keeps a row per job status change (its statistics are folded into pgqueuer_statistics as
    it goes): rows older than LIVEHUB_JOB_LOG_KEEP_DAYS are deleted once a day. Failed jobs stay in the
    queue table itself until someone re-queues or deletes them."""
    deleted = await ctx.pool.execute(
        "DELETE FROM pgqueuer_log WHERE created < now() - make_interval(days => $1)", ctx.settings.job_log_keep_days
    )
    log.info("job log pruned: %s", deleted)


# Replays deleted per retention run: a bounded batch (each a file deletion), the rest at the next run.
REPLAY_RETENTION_BATCH = 100


@schedule("expire_replays", "7 * * * *")
async def expire_replays(ctx: Context) -> None:
    """Replays older than LIVEHUB_REPLAY_RETENTION_DAYS are deleted, hourly, REPLAY_RETENTION_BATCH at a time:
    file first, then row (docs/REPLAYS.md, Retention). With the LiveKit backend, whose files LiveHub does not
    hold, the replays of streams ended that long ago stop being offered."""
    from livehub.mediastore import open_store
    from livehub.shop import replays

    days = ctx.settings.replay_retention_days
    async with open_store(ctx.settings) as store:
        deleted = await replays.delete_expired(ctx.pool, store, days=days, batch=REPLAY_RETENTION_BATCH)
    if ctx.settings.media_backend == "livekit":
        deleted += await replays.expire_template_replays(ctx.pool, days=days, batch=REPLAY_RETENTION_BATCH)
    if deleted:
        log.info("replay retention: %d replays older than %d days deleted", deleted, days)
