"""One node's link to Redis, shared by its Redis broker, presence, counters and notifier: one client (one
connection pool), the key and channel layout they share, and one rate-limited "Redis away" warning. The
broker's publish pipeline has a connection of its own (`dedicated_client`), outside the pool.

Busy is not away. Redis is away when connecting or a reply takes longer than `timeout_s` (or fails); the
pool is busy when every connection is in use by commands Redis is answering, as in a burst of catch-up
reads larger than the pool (or of publishes, without the pipeline). A command that finds the pool busy
waits for a free connection, up to its own bound (`busy_timeout_s`, longer than `timeout_s`); only past
that bound does it fail, with `PoolBusy`. The publish pipeline has the same bound for a place in its queue.

Per room (a stream id), each key expiring `history_ttl_s` after the last write of the part that owns it:
    {prefix}:room:{room}:epoch      broker: random id, new whenever the room's state is created (first use,
                                    data lost)
    {prefix}:room:{room}:offset     broker: offset of the last durable event
    {prefix}:room:{room}:history    broker: Redis Stream, entry `<offset>-0` with field `e` = the event's JSON
    {prefix}:room:{room}:pub:{id}   broker: `<offset>|<epoch>` a publish id got, kept `publish_id_ttl_s` so
                                    a retried publish returns it instead of appending again
    {prefix}:room:{room}:reactions  counters: hash name -> total
    {prefix}:room:{room}:viewers    presence: hash node_id -> "count:expires_at_ms" (Redis clock)
Channels, all read over the broker's one pub/sub connection:
    {prefix}:room:{room}   `d|<offset>|<epoch>|<json>` (durable) and `s|<json>` (state), from the broker;
                           `r|<json [name, total, ...]>` (reaction totals), from the counters
    {prefix}:notices       `{"u": user_ids, "p": payload}`, from the notifier
    {prefix}:node:{node}   the broker's own: always subscribed, never published to (see RedisBroker)
"""

import asyncio
import logging
import secrets
import time

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class PoolBusy(RedisError):
    """No connection came free within `busy_timeout_s`, while Redis was answering the commands holding them.
    A RedisError, so callers treat it as they treat Redis away once the bound has passed."""


# What "Redis is away" (or busy past the bound) looks like (asyncio's TimeoutError is an OSError).
DOWN = (RedisError, OSError)


class _Pool(BlockingConnectionPool):
    """redis-py's blocking pool, with the wait for a free connection bounded here (`busy_timeout_s`) instead
    of by the pool's own timeout, which would fail a burst as soon as it outlasted `timeout_s`."""

    def __init__(self, *, busy_timeout_s: float, **options):
        super().__init__(timeout=None, **options)
        self.busy_timeout_s = busy_timeout_s

    async def get_connection(self, *args, **kwargs):
        bound = asyncio.timeout(self.busy_timeout_s)
        try:
            async with bound:
                return await super().get_connection(*args, **kwargs)
        except TimeoutError:
            if not bound.expired():
                raise
            raise PoolBusy(f"no free Redis connection within {self.busy_timeout_s} s") from None


class RedisLink:
    """The client and layout one node's Redis parts share. Creating it connects nothing (redis-py connects
    on first use); `close()` disconnects, after every part that uses it has closed."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "livehub",
        timeout_s: float = 2.0,
        busy_timeout_s: float = 10.0,
        max_connections: int = 50,
    ):
        self.node_id = secrets.token_hex(6)
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._room_prefix = f"{prefix}:room:".encode()
        self._warned_at = -1e9
        self.busy_timeout_s = max(busy_timeout_s, timeout_s)
        self._url = url
        # No retries inside redis-py: a command fails fast (publish raises promptly, and retries on its own
        # terms, see redis_pipeline.py), and reconnecting is the broker's supervisor's job. The pool checks
        # out stale connections on its own.
        self._options = dict(
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        pool = _Pool.from_url(
            url,
            max_connections=max_connections,
            busy_timeout_s=self.busy_timeout_s,
            client_name=f"livehub:{self.node_id}",
            **self._options,
        )
        self.client = Redis.from_pool(pool)

    def dedicated_client(self, role: str) -> Redis:
        """A client with one connection of its own, outside the shared pool (the publish pipeline's), named
        `livehub:{node}:{role}` in CLIENT LIST. Its user closes it."""
        return Redis.from_url(
            self._url, max_connections=1, client_name=f"livehub:{self.node_id}:{role}", **self._options
        )

    async def close(self) -> None:
        await self.client.aclose()

    def key(self, room: str, name: str) -> str:
        """A room's key: `name` is one of epoch, offset, history, reactions, viewers."""
        return f"{self.prefix}:room:{room}:{name}"

    def room_channel(self, room: str) -> bytes:
        return self._room_prefix + room.encode()

    def room_of(self, channel: bytes) -> str | None:
        """The room a channel belongs to, or None for a node-wide channel."""
        return channel[len(self._room_prefix) :].decode() if channel.startswith(self._room_prefix) else None

    def channel(self, name: str) -> bytes:
        """A node-wide channel (notices, a node's own)."""
        return f"{self.prefix}:{name}".encode()

    def down(self, exc: BaseException, what: str) -> None:
        """Log that Redis is away (or busy past the bound). One warning per outage-ish window for all the
        parts together; the rest at debug, so a dead Redis does not flood the log."""
        level = logging.WARNING if time.monotonic() - self._warned_at > 10 else logging.DEBUG
        self._warned_at = time.monotonic() if level == logging.WARNING else self._warned_at
        log.log(level, "Redis %s (%s): %r", "busy" if isinstance(exc, PoolBusy) else "away", what, exc)
