"""The backplane between nodes: a room's event stream (Broker), viewer counts (Presence), reaction totals
(Counters) and user notifications (Notifier); interfaces and guarantees in base.py. `open_backplane` builds
the four together, in process (local.py) or over one Redis link (redis_link.py and the redis*.py parts).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from livehub.broker.base import (
    Broker,
    BrokerBusy,
    BrokerUnavailable,
    Counters,
    Notifier,
    Position,
    Presence,
    Subscription,
)
from livehub.broker.local import LocalBroker, LocalCounters, LocalNotifier, LocalPresence
from livehub.settings import Settings

__all__ = [
    "Backplane",
    "Broker",
    "BrokerBusy",
    "BrokerUnavailable",
    "Counters",
    "Notifier",
    "Position",
    "Presence",
    "Subscription",
    "local_backplane",
    "open_backplane",
    "redis_backplane",
]


@dataclass
class Backplane:
    """One node's four parts, started and closed together. `release` frees what they share (the Redis link),
    once all of them have closed."""

    broker: Broker
    presence: Presence
    counters: Counters
    notifier: Notifier
    release: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        """Connect; never raises (while Redis is away the node runs on its own and keeps reconnecting)."""
        await self.broker.start()

    async def close(self) -> None:
        await self.broker.close()
        await self.presence.close()
        if self.release is not None:
            await self.release()


def local_backplane(*, history_size: int = 1000) -> Backplane:
    """One process, no Redis."""
    broker = LocalBroker(history_size=history_size)
    return Backplane(broker, LocalPresence(), LocalCounters(broker), LocalNotifier())


def redis_backplane(
    url: str,
    *,
    prefix: str = "livehub",
    history_size: int = 1000,
    history_ttl_s: int = 86400,
    presence_ttl_s: float = 5.0,
    timeout_s: float = 2.0,
    busy_timeout_s: float = 10.0,
    max_connections: int = 50,
    publish_batch_max: int = 256,
    publish_queue_max: int = 10_000,
    publish_id_ttl_s: int = 30,
) -> Backplane:
    """Any number of nodes on one Redis. The four parts share one client; counters and notices arrive over
    the broker's pub/sub connection (see livehub/broker/redis.py). `timeout_s` bounds connecting and each
    reply (past it Redis is away); `busy_timeout_s` bounds a command's wait for one of the
    `max_connections` (see redis_link.py), and a publish's wait for a place among the `publish_queue_max`
    waiting for the publish pipeline, which sends up to `publish_batch_max` per round trip (0: no pipeline,
    a pooled connection per publish; see redis_pipeline.py). A publish id is remembered `publish_id_ttl_s`."""
    from livehub.broker.redis import RedisBroker
    from livehub.broker.redis_counters import RedisCounters
    from livehub.broker.redis_link import RedisLink
    from livehub.broker.redis_notifier import RedisNotifier
    from livehub.broker.redis_presence import RedisPresence

    link = RedisLink(
        url, prefix=prefix, timeout_s=timeout_s, busy_timeout_s=busy_timeout_s, max_connections=max_connections
    )
    broker = RedisBroker(
        link,
        history_size=history_size,
        history_ttl_s=history_ttl_s,
        publish_batch_max=publish_batch_max,
        publish_queue_max=publish_queue_max,
        publish_id_ttl_s=publish_id_ttl_s,
    )
    return Backplane(
        broker,
        RedisPresence(link, presence_ttl_s=presence_ttl_s, key_ttl_s=history_ttl_s),
        RedisCounters(link, broker, ttl_s=history_ttl_s),
        RedisNotifier(link, broker),
        release=link.close,
    )


def open_backplane(settings: Settings) -> Backplane:
    """Redis when REDIS_URL is set, else in-process. Not started yet: call `start()`."""
    if not settings.redis_url:
        return local_backplane(history_size=settings.room_history_size)
    return redis_backplane(
        settings.redis_url,
        prefix=settings.redis_prefix,
        history_size=settings.room_history_size,
        history_ttl_s=settings.room_history_ttl_s,
        # A node's viewer count outlives a few missed reports, not a crashed node.
        presence_ttl_s=5 * settings.presence_interval_s,
        publish_batch_max=settings.redis_publish_batch_max,
        publish_queue_max=settings.redis_publish_queue_max,
        publish_id_ttl_s=settings.redis_publish_id_ttl_s,
    )
