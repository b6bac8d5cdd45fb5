"""The in-process backplane: one node, no Redis. The default for `python run.py`.

The counters ride on the broker as the Redis ones do: `LocalCounters` hands its totals to the room's
handler through `LocalBroker.deliver`, and the broker asks it for the totals a subscription starts from.
"""

import collections
import secrets

from livehub.broker.base import (
    Broker,
    Counters,
    NoticeHandler,
    Notifier,
    Position,
    Presence,
    RoomHandler,
    Subscription,
)

# How many recent publish ids the in-process broker remembers (its "short time" of idempotency).
PUBLISH_IDS_KEPT = 10_000


class _Room:
    def __init__(self, history_size: int):
        self.offset = 0
        self.history: collections.deque[dict] = collections.deque(maxlen=history_size)


class LocalBroker(Broker):
    """Everything lives in this process. Offsets are gap-free by construction; the epoch changes when the
    process restarts, which is exactly when its history is lost."""

    def __init__(self, *, history_size: int = 1000):
        self.node_id = secrets.token_hex(6)
        self.epoch = secrets.token_hex(6)
        self._history_size = history_size
        self._rooms: dict[str, _Room] = {}
        self._handlers: dict[str, RoomHandler] = {}
        self._counters: LocalCounters | None = None
        self._published: collections.OrderedDict[tuple[str, str], dict] = collections.OrderedDict()

    def carry(self, counters: "LocalCounters") -> None:
        """Let the counters ride on this broker: subscriptions start from their totals."""
        self._counters = counters

    def deliver(self, room: str, event: dict) -> None:
        """Hand a state event to this node's subscriber of the room, if any (the counters' totals)."""
        if (handler := self._handlers.get(room)) is not None:
            handler(event)

    def _room(self, room: str) -> _Room:
        if (state := self._rooms.get(room)) is None:
            state = self._rooms[room] = _Room(self._history_size)
        return state

    async def publish(self, room: str, event: dict, *, publish_id: str | None = None) -> dict:
        if publish_id is not None and (first := self._published.get((room, publish_id))) is not None:
            return first
        state = self._room(room)
        state.offset += 1
        event = {**event, "offset": state.offset, "epoch": self.epoch}
        state.history.append(event)
        if publish_id is not None:
            self._published[(room, publish_id)] = event
            if len(self._published) > PUBLISH_IDS_KEPT:
                self._published.popitem(last=False)
        self.deliver(room, event)
        return event

    async def publish_state(self, room: str, event: dict) -> None:
        self.deliver(room, event)

    async def subscribe(self, room: str, handler: RoomHandler) -> Subscription:
        state = self._room(room)
        self._handlers[room] = handler
        reactions = self._counters.totals(room) if self._counters is not None else {}
        return Subscription(list(state.history), Position(state.offset, self.epoch), reactions)

    async def unsubscribe(self, room: str) -> None:
        self._handlers.pop(room, None)

    async def history(self, room: str, since: int, epoch: str) -> list[dict] | None:
        state = self._room(room)
        if epoch != self.epoch or since > state.offset:
            return None
        first = state.history[0]["offset"] if state.history else state.offset + 1
        if since < first - 1:
            return None
        return [e for e in state.history if e["offset"] > since]


class LocalPresence(Presence):
    """This node is the only one: the total is its own count."""

    def __init__(self) -> None:
        self._viewers: dict[str, int] = {}

    async def set_viewers(self, room: str, local: int) -> int:
        self._viewers[room] = local
        return local

    async def viewers(self, room: str) -> int:
        return self._viewers.get(room, 0)

    async def withdraw(self, room: str) -> None:
        self._viewers.pop(room, None)

    async def close(self) -> None:
        self._viewers.clear()


class LocalCounters(Counters):
    """Totals kept in this process, announced through the broker's room handler."""

    def __init__(self, broker: LocalBroker):
        self._broker = broker
        self._totals: dict[str, collections.Counter[str]] = {}
        broker.carry(self)

    def totals(self, room: str) -> dict[str, int]:
        """The room's totals now (what a subscription starts from)."""
        return dict(self._totals.get(room, {}))

    async def add_reactions(self, room: str, counts: dict[str, int]) -> None:
        totals = self._totals.setdefault(room, collections.Counter())
        totals.update(counts)
        self._broker.deliver(room, {"type": "reactions", "counts": dict(totals)})


class LocalNotifier(Notifier):
    """Notices go straight to this node's handler."""

    def __init__(self) -> None:
        self._handler: NoticeHandler | None = None

    async def notify(self, user_ids: list[str], payload: dict) -> None:
        if self._handler is not None:
            self._handler(user_ids, payload)

    def on_notice(self, handler: NoticeHandler) -> None:
        self._handler = handler
