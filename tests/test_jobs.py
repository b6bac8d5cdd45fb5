"""The durable job queue (livehub/jobs.py, pgqueuer): jobs are written in their cause's transaction (a
rolled-back one queues nothing), run once, retried while the SMTP server is down, kept as failed when they
run out of attempts, survive a node killed with SIGKILL (another node takes them once their heartbeat is
stale), and two nodes share a queue without running a job twice."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
from pgqueuer import QueueManager

from conftest import ROOT
from livehub import jobs, keys
from livehub.app import create_app
from smtp_server import SmtpServer

# Jobs that only tests queue: they record what ran, in this process.
RAN: list[dict] = []


@jobs.job("test_probe")
async def probe(ctx: jobs.Context, payload: dict) -> None:
    RAN.append(payload)


@jobs.job("test_slow")
async def slow(ctx: jobs.Context, payload: dict) -> None:
    RAN.append(payload)
    await asyncio.sleep(3600)


TICKS: list[str] = []  # the node (its site_name) of each run of test_tick


@jobs.schedule("test_tick", "* * * * *")
async def tick(ctx: jobs.Context) -> None:
    TICKS.append(ctx.settings.site_name)


async def new_user(db, n: int) -> str:
    """A user made in SQL (the jobs need only a row), with an address of its own."""
    return str(
        await db.fetchval(
            "INSERT INTO users (email, display_name, password_hash) VALUES ($1, $2, 'x') RETURNING id",
            f"jobs{n}@example.test",
            f"Jobs {n}",
        )
    )


async def notify(db, user_id: str, title: str = "Serum night") -> str:
    payload = {"stream_id": "00000000-0000-0000-0000-000000000001", "title": title, "shop_name": "Glow Lab"}
    return str(await db.fetchval("SELECT notify_user($1, 'stream_live', $2)", user_id, payload))


async def until(check, *, timeout_s: float = 30.0, what: str = "the condition"):
    """Polls `check` (async) until it returns something truthy, within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not (result := await check()):
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout_s} s"
        await asyncio.sleep(0.05)
    return result


async def queue_empty(db) -> bool:
    return await db.fetchval("SELECT count(*) = 0 FROM pgqueuer")


async def test_a_job_queued_in_a_rolled_back_transaction_never_runs(client, db):
    RAN.clear()
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.execute("SELECT enqueue_job('test_probe', '{\"which\": \"rolled back\"}')")
            raise RuntimeError("the order failed")
    # A job committed after it is run; by then the rolled-back one would have been too.
    async with db.transaction():
        await db.execute("SELECT enqueue_job('test_probe', '{\"which\": \"committed\"}')")

    async def ran():
        return RAN

    await until(ran, what="the committed job")
    await until(lambda: queue_empty(db), what="the queue emptying")
    assert RAN == [{"which": "committed"}]


async def test_a_notification_in_a_rolled_back_transaction_is_neither_stored_nor_sent(smtp_server, client, db):
    gone, kept = await new_user(db, 1), await new_user(db, 2)
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await notify(db, gone)
            raise RuntimeError("insufficient funds")
    await notify(db, kept)
    await smtp_server.wait_for("jobs2@example.test")
    await until(lambda: queue_empty(db), what="the queue emptying")
    assert smtp_server.messages("jobs1@example.test") == []
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", gone) == 0


async def test_a_committed_notification_is_emailed_once_and_recorded(smtp_server, client, db):
    user = await new_user(db, 1)
    note = await notify(db, user)
    msg = await smtp_server.wait_for("jobs1@example.test")
    assert msg["Message-ID"] == f"<notification.{note}@127.0.0.1>"
    await until(lambda: queue_empty(db), what="the queue emptying")
    assert await db.fetchval("SELECT emailed_at IS NOT NULL FROM notifications WHERE id = $1", note)
    # Delivering it again (a retry after a crash that came after the commit of emailed_at) sends nothing.
    await db.execute(
        "SELECT enqueue_job('deliver_notification', jsonb_build_object('notification_id', $1::uuid))", note
    )
    await until(lambda: queue_empty(db), what="the second delivery")
    assert len(smtp_server.messages("jobs1@example.test")) == 1


