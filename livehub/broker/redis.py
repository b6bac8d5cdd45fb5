"""The Redis broker: any number of nodes share rooms through Redis pub/sub; offsets and history live in Redis
(the key and channel layout is in redis_link.py).

A supervisor task owns the node's one pub/sub connection and hands every message, in arrival order, to one
dispatcher task; only the dispatcher calls handlers, so a room's events are never delivered concurrently or
out of order. The other Redis parts of the backplane use that connection through a small public surface,
never this module's internals:

- `RedisCounters` rides on the room channels: `carry(counters)` routes the rooms' `r|` messages to it (in
  order with the room's events), and subscriptions start from its totals.
- `RedisNotifier` has a node-wide channel: `listen(channel, handler)` keeps it subscribed on the connection.
- When something they published will not come back through pub/sub (`live` is false, or the PUBLISH
  failed), they hand it to this node's handlers through the dispatcher: `deliver(room, event)`,
  `loop_back(channel, data)`.
"""

import asyncio
import logging
import random
import secrets
from collections.abc import Callable
from typing import Protocol

from redis.asyncio.client import PubSub
from redis.exceptions import TimeoutError as RedisTimeoutError

from livehub import jsonx
from livehub.broker.base import Broker, BrokerUnavailable, Position, RoomHandler, Subscription
from livehub.broker.redis_link import DOWN, RedisLink
from livehub.broker.redis_pipeline import PublishPipeline
from livehub.metrics import BROKER_RECONNECTS, BROKER_RESETS
from livehub.tasks import cancel_all

log = logging.getLogger(__name__)

