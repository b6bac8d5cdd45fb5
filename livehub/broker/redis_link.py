"""One node's link to Redis, shared by its Redis broker, presence, counters and notifier: one client (one
connection pool), the key and channel layout they share, and one rate-limited "Redis away" warning.

Per room (a stream id), each key expiring `history_ttl_s` after the last write of the part that owns it:
    {prefix}:room:{room}:epoch      broker: random id, new whenever the room's state is created (first use,
                                    data lost)
    {prefix}:room:{room}:offset     broker: offset of the last durable event
    {prefix}:room:{room}:history    broker: Redis Stream, entry `<offset>-0` with field `e` = the event's JSON
    {prefix}:room:{room}:reactions  counters: hash name -> total
    {prefix}:room:{room}:viewers    presence: hash node_id -> "count:expires_at_ms" (Redis clock)
Channels, all read over the broker's one pub/sub connection:
    {prefix}:room:{room}   `d|<offset>|<epoch>|<json>` (durable) and `s|<json>` (state), from the broker;
                           `r|<json [name, total, ...]>` (reaction totals), from the counters
    {prefix}:notices       `{"u": user_ids, "p": payload}`, from the notifier
    {prefix}:node:{node}   the broker's own: always subscribed, never published to (see RedisBroker)
"""

import logging
import secrets
import time

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# What "Redis is away" looks like (asyncio's TimeoutError is an OSError).
DOWN = (RedisError, OSError)


class RedisLink:
    """The client and layout one node's Redis parts share. Creating it connects nothing (redis-py connects
    on first use); `close()` disconnects, after every part that uses it has closed."""

    def __init__(self, url: str, *, prefix: str = "livehub", timeout_s: float = 2.0, max_connections: int = 50):
        self.node_id = secrets.token_hex(6)
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._room_prefix = f"{prefix}:room:".encode()
        self._warned_at = -1e9
        # No retries inside redis-py: a command fails fast (publish raises promptly, and is never run twice),
        # and reconnecting is the broker's supervisor's job. The pool checks out stale connections on its own.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name=f"livehub:{self.node_id}",
        )
        self.client = Redis.from_pool(pool)

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
        """Log that Redis is away. One warning per outage-ish window for all the parts together; the rest
        at debug, so a dead Redis does not flood the log."""
        level = logging.WARNING if time.monotonic() - self._warned_at > 10 else logging.DEBUG
        self._warned_at = time.monotonic() if level == logging.WARNING else self._warned_at
        log.log(level, "Redis away (%s): %r", what, exc)
