"""In-stream buying: one coalescer per variant turns a burst of `buy` frames into few storage calls.

When a flash drop opens, thousands of buyers hit one variant row within a second. One transaction per buy
would queue them all on that row's lock; instead the requests of a few milliseconds (or `buy_batch_max`
of them) go to `buy_batch()` together, which allocates stock in arrival order, debits each wallet and
writes each order in one transaction. While a batch is in the database the next one gathers, so a
node keeps at most one call per variant in flight and the batch grows with the load.

Once a batch reports that it ended a flash sale (sold out), a buy that names that sale can only be
`sold_out`, or the retry of a buy that went through: such buys no longer go to `buy_batch` (and its lock
of the variant) but are answered from a read of their request ids in `orders`, up to `LATE_READ_MAX` a
read (one with `buy_batch_max` 1, the benchmark's one-call-per-buy baseline).

The room hears of settled batches (and so tells its viewers the stock) at most once per
`stock_update_ms`, with the latest batch's result: in a burst of a hundred batches a second, every one
of them would otherwise be a `stock` event for the broker and a frame for every viewer. A batch that ended
a flash sale is reported at once, and the last result always is, so the room ends with the right stock.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg

from livehub.batches import write_isolating
from livehub.errors import to_error
from livehub.metrics import BUY_BATCH_SIZE, BUY_SETTLE_SECONDS
from livehub.settings import Settings
from livehub.tasks import Supervisor

log = logging.getLogger(__name__)

UNAVAILABLE = "purchases are unavailable, try again"
# Late buys (in a sale known to have ended) answered by one read. After a 10,000-buyer drop sells out,
# 9,800 of them wait; 50 a read made that 196 round trips one after another (~0.6 s of the burst).
LATE_READ_MAX = 1000


@dataclass
class _Request:
    buyer_id: UUID
    quantity: int
    request_id: str
    flash_sale_id: UUID | None
    address_id: UUID | None
    reply: asyncio.Future


class Checkout:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        stream_id: UUID,
        variant_id: UUID,
        settled: Callable[[UUID, dict], None],
        tasks: Supervisor,
    ):
        self._pool = pool
        self._tasks = tasks
        self._stream_id = stream_id
        self._variant_id = variant_id
        self._window_s = settings.buy_window_ms / 1000
        self._batch_max = settings.buy_batch_max
        self._late_max = LATE_READ_MAX if self._batch_max > 1 else 1
        self._fee_bps = settings.platform_fee_bps
        self._hold_s = settings.earnings_hold_s
        self._settled = settled
        self._waiting: list[_Request] = []
        self._late: list[_Request] = []  # buys in a flash sale known to have ended
        self._ended: set[UUID] = set()  # flash sales a batch of this variant ended (an ended sale stays ended)
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._settled_at = time.monotonic()
        self._report_every_s = settings.stock_update_ms / 1000
        self._reported_at = -math.inf
        self._unreported: dict | None = None  # the latest result the room has not heard of yet
        self._report_timer: asyncio.TimerHandle | None = None

    async def buy(
        self,
        buyer_id: UUID,
        quantity: int,
        request_id: str | None,
        flash_sale_id: UUID | None,
        address_id: UUID | None = None,
    ) -> dict:
        """The purchase result for this buyer: {status, order_id?, order_number?, message?}. Goods that ship
        go to the buyer's address `address_id`, else to the default one."""
        loop = asyncio.get_running_loop()
        request = _Request(
            buyer_id, quantity, request_id or f"auto-{uuid4()}", flash_sale_id, address_id, loop.create_future()
        )
        (self._late if flash_sale_id in self._ended else self._waiting).append(request)
        if len(self._waiting) >= self._batch_max:
            self._start()
        elif self._timer is None and self._task is None:
            self._timer = loop.call_later(self._window_s, self._start)
        # A buyer who disconnects does not cancel the purchase: it is already in a batch, which settles it
        # whether anyone still waits for the reply or not (_reply skips a reply cancelled meanwhile). No
        # asyncio.shield, then: it cost 9 % of the server's time in a 10,000-buyer flash sale.
        return await request.reply

    def idle_for(self) -> float:
        """Seconds since the last buy settled; 0 while buys wait or settle."""
        if self._waiting or self._late or self._task is not None or self._unreported is not None:
            return 0.0
        return time.monotonic() - self._settled_at

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is None:
            self._task = self._tasks.spawn(self._drain(), name=f"checkout-{self._variant_id}")

    async def _drain(self) -> None:
        try:
            while self._waiting or self._late:
                if self._late:
                    late, self._late = self._late[: self._late_max], self._late[self._late_max :]
                    await self._guarded(self._answer_late, late)
                else:
                    batch, self._waiting = self._waiting[: self._batch_max], self._waiting[self._batch_max :]
                    await self._guarded(self._settle, batch)
        finally:
            self._task = None
            self._settled_at = time.monotonic()

    async def _guarded(self, step, requests: list[_Request]) -> None:
        # A bug in one batch must not leave its buyers waiting forever, nor stop the batches after it.
        try:
            await step(requests)
        except Exception:
            log.exception("a batch of %d buys failed unexpectedly", len(requests))
            for r in requests:
                _reply(r, {"status": "error", "message": "that failed on our side, try again"})

    async def _settle(self, batch: list[_Request]) -> None:
        """One buy_batch call for the batch; if it fails because of one buy (a value the database refuses),
        the others still go through (livehub/batches.py). Nobody is charged by a call that failed, and a
        retry with the same request_id is safe either way (a purchase that did commit is answered again)."""
        BUY_BATCH_SIZE.observe(len(batch))
        started = time.perf_counter()
        left = await write_isolating(batch, self._buy_batch, self._failed, refuses_all=_storage_rule)
        BUY_SETTLE_SECONDS.observe(time.perf_counter() - started)
        if left:
            log.warning("%d buys not settled: the database is away", len(left))
            for r in left:
                _reply(r, {"status": "error", "message": UNAVAILABLE})

    def _failed(self, request: _Request, exc: Exception) -> None:
        err = to_error(exc)
        if err is None or not _storage_rule(exc):
            log.warning("a buy failed (request %r): %r", request.request_id, exc)
        _reply(request, {"status": "error", "message": err.message if err is not None else "this buy failed"})

    async def _buy_batch(self, batch: list[_Request]) -> None:
        payload = [
            {"request_id": r.request_id, "buyer_id": str(r.buyer_id), "quantity": r.quantity}
            | ({"flash_sale_id": str(r.flash_sale_id)} if r.flash_sale_id else {})
            | ({"address_id": str(r.address_id)} if r.address_id else {})
            for r in batch
        ]
        result = await self._pool.fetchval(
            "SELECT buy_batch($1, $2, $3, $4, $5)",
            self._variant_id,
            self._stream_id,
            payload,
            self._fee_bps,
            self._hold_s,
        )
        orders_by_request: dict[tuple[str, str], dict] = {}
        for r, outcome in zip(batch, result["results"], strict=True):
            key = (str(r.buyer_id), r.request_id)
            status = outcome["status"]
            if status == "ok":
                orders_by_request[key] = outcome
            elif status == "duplicate":
                # A retry of a purchase that went through: answer it again, never charge twice.
                outcome = orders_by_request.get(key) or outcome
                status = "ok" if outcome.get("order_id") else "error"
            reply = {"status": status}
            if status == "ok":
                reply |= {"order_id": outcome["order_id"], "order_number": outcome["order_number"]}
            elif status == "error":
                reply["message"] = "this cannot be bought here now"
            elif status == "address_required":
                reply["message"] = _address_message(outcome, r.address_id)
            elif status == "payment_owed":
                reply["message"] = "a card payment was taken back: top up to settle what you owe first"
            _reply(r, reply)
        sale = result.get("flash_sale")
        if sale is not None and sale["ended"]:
            ended = UUID(sale["id"])
            self._ended.add(ended)
            self._late += [r for r in self._waiting if r.flash_sale_id == ended]
            self._waiting = [r for r in self._waiting if r.flash_sale_id != ended]
        self._report(result, now=sale is not None and sale["ended"])

    def _report(self, result: dict, *, now: bool) -> None:
        """Tell the room of a settled batch: `now`, or if the last report is older than the interval; else
        keep it as the latest for a report when the interval is up (a later batch's result replaces it:
        each result holds the stock after its batch, and batches of a variant settle one after another)."""
        loop = asyncio.get_running_loop()
        due = self._reported_at + self._report_every_s
        if now or loop.time() >= due:
            self._report_now(result)
            return
        self._unreported = result
        if self._report_timer is None:
            self._report_timer = loop.call_at(due, self._report_unreported)

    def _report_unreported(self) -> None:
        self._report_timer = None
        if self._unreported is not None:
            self._report_now(self._unreported)

    def _report_now(self, result: dict) -> None:
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        self._unreported = None
        self._reported_at = asyncio.get_running_loop().time()
        self._settled(self._variant_id, result)

    async def _answer_late(self, late: list[_Request]) -> None:
        """Buys in an ended flash sale: `ok` again for one that went through (found by its request id), else
        `sold_out`. The end was committed before this read, so no order in that sale can appear after it:
        the answer is the one buy_batch would give, without the lock."""
        try:
            rows = await self._pool.fetch(
                "SELECT buyer_id, request_id, order_id::text, order_number FROM orders_for_buy_requests($1, $2, $3)",
                self._variant_id,
                [r.buyer_id for r in late],
                [r.request_id for r in late],
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("looking up %d late buys failed: %r", len(late), exc)
            for r in late:
                _reply(r, {"status": "error", "message": UNAVAILABLE})
            return
        found = {(str(row["buyer_id"]), row["request_id"]): row for row in rows}
        for r in late:
            order = found.get((str(r.buyer_id), r.request_id))
            _reply(
                r,
                {"status": "ok", "order_id": order["order_id"], "order_number": order["order_number"]}
                if order
                else {"status": "sold_out"},
            )


def _address_message(outcome: dict, address_id: UUID | None) -> str:
    if outcome.get("reason") == "not_shipped":
        return f"this shop does not ship to {outcome.get('country')}: choose another address"
    if address_id is not None:
        return "that address is not one of yours: choose another"
    return "add a shipping address to buy this"


def _storage_rule(exc: Exception) -> bool:
    # buy_batch answers each buy in its results; it raises (SQLSTATE class LH) only for what holds for the
    # whole batch (the variant is gone, the stream is not live).
    return isinstance(exc, asyncpg.PostgresError) and (exc.sqlstate or "").startswith("LH")


def _reply(request: _Request, reply: dict) -> None:
    if not request.reply.done():
        request.reply.set_result(reply)