async def test_smtp_down_the_job_retries_and_sends_once_when_it_is_back(smtp_server, client, db):
    smtp_server.stop()
    user = await new_user(db, 1)
    await notify(db, user)
    # It failed at least twice (the server refuses connections), and waits in the queue for its next try.
    await until(
        lambda: db.fetchval("SELECT attempts >= 2 FROM pgqueuer WHERE entrypoint = 'deliver_notification'"),
        what="two failed attempts",
    )
    assert await db.fetchval("SELECT status FROM pgqueuer") in ("queued", "picked")
    smtp_server.start()
    await smtp_server.wait_for("jobs1@example.test")
    await until(lambda: queue_empty(db), what="the queue emptying")
    assert len(smtp_server.messages("jobs1@example.test")) == 1


async def test_a_job_out_of_attempts_is_kept_as_failed(aiohttp_client, settings, db):
    down = SmtpServer()  # never started: nothing listens on its port
    app = create_app(settings.model_copy(update={"smtp_url": down.url, "job_attempts": 2}))
    await aiohttp_client(app)
    user = await new_user(db, 1)
    note = await notify(db, user)
    failed = await until(
        lambda: db.fetchrow(
            "SELECT entrypoint, attempts, convert_from(payload, 'UTF8') AS payload FROM pgqueuer "
            "WHERE status = 'failed'"
        ),
        what="the job failing for good",
    )
    assert failed["entrypoint"] == "deliver_notification" and failed["attempts"] == 1 and note in failed["payload"]
    # Its tracebacks are in pgqueuer's log, for whoever looks into it.
    assert await db.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'failed' AND traceback IS NOT NULL")


async def test_two_nodes_run_each_job_once(smtp_server, aiohttp_client, settings, db):
    for _ in range(2):
        await aiohttp_client(create_app(settings))
    users = [await new_user(db, n) for n in range(30)]
    async with db.transaction():
        for user in users:
            await notify(db, user)
    for n in range(30):
        await smtp_server.wait_for(f"jobs{n}@example.test")
    await until(lambda: queue_empty(db), what="the queue emptying")
    assert sorted(to for to, _ in smtp_server.received) == sorted(f"jobs{n}@example.test" for n in range(30))
    # Each ran once: one success logged per job.
    assert await db.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'") == 30


