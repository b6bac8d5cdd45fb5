"""The cyclic garbage collector of a node that holds thousands of websockets.

CPython's collector finds reference cycles by walking the objects it tracks. A node with 10,000 open
websockets tracks about a million long-lived objects (each connection's aiohttp response, reader, parser,
transport, timers, the room's bookkeeping), and a full collection walks them all: 0.7 s in one piece,
measured during a 10,000-buyer flash sale, where the collector took 1.6 s of the burst's 2.6 s of server
CPU (docs/BENCHMARKS.md, "Flash sale"). Those objects live as long as their sockets and are never
cyclic garbage while they do, so walking them again and again finds nothing.

So a node moves what has survived into the permanent generation (`gc.freeze()`), which the collector
does not walk: once at start-up (modules, the app), after every full collection the collector makes by
itself, and every `gc_freeze_interval_s` after a collection of what is new since the last freeze (the
sockets that joined meanwhile; that collection costs what is new, not what is old). A socket that
closes after it was frozen is still freed by reference counting; only reference cycles among frozen
objects wait, for the sweep every `gc_sweep_interval_s`, which unfreezes everything, collects it once and
freezes it again. The young generation's threshold is raised from CPython's 700 (`gc_young_threshold`)
so that the short-lived objects of a burst (a frame, its reply, the futures between them) are mostly
gone before a young collection looks at them.
"""

import gc
import logging
import time

from livehub.settings import Settings

log = logging.getLogger(__name__)


class Collector:
    def __init__(self, settings: Settings):
        self.young_threshold = settings.gc_young_threshold
        self.freeze_interval_s = settings.gc_freeze_interval_s
        self.sweep_interval_s = settings.gc_sweep_interval_s
        self._swept_at = time.monotonic()
        self._original: tuple[int, int, int] | None = None

    @property
    def enabled(self) -> bool:
        return self.freeze_interval_s > 0

    def start(self) -> None:
        """After start-up: everything alive now stays; young collections only past the threshold."""
        if not self.enabled:
            return
        self._original = gc.get_threshold()
        _, middle, old = self._original
        gc.set_threshold(self.young_threshold, middle, old)
        gc.callbacks.append(self._after_collection)
        self.freeze()

    def stop(self) -> None:
        if self._original is not None:
            gc.callbacks.remove(self._after_collection)
            gc.unfreeze()
            gc.set_threshold(*self._original)
            self._original = None

    def _after_collection(self, phase: str, info: dict) -> None:
        # What survived a full collection is long-lived: frozen at once, so the next full collection walks
        # only what is newer. A room filling up between two freezes (10,000 joins in 15 s) otherwise has
        # its full collections walk every connection again, up to 0.8 s each.
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()

    def freeze(self) -> None:
        """Collect what is new since the last freeze, and freeze what survived."""
        gc.collect()
        gc.freeze()

    def sweep(self) -> None:
        """Cycles among frozen objects (sockets closed since they were frozen): one full collection."""
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._swept_at = time.monotonic()
        log.info("swept %d unreachable objects in %.0f ms", found, 1000 * (time.perf_counter() - started))

    def tick(self) -> None:
        if time.monotonic() - self._swept_at >= self.sweep_interval_s:
            self.sweep()
        else:
            self.freeze()
