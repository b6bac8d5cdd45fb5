"""Reaction totals in Redis, riding on the broker's room channels (`r|` messages, see redis_link.py)."""

from livehub import jsonx
from livehub.broker.base import Counters
from livehub.broker.redis import RedisBroker
from livehub.broker.redis_link import DOWN, RedisLink

# KEYS reactions; ARGV channel ttl name count [name count ...]. Summing and announcing in one script keeps
# the announcements in the order the totals were summed, whichever node added. The totals go out as a flat
# JSON list, because cjson turns an empty table into {} and could not tell names from counts otherwise.
_REACT = """
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local totals = redis.call('HGETALL', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'r|' .. cjson.encode(totals))
return totals
"""


def _totals(flat) -> dict[str, int]:
    items = iter(flat if isinstance(flat, list) else [])
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in zip(items, items, strict=True)}


class RedisCounters(Counters):
    """Totals summed in Redis and announced on the room's channel, so they reach each node's room handler
    through the broker's dispatcher, in order with the room's events (`RedisBroker.carry`). The last
    totals seen for each room this node is subscribed to are kept, to go on counting while Redis is away."""

    def __init__(self, link: RedisLink, broker: RedisBroker, *, ttl_s: int = 86400):
        self._link, self._broker, self._ttl = link, broker, ttl_s
        self._script = link.client.register_script(_REACT)
        self._known: dict[str, dict[str, int]] = {}  # per subscribed room
        broker.carry(self)

    async def add_reactions(self, room: str, counts: dict[str, int]) -> None:
        args = [self._link.room_channel(room), self._ttl, *(x for item in counts.items() for x in item)]
        try:
            totals = _totals(await self._script(keys=[self._link.key(room, "reactions")], args=args))
            if self._broker.live:
                return  # the totals come back through the room channel, in order with its events
        except DOWN as exc:
            self._link.down(exc, "add_reactions")
            totals = dict(self._known.get(room, {}))
            for name, n in counts.items():
                totals[name] = totals.get(name, 0) + n
        if room in self._known:
            self._known[room] = totals
        self._broker.deliver(room, {"type": "reactions", "counts": totals})

    # What the broker calls (RoomTotals).

    async def totals(self, room: str) -> dict[str, int]:
        stored = await self._link.client.hgetall(self._link.key(room, "reactions"))
        self._known[room] = totals = {name.decode(): int(n) for name, n in stored.items()}
        return dict(totals)

    def received(self, room: str, payload: bytes) -> dict:
        self._known[room] = totals = _totals(jsonx.loads(payload))
        return {"type": "reactions", "counts": dict(totals)}

    def forget(self, room: str) -> None:
        self._known.pop(room, None)