class _BlackHole:
    """A TCP port that accepts connections and never says a word: an SMTP send to it hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"smtp://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


async def test_a_killed_node_loses_no_job_and_another_runs_each_once(smtp_server, aiohttp_client, settings, db):
    hole = _BlackHole()
    data_dir = Path(tempfile.mkdtemp(prefix="livehub-jobs-"))
    port = SmtpServer().port  # a free port for the node
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LIVEHUB_")},
        "DATABASE_URL": settings.database_url,
        "LIVEHUB_DATA_DIR": str(data_dir),
        "LIVEHUB_PASSWORD_MEMORY_KIB": "8192",
        "LIVEHUB_LOG_LEVEL": "WARNING",
        "LIVEHUB_SMTP_URL": hole.url,  # its sends hang until it is killed
        "LIVEHUB_SMTP_TIMEOUT_S": "300",
        "LIVEHUB_JOB_HEARTBEAT_TIMEOUT_S": "3",
    }
    env.pop("REDIS_URL", None)
    node = subprocess.Popen(
        [sys.executable, "run.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:

            async def ready():
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as res:
                        return res.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(ready, timeout_s=90, what="the node starting")
        users = [await new_user(db, n) for n in range(5)]
        for user in users:
            await notify(db, user)
        # The node took every job and hangs sending them: killed now, they are 'picked' by a dead node.
        await until(
            lambda: db.fetchval("SELECT count(*) = 5 FROM pgqueuer WHERE status = 'picked'"),
            what="the node picking the jobs",
        )
        node.send_signal(signal.SIGKILL)
        node.wait(30)
        assert await db.fetchval("SELECT count(*) FROM pgqueuer WHERE status = 'picked'") == 5

        # Another node (mailing the real server) takes them once their heartbeat is stale.
        await aiohttp_client(create_app(settings.model_copy(update={"job_heartbeat_timeout_s": 3.0})))
        for n in range(5):
            await smtp_server.wait_for(f"jobs{n}@example.test", timeout_s=60)
        await until(lambda: queue_empty(db), what="the queue emptying")
        assert sorted(to for to, _ in smtp_server.received) == sorted(f"jobs{n}@example.test" for n in range(5))
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(30)
        hole.close()


async def test_a_job_still_running_at_shutdown_is_left_for_another_node(aiohttp_client, settings, db):
    RAN.clear()
    node = await aiohttp_client(create_app(settings.model_copy(update={"job_drain_s": 0.5})))
    await db.execute("SELECT enqueue_job('test_slow', '{\"n\": 1}')")

    async def started():
        return RAN

    await until(started, what="the slow job starting")
    await node.close()  # SIGTERM's path: the job does not finish within the drain
    # Neither done nor dropped: still picked, so another node takes it once its heartbeat is stale.
    assert await db.fetchval("SELECT status FROM pgqueuer WHERE entrypoint = 'test_slow'") == "picked"
    await db.execute("DELETE FROM pgqueuer")  # no node of this test should run it for an hour


async def test_schedules_are_the_queues_and_each_due_run_happens_on_one_node(aiohttp_client, settings, db):
    TICKS.clear()
    for name in ("node-a", "node-b"):
        await aiohttp_client(create_app(settings.model_copy(update={"site_name": name})))
    rows = await db.fetch("SELECT entrypoint, expression FROM pgqueuer_schedules")
    schedules = {r["entrypoint"]: r["expression"] for r in rows}
    assert schedules["release_earnings"] == "* * * * *" and schedules["prune_job_log"] == "17 3 * * *"

    async def ran():
        return TICKS

    # The next whole minute (up to a minute away): one node runs it...
    await until(ran, timeout_s=75, what="a run of the every-minute schedule")
    # ...and once it is released (pgqueuer stamps last_run then) with its next time set, no node can run that
    # minute again: the other node, polling all along, has not run it.
    await until(
        lambda: db.fetchval(
            "SELECT status = 'queued' AND next_run > last_run FROM pgqueuer_schedules WHERE entrypoint = 'test_tick'"
        ),
        what="the schedule moving on",
    )
    assert len(TICKS) == 1 and TICKS[0] in ("node-a", "node-b")


async def test_the_job_log_is_pruned_to_its_keep_days(client, settings, db):
    await db.execute(
        """INSERT INTO pgqueuer_log (job_id, status, entrypoint, priority, created)
           VALUES (1, 'successful', 'x', 0, now() - interval '15 days'), (2, 'successful', 'x', 0, now())"""
    )
    await jobs.SCHEDULES["prune_job_log"].handler(client.server.app[keys.JOBS].context())
    assert await db.fetchval("SELECT array_agg(job_id) FROM pgqueuer_log") == [2]


async def test_a_worker_that_dies_is_started_again(aiohttp_client, settings, db, monkeypatch):
    RAN.clear()
    real_run, calls = QueueManager.run, []

    async def dies_once(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 1:
            raise ConnectionError("the database went away")
        return await real_run(self, *args, **kwargs)

    monkeypatch.setattr(QueueManager, "run", dies_once)
    monkeypatch.setattr(jobs, "RESTART_MIN_S", 0.05)
    await aiohttp_client(create_app(settings))
    await db.execute("SELECT enqueue_job('test_probe', '{\"after\": \"restart\"}')")

    async def ran():
        return RAN

    await until(ran, what="the job running on the restarted worker")
    assert RAN == [{"after": "restart"}] and len(calls) == 2