_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.1, 5.0
_PING_S = 5.0  # an idle pub/sub connection is pinged this often, so a silently dead one is noticed
_RESYNC_S = 0.2  # retry of a failed catch-up
# How long close() keeps asking its tasks to stop.
CLOSE_S = 5.0

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
# KEYS epoch offset history published; ARGV new_epoch ttl history_size channel json publish_id_ttl.
# Answers `<offset>|<epoch>` (one bulk reply: the cheapest to parse). `published` is the publish id's key: a
# publish id seen before answers with its first offset and epoch, and nothing is appended or announced
# again (a retry after a lost reply).
# `MAXLEN ~` trims whole stream nodes (cheap) and keeps at least history_size entries; the reads below
# clip to exactly history_size, so both brokers serve the same window.
_PUBLISH = (
    """
local seen = redis.call('GET', KEYS[4])
if seen then return seen end
"""
    + _EPOCH
    + """
local offset = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], offset .. '-0', 'e', ARGV[5])
redis.call('PUBLISH', ARGV[4], 'd|' .. offset .. '|' .. epoch .. '|' .. ARGV[5])
local result = offset .. '|' .. epoch
redis.call('SET', KEYS[4], result, 'EX', ARGV[6])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return result
"""
)
# KEYS epoch offset history; ARGV new_epoch ttl start known_epoch history_size.
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
return {epoch, offset, events}
"""
)


class RoomTotals(Protocol):
    """What the broker needs from the counters riding on its room channels (RedisCounters)."""

    async def totals(self, room: str) -> dict[str, int]:
        """The room's totals now, for `Subscription.reactions`. Raises what redis-py raises."""

    def received(self, room: str, payload: bytes) -> dict:
        """The event for an `r|` message (its payload) of a subscribed room; called by the dispatcher."""

    def forget(self, room: str) -> None:
        """This node unsubscribed the room."""


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
        link: RedisLink,
        *,
        history_size: int = 1000,
        history_ttl_s: int = 86400,
        publish_batch_max: int = 256,
        publish_queue_max: int = 10_000,
        publish_id_ttl_s: int = 30,
    ):
        self.node_id = link.node_id
        self.link = link  # shared with the other Redis parts of the backplane
        self._redis = link.client
        self._size, self._ttl, self._timeout = history_size, history_ttl_s, link.timeout_s
        # This node's own channel keeps the pub/sub connection subscribed to something whatever else it
        # carries, and its confirmation is how the supervisor knows the connection is live.
        self._own = link.channel(f"node:{self.node_id}")
        self._listeners: dict[bytes, Callable[[bytes], None]] = {}
        self._counters: RoomTotals | None = None
        self._rooms: dict[str, _Room] = {}
        self._pubsub: PubSub | None = None
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._publish_id_ttl = publish_id_ttl_s
        # Durable publishes go out batched on a connection of their own (redis_pipeline.py); with
        # publish_batch_max 0, each takes a pooled connection of its own, as before the pipeline (the
        # benchmark's baseline).
        self.pipeline: PublishPipeline | None = None
        if publish_batch_max > 0:
            self.pipeline = PublishPipeline(
                link.dedicated_client("publish"),
                _PUBLISH,
                batch_max=publish_batch_max,
                queue_max=publish_queue_max,
                timeout_s=link.timeout_s,
                busy_timeout_s=link.busy_timeout_s,
                down=link.down,
                name=f"livehub-broker-publisher-{self.node_id}",
            )
        self._publish_script = self._redis.register_script(_PUBLISH)
        self._snapshot_script = self._redis.register_script(_SNAPSHOT)
        self._inbox: asyncio.Queue[tuple[str, str | bytes, object]] = asyncio.Queue()
        self._live = asyncio.Event()  # the pub/sub connection is up and subscribed

    # -- for the other Redis parts of the backplane ------------------------------------------------

    @property
    def live(self) -> bool:
        """The pub/sub connection is up: what is published on a subscribed channel now comes back here."""
        return self._live.is_set()

    def carry(self, counters: RoomTotals) -> None:
        """Let the counters ride on the room channels (one set of counters per broker)."""
        self._counters = counters

    def listen(self, channel: bytes, handler: Callable[[bytes], None]) -> None:
        """Keep a node-wide channel subscribed on the pub/sub connection (resubscribed after every reconnect);
        its messages reach `handler` from the dispatcher, in arrival order. Call before `start()`."""
        if self._tasks:
            raise RuntimeError("listen() after start(): the channel would miss the first connection")
        self._listeners[channel] = handler

    def deliver(self, room: str, event: dict) -> None:
        """Hand a state event to this node's subscriber of the room only, after what the dispatcher already
        holds (dropped if the room is not subscribed, or not ready yet, like any state event)."""
        self._inbox.put_nowait(("local", room, event))

    def loop_back(self, channel: bytes, data: bytes) -> None:
        """Hand `data` to the listener of a node-wide channel as if it had arrived on it."""
        self._inbox.put_nowait(("channel", channel, data))

    # -- the Broker ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the supervisor, dispatcher and publish pipeline; waits (bounded) for the first subscription,
        never raises."""
        if self.pipeline is not None:
            self.pipeline.start()
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
        """Stop the tasks. The link (the client) is closed by its owner, after every part that uses it."""
        self._closing = True
        await cancel_all(self._tasks, CLOSE_S)  # asked again if one swallows it; bounded
        await asyncio.gather(*[task for task in self._tasks if task.done()], return_exceptions=True)
        self._tasks = []
        self._rooms.clear()
        if self.pipeline is not None:
            await self.pipeline.close()

    def _keys(self, room: str) -> list[str]:
        return [self.link.key(room, name) for name in ("epoch", "offset", "history")]

    async def publish(self, room: str, event: dict, *, publish_id: str | None = None) -> dict:
        """The one path a durable event takes to Redis: the publish pipeline (BrokerBusy past its bounds,
        BrokerUnavailable only when Redis is away). Without the pipeline, each publish waits for a pooled
        connection of its own, and a wait past the link's busy bound is reported as unavailable."""
        body = jsonx.dumps(event)
        publish_id = publish_id or secrets.token_hex(12)
        keys = [*self._keys(room), self.link.key(room, f"pub:{publish_id}")]
        args = [secrets.token_hex(8), self._ttl, self._size, self.link.room_channel(room), body, self._publish_id_ttl]
        if self.pipeline is not None:
            reply = await self.pipeline.run(keys, args)
        else:
            try:
                reply = await self._publish_script(keys=keys, args=args)
            except DOWN as exc:
                raise BrokerUnavailable(str(exc)) from exc
        offset, _, epoch = reply.partition(b"|")
        return {**event, "offset": int(offset), "epoch": epoch.decode()}

    async def publish_state(self, room: str, event: dict) -> None:
        try:
            await self._redis.publish(self.link.room_channel(room), b"s|" + jsonx.dumps(event))
            if self.live:
                return  # this node gets it back from the channel, in order with the durable events
        except DOWN as exc:
            self.link.down(exc, "publish_state")
        self.deliver(room, event)

    async def subscribe(self, room: str, handler: RoomHandler) -> Subscription:
        """Subscribe, then read the history: nothing between is missed, and what the history covers is not
        delivered again. Raises BrokerUnavailable when Redis is away."""
        state = self._rooms[room] = _Room(handler, asyncio.get_running_loop().create_future())
        try:
            if (pubsub := self._pubsub) is not None:
                try:
                    await pubsub.subscribe(self.link.room_channel(room))
                except DOWN:
                    pass  # the supervisor reconnects and subscribes every room in self._rooms
            async with asyncio.timeout(self._timeout):  # not wait_for: see close()
                await state.confirmed
            epoch, offset, history = await self._snapshot(room, 1, "")
            # Read after the snapshot: totals are state (latest wins), and any later change is announced
            # on the channel this node already listens to.
            reactions = await self._counters.totals(room) if self._counters is not None else {}
        except DOWN as exc:
            if self._rooms.get(room) is state:
                del self._rooms[room]
            raise BrokerUnavailable(str(exc) or "no subscription") from exc
        state.offset, state.epoch = offset, epoch
        self._inbox.put_nowait(("ready", room, None))
        return Subscription(history, Position(offset, epoch), reactions)

    async def unsubscribe(self, room: str) -> None:
        self._rooms.pop(room, None)
        if self._counters is not None:
            self._counters.forget(room)
        try:
            if (pubsub := self._pubsub) is not None:
                await pubsub.unsubscribe(self.link.room_channel(room))
        except DOWN as exc:
            self.link.down(exc, "unsubscribe")  # the supervisor's next connection leaves the room out

    async def history(self, room: str, since: int, epoch: str) -> list[dict] | None:
        """As documented in Broker; raises BrokerUnavailable when Redis is away."""
        try:
            current, offset, events = await self._snapshot(room, since + 1, epoch)
        except DOWN as exc:
            raise BrokerUnavailable(str(exc)) from exc
        if current != epoch or not 0 <= since <= offset:
            return None
        first = events[0]["offset"] if events else offset + 1
        return events if first == since + 1 else None

    async def _snapshot(self, room: str, start: int, known_epoch: str):
        """(epoch, offset, events from `start` in the kept window), read atomically."""
        args = [secrets.token_hex(8), self._ttl, start, known_epoch, self._size]
        epoch, offset, entries = await self._snapshot_script(keys=self._keys(room), args=args)
        epoch = epoch.decode()
        events = [
            {**jsonx.loads(fields[1]), "offset": int(entry_id.split(b"-")[0]), "epoch": epoch}
            for entry_id, fields in entries
        ]
        return epoch, offset, events

    # -- the supervisor: owns the pub/sub connection, reconnects, and feeds the dispatcher in arrival order.

    async def _supervise(self) -> None:
        # redis-py's PubSub reconnects and resubscribes on its own only inside a read, without telling
        # us what was missed (redis/redis-py#2089); a fresh PubSub per connection makes the gap explicit.
        delay = _BACKOFF_MIN_S
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._own, *self._listeners)
                self._pubsub = pubsub  # from here on subscribe() sends its own SUBSCRIBE too
                if self._rooms:
                    await pubsub.subscribe(*(self.link.room_channel(room) for room in self._rooms))
                delay = _BACKOFF_MIN_S
                await self._read(pubsub)
            except DOWN as exc:
                self.link.down(exc, "pub/sub")
                BROKER_RECONNECTS.inc()
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
            if channel == self._own:
                if kind == "subscribe":
                    self._live.set()
            elif channel in self._listeners:
                if kind == "message":
                    self._inbox.put_nowait(("channel", channel, message["data"]))
            elif kind in ("message", "subscribe") and (room := self.link.room_of(channel)) is not None:
                self._inbox.put_nowait(("msg" if kind == "message" else "subscribed", room, message["data"]))

    # -- the dispatcher: the only caller of handlers.

    async def _dispatch(self) -> None:
        while not self._closing:
            kind, target, data = await self._inbox.get()  # target: a room, or a node-wide channel
            try:
                await self._process(kind, target, data)
            except DOWN as exc:
                # A catch-up read failed (often a pooled connection from before Redis restarted): the event
                # stays undelivered until a retry brings it, with anything else missed, from the history.
                self.link.down(exc, "catch-up")
                if target in self._rooms:
                    asyncio.get_running_loop().call_later(_RESYNC_S, self._inbox.put_nowait, ("resync", target, None))
            except Exception:
                log.exception("broker dispatch of %s failed", kind)

    async def _process(self, kind: str, target: str | bytes, data) -> None:
        if kind == "channel":
            if (listener := self._listeners.get(target)) is not None:
                listener(data)
            return
        room = target
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
            # Durable events wait for the position; state events are dropped (at most once): the
            # subscription already holds the reaction totals, and any state event is soon superseded.
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
        elif raw.startswith(b"r|") and self._counters is not None:
            self._emit(room, state, self._counters.received(room, raw[2:]))

    async def _catch_up(self, room: str, state: _Room) -> None:
        """Deliver what the room's history has after the last delivered event, up to the current offset;
        a `reset` first when that is not continuous (new epoch, events past the window, offsets went back
        because Redis restored an older snapshot)."""
        epoch, offset, events = await self._snapshot(room, state.offset + 1, state.epoch)
        start = state.offset + 1 if epoch == state.epoch else 1
        first = events[0]["offset"] if events else offset + 1
        if epoch != state.epoch or first != start:
            state.offset, state.epoch = first - 1, epoch
            BROKER_RESETS.inc()
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
