"""A per-node cache of encoded catalog listing pages.

Listings are anonymous and the same for everyone, and the home page and search boxes ask for the same
few pages again and again: serving them from memory for a moment takes PostgreSQL and JSON encoding off
the hot path (docs/BENCHMARKS.md, "REST catalog under load"). The price is that a listing's stock
figures and membership can be up to `catalog_cache_ms` old; product pages, carts, orders and live rooms
always read the database. A node drops its cache on its own catalog and seller writes, so a seller
sees their edit at once; other nodes see it within the cache's lifetime.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable


class ListingCache:
    def __init__(self, ttl_s: float, max_entries: int = 1024):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, asyncio.Future[bytes]]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached body for `key`, or `load()`'s. Concurrent misses share one load, so a burst of
        requests for a page that just expired costs one query, not one each."""
        if self.ttl_s <= 0:
            return await load()
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            entry = (now + self.ttl_s, asyncio.ensure_future(load()))
            self._entries[key] = entry
            entry[1].add_done_callback(lambda fut: self._forget_failure(key, fut))
            self._bound()
        # shield: a client that hangs up must not cancel the load the other waiters share.
        return await asyncio.shield(entry[1])

    def clear(self) -> None:
        self._entries.clear()

    def _forget_failure(self, key: Hashable, fut: asyncio.Future) -> None:
        # A failed load (database away) is not cached: the next request tries again.
        if fut.cancelled() or fut.exception() is not None:
            entry = self._entries.get(key)
            if entry is not None and entry[1] is fut:
                del self._entries[key]

    def _bound(self) -> None:
        # Many distinct searches must not grow memory without limit: drop the expired, then the oldest.
        if len(self._entries) <= self.max_entries:
            return
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]
