"""Viewer counts over all nodes in Redis: per room, a hash of each node's count and when it expires."""

from livehub.broker.base import Presence
from livehub.broker.redis_link import DOWN, RedisLink

# KEYS viewers; ARGV node count('' = only read) ttl_ms key_ttl_s. Redis's clock, so node clocks may drift.
_PRESENCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local write = ARGV[2] ~= ''
if write then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + tonumber(ARGV[3])))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
local total, fields = 0, redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local count, expires = string.match(fields[i + 1], '^(%d+):(%d+)$')
  if count and tonumber(expires) > now then total = total + tonumber(count)
  elseif write then redis.call('HDEL', KEYS[1], fields[i]) end
end
return total
"""


class RedisPresence(Presence):
    """Each node's count expires `presence_ttl_s` after its last report (measured on Redis's clock), so a
    crashed node drops out of the total by itself; `withdraw` and `close` take it out at once."""

    def __init__(self, link: RedisLink, *, presence_ttl_s: float = 5.0, key_ttl_s: int = 86400):
        self._link = link
        self._ttl_ms, self._key_ttl_s = int(presence_ttl_s * 1000), key_ttl_s
        self._script = link.client.register_script(_PRESENCE)
        self._totals: dict[str, int] = {}  # the last total per room this node reported in

    async def set_viewers(self, room: str, local: int) -> int:
        args = [self._link.node_id, local, self._ttl_ms, self._key_ttl_s]
        try:
            self._totals[room] = await self._script(keys=[self._link.key(room, "viewers")], args=args)
        except DOWN as exc:
            self._link.down(exc, "set_viewers")
            return max(self._totals.get(room, 0), local)
        return self._totals[room]

    async def viewers(self, room: str) -> int:
        try:
            return await self._script(keys=[self._link.key(room, "viewers")], args=[self._link.node_id, "", 0, 0])
        except DOWN as exc:
            self._link.down(exc, "viewers")
            return self._totals.get(room, 0)

    async def withdraw(self, room: str) -> None:
        self._totals.pop(room, None)
        try:
            await self._link.client.hdel(self._link.key(room, "viewers"), self._link.node_id)
        except DOWN as exc:
            self._link.down(exc, "withdraw")  # the count expires by itself after presence_ttl_s

    async def close(self) -> None:
        rooms, self._totals = list(self._totals), {}
        try:
            async with self._link.client.pipeline(transaction=False) as pipe:
                for room in rooms:
                    pipe.hdel(self._link.key(room, "viewers"), self._link.node_id)
                await pipe.execute()
        except DOWN:
            pass  # the counts expire by themselves after presence_ttl_s
