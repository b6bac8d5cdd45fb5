"""Returns of delivered orders: the buyer asks, the seller (or an admin) approves, refunding, or rejects.
Each answers the order, whose `return` shows the latest return and its state (docs/MONEY.md, Returns)."""

from typing import Annotated
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api.models import paragraph
from livehub.api.orders import OrderEnvelope
from livehub.api.routing import Api, Model, db, path_id, principal
from livehub.shop import returns

api = Api("orders")

Reason = paragraph(500, required=True)


class ReturnItemIn(Model):
    variant_id: UUID
    quantity: Annotated[int, Field(ge=1, le=1000)] = 1


class ReturnIn(Model):
    reason: Reason
    items: Annotated[list[ReturnItemIn], Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="what comes back; left out, every item that is not a digital code"
    )


class ReturnRejectIn(Model):
    reason: Reason


@api.post(
    "/api/orders/{id}/return",
    auth="user",
    body=ReturnIn,
    response=OrderEnvelope,
    status=201,
    errors={409: "not delivered, past the return window, a return already open, or digital codes"},
)
async def request_return(request: web.Request, body: ReturnIn) -> OrderEnvelope:
    """Buyer: ask to return a delivered order (all of it, or some items) within the return window"""
    items = None if body.items is None else [i.model_dump(mode="json") for i in body.items]
    window_s = request.app[keys.SETTINGS].return_window_s
    order = await returns.request(db(request), path_id(request), principal(request), body.reason, items, window_s)
    return OrderEnvelope(order=order)


@api.post(
    "/api/orders/{id}/return/approve",
    auth="user",
    response=OrderEnvelope,
    idempotent=True,
    errors={409: "the order has no open return"},
)
async def approve_return(request: web.Request) -> OrderEnvelope:
    """Seller or admin: approve the order's open return; the buyer is refunded at once"""
    return OrderEnvelope(order=await returns.approve(db(request), path_id(request), principal(request)))


@api.post(
    "/api/orders/{id}/return/reject",
    auth="user",
    body=ReturnRejectIn,
    response=OrderEnvelope,
    errors={409: "the order has no open return"},
)
async def reject_return(request: web.Request, body: ReturnRejectIn) -> OrderEnvelope:
    """Seller or admin: reject the order's open return, saying why"""
    order = await returns.reject(db(request), path_id(request), principal(request), body.reason)
    return OrderEnvelope(order=order)
