"""Fan-out: what each of a room's viewers has not been sent yet, and sending it on the room's clock.

Durable events wait in order; state events keep only their latest value per key. Every entry gets a
sequence number and every viewer a cursor: the number of the last entry it was sent. A viewer is sent
exactly what lies past its cursor whenever its turn comes, so viewers need not all be sent at once.

Pacing. One `send()` per viewer per frame is the whole cost of a room's fan-out (docs/BENCHMARKS.md,
"Live room fan-out"), so a room's writes per second are its viewers times its frames per viewer per
second. Every viewer gets one frame per *period* with everything new to it:

- a small room's period is `tick_ms`, as before;
- a big room's period grows with its viewers so that the room makes at most `tick_writes_per_s` writes a
  second (10,000 viewers at 50,000 writes/s: 200 ms), up to `tick_max_ms`: fewer, larger frames;
- the period is cut into slices of at most `tick_slice_viewers` viewers, one slice per beat. A beat
  blocks the event loop for one slice only (not for all 10,000 writes), and viewers' frames are spread
  over the period instead of leaving (and being read) in one burst, so a viewer waits at most about one
  period for an event rather than a period plus a whole flush.

`Pacing(mode="fixed")` is the engine before this change, kept as the benchmark's baseline
(bench/fanout.py, `LIVEHUB_TICK_MODE=fixed`): every viewer at once, `tick_ms` after the last flush ended.

Frames: `one_frame_per_tick` encodes one `events` frame (websocket header included) and writes the same
bytes to every viewer with the same cursor (Connection.send_frame never waits; a viewer too far behind is
closed with 4008). `one_frame_per_event` is the older baseline (`LIVEHUB_FANOUT=per_event`): the same
events at the same time, one frame each.

A viewer that joins between two of its turns got a welcome that already reflects the events waiting: it
is sent only the durable events after the offset its welcome carried (state events are sent again; they
are latest values, so a repeat changes nothing).
"""

import asyncio
import bisect
import math
import time
from collections.abc import Callable, Iterable, KeysView
from dataclasses import dataclass
from typing import Literal

from livehub.live.connection import Connection, frame_of
from livehub.metrics import BYTES_SENT, FLUSH_SECONDS, FRAMES_SENT

# The events a viewer has not had -> the frames that carry them.
Frames = Callable[[list[dict]], list[bytes]]


def one_frame_per_tick(events: list[dict]) -> list[bytes]:
    return [frame_of({"type": "events", "events": events})]


def one_frame_per_event(events: list[dict]) -> list[bytes]:
    return [frame_of({"type": "events", "events": [event]}) for event in events]


STRATEGIES: dict[str, Frames] = {"tick": one_frame_per_tick, "per_event": one_frame_per_event}


@dataclass(frozen=True)
class Pacing:
    """How often a room's viewers get a frame (the settings `tick_*`; see the module's docstring)."""

    tick_s: float = 0.05
    mode: Literal["adaptive", "fixed"] = "adaptive"
    writes_per_s: float = 50_000
    max_tick_s: float = 0.5
    slice_viewers: int = 500

    def period_s(self, viewers: int) -> float:
        """How often each viewer gets a frame, in a room of this many viewers."""
        if self.mode == "fixed":
            return self.tick_s
        return max(self.tick_s, min(self.max_tick_s, viewers / self.writes_per_s))

    def slices(self, viewers: int) -> int:
        """Beats per period: the viewers are sent in this many parts."""
        if self.mode == "fixed":
            return 1
        return max(1, math.ceil(viewers / self.slice_viewers))

    def beat_s(self, viewers: int) -> float:
        return self.period_s(viewers) / self.slices(viewers)

    @classmethod
    def of(cls, settings) -> "Pacing":
        return cls(
            tick_s=settings.tick_ms / 1000,
            mode=settings.tick_mode,
            writes_per_s=settings.tick_writes_per_s,
            max_tick_s=settings.tick_max_ms / 1000,
            slice_viewers=settings.tick_slice_viewers,
        )


def next_beat(previous: float, interval: float, now: float, catch_up_s: float) -> float:
    """When the beat after `previous` is due, on a fixed grid: a beat that took a while does not push the
    next one later, and a beat the event loop got to late is made up at once (the loop still runs between
    two beats), so a tick keeps its length. A clock more than `catch_up_s` behind starts again from now
    rather than sending a burst of beats."""
    due = previous + interval
    return now if due < now - catch_up_s else due


async def beat_forever(interval_s: Callable[[], float], catch_up_s: Callable[[], float], beat: Callable[[], None]):
    """Call `beat` every `interval_s()` seconds on a fixed grid (`next_beat`), until cancelled."""
    loop = asyncio.get_running_loop()
    beat_at = loop.time()
    while True:
        beat_at = next_beat(beat_at, interval_s(), loop.time(), catch_up_s())
        await asyncio.sleep(max(0.0, beat_at - loop.time()))
        beat()


