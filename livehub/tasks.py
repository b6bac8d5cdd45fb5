"""The one owner of a node's background work: fire-and-forget steps, periodic jobs and long-lived loops.

Every task a node starts outside a request goes through a `Supervisor`, so that none is lost to the
garbage collector (asyncio keeps only weak references to tasks), none fails silently, a loop that dies
is started again, and shutdown drains what is in flight before cancelling the rest. Work that must
survive a crash or run on exactly one node (emails, scheduled jobs) belongs in a durable queue instead.

(aiojobs does the first part, but its `spawn` is a coroutine, and most of our spawns happen in
synchronous code: a fan-out loop, a broker handler, a timer.)
"""

import asyncio
import collections
import contextlib
import contextvars
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from livehub.errors import Unavailable, to_error

log = logging.getLogger(__name__)

# A loop that dies is restarted after this backoff, doubled per consecutive failure, capped.
RESTART_MIN_S, RESTART_MAX_S = 0.5, 30.0
# How long `cancel` waits for a cancelled task to stop before leaving it behind.
CANCEL_WITHIN_S = 5.0


class Supervisor:
    def __init__(self, *, restart_min_s: float = RESTART_MIN_S, restart_max_s: float = RESTART_MAX_S) -> None:
        self._restart = (restart_min_s, restart_max_s)
        self._steps: set[asyncio.Task] = set()  # one-shot: drained on close
        self._loops: set[asyncio.Task] = set()  # forever: cancelled on close
        self.closing = False
        self.failures = 0  # steps and loop rounds that raised, since start
        self.rounds: collections.Counter[str] = collections.Counter()  # runs of each periodic job, by name

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task:
        """Run a one-shot step in the background; its failure is logged. Shutdown waits for it (bounded)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._steps.add(task)
        task.add_done_callback(self._step_done)
        return task

    def every(self, interval_s: float, job: Callable[[], Awaitable[None] | None], *, name: str) -> asyncio.Task:
        """Run `job` every `interval_s` seconds (a whole interval after each run ends, so a slow run
        stretches the period instead of piling up). A run that raises is logged; the next still comes.
        Cancel the returned task to stop it."""

        async def periodic() -> None:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    result = job()
                    if result is not None:
                        await result
                except Exception as exc:
                    self.failures += 1
                    if isinstance(to_error(exc), Unavailable):  # the database or Redis away for a while
                        log.warning("%s failed, trying again in %s s: %r", name, interval_s, exc)
                    else:
                        log.exception("%s failed; trying again in %s s", name, interval_s)
                self.rounds[name] += 1

        return self._loop(periodic(), name)

    def keep_running(self, run: Callable[[], Awaitable[None]], *, name: str) -> asyncio.Task:
        """Run a long-lived coroutine and start it again, with capped backoff, whenever it ends or raises
        before shutdown. Cancel the returned task to stop it."""

        async def supervised() -> None:
            delay, most = self._restart
            while True:
                try:
                    await run()
                    log.warning("%s ended; restarting", name)
                except Exception:
                    self.failures += 1
                    log.exception("%s died; restarting in about %.1f s", name, delay)
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, most)

        return self._loop(supervised(), name)

    async def close(self, drain_s: float = 5.0) -> None:
        """Cancel the loops, give the steps in flight up to `drain_s` to finish, then cancel the rest."""
        self.closing = True
        for task in self._loops:
            task.cancel()
        await _stopped(set(self._loops), drain_s)
        if self._steps:
            _, late = await asyncio.wait(set(self._steps), timeout=drain_s)
            for task in late:
                log.warning("cancelling %s at shutdown", task.get_name())
                task.cancel()
            await _stopped(late, drain_s)

    @property
    def running(self) -> int:
        return len(self._steps) + len(self._loops)

    def _loop(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        # A loop is the node's, not the request's that happened to start it (a room's ticker starts
        # with its first viewer): its log lines carry no request id or user (livehub/logs.py).
        task = asyncio.get_running_loop().create_task(coro, name=name, context=contextvars.Context())
        self._loops.add(task)
        task.add_done_callback(self._loops.discard)
        return task

    def _step_done(self, task: asyncio.Task) -> None:
        self._steps.discard(task)
        if task.cancelled():
            return
        if (exc := task.exception()) is not None:
            self.failures += 1
            log.warning("%s failed: %r", task.get_name(), exc, exc_info=exc)


async def _stopped(tasks: set[asyncio.Task], wait_s: float) -> None:
    # A cancelled task normally stops at once; one that swallows its cancellation (a library catching it
    # while it re-acquires a lock) must not hold the shutdown forever: it is named and left behind.
    if not tasks:
        return
    _, stuck = await asyncio.wait(tasks, timeout=wait_s)
    for task in stuck:
        log.error("%s did not stop when cancelled; left behind at shutdown", task.get_name())


async def cancel(task: asyncio.Task | None, within_s: float = CANCEL_WITHIN_S) -> None:
    """Cancel a task and wait until it has stopped (raising what it failed with, if anything but the
    cancellation); bounded as `cancel_all`."""
    if task is None:
        return
    if await cancel_all([task], within_s):
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cancel_all(tasks: list[asyncio.Task], within_s: float = CANCEL_WITHIN_S) -> bool:
    """Cancel the tasks and wait until they have stopped; True once they have. A cancellation can be
    swallowed (redis-py's `asyncio.wait_for` on Python 3.11 loses one that lands as its inner call
    completes, CPython gh-86296), so it is asked again until the task ends; one still running after
    `within_s` is named in the log and left behind (False): a shutdown must end."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within_s
    while pending := [task for task in tasks if not task.done()]:
        if loop.time() >= give_up:
            for task in pending:
                log.error("%s did not stop when cancelled; left behind", task.get_name())
            return False
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=min(0.1, max(0.0, give_up - loop.time())))
    return True
