"""Fan-out: what a room's viewers have not been sent yet, and sending it once per tick.

Durable events wait in order; state events keep only their latest value per key. On each tick the room
calls `flush`, and a strategy writes everything to every viewer. The shipped strategy encodes one
`events` frame once and puts the same bytes on every viewer's queue (Connection.send_frame never waits;
a viewer too far behind is closed with 4008). `one_frame_per_event` is the baseline the fan-out benchmark
compares it with (bench/fanout.py, `LIVEHUB_FANOUT=per_event`): the same events released at the same
tick, one frame each.

A viewer that joins between two ticks got a welcome that already reflects the events waiting for the
next tick: it is sent only the durable events after the offset its welcome carried.
"""

from collections.abc import Callable, Collection

from livehub.live.connection import Connection, frame_of

# (events, viewers, joined mid-tick: connection -> offset its welcome reflected) -> None
Strategy = Callable[[list[dict], Collection[Connection], dict[Connection, int]], None]


def one_frame_per_tick(events: list[dict], viewers: Collection[Connection], joined: dict[Connection, int]) -> None:
    frame = frame_of({"type": "events", "events": events})
    for conn in viewers:
        if joined and conn in joined:
            seen = joined[conn]
            conn.send({"type": "events", "events": [e for e in events if e.get("offset", seen + 1) > seen]})
        else:
            conn.send_frame(frame)


def one_frame_per_event(events: list[dict], viewers: Collection[Connection], joined: dict[Connection, int]) -> None:
    for event in events:
        frame = frame_of({"type": "events", "events": [event]})
        offset = event.get("offset")
        for conn in viewers:
            if joined and offset is not None and conn in joined and offset <= joined[conn]:
                continue  # joined during this tick: its welcome already reflected this event
            conn.send_frame(frame)


STRATEGIES: dict[str, Strategy] = {"tick": one_frame_per_tick, "per_event": one_frame_per_event}


class FanOut:
    def __init__(self, strategy: Strategy = one_frame_per_tick):
        self.viewers: set[Connection] = set()
        self._strategy = strategy
        self._durable: list[dict] = []
        self._latest: dict[str, dict] = {}
        self._joined: dict[Connection, int] = {}

    def add(self, conn: Connection, offset: int) -> None:
        """A viewer whose welcome reflected the room up to `offset`."""
        self.viewers.add(conn)
        if self._durable:
            self._joined[conn] = offset

    def remove(self, conn: Connection) -> None:
        self.viewers.discard(conn)
        self._joined.pop(conn, None)

    def durable(self, event: dict) -> None:
        self._durable.append(event)

    def latest(self, key: str, event: dict) -> None:
        self._latest[key] = event

    def forget_durable(self) -> None:
        """The history was reset and every viewer gets a fresh welcome instead."""
        self._durable = []
        self._joined.clear()

    def flush(self) -> None:
        """Send every viewer everything since the last flush (nothing when nothing happened)."""
        if not self._durable and not self._latest:
            return
        events = self._durable + list(self._latest.values())
        self._durable = []
        self._latest = {}
        joined, self._joined = self._joined, {}
        self._strategy(events, self.viewers, joined)