class FanOut:
    def __init__(self, frames: Frames = one_frame_per_tick, pacing: Pacing | None = None):
        self.pacing = pacing or Pacing()
        self._frames = frames
        # Viewer -> sequence number of the last entry it was sent (dicts keep the join order).
        self._cursors: dict[Connection, int] = {}
        # Joined while durable events were waiting: connection -> offset its welcome reflected.
        self._joined: dict[Connection, int] = {}
        self._seq = 0  # the newest entry's number
        self._base = 0  # every viewer has been sent every entry up to this one
        self._durable: list[dict] = []
        self._durable_seq: list[int] = []
        self._latest: dict[str, tuple[int, dict]] = {}
        # The round in progress: its viewers in order, where the next slice starts, the slice's size, and
        # the newest entry when the round began.
        self._round: list[Connection] = []
        self._next = 0
        self._slice = 0
        self._round_seq = 0

    @property
    def viewers(self) -> KeysView[Connection]:
        return self._cursors.keys()

    def add(self, conn: Connection, offset: int) -> None:
        """A viewer whose welcome reflected the room up to `offset`."""
        self._cursors[conn] = self._base
        if self._durable:
            self._joined[conn] = offset
        if self._round:
            self._round.append(conn)  # its turn comes at the end of the round in progress

    def remove(self, conn: Connection) -> None:
        self._cursors.pop(conn, None)
        self._joined.pop(conn, None)

    def durable(self, event: dict) -> None:
        self._seq += 1
        self._durable.append(event)
        self._durable_seq.append(self._seq)

    def latest(self, key: str, event: dict) -> None:
        self._seq += 1
        self._latest[key] = (self._seq, event)

    def forget_durable(self) -> None:
        """The history was reset and every viewer gets a fresh welcome instead."""
        self._durable = []
        self._durable_seq = []
        self._joined.clear()

    def beat_s(self) -> float:
        """Seconds from one beat of the room's clock to the next."""
        return self.pacing.beat_s(len(self._cursors))

    def period_s(self) -> float:
        """Seconds from one frame to the next for each viewer."""
        return self.pacing.period_s(len(self._cursors))

    def beat(self) -> None:
        """One beat: the next slice of viewers is sent what each has not had (nothing when nothing happened)."""
        if not self._round and not self._start_round():
            return
        started = time.perf_counter()
        end = self._next + self._slice
        self._send(self._round[self._next : end])
        FLUSH_SECONDS.observe(time.perf_counter() - started)
        self._next = end
        if self._next >= len(self._round):
            self._end_round()

    def flush(self) -> None:
        """Send every viewer everything it has not had, at once (the rest of the round in progress)."""
        if not self._round and not self._start_round():
            return
        self._send(self._round[self._next :])
        self._end_round()

    # -- internals

    def _start_round(self) -> bool:
        if self._seq == self._base:
            return False  # every viewer has everything
        if not self._cursors:
            self._round_seq = self._seq
            self._end_round()
            return False
        self._round = list(self._cursors)
        self._round_seq = self._seq
        self._next = 0
        self._slice = math.ceil(len(self._round) / self.pacing.slices(len(self._round)))
        return True

    def _end_round(self) -> None:
        """Every viewer of the round (joiners included) was sent everything up to the round's start at least:
        what no viewer needs any more is dropped."""
        self._round = []
        self._base = self._round_seq
        cut = bisect.bisect_right(self._durable_seq, self._base)
        if cut:
            del self._durable[:cut], self._durable_seq[:cut]
        if self._latest:
            self._latest = {k: v for k, v in self._latest.items() if v[0] > self._base}

    def _since(self, cursor: int) -> list[dict]:
        """Entries after `cursor`: durable events in order, then the latest value of each state."""
        events = self._durable[bisect.bisect_right(self._durable_seq, cursor) :]
        events += [event for seq, event in self._latest.values() if seq > cursor]
        return events

    def _send(self, viewers: Iterable[Connection]) -> None:
        seq, cursors, joined = self._seq, self._cursors, self._joined
        # Viewers sent together last time share a cursor, so a slice is usually one encoding.
        frames_at: dict[int, list[bytes]] = {}
        sent = size = 0  # counted here, added to the metrics once per slice
        for conn in viewers:
            cursor = cursors.get(conn)
            if cursor is None or cursor == seq:
                continue  # left the room, or already has everything
            if joined and conn in joined:
                seen = joined.pop(conn)
                events = [e for e in self._since(cursor) if e.get("offset", seen + 1) > seen]
                frames = self._frames(events) if events else []
            else:
                frames = frames_at.get(cursor)
                if frames is None:
                    events = self._since(cursor)
                    frames = frames_at[cursor] = self._frames(events) if events else []
            for frame in frames:
                conn.send_frame(frame)
                size += len(frame)
            sent += len(frames)
            cursors[conn] = seq
        FRAMES_SENT.inc(sent)
        BYTES_SENT.inc(size)
