"""Auctions: the host auctions one unit of a featured variant; viewers bid over the room's socket.

Everything that decides is in PostgreSQL (storage/functions/auctions.sql): `bid_batch` decides the bids of
a moment for one auction in arrival order (eBay-style proxy bidding, the anti-snipe extension, the holds
of the leader's money), `close_auction` ends it once at its end, however many nodes' timers fire, and
turns the winner's hold into the order. Bids for one auction are coalesced on each node as buys are
(livehub/live/checkout.py): those of `buy_window_ms` (or `buy_batch_max` of them) go in one call, and the
next batch gathers while one is in the database.

The room keeps the running auction for the welcome frame, and a timer at its end, re-armed whenever an
`auction` event moves the end (a bid in the anti-snipe window).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import asyncpg
from pydantic import Field, model_validator

from livehub.batches import write_isolating
from livehub.errors import RateLimited, Unavailable, to_error
from livehub.live.commands import signed_in, staff
from livehub.live.formats import Handler, ShowFormat
from livehub.live.moderation import TokenBucket
from livehub.live.protocol import Event, Frame, ack
from livehub.metrics import AUCTION_BIDS
from livehub.shop import auctions

if TYPE_CHECKING:
    from livehub.live.connection import Connection

log = logging.getLogger(__name__)

MAX_CENTS = 10**12
# A timer that fired before the database's clock reached the end asks again after at least this long.
RETRY_S = 0.1
# An auction's end that this node decided is published however long the broker takes to come back, up to this.
PUBLISH_ATTEMPTS = 30

MESSAGES = {
    "own_lot": "you cannot bid on your own lot",
    "banned": "you cannot bid in this show",
    "address_required": "add a shipping address to bid",
    "not_shipped": "this shop does not ship to your address",
    "payment_owed": "a card payment was taken back: top up to settle what you owe first",
}


class StartAuction(Frame):
    type: Literal["auction"]
    variant_id: UUID
    start_cents: int = Field(ge=1, le=MAX_CENTS)
    # None: the default ladder (storage/functions/auctions.sql, auction_increment).
    increment_cents: int | None = Field(default=None, ge=1, le=MAX_CENTS)
    duration_s: int = Field(ge=5, le=600)
    mode: Literal["standard", "sudden_death"] = "standard"
    extend_s: int = Field(default=10, ge=1, le=600)


class Bid(Frame):
    """A bid of `amount_cents`, or a maximum (`max_cents`) the server bids up to by the increment."""

    answered_later = True  # answered when its batch is decided

    type: Literal["bid"]
    auction_id: UUID
    amount_cents: int | None = Field(default=None, ge=1, le=MAX_CENTS)
    max_cents: int | None = Field(default=None, ge=1, le=MAX_CENTS)

    @model_validator(mode="after")
    def _one_amount(self) -> Bid:
        if (self.amount_cents is None) == (self.max_cents is None):
            raise ValueError("give amount_cents or max_cents (one of them)")
        return self


class AuctionEvent(Event):
    """Started, a bid changed it (price, leader, bids, an extended end), or ended (`ended: true`, `winner`,
    `order_id`)."""

    type: Literal["auction"]
    auction: dict[str, Any]


class Auctions(ShowFormat):
    key = "auction"
    frames = (StartAuction, Bid)
    events = (AuctionEvent,)

    def __init__(self, room):
        super().__init__(room)
        self.running: dict | None = None
        self._ended: set[str] = set()  # auctions known to have ended: later (stale) events are ignored
        self._timer: asyncio.TimerHandle | None = None
        self._bids: dict[UUID, _Bidding] = {}
        self._limits: dict[UUID, TokenBucket] = {}

    def handlers(self) -> dict[type[Frame], Handler]:
        return {StartAuction: self.start, Bid: self.bid}

    def load(self, snapshot: dict) -> None:
        self._set(snapshot.get(self.key))

    def snapshot(self) -> dict | None:
        return self.running

    def apply(self, event: dict) -> None:
        self._set(event["auction"])

    def stream_ended(self) -> None:
        # The stream's end ended the auction too (no sale, the hold released: end_stream). Every node that
        # knew it announces it under one publish id, so the room gets the event once.
        running, self.running = self.running, None
        self._cancel_timer()
        if running is not None:
            self.room.spawn(self._announce_end(UUID(running["id"])), name="auction-stream-ended")

    def stop(self) -> None:
        self._cancel_timer()

    # -- commands ----------------------------------------------------------------------------------

    async def start(self, conn: Connection, frame: StartAuction) -> dict | None:
        actor = staff(conn)
        auction = await auctions.start_auction(
            self.room.pool,
            self.room.id,
            actor,
            variant_id=frame.variant_id,
            start_cents=frame.start_cents,
            increment_cents=frame.increment_cents,
            duration_s=frame.duration_s,
            mode=frame.mode,
            extend_s=frame.extend_s,
        )
        return ack(frame, await self.room.publish({"type": "auction", "auction": auction}))

    async def bid(self, conn: Connection, frame: Bid) -> dict:
        user_id = signed_in(conn)
        bucket = self._limits.get(user_id)
        if bucket is None:
            rate = self.room.settings.bids_per_s
            bucket = self._limits[user_id] = TokenBucket(rate, 2 * rate)
            if len(self._limits) > 100_000:  # a bucket refills in seconds: an old one is a full one
                self._limits = {user_id: bucket}
        if not bucket.take():
            raise RateLimited("too many bids, slow down")
        running = self.running
        if running is None or running["id"] != str(frame.auction_id):
            # Not this room's running auction (ended, or never here): nothing to bid on.
            return _result(frame, {"status": "ended", "current_cents": None})
        bidding = self._bids.get(frame.auction_id)
        if bidding is None:
            self._bids = {frame.auction_id: _Bidding(self, frame.auction_id)}  # one auction at a time
            bidding = self._bids[frame.auction_id]
        outcome = await bidding.bid(
            {"request_id": frame.request_id, "bidder_id": str(user_id)}
            | ({"amount_cents": frame.amount_cents} if frame.amount_cents is not None else {})
            | ({"max_cents": frame.max_cents} if frame.max_cents is not None else {})
        )
        AUCTION_BIDS.labels(status=outcome.get("status", "error")).inc()
        return _result(frame, outcome)

    # -- state and the timer -----------------------------------------------------------------------

    def _set(self, auction: dict | None) -> None:
        if auction is None:
            self._cancel_timer()
            self.running = None
            return
        aid = str(auction["id"])
        if aid in self._ended:
            return  # a stale event of an auction already over
        if auction.get("ended"):
            self._ended.add(aid)
            if self.running is not None and self.running["id"] == aid:
                self._cancel_timer()
                self.running = None
            return
        current = self.running
        if current is not None and current["id"] == aid and auction["bids"] < current["bids"]:
            return  # an older state than the one we have (events of two nodes' batches crossed)
        self.running = dict(auction)
        self._arm(aid, auction["ends_at"])

    def _arm(self, aid: str, ends_at: str, *, at_least_s: float = 0.0) -> None:
        self._cancel_timer()
        delay = (datetime.fromisoformat(ends_at) - datetime.now(UTC)).total_seconds()
        self._timer = self.room.call_later(
            max(at_least_s, delay), lambda: self.room.spawn(self._close_at_time(UUID(aid)), name="auction-time")
        )

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _close_at_time(self, auction_id: UUID) -> None:
        # Every node with viewers runs this timer; the database lets exactly one of them close the auction.
        settings = self.room.settings
        try:
            ended = await auctions.close_auction(
                self.room.pool, auction_id, fee_bps=settings.platform_fee_bps, hold_s=settings.earnings_hold_s
            )
            if ended is None:
                # Not due (a bid moved its end) or closed by another node. If the event that moved it never
                # came (the node that decided the bid went away first), the database says where it stands.
                snapshot = await self.room.pool.fetchval("SELECT running_auction_json($1)", self.room.id)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("closing auction %s failed, trying again in 1 s: %r", auction_id, exc)
            if self.running is not None and self.running["id"] == str(auction_id):
                self._arm(str(auction_id), self.running["ends_at"], at_least_s=1.0)
            return
        if ended is not None:
            # Only this node got it back: it must reach the room, or viewers never see the end.
            await self._publish_surely({"type": "auction", "auction": ended})
            return
        known = self.running
        if snapshot is None or known is None or snapshot["id"] != str(auction_id) or known["id"] != snapshot["id"]:
            return
        if snapshot["ends_at"] != known["ends_at"]:
            await self._publish_surely({"type": "auction", "auction": snapshot})
        else:
            # Not due by the database's clock yet (this node's runs a little ahead): ask again shortly.
            self._arm(snapshot["id"], snapshot["ends_at"], at_least_s=RETRY_S)

    async def _announce_end(self, auction_id: UUID) -> None:
        ended = await self.room.pool.fetchval(
            "SELECT auction_json(a) FROM auctions a WHERE a.id = $1 AND a.ended_at IS NOT NULL", auction_id
        )
        if ended is not None:
            await self._publish_surely({"type": "auction", "auction": ended})

    async def _publish_surely(self, event: dict) -> None:
        # The end of an auction, published under one id: a retry, or another node announcing the same end,
        # appends nothing more.
        publish_id = f"auction-end:{event['auction']['id']}"
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await self.room.publish(event, publish_id=publish_id if event["auction"].get("ended") else None)
                return
            except Exception as exc:  # the broker away: try again, a little later each time
                log.warning("publishing auction %s failed (%d): %r", event["auction"]["id"], attempt + 1, exc)
                await asyncio.sleep(min(5.0, 0.5 * (attempt + 1)))

    def decided(self, result: dict) -> None:
        """A batch of bids was decided on this node: its new state for every node's room."""
        if result.get("changed"):
            self.room.spawn(self.room.publish({"type": "auction", "auction": result["auction"]}), name="auction-bid")


