"""Keeping a node's embedded PostgreSQL up (run.py without DATABASE_URL).

The embedded server is a child of the node: if it dies (`kill -9`, the OOM killer), nothing else brings it
back, and the node would answer 503 forever. The node's supervisor checks it every second; a server that
died is started again on the same port with the same data, so the pool's connections come back by
themselves. If it cannot be restarted for `LIVEHUB_EMBEDDED_DB_RESTART_S` (its data directory gone, its
port taken), the node gives up: `/healthz` answers 503 and the process exits with status 1, for a process
supervisor (systemd, a container's restart policy) to start it afresh.
"""

import asyncio
import enum
import logging
import time
from collections.abc import Callable

from storage.embedded import EmbeddedPostgres, EmbeddedPostgresError

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0


class DatabaseState(enum.StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"
    GONE = "gone"  # could not be restarted: the node is exiting


class EmbeddedWatch:
    """One embedded server, checked by `check()` (a periodic job of the node's supervisor)."""

    def __init__(self, pg: EmbeddedPostgres, *, give_up_after_s: float, give_up: Callable[[], None]) -> None:
        self.pg = pg
        self.state = DatabaseState.RUNNING
        self.restarts = 0
        self._give_up_after_s = give_up_after_s
        self._give_up = give_up
        self._failing_since: float | None = None

    async def check(self) -> None:
        if self.state is DatabaseState.GONE or self.pg.alive():
            return
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.error("the embedded PostgreSQL (pid %s) is gone; restarting it", self.pg.pid)
        self.state = DatabaseState.RESTARTING
        try:
            # Blocking (pg_ctl, waiting for the port): off the event loop.
            await asyncio.to_thread(self.pg.restart)
        except EmbeddedPostgresError as exc:
            if now - self._failing_since < self._give_up_after_s:
                log.warning("restarting the embedded PostgreSQL failed; trying again: %s", exc)
                return
            self.state = DatabaseState.GONE
            log.critical(
                "the embedded PostgreSQL could not be restarted for %.0f s; stopping this node: %s",
                now - self._failing_since,
                exc,
            )
            self._give_up()
            return
        self.restarts += 1
        self._failing_since = None
        self.state = DatabaseState.RUNNING
        log.warning("the embedded PostgreSQL is back (pid %s, same port and data)", self.pg.pid)
