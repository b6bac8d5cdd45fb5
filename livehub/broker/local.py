"""The in-process broker: one node, no Redis. The default for `python run.py`."""

import collections
import secrets

from livehub.broker.base import Broker, NoticeHandler, Position, RoomHandler, Subscription


class _Room:
    def __init__(self, history_size: int):
        self.offset = 0
        self.history: collections.deque[dict] = collections.deque(maxlen=history_size)
        self.reactions: collections.Counter[str] = collections.Counter()
        self.viewers = 0


class LocalBroker(Broker):
    """Everything lives in this process. Offsets are gap-free by construction; the epoch changes when the
    process restarts, which is exactly when its history is lost."""

    def __init__(self, *, history_size: int = 1000):
        self.node_id = secrets.token_hex(6)
        self.epoch = secrets.token_hex(6)
        self._history_size = history_size
        self._rooms: dict[str, _Room] = {}
        self._handlers: dict[str, RoomHandler] = {}
        self._notice_handler: NoticeHandler | None = None

    def _room(self, room: str) -> _Room:
        if (state := self._rooms.get(room)) is None:
            state = self._rooms[room] = _Room(self._history_size)
        return state

    def _deliver(self, room: str, event: dict) -> None:
        if (handler := self._handlers.get(room)) is not None:
            handler(event)

    async def publish(self, room: str, event: dict) -> dict:
        state = self._room(room)
        state.offset += 1
        event = {**event, "offset": state.offset, "epoch": self.epoch}
        state.history.append(event)
        self._deliver(room, event)
        return event

    async def publish_state(self, room: str, event: dict) -> None:
        self._deliver(room, event)

    async def add_reactions(self, room: str, counts: dict[str, int]) -> None:
        state = self._room(room)
        state.reactions.update(counts)
        self._deliver(room, {"type": "reactions", "counts": dict(state.reactions)})

    async def subscribe(self, room: str, handler: RoomHandler) -> Subscription:
        state = self._room(room)
        self._handlers[room] = handler
        return Subscription(list(state.history), Position(state.offset, self.epoch), dict(state.reactions))

    async def unsubscribe(self, room: str) -> None:
        self._handlers.pop(room, None)
        if (state := self._rooms.get(room)) is not None:
            state.viewers = 0

    async def history(self, room: str, since: int, epoch: str) -> list[dict] | None:
        state = self._room(room)
        if epoch != self.epoch or since > state.offset:
            return None
        first = state.history[0]["offset"] if state.history else state.offset + 1
        if since < first - 1:
            return None
        return [e for e in state.history if e["offset"] > since]

    async def set_viewers(self, room: str, local: int) -> int:
        self._room(room).viewers = local
        return local

    async def viewers(self, room: str) -> int:
        state = self._rooms.get(room)
        return state.viewers if state else 0

    async def notify(self, user_ids: list[str], payload: dict) -> None:
        if self._notice_handler is not None:
            self._notice_handler(user_ids, payload)

    def on_notice(self, handler: NoticeHandler) -> None:
        self._notice_handler = handler
