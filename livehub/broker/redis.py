"""The Redis broker: any number of nodes share rooms through Redis pub/sub; offsets and history live in Redis.

Per room (a stream id), every key expiring `history_ttl_s` after the last publish:
    {prefix}:room:{room}:epoch      random id, new whenever the room's state is created (first use, data lost)
    {prefix}:room:{room}:offset     offset of the last durable event
    {prefix}:room:{room}:history    Redis Stream, entry `<offset>-0` with field `e` = the event's JSON
    {prefix}:room:{room}:reactions  hash name -> total
    {prefix}:room:{room}:viewers    hash node_id -> "count:expires_at_ms" (Redis clock)
Channels: `{prefix}:room:{room}` carries `d|<offset>|<epoch>|<json>` (durable), `s|<json>` (state) and
`r|<json [name, total, ...]>` (reaction totals); `{prefix}:notices` carries `{"u": user_ids, "p": payload}`.

A supervisor task owns the pub/sub connection and hands every message, in arrival order, to one dispatcher
task; only the dispatcher calls handlers, so a room's events are never delivered concurrently or out of order.
"""

import asyncio
import logging
import random
import secrets
import time

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livehub import jsonx
from livehub.broker.base import Broker, BrokerUnavailable, NoticeHandler, Position, RoomHandler, Subscription

log = logging.getLogger(__name__)

# What "Redis is away" looks like (asyncio's TimeoutError is an OSError).
_DOWN = (RedisError, OSError)
_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.1, 5.0
_PING_S = 5.0  # an idle pub/sub connection is pinged this often, so a silently dead one is noticed
_RESYNC_S = 0.2  # retry of a failed catch-up

# Shared prelude: a room without an epoch has lost its state (expired, or Redis lost its data). Start it
# clean, so offsets or history entries of an older epoch can never be served under the new one.
_EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('SET', KEYS[1], epoch, 'EX', ARGV[2])
end
"""
# KEYS epoch offset history reactions viewers; ARGV new_epoch ttl history_size channel json.
# `MAXLEN ~` trims whole stream nodes (cheap) and keeps at least history_size entries; the reads below
# clip to exactly history_size, so both brokers serve the same window.
_PUBLISH = (
    _EPOCH
    + """
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'e', ARGV[5])
redis.call('PUBLISH', ARGV[4], 'd|' .. offset .. '|' .. epoch .. '|' .. ARGV[5])
for _, key in ipairs(KEYS) do redis.call('EXPIRE', key, ARGV[2]) end
return {offset, epoch}
"""
)
# KEYS epoch offset history reactions; ARGV new_epoch ttl start known_epoch history_size.
# One atomic read, so the history, offset and epoch always agree. Another epoch: everything from the start.
_SNAPSHOT = (
    _EPOCH
    + """
