"""A live room on this node: its viewers, and the events that reach them.

Every change reaches the room as a broker event, whichever node it came from, so all nodes apply the
same events in the same order. The room is the core that wires the parts together:

- state.py: the room's state and how events change it (a reducer; effects come back as data);
- fanout.py: what each viewer has not been sent yet, sent as one encoded frame on the room's clock (once per
  `tick_ms` in a small room, less often and in slices in a big one: `tick_*` settings);
- audience.py: reactions on their way to the shared totals, and the stream's stats;
- commands.py: the core commands (chat, react, click, buy, pin, moderation);
- formats/: interactive show formats (flash sales, ...), each a plug-in with its own commands, events,
  welcome part and timers. The room dispatches to them by type and never names one.
"""

import asyncio
import collections
import logging
import time
from collections.abc import Coroutine, KeysView
from typing import Any
from uuid import UUID

import asyncpg

from livehub.broker import Backplane
from livehub.broker.base import Subscription
from livehub.errors import NotFound
from livehub.live import commands, protocol
from livehub.live.audience import Audience
from livehub.live.chatlog import ChatLog
from livehub.live.checkout import Checkout
from livehub.live.connection import CLOSE_BANNED, Connection
from livehub.live.fanout import STRATEGIES, FanOut, Pacing, beat_forever
from livehub.live.formats import Handler, ShowFormat, all_formats
from livehub.live.moderation import TokenBucket, UserLimits
from livehub.live.state import Kick, ReloadBlockedWords, RoleChanged, RoomState, StreamEnded, for_client
from livehub.metrics import TICK_SECONDS
from livehub.settings import Settings
from livehub.shop import streams
from livehub.tasks import Supervisor, cancel

log = logging.getLogger(__name__)

# A variant's coalescer outlives its last buy this long: it remembers which flash sales it saw end, so a
# flood of late buys is answered without the variant's lock.
CHECKOUT_IDLE_S = 60.0

# Every client frame and every event: the core's and the show formats'.
FRAMES = protocol.Parser([*protocol.CORE_FRAMES, *(f for fmt in all_formats() for f in fmt.frames)])
EVENTS: tuple[type[protocol.Event], ...] = (*protocol.CORE_EVENTS, *(e for fmt in all_formats() for e in fmt.events))


