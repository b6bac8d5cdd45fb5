"""Giveaways: the host gives one unit of a featured variant away to a viewer who entered, by a draw anyone
can check (docs/PROTOCOL.md, "Giveaways").

Everything that decides lives in PostgreSQL (storage/functions/giveaways.sql): `start_giveaway` stores a
secret seed and shows its SHA-256; `enter_giveaway` checks who may enter (eligibility, bans, timeouts) and
records one entry per user; `end_giveaway` draws the winner from the seed and the sorted entries, writes
the zero-price prize order and notifies the winner, exactly once however many nodes' timers fire. The room
keeps the current giveaway (running, or the last one ended, with its winner) for the welcome frame.
"""

import logging
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import asyncpg
from pydantic import Field

from livehub.errors import Conflict
from livehub.live.commands import signed_in, staff
from livehub.live.connection import Connection
from livehub.live.formats import Handler, ShowFormat
from livehub.live.protocol import Event, Frame, ack
from livehub.shop import giveaways

# How long new entries on a node wait to be announced together (one event with the count).
ENTRIES_EVERY_S = 0.25
# A draw at the timer that failed (the database away) is tried again after this long.
RETRY_S = 1.0

log = logging.getLogger(__name__)


class StartGiveaway(Frame):
    type: Literal["giveaway"]
    variant_id: UUID
    duration_s: int = Field(ge=5, le=3600)
    eligibility: Literal["everyone", "followers", "buyers"] = "everyone"


class EnterGiveaway(Frame):
    type: Literal["enter"]
    giveaway_id: UUID


class EndGiveaway(Frame):
    """The host or a moderator draws the running giveaway now."""

    type: Literal["end_giveaway"]


class GiveawayEvent(Event):
    """Started, a new entry (`entries` counts them), or ended (`ended: true` with `seed`, `winner`, `order_id`)."""

    type: Literal["giveaway"]
    giveaway: dict[str, Any]


class Giveaways(ShowFormat):
    key = "giveaway"
    frames = (StartGiveaway, EnterGiveaway, EndGiveaway)
    events = (GiveawayEvent,)

    def __init__(self, room):
        super().__init__(room)
        self.current: dict | None = None  # the running giveaway, or the last one that ended
        self._timer = None
        self._counting: set[UUID] = set()  # giveaways whose new entries are about to be announced
        self._entered: set[UUID] = set()  # users who entered the current giveaway through this node

    def handlers(self) -> dict[type[Frame], Handler]:
        return {StartGiveaway: self.start, EnterGiveaway: self.enter, EndGiveaway: self.end}

    def load(self, snapshot: dict) -> None:
        self._set(snapshot.get(self.key))

    def snapshot(self) -> dict | None:
        return self.current

    def apply(self, event: dict) -> None:
        giveaway = event["giveaway"]
        current = self.current
        if current is not None and current["id"] == giveaway["id"]:
            if current["ended"]:
                return  # an entry's event published after the end's: the end is final
            if not giveaway["ended"]:
                # Entries' events may arrive out of order: the count only grows.
                current["entries"] = max(current["entries"], giveaway["entries"])
                return
        self._set(giveaway)

    def stream_ended(self) -> None:
        if self._running():
            giveaway_id = UUID(str(self.current["id"]))
            self.room.spawn(self._end(giveaway_id, "stream_ended"), name="giveaway-stream-ended")

    def stop(self) -> None:
        self._cancel_timer()

    # -- commands ----------------------------------------------------------------------------------

    async def start(self, conn: Connection, frame: StartGiveaway) -> dict | None:
        giveaway = await giveaways.start_giveaway(
            self.room.pool,
            self.room.id,
            staff(conn),
            variant_id=frame.variant_id,
            duration_s=frame.duration_s,
            eligibility=frame.eligibility,
        )
        return ack(frame, await self.room.publish({"type": "giveaway", "giveaway": giveaway}))

    async def enter(self, conn: Connection, frame: EnterGiveaway) -> dict | None:
        user_id = signed_in(conn)
        current = self.current
        if self._running() and current["id"] == str(frame.giveaway_id) and user_id in self._entered:
            return ack(frame)  # entered through this node already: nothing to ask the database
        out = await giveaways.enter_giveaway(self.room.pool, frame.giveaway_id, user_id)
        if out["giveaway"]["id"] == (self.current or {}).get("id"):
            self._entered.add(user_id)
        if out["entered"]:
            self._count_entries(frame.giveaway_id)
        return ack(frame)

    async def end(self, conn: Connection, frame: EndGiveaway) -> dict | None:
        giveaway = await giveaways.end_giveaway_by_host(
            self.room.pool, self.room.id, staff(conn), self.room.settings.earnings_hold_s
        )
        if giveaway is None:
            raise Conflict("no giveaway is running")
        return ack(frame, await self.room.publish({"type": "giveaway", "giveaway": giveaway}))

    # -- state and timer ---------------------------------------------------------------------------

    def _running(self) -> bool:
        return self.current is not None and not self.current["ended"]

    def _set(self, giveaway: dict | None) -> None:
        self._cancel_timer()
        if giveaway is None or self.current is None or giveaway["id"] != self.current["id"]:
            self._entered = set()
        self.current = dict(giveaway) if giveaway is not None else None
        if not self._running():
            return
        delay = (datetime.fromisoformat(giveaway["ends_at"]) - datetime.now(UTC)).total_seconds()
        self._arm(UUID(str(giveaway["id"])), max(0.0, delay))

    def _arm(self, giveaway_id: UUID, delay_s: float) -> None:
        self._cancel_timer()
        self._timer = self.room.call_later(
            delay_s, lambda: self.room.spawn(self._end_at_time(giveaway_id), name="giveaway-time")
        )

    async def _end_at_time(self, giveaway_id: UUID) -> None:
        """The timer's end: a draw that fails (the database away for a moment) is tried again a second later
        while the giveaway is still this room's running one, so no giveaway is left undrawn."""
        try:
            await self._end(giveaway_id, "time")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if not (self._running() and self.current["id"] == str(giveaway_id)):
                return
            log.warning("drawing giveaway %s failed, trying again in %s s: %r", giveaway_id, RETRY_S, exc)
            self._arm(giveaway_id, RETRY_S)

    def _count_entries(self, giveaway_id: UUID) -> None:
        """New entries on this node are announced together: one `giveaway` event with the count read after
        ENTRIES_EVERY_S, not one per entrant (a crowd entering would flood the room's history)."""
        if giveaway_id in self._counting:
            return
        self._counting.add(giveaway_id)
        self.room.call_later(
            ENTRIES_EVERY_S, lambda: self.room.spawn(self._publish_entries(giveaway_id), name="giveaway-entries")
        )

    async def _publish_entries(self, giveaway_id: UUID) -> None:
        self._counting.discard(giveaway_id)
        giveaway = await giveaways.get_giveaway(self.room.pool, giveaway_id)
        if giveaway is not None and not giveaway["ended"]:
            await self.room.publish({"type": "giveaway", "giveaway": giveaway})

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _end(self, giveaway_id: UUID, reason: str) -> None:
        # Every node with viewers runs this; the database lets exactly one of them draw.
        giveaway = await giveaways.end_giveaway(self.room.pool, giveaway_id, reason, self.room.settings.earnings_hold_s)
        if giveaway is not None:
            await self.room.publish({"type": "giveaway", "giveaway": giveaway})