local offset = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = tonumber(ARGV[3])
if epoch ~= ARGV[4] then start = 1 end
start = math.max(start, offset - tonumber(ARGV[5]) + 1, 1)
local events = {}
if start <= offset then events = redis.call('XRANGE', KEYS[3], start .. '-0', '+') end
return {epoch, offset, events, redis.call('HGETALL', KEYS[4])}
"""
)
# KEYS reactions; ARGV channel ttl name count [name count ...]. The totals go out as a flat JSON list,
# because cjson turns an empty table into {} and could not tell names from counts otherwise.
_REACT = """
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
local totals = redis.call('HGETALL', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'r|' .. cjson.encode(totals))
return totals
"""
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


def _totals(flat) -> dict[str, int]:
    items = iter(flat if isinstance(flat, list) else [])
    return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in zip(items, items, strict=True)}


class _Room:
    def __init__(self, handler: RoomHandler, confirmed: asyncio.Future):
        self.handler = handler
        self.confirmed = confirmed  # set when Redis confirms the SUBSCRIBE
        self.offset, self.epoch = 0, ""  # the last durable event delivered
        self.ready = False  # the position is known; until then durable events wait in `pending`
        self.pending: list[bytes] = []
        self.stale = False  # resubscribed while subscribe() ran: catch up once ready


class RedisBroker(Broker):
    """Rooms shared by every node on one Redis. Publishing needs Redis (else `BrokerUnavailable`); everything
    else degrades to this node while Redis is away, and the node reconnects with capped exponential backoff,
    resubscribes, and catches each room up from the history (or delivers a `reset`)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "livehub",
        history_size: int = 1000,
        history_ttl_s: int = 86400,
        presence_ttl_s: float = 5.0,
        timeout_s: float = 2.0,
    ):
        self.node_id = secrets.token_hex(6)
        self.prefix = prefix
        self._url, self._size, self._ttl, self._presence_ttl_s = url, history_size, history_ttl_s, presence_ttl_s
        self._timeout = timeout_s
        self._room_prefix = f"{prefix}:room:".encode()
        self._notices = f"{prefix}:notices".encode()
        self._rooms: dict[str, _Room] = {}
        self._reactions: dict[str, dict[str, int]] = {}
        self._viewers: dict[str, int] = {}
        self._notice_handler: NoticeHandler | None = None
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._warned_at = -1e9

    async def start(self) -> None:
        """Connect and start the supervisor; waits (bounded) for the first subscription, never raises."""
        # No retries inside redis-py: a command fails fast (publish raises promptly, and is never run twice),
        # and reconnecting is the supervisor's job. The pool checks out stale connections on its own.
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=50,
            timeout=self._timeout,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
            client_name=f"livehub:{self.node_id}",
        )
        self._redis = Redis.from_pool(pool)
        self._publish = self._redis.register_script(_PUBLISH)
        self._snapshot_script = self._redis.register_script(_SNAPSHOT)
        self._react = self._redis.register_script(_REACT)
        self._presence = self._redis.register_script(_PRESENCE)
        self._inbox: asyncio.Queue[tuple[str, str | None, object]] = asyncio.Queue()
        self._live = asyncio.Event()  # the notices channel is subscribed
        self._tasks = [
            asyncio.create_task(self._supervise(), name=f"livehub-broker-supervisor-{self.node_id}"),
            asyncio.create_task(self._dispatch(), name=f"livehub-broker-dispatcher-{self.node_id}"),
        ]
        try:
            async with asyncio.timeout(self._timeout):
                await self._live.wait()
        except TimeoutError:
            log.warning("Redis is not answering yet; rooms stay local until it does")

    async def close(self) -> None:
        """Stop the tasks, withdraw this node's viewer counts and disconnect."""
        self._closing = True
        while pending := [task for task in self._tasks if not task.done()]:
            # redis-py sends with asyncio.wait_for, which on Python 3.11 can swallow a cancellation that lands
            # as the send completes (CPython gh-86296): ask again until the tasks have really stopped.
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.1)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:  # now rather than presence_ttl_s later
            async with self._redis.pipeline(transaction=False) as pipe:
                for room in self._rooms:
                    pipe.hdel(self._key(room, "viewers"), self.node_id)
                await pipe.execute()
        except _DOWN:
            pass
        self._rooms.clear()
        await self._redis.aclose()

    def _key(self, room: str, name: str) -> str:
        return f"{self.prefix}:room:{room}:{name}"

    def _keys(self, room: str) -> list[str]:
        return [self._key(room, name) for name in ("epoch", "offset", "history", "reactions", "viewers")]

    def _channel(self, room: str) -> bytes:
        return self._room_prefix + room.encode()

    def _down(self, exc: BaseException, what: str) -> None:
        # One warning per outage-ish window; the rest at debug, so a dead Redis does not flood the log.
        level = logging.WARNING if time.monotonic() - self._warned_at > 10 else logging.DEBUG
        self._warned_at = time.monotonic() if level == logging.WARNING else self._warned_at
        log.log(level, "Redis away (%s): %r", what, exc)

    async def publish(self, room: str, event: dict) -> dict:
        body = jsonx.dumps(event)
        args = [secrets.token_hex(8), self._ttl, self._size, self._channel(room), body]
        try:
            offset, epoch = await self._publish(keys=self._keys(room), args=args)
        except _DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc
        return {**event, "offset": offset, "epoch": epoch.decode()}

    async def publish_state(self, room: str, event: dict) -> None:
        try:
            await self._redis.publish(self._channel(room), b"s|" + jsonx.dumps(event))
            if self._live.is_set():
                return  # this node gets it back from the channel, in order with the durable events
        except _DOWN as exc:
            self._down(exc, "publish_state")
        self._inbox.put_nowait(("local", room, event))

    async def add_reactions(self, room: str, counts: dict[str, int]) -> None:
        args = [self._channel(room), self._ttl, *(x for item in counts.items() for x in item)]
        try:
            totals = _totals(await self._react(keys=[self._key(room, "reactions")], args=args))
            if self._live.is_set():
                return
        except _DOWN as exc:
            self._down(exc, "add_reactions")
            totals = dict(self._reactions.get(room, {}))
            for name, n in counts.items():
                totals[name] = totals.get(name, 0) + n
        self._reactions[room] = totals
        self._inbox.put_nowait(("local", room, {"type": "reactions", "counts": totals}))

    async def subscribe(self, room: str, handler: RoomHandler) -> Subscription:
        """Subscribe, then read the history: nothing between is missed, and what the history covers is not
        delivered again. Raises BrokerUnavailable when Redis is away."""
        state = self._rooms[room] = _Room(handler, asyncio.get_running_loop().create_future())
        try:
            if (pubsub := self._pubsub) is not None:
                try:
                    await pubsub.subscribe(self._channel(room))
                except _DOWN:
                    pass  # the supervisor reconnects and subscribes every room in self._rooms
            async with asyncio.timeout(self._timeout):  # not wait_for: see close()
                await state.confirmed
            epoch, offset, history, reactions = await self._snapshot(room, 1, "")
        except _DOWN as exc:
            if self._rooms.get(room) is state:
                del self._rooms[room]
            raise BrokerUnavailable(str(exc) or "no subscription") from exc
        state.offset, state.epoch = offset, epoch
        self._reactions[room] = reactions
        self._inbox.put_nowait(("ready", room, None))
        return Subscription(history, Position(offset, epoch), reactions)

    async def unsubscribe(self, room: str) -> None:
        self._rooms.pop(room, None)
        self._viewers.pop(room, None)
        self._reactions.pop(room, None)
        try:
            if (pubsub := self._pubsub) is not None:
                await pubsub.unsubscribe(self._channel(room))
            await self._redis.hdel(self._key(room, "viewers"), self.node_id)
        except _DOWN as exc:
            self._down(exc, "unsubscribe")  # the count expires by itself after presence_ttl_s

    async def history(self, room: str, since: int, epoch: str) -> list[dict] | None:
        """As documented in Broker; raises BrokerUnavailable when Redis is away."""
        try:
            current, offset, events, _ = await self._snapshot(room, since + 1, epoch)
        except _DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc
        if current != epoch or not 0 <= since <= offset:
            return None
        first = events[0]["offset"] if events else offset + 1
        return events if first == since + 1 else None

    async def set_viewers(self, room: str, local: int) -> int:
        args = [self.node_id, local, int(self._presence_ttl_s * 1000), self._ttl]
        try:
            self._viewers[room] = await self._presence(keys=[self._key(room, "viewers")], args=args)
        except _DOWN as exc:
            self._down(exc, "set_viewers")
            return max(self._viewers.get(room, 0), local)
        return self._viewers[room]

    async def viewers(self, room: str) -> int:
        try:
            return await self._presence(keys=[self._key(room, "viewers")], args=[self.node_id, "", 0, 0])
        except _DOWN as exc:
            self._down(exc, "viewers")
            return self._viewers.get(room, 0)

    async def notify(self, user_ids: list[str], payload: dict) -> None:
        body = jsonx.dumps({"u": user_ids, "p": payload})
        try:
            await self._redis.publish(self._notices, body)
            if self._live.is_set():
                return
        except _DOWN as exc:
            self._down(exc, "notify")
        self._inbox.put_nowait(("notice", None, body))

    def on_notice(self, handler: NoticeHandler) -> None:
        self._notice_handler = handler

    async def _snapshot(self, room: str, start: int, known_epoch: str):
        """(epoch, offset, events from `start` in the kept window, reactions), read atomically."""
        args = [secrets.token_hex(8), self._ttl, start, known_epoch, self._size]
        epoch, offset, entries, reactions = await self._snapshot_script(keys=self._keys(room)[:4], args=args)
        epoch = epoch.decode()
        events = [
            {**jsonx.loads(fields[1]), "offset": int(entry_id.split(b"-")[0]), "epoch": epoch}
            for entry_id, fields in entries
        ]
        return epoch, offset, events, _totals(reactions)

    # The supervisor: owns the pub/sub connection, reconnects, and feeds the dispatcher in arrival order.

    async def _supervise(self) -> None:
        # redis-py's PubSub reconnects and resubscribes on its own only inside a read, without telling
        # us what was missed (redis/redis-py#2089); a fresh PubSub per connection makes the gap explicit.
        delay = _BACKOFF_MIN_S
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._notices)
                self._pubsub = pubsub  # from here on subscribe() sends its own SUBSCRIBE too
                if self._rooms:
                    await pubsub.subscribe(*(self._channel(room) for room in self._rooms))
                delay = _BACKOFF_MIN_S
                await self._read(pubsub)
            except _DOWN as exc:
                self._down(exc, "pub/sub")
            finally:
                self._pubsub = None
                self._live.clear()
                await pubsub.aclose()
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _read(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        seen = pinged = loop.time()
        while not self._closing:
            message = await pubsub.get_message(timeout=_PING_S)
            now = loop.time()
            if message is None:
                if now - seen > 3 * _PING_S:
                    raise RedisTimeoutError("the pub/sub connection went silent")
                if now - max(seen, pinged) >= _PING_S:
                    pinged = now
                    await pubsub.ping()
                continue
            seen = now
            kind, channel = message["type"], message["channel"]
            if channel == self._notices:
                if kind == "subscribe":
                    self._live.set()
                elif kind == "message":
                    self._inbox.put_nowait(("notice", None, message["data"]))
            elif kind in ("message", "subscribe") and channel.startswith(self._room_prefix):
                room = channel[len(self._room_prefix) :].decode()
                self._inbox.put_nowait(("msg" if kind == "message" else "subscribed", room, message["data"]))

    # The dispatcher: the only caller of handlers.

    async def _dispatch(self) -> None:
        while not self._closing:
            kind, room, data = await self._inbox.get()
            try:
                await self._process(kind, room, data)
            except _DOWN as exc:
                # A catch-up read failed (often a pooled connection from before Redis restarted): the event
                # stays undelivered until a retry brings it, with anything else missed, from the history.
                self._down(exc, "catch-up")
                if room is not None and room in self._rooms:
                    asyncio.get_running_loop().call_later(_RESYNC_S, self._inbox.put_nowait, ("resync", room, None))
            except Exception:
                log.exception("broker dispatch of %s failed", kind)

    async def _process(self, kind: str, room: str | None, data) -> None:
        if kind == "notice":
            if self._notice_handler is not None:
                body = jsonx.loads(data)
                self._notice_handler(body["u"], body["p"])
            return
        if (state := self._rooms.get(room)) is None:
            return
        if kind == "subscribed":
            if not state.confirmed.done():
                state.confirmed.set_result(None)
            elif state.ready:
                await self._catch_up(room, state)  # resubscribed after a reconnect: fill what was missed
            else:
                state.stale = True
        elif kind == "resync":
            if state.ready:
                await self._catch_up(room, state)
        elif kind == "ready":
            state.ready = True
            pending, state.pending = state.pending, []
            for raw in pending:
                await self._on_message(room, state, raw)
            if state.stale:
                state.stale = False
                await self._catch_up(room, state)
        elif not state.ready:
            # Durable events wait for the position; state events are dropped (at most once): the snapshot
            # already holds the reaction totals, and any state event is soon superseded.
            if kind == "msg" and data.startswith(b"d|"):
                state.pending.append(data)
        elif kind == "local":
            self._emit(room, state, data)
        else:
            await self._on_message(room, state, data)

    async def _on_message(self, room: str, state: _Room, raw: bytes) -> None:
        if raw.startswith(b"d|"):
            _, offset, epoch, body = raw.split(b"|", 3)
            offset, epoch = int(offset), epoch.decode()
            if epoch != state.epoch or offset > state.offset + 1:
                await self._catch_up(room, state)  # a gap or a new epoch; the history has this event too
            if epoch == state.epoch and offset == state.offset + 1:
                state.offset = offset
                self._emit(room, state, {**jsonx.loads(body), "offset": offset, "epoch": epoch})
            # anything else is a duplicate, or the catch-up delivered it
        elif raw.startswith(b"s|"):
            self._emit(room, state, jsonx.loads(raw[2:]))
        elif raw.startswith(b"r|"):
            self._reactions[room] = totals = _totals(jsonx.loads(raw[2:]))
            self._emit(room, state, {"type": "reactions", "counts": totals})

    async def _catch_up(self, room: str, state: _Room) -> None:
        """Deliver what the room's history has after the last delivered event, up to the current offset;
        a `reset` first when that is not continuous (new epoch, events past the window, offsets went back
        because Redis restored an older snapshot)."""
        epoch, offset, events, _ = await self._snapshot(room, state.offset + 1, state.epoch)
        start = state.offset + 1 if epoch == state.epoch else 1
        first = events[0]["offset"] if events else offset + 1
        if epoch != state.epoch or first != start:
            state.offset, state.epoch = first - 1, epoch
            self._emit(room, state, {"type": "reset", "offset": state.offset, "epoch": epoch})
        for event in events:
            if event["offset"] == state.offset + 1:
                state.offset += 1
                self._emit(room, state, event)

    def _emit(self, room: str, state: _Room, event: dict) -> None:
        try:
            state.handler(event)
        except Exception:  # one room's faulty handler must not stop the others' events
            log.exception("handler of room %s failed", room)
