"""The supervisor of background work: failures are logged and counted, loops come back, shutdown drains."""

import asyncio
import logging
import time

from livehub.tasks import Supervisor, cancel


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def ignores_cancellation(release: asyncio.Event) -> None:
    """Runs until `release` is set, whatever cancels it (as a library re-acquiring a lock might)."""
    while not release.is_set():
        try:
            await release.wait()
        except asyncio.CancelledError:
            pass


async def test_a_failing_step_is_logged_and_counted(caplog):
    tasks = Supervisor()

    async def broken():
        raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, "livehub.tasks"):
        tasks.spawn(broken(), name="broken-step")
        await until(lambda: tasks.failures == 1)
    assert "broken-step failed" in caplog.text and "boom" in caplog.text
    assert tasks.running == 0
    await tasks.close()


async def test_a_periodic_job_goes_on_after_a_failing_round():
    tasks = Supervisor()
    rounds = []

    def job():
        rounds.append(time.monotonic())
        if len(rounds) == 2:
            raise ValueError("a bad round")

    tasks.every(0.01, job, name="job")
    await until(lambda: len(rounds) >= 4)
    assert tasks.failures == 1
    await tasks.close()
    done = len(rounds)
    await asyncio.sleep(0.05)
    assert len(rounds) == done  # stopped for good


async def test_a_loop_that_dies_is_started_again():
    tasks = Supervisor(restart_min_s=0.01, restart_max_s=0.02)
    starts = []

    async def loop():
        starts.append(1)
        if len(starts) < 3:
            raise ConnectionError("lost it")
        await asyncio.Event().wait()  # then runs until cancelled

    tasks.keep_running(loop, name="loop")
    await until(lambda: len(starts) == 3)
    assert tasks.failures == 2
    await tasks.close()
    assert tasks.running == 0


async def test_shutdown_waits_for_steps_in_flight_then_cancels_the_late_ones():
    tasks = Supervisor()
    finished = []

    async def quick():
        await asyncio.sleep(0.02)
        finished.append("quick")

    async def stuck():
        try:
            await asyncio.Event().wait()
        finally:
            finished.append("stuck cancelled")

    tasks.spawn(quick(), name="quick")
    tasks.spawn(stuck(), name="stuck")
    tasks.every(0.01, lambda: None, name="tick")
    started = time.monotonic()
    await tasks.close(drain_s=0.2)
    assert sorted(finished) == ["quick", "stuck cancelled"]
    assert time.monotonic() - started < 2
    assert tasks.running == 0


async def test_shutdown_ends_even_if_a_task_swallows_its_cancellation(caplog):
    tasks = Supervisor()
    release = asyncio.Event()
    tasks.spawn(ignores_cancellation(release), name="stubborn")
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, "livehub.tasks"):
        await tasks.close(drain_s=0.1)
    assert time.monotonic() - started < 2
    assert "stubborn did not stop when cancelled" in caplog.text
    release.set()  # let it end, so the test leaves nothing running
    await asyncio.sleep(0)


async def test_cancel_asks_again_when_a_cancellation_is_swallowed():
    # As redis-py's wait_for on Python 3.11 can: the first cancellation is lost, the second one ends it.
    swallowed = []

    async def loses_one():
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    task = asyncio.create_task(loses_one())
    await asyncio.sleep(0)
    await cancel(task, within_s=2)
    assert task.cancelled() and swallowed == [True]


async def test_cancel_leaves_behind_a_task_that_never_stops(caplog):
    release = asyncio.Event()
    task = asyncio.create_task(ignores_cancellation(release), name="never-stops")
    await asyncio.sleep(0)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, "livehub.tasks"):
        await cancel(task, within_s=0.3)
    assert time.monotonic() - started < 2 and not task.done()
    assert "never-stops did not stop when cancelled; left behind" in caplog.text
    release.set()
    await task


async def test_a_failure_other_than_the_cancellation_is_raised():
    async def fails_when_cancelled():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_when_cancelled())
    await asyncio.sleep(0)
    try:
        await cancel(task)
    except RuntimeError as exc:
        assert str(exc) == "cleanup failed"
    else:
        raise AssertionError("cancel() hid the task's failure")