class Room:
    def __init__(
        self,
        stream_id: UUID,
        *,
        backplane: Backplane,
        pool: asyncpg.Pool,
        settings: Settings,
        chatlog: ChatLog,
        tasks: Supervisor,
    ):
        self.id = stream_id
        self.key = str(stream_id)
        self.pool = pool
        self.settings = settings
        self.chatlog = chatlog
        self._backplane = backplane
        self._tasks = tasks
        self.state = RoomState(
            history_size=settings.room_history_size,
            recent_chat=settings.recent_chat,
            max_chat_chars=settings.chat_max_chars,
        )
        self.fanout = FanOut(STRATEGIES[settings.fanout], Pacing.of(settings))
        self.audience = Audience(stream_id, pool, click_window_s=settings.click_window_s)
        self.formats: list[ShowFormat] = [cls(self) for cls in all_formats()]
        self._handlers: dict[type[protocol.Frame], Handler] = commands.core_handlers(self)
        self._format_of_event: dict[str, ShowFormat] = {}
        for show_format in self.formats:
            self._handlers.update(show_format.handlers())
            self._format_of_event.update({_event_type(e): show_format for e in show_format.events})
        self._limits: dict[UUID, UserLimits] = {}
        # Sockets per viewer key: the viewer count is people (a user's tabs, one anonymous client's sockets
        # count once), not sockets.
        self._people: collections.Counter[str] = collections.Counter()
        self._checkouts: dict[UUID, Checkout] = {}
        self._loaded = False
        self._early: list[dict] = []
        self._tick: asyncio.Task | None = None
        self._reactions_at = 0.0  # loop time the tick's reactions last went to the shared totals

    @property
    def connections(self) -> KeysView[Connection]:
        return self.fanout.viewers

    # -- lifecycle ---------------------------------------------------------------------------------

    async def load(self) -> bool:
        """Subscribe, then read the stream: an event published in between is applied on top of the
        snapshot rather than lost. False when there is no such stream."""
        subscription = await self._backplane.broker.subscribe(self.key, self._on_event)
        snapshot = await streams.room_snapshot(self.pool, self.id)
        if snapshot is None:
            await self._backplane.broker.unsubscribe(self.key)
            return False
        self._apply_snapshot(snapshot, subscription)
        self._loaded = True
        early, self._early = self._early, []
        for event in early:
            self._on_event(event)
        name = f"room-tick-{self.key}"
        if self.settings.tick_mode == "fixed":
            # The engine before the adaptive clock, kept as the benchmark's baseline: a whole tick after
            # each flush, however long the flush took.
            self._tick = self._tasks.every(self.settings.tick_ms / 1000, self.tick, name=name)
        else:
            self._tick = self._tasks.keep_running(self._clock, name=name)
        return True

    async def stop(self) -> None:
        await cancel(self._tick)
        for show_format in self.formats:
            show_format.stop()
        await self._backplane.broker.unsubscribe(self.key)
        await self._backplane.presence.withdraw(self.key)

    def _apply_snapshot(self, snapshot: dict, subscription: Subscription) -> None:
        position = subscription.position
        self.state.load(
            snapshot,
            offset=position.offset,
            epoch=position.epoch,
            history=subscription.history,
            reactions=subscription.reactions,
        )
        for show_format in self.formats:
            show_format.load(snapshot)

    # -- viewers -----------------------------------------------------------------------------------

    def join(self, conn: Connection, *, since: int | None, epoch: str | None) -> None:
        """Send the welcome (and what the viewer missed, when recoverable), then start feeding it."""
        missed = self.state.missed(since, epoch)
        conn.role = self.state.role_of(conn.user_id, is_admin=conn.is_admin)
        conn.send(self.welcome(conn, recovered=missed is not None))
        if missed:
            conn.send({"type": "events", "events": missed})
        self.fanout.add(conn, self.state.offset)
        if conn.user_id is not None:
            self.limits_of(conn.user_id).connections += 1
        self._people[conn.viewer_key] += 1
        self.audience.saw(conn.viewer_key)

    def leave(self, conn: Connection) -> None:
        if conn not in self.fanout.viewers:
            return
        self.fanout.remove(conn)
        self._people[conn.viewer_key] -= 1
        if self._people[conn.viewer_key] <= 0:
            del self._people[conn.viewer_key]
        if conn.user_id is not None and (limits := self._limits.get(conn.user_id)) is not None:
            limits.connections -= 1
            if limits.connections <= 0:
                del self._limits[conn.user_id]

    def limits_of(self, user_id: UUID) -> UserLimits:
        """One user's chat and reaction budget in this room, shared by all of the user's tabs on this node."""
        limits = self._limits.get(user_id)
        if limits is None:
            s = self.settings
            limits = self._limits[user_id] = UserLimits(
                TokenBucket(s.chat_rate_per_s, s.chat_burst),
                TokenBucket(s.reactions_per_s, 2 * s.reactions_per_s),
            )
        return limits

    def welcome(self, conn: Connection, *, recovered: bool) -> dict:
        state = self.state
        return {
            "type": "welcome",
            "stream": state.stream,
            "you": {"user_id": conn.user_id, "role": conn.role},
            "state": {
                "pinned": state.pinned,
                "viewers": state.viewers,
                "reactions": state.reactions,
                "slow_mode_s": state.rules.slow_mode_s,
                **{f.key: f.snapshot() for f in self.formats},
            },
            "recent": list(state.recent_chat),
            "offset": state.offset,
            "epoch": state.epoch,
            "recovered": recovered,
        }

    # -- commands ----------------------------------------------------------------------------------

    async def command(self, conn: Connection, frame: protocol.Frame) -> dict | None:
        """Run a client frame; returns the reply for the sender, if any."""
        handler = self._handlers.get(type(frame))
        if handler is None:
            raise NotFound("this room does not take that frame")
        return await handler(conn, frame)

    def checkout(self, variant_id: UUID) -> Checkout:
        checkout = self._checkouts.get(variant_id)
        if checkout is None:
            checkout = self._checkouts[variant_id] = Checkout(
                self.pool,
                self.settings,
                self.id,
                variant_id,
                lambda vid, result: commands.settled(self, vid, result),
                self._tasks,
            )
        return checkout

    def has_checkout(self, variant_id: UUID) -> bool:
        return variant_id in self._checkouts

    async def publish(self, event: dict, *, publish_id: str | None = None) -> dict:
        """A durable event for every node's room; returns it with its offset. Raises BrokerUnavailable. Nodes
        publishing the same event with the same `publish_id` (within LIVEHUB_REDIS_PUBLISH_ID_TTL_S) append it once."""
        return await self._backplane.broker.publish(self.key, event, publish_id=publish_id)

    async def publish_state(self, event: dict) -> None:
        await self._backplane.broker.publish_state(self.key, event)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> None:
        self._tasks.spawn(coro, name=f"{name}-{self.key}")

    def call_later(self, delay_s: float, callback) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay_s, callback)

    # -- events from the broker --------------------------------------------------------------------

    def _on_event(self, event: dict) -> None:
        if not self._loaded:
            self._early.append(event)
            return
        if event["type"] == "reset":
            self._reset(event)
        elif "offset" in event:
            if not self.state.is_new(event):
                return  # already in the snapshot this room loaded
            event = for_client(event)
            effects = self.state.apply(event)
            if (show_format := self._format_of_event.get(event["type"])) is not None:
                show_format.apply(event)
            self.fanout.durable(event)
            for effect in effects:
                self._carry_out(effect)
        else:
            shown = self.state.apply_state(event)
            for show_format in self.formats:
                show_format.on_state(event)
            if shown is not None:
                self.fanout.latest(_state_key(event), shown)

    def _carry_out(self, effect) -> None:
        match effect:
            case Kick(user_id):
                for conn in list(self.connections):
                    if str(conn.user_id) == user_id:
                        conn.close_soon(CLOSE_BANNED, "banned by the host")
            case RoleChanged(user_id):
                for conn in self.connections:
                    if str(conn.user_id) == user_id:
                        conn.role = self.state.role_of(conn.user_id, is_admin=conn.is_admin)
            case ReloadBlockedWords():
                self.spawn(self._reload_blocked_words(), name="blocked-words")
            case StreamEnded():
                for show_format in self.formats:
                    show_format.stream_ended()

    async def _reload_blocked_words(self) -> None:
        snapshot = await streams.room_snapshot(self.pool, self.id)
        if snapshot is not None:
            self.state.rules.block_words(snapshot["blocked_words"])

    def _reset(self, event: dict) -> None:
        """The broker lost continuity (Redis lost its data, or this node was cut off too long): start a
        new history from here and give every viewer a fresh welcome."""
        log.warning("room %s: event history reset (epoch %s -> %s)", self.key, self.state.epoch, event["epoch"])
        self.state.reset(event["offset"], event["epoch"])
        self.fanout.forget_durable()
        for conn in self.connections:
            conn.send(self.welcome(conn, recovered=False))

    # -- the tick and presence ---------------------------------------------------------------------

    async def _clock(self) -> None:
        """Beat on a fixed grid (`FanOut.beat_s` apart): a beat's writes do not push the next beat later, and
        beats the loop got to late are made up within one tick."""
        await beat_forever(self.fanout.beat_s, self.fanout.period_s, self._beat)

    def _beat(self) -> None:
        try:
            self.tick()
        except Exception:  # one bad beat must not stop the room's clock
            log.exception("room %s: tick failed", self.key)

    def tick(self) -> None:
        """One beat: the reactions of the last `tick_ms` go to the shared totals; the next slice of viewers
        (all of them in a small room) gets one frame with everything new to each."""
        started = time.perf_counter()
        now = asyncio.get_running_loop().time()
        # (less a hair: beats on the grid land exactly one tick apart, give or take a rounding error)
        if now - self._reactions_at >= self.settings.tick_ms / 1000 * 0.999:
            self._reactions_at = now
            if (delta := self.audience.take_reactions()) is not None:
                self.spawn(self._backplane.counters.add_reactions(self.key, delta), name="reactions")
        self.fanout.beat()
        TICK_SECONDS.observe(time.perf_counter() - started)

    async def report_presence(self) -> None:
        """Aggregate viewers over the nodes; write this node's new stats. Called by the hub every
        `presence_interval_s`."""
        # Summed over nodes: someone with sockets on two nodes counts on each (a balancer rarely splits them).
        total = await self._backplane.presence.set_viewers(self.key, len(self._people))
        if total != self.state.viewers:
            self.fanout.latest("viewers", self.state.apply_state({"type": "viewers", "count": total}))
        self._prune_checkouts()
        if self.state.live:
            await self.audience.record(total)

    def _prune_checkouts(self) -> None:
        for variant_id, checkout in list(self._checkouts.items()):
            if checkout.idle_for() > CHECKOUT_IDLE_S:
                del self._checkouts[variant_id]


def _event_type(event: type[protocol.Event]) -> str:
    (value,) = event.model_fields["type"].annotation.__args__
    return value


def _state_key(event: dict) -> str:
    return f"stock:{event['variant_id']}" if event["type"] == "stock" else event["type"]