class _Bidding:
    """One auction's bids on this node, gathered into few `bid_batch` calls."""

    def __init__(self, show: Auctions, auction_id: UUID):
        self._show = show
        self._auction_id = auction_id
        settings = show.room.settings
        self._window_s = settings.buy_window_ms / 1000
        self._batch_max = settings.buy_batch_max
        self._waiting: list[tuple[dict, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None

    async def bid(self, bid: dict) -> dict:
        loop = asyncio.get_running_loop()
        reply = loop.create_future()
        self._waiting.append((bid, reply))
        if len(self._waiting) >= self._batch_max:
            self._start()
        elif self._timer is None and self._task is None:
            self._timer = loop.call_later(self._window_s, self._start)
        return await reply

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._batch_max], self._waiting[self._batch_max :]
                try:
                    left = await write_isolating(batch, self._decide, self._failed, refuses_all=_storage_rule)
                except Exception:
                    log.exception("a batch of %d bids failed unexpectedly", len(batch))
                    left = batch
                for _, reply in left:
                    _answer(reply, {"status": "error"})
        finally:
            self._task = None

    async def _decide(self, batch: list[tuple[dict, asyncio.Future]]) -> None:
        result = await auctions.bid_batch(self._show.room.pool, self._auction_id, [bid for bid, _ in batch])
        for (_, reply), outcome in zip(batch, result["results"], strict=True):
            _answer(reply, outcome)
        self._show.decided(result)

    def _failed(self, item: tuple[dict, asyncio.Future], exc: Exception) -> None:
        err = to_error(exc)
        if err is None:
            log.warning("a bid failed: %r", exc)
        _answer(item[1], {"status": "error", "message": err.message if err is not None else "this bid failed"})


def _storage_rule(exc: Exception) -> bool:
    return isinstance(exc, asyncpg.PostgresError) and (exc.sqlstate or "").startswith("LH")


def _answer(reply: asyncio.Future, outcome: dict) -> None:
    if not reply.done():
        reply.set_result(outcome)


def _result(frame: Bid, outcome: dict) -> dict:
    status = outcome["status"]
    if status == "error":
        # The database was away or refused the batch: nothing was decided for this bid.
        raise Unavailable(outcome.get("message") or "bids are unavailable, try again")
    reply = {
        "type": "bid_result",
        "request_id": frame.request_id,
        "status": status,
        "current_cents": outcome.get("current_cents"),
    }
    if (reason := outcome.get("reason")) is not None:
        reply["message"] = MESSAGES.get(reason, reason)
    return reply
