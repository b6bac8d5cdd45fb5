"""Flash sales: the host drops a variant at a price for a few minutes, limited units, first come first served.

The sale itself lives in PostgreSQL (`flash_sales`): `buy_batch` sells its units at its price and ends it
when they run out; `end_flash_sale` ends it at its end time, exactly once however many nodes' timers
fire. The room keeps the running sale for the welcome frame and for buyers' remaining-units figure.
"""

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from livehub.errors import Conflict
from livehub.live.commands import staff
from livehub.live.connection import Connection
from livehub.live.formats import Handler, ShowFormat
from livehub.live.protocol import Event, Frame, ack
from livehub.shop import streams


class StartFlashSale(Frame):
    type: Literal["flash_sale"]
    variant_id: UUID
    price_cents: int = Field(ge=0)
    quantity: int = Field(ge=1)
    duration_s: int = Field(ge=5, le=3600)
    per_buyer_limit: int | None = Field(default=None, ge=1)


class EndFlashSale(Frame):
    type: Literal["end_flash_sale"]


class FlashSaleEvent(Event):
    """Started (`ended: false`) or ended (`ended: true` with `ended_reason`)."""

    type: Literal["flash_sale"]
    flash_sale: dict[str, Any]


class FlashSales(ShowFormat):
    key = "flash_sale"
    frames = (StartFlashSale, EndFlashSale)
    events = (FlashSaleEvent,)

    def __init__(self, room):
        super().__init__(room)
        self.running: dict | None = None
        self._timer = None

    def handlers(self) -> dict[type[Frame], Handler]:
        return {StartFlashSale: self.start, EndFlashSale: self.end}

    def load(self, snapshot: dict) -> None:
        self._set(snapshot.get(self.key))

    def snapshot(self) -> dict | None:
        return self.running

    def apply(self, event: dict) -> None:
        self._set(event["flash_sale"])

    def on_state(self, event: dict) -> None:
        if event["type"] == "stock" and self._runs_on(event["variant_id"]):
            if event.get("flash_remaining") is not None:
                self.running["remaining"] = event["flash_remaining"]

    def settled(self, variant_id: UUID, result: dict, stock: dict) -> None:
        sale = result.get("flash_sale")
        remaining = sale["remaining"] if sale is not None and not sale["ended"] else None
        stock["flash_remaining"] = remaining
        if remaining is not None:
            # What a buyer can get now: the sale's units while it runs.
            stock["available"] = min(stock["stock"], remaining)
        if sale is not None and sale["ended"]:
            # This batch ended the sale (later batches no longer see it), so this node announces it.
            known = self.running if self.running and str(self.running["id"]) == str(sale["id"]) else {}
            ended = {
                **known,
                "id": sale["id"],
                "variant_id": str(variant_id),
                "remaining": 0,
                "ended": True,
                "ended_reason": "sold_out",
            }
            self.room.spawn(self.room.publish({"type": "flash_sale", "flash_sale": ended}), name="flash-sale-sold-out")

    def stream_ended(self) -> None:
        self._set(None)

    def stop(self) -> None:
        self._cancel_timer()

    async def start(self, conn: Connection, frame: StartFlashSale) -> dict | None:
        actor = staff(conn)
        room = self.room
        limit = frame.per_buyer_limit or room.settings.flash_sale_per_buyer_limit
        sale = await streams.start_flash_sale(
            room.pool,
            room.id,
            actor,
            variant_id=frame.variant_id,
            price_cents=frame.price_cents,
            quantity=frame.quantity,
            duration_s=frame.duration_s,
            per_buyer_limit=limit,
        )
        return ack(frame, await room.publish({"type": "flash_sale", "flash_sale": sale}))

    async def end(self, conn: Connection, frame: EndFlashSale) -> dict | None:
        actor = staff(conn)
        sale = await streams.end_flash_sale_by_host(self.room.pool, self.room.id, actor)
        if sale is None:
            raise Conflict("no flash sale is running")
        return ack(frame, await self.room.publish({"type": "flash_sale", "flash_sale": sale}))

    def _runs_on(self, variant_id) -> bool:
        return self.running is not None and str(self.running["variant_id"]) == str(variant_id)

    def _set(self, sale: dict | None) -> None:
        self._cancel_timer()
        if sale is None or sale.get("ended"):
            self.running = None
            return
        self.running = dict(sale)
        sale_id = UUID(str(sale["id"]))
        delay = (datetime.fromisoformat(sale["ends_at"]) - datetime.now(UTC)).total_seconds()
        self._timer = self.room.call_later(
            max(0.0, delay), lambda: self.room.spawn(self._end_at_time(sale_id), name="flash-sale-time")
        )

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _end_at_time(self, sale_id: UUID) -> None:
        # Every node with viewers runs this timer; the database lets exactly one of them end the sale.
        sale = await streams.end_flash_sale(self.room.pool, sale_id, "time")
        if sale is not None:
            await self.room.publish({"type": "flash_sale", "flash_sale": sale})
