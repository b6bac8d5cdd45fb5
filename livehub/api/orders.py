"""Cart, orders (buyer and seller views) and the order state machine."""

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import pydantic
from aiohttp import web
from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema, model_validator

from livehub import keys
from livehub.api.models import Amount, Page, PageQuery, Text
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.api.shipping import AddressIn, AddressOut
from livehub.errors import Conflict
from livehub.jsonx import json_response
from livehub.shop import card_checkout, cart, orders

api = Api("orders")

Quantity = Annotated[int, Field(ge=1, le=1000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


def _web_url(value: str) -> str:
    # Shown to the buyer as a link: only http(s), never javascript: or data:.
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be an http:// or https:// address")
    return value


WebUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=2000),
    AfterValidator(_web_url),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 2000,
            "pattern": r"^https?://[^\s/?#\x00-\x1f\x7f\x85]+[^\s\x00-\x1f\x7f\x85]*$",
            "description": "an http:// or https:// address",
        }
    ),
]
OrderStatus = Literal["paid", "shipped", "delivered", "cancelled", "refunded", "partially_refunded"]


class ItemIn(Model):
    variant_id: UUID
    quantity: Quantity = 1


class ShipTo(Model):
    """Where goods that ship go: a saved address, or one given inline; neither: your default address."""

    # The schema says "not both" too, so clients (and the fuzz test) see the rule the validator enforces.
    model_config = pydantic.ConfigDict(json_schema_extra={"not": {"required": ["address_id", "address"]}})

    address_id: UUID | None = Field(default=None, description="one of your saved addresses")
    address: AddressIn | None = Field(default=None, description="an address given inline (not saved)")

    @model_validator(mode="after")
    def _one_address(self):
        if self.address_id is not None and self.address is not None:
            raise ValueError("give address_id or address, not both")
        return self

    def snapshot(self) -> dict | None:
        return self.address.model_dump() if self.address is not None else None


class ByCard(Model):
    pay_difference_by_card: bool = Field(
        default=False,
        description="when the wallet does not cover the order, answer 202 with a card payment for the "
        "difference instead of 409 insufficient_funds (with LIVEHUB_PAYMENTS=stripe); the order is placed "
        "when the card money arrives",
    )


class OrderIn(ShipTo, ByCard):
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=100)]
    stream_id: UUID | None = None


class CheckoutIn(ShipTo, ByCard):
    pass


class CartQuery(Model):
    address_id: UUID | None = Field(default=None, description="quote shipping to this address (default: yours)")


class ShipIn(Model):
    carrier: Text
    tracking_number: Annotated[Text, StringConstraints(max_length=100)]
    tracking_url: WebUrl | None = None


class QuantityIn(Model):
    quantity: Quantity


class CancelIn(Model):
    reason: Reason | None = None


class RefundIn(Model):
    amount_cents: Amount | None = None
    reason: Reason


class OrderItemOut(Out):
    variant_id: UUID
    product_id: UUID
    title: str
    sku: str
    options: dict[str, Any]
    unit_price_cents: int
    quantity: int
    codes: list[str] | None = Field(description="digital codes, shown to the buyer only")


class OrderEventOut(Out):
    from_: str | None = Field(alias="from")
    to: str
    actor_id: UUID | None
    reason: str | None
    amount_cents: int | None
    at: datetime


class ReturnItemOut(Out):
    variant_id: UUID
    quantity: int


class ReturnOut(Out):
    id: UUID
    status: Literal["requested", "approved", "rejected"]
    reason: str
    items: list[ReturnItemOut]
    refund_cents: int = Field(description="what approving gives back (estimated while requested), or gave back")
    decision_reason: str | None = Field(description="the seller's reason for a rejection")
    requested_at: datetime
    decided_at: datetime | None


class TrackingOut(Out):
    carrier: str
    tracking_number: str
    tracking_url: str | None


class OrderOut(Out):
    id: UUID
    number: str
    status: OrderStatus
    buyer_id: UUID
    seller_id: UUID
    stream_id: UUID | None
    checkout_id: UUID
    items: list[OrderItemOut]
    total_cents: int = Field(description="what the buyer paid: the items plus shipping_cents")
    refunded_cents: int
    shipping_cents: int = Field(description="0 when nothing in the order ships")
    address: dict[str, Any] | None = Field(
        description="a copy of the address it ships to, as it was when paid; null when nothing ships"
    )
    tracking: TrackingOut | None = Field(description="set when the seller ships it")
    events: list[OrderEventOut]
    created_at: datetime
    updated_at: datetime
    shipped_at: datetime | None
    delivered_at: datetime | None
    return_: ReturnOut | None = Field(alias="return", description="the order's latest return, if any")


class OrderEnvelope(Out):
    order: OrderOut


class PlacedOut(Out):
    order: OrderOut = Field(description="the first order (the only one unless the items span several sellers)")
    orders: list[OrderOut] = Field(description="one order per seller")


class PayDifferenceOut(Out):
    """The wallet does not cover the order: pay the difference by card (Stripe.js), then follow
    GET /api/payments/{payment_id} until its outcome is `ordered` (order_ids) or `not_ordered`."""

    status: Literal["requires_payment"]
    payment_id: UUID
    client_secret: str = Field(description="for Stripe.js")
    publishable_key: str = Field(description="for Stripe.js")
    stripe_js_url: str = Field(description="where the page loads Stripe.js from")
    amount_cents: int = Field(description="what the card pays: the shortfall (at least the card minimum)")
    total_cents: int = Field(description="the order's total now")
    balance_cents: int = Field(description="what the wallet holds now")
    currency: str


PAYS_DIFFERENCE = {202: (PayDifferenceOut, "pay_difference_by_card and the wallet is short: pay the rest by card")}


class CartLineOut(Out):
    variant_id: UUID
    product_id: UUID
    title: str
    sku: str
    options: dict[str, Any]
    unit_price_cents: int
    quantity: int
    available: int
    purchasable: bool


class SellerQuoteOut(Out):
    seller_id: UUID
    shop_name: str
    subtotal_cents: int
    shipping_cents: int | None = Field(description="null until there is an address, or where the shop does not ship")
    total_cents: int | None
    ships_to_address: bool | None = Field(
        description="false: the shop does not ship to the address; null: nothing of it ships, or no address"
    )


class CartOut(Out):
    items: list[CartLineOut]
    subtotal_cents: int
    address: AddressOut | None = Field(description="the address shipping is quoted to")
    address_required: bool = Field(description="goods in the cart ship and you have no address yet")
    sellers: list[SellerQuoteOut] = Field(description="one order each at checkout")
    shipping_cents: int | None = Field(description="null while any shop's shipping is unknown")
    total_cents: int | None = Field(description="what checkout would charge now; null while shipping is unknown")


class OrderQuery(PageQuery):
    status: OrderStatus | None = None


def pricing(request: web.Request) -> orders.Pricing:
    settings = request.app[keys.SETTINGS]
    return orders.Pricing(fee_bps=settings.platform_fee_bps, hold_s=settings.earnings_hold_s)


def placed(result: list[dict]) -> PlacedOut:
    return PlacedOut.model_validate({"order": result[0], "orders": result})


@api.get("/api/cart", auth="user", query=CartQuery, response=CartOut)
async def get_cart(request: web.Request, query: CartQuery) -> CartOut:
    """Your cart with today's prices and stock, and each shop's shipping to an address (quote before checkout)"""
    return CartOut.model_validate(await cart.view(db(request), principal(request).user_id, query.address_id))


@api.post("/api/cart/items", auth="user", body=ItemIn, response=CartOut)
async def add_to_cart(request: web.Request, body: ItemIn) -> CartOut:
    """Add a variant to your cart (quantities add up)"""
    return CartOut.model_validate(
        await cart.add(db(request), principal(request).user_id, body.variant_id, body.quantity)
    )


@api.patch("/api/cart/items/{variant_id}", auth="user", body=QuantityIn, response=CartOut)
async def set_cart_quantity(request: web.Request, body: QuantityIn) -> CartOut:
    """Change the quantity of a cart item"""
    result = await cart.set_quantity(
        db(request), principal(request).user_id, path_id(request, "variant_id"), body.quantity
    )
    return CartOut.model_validate(result)


@api.delete("/api/cart/items/{variant_id}", auth="user", response=CartOut)
async def remove_from_cart(request: web.Request) -> CartOut:
    """Remove an item from your cart"""
    return CartOut.model_validate(
        await cart.remove(db(request), principal(request).user_id, path_id(request, "variant_id"))
    )


@api.post(
    "/api/cart/checkout",
    auth="user",
    body=CheckoutIn,
    response=PlacedOut,
    status=201,
    idempotent=True,
    also=PAYS_DIFFERENCE,
)
async def checkout(request: web.Request, body: CheckoutIn) -> PlacedOut | web.Response:
    """Buy everything in your cart: one order per seller, paid from your wallet (and by card, if asked)"""
    buyer = principal(request)
    try:
        result = await cart.checkout(db(request), pricing(request), buyer, body.snapshot(), body.address_id)
    except asyncpg.PostgresError as exc:
        if not body.pay_difference_by_card or (short := card_checkout.shortfall(exc)) is None:
            raise
        items = await cart.lines(db(request), buyer.user_id)
        return await _pay_difference(request, body, {"items": items, "from_cart": True}, short)
    return placed(result)


@api.post(
    "/api/orders", auth="user", body=OrderIn, response=PlacedOut, status=201, idempotent=True, also=PAYS_DIFFERENCE
)
async def place_order(request: web.Request, body: OrderIn) -> PlacedOut | web.Response:
    """Buy now: pay from your wallet at the database's price (list, stream live or flash-sale price)"""
    items = [{"variant_id": i.variant_id, "quantity": i.quantity} for i in body.items]
    try:
        result = await orders.place(
            db(request), pricing(request), principal(request), items, body.stream_id, body.snapshot(), body.address_id
        )
    except asyncpg.PostgresError as exc:
        if not body.pay_difference_by_card or (short := card_checkout.shortfall(exc)) is None:
            raise
        return await _pay_difference(request, body, {"items": items, "stream_id": body.stream_id}, short)
    return placed(result)


async def _pay_difference(request: web.Request, body: ShipTo, order: dict, short: dict) -> web.Response:
    """202 with a card payment for what the wallet lacks; the order is placed when the money arrives."""
    if (cards := request.app[keys.CARDS]) is None:
        raise Conflict("paying by card is not enabled here (LIVEHUB_PAYMENTS)", short)
    settings = request.app[keys.SETTINGS]
    order |= {"address": body.snapshot(), "address_id": body.address_id}
    opened = await card_checkout.pay_difference(
        db(request),
        cards,
        settings,
        pricing(request),
        principal(request).user_id,
        order,
        short,
        request.headers.get("Idempotency-Key"),
    )
    answer = PayDifferenceOut.model_validate(opened | {"stripe_js_url": settings.stripe_js})
    return json_response(answer, status=202)


@api.get("/api/orders", auth="user", query=OrderQuery, response=Page[OrderOut])
async def list_orders(request: web.Request, query: OrderQuery) -> Page[OrderOut]:
    """Your orders, newest first"""
    return await _orders_page(request, query, buyer_id=principal(request).user_id)


@api.get("/api/seller/orders", auth="seller", query=OrderQuery, response=Page[OrderOut])
async def list_seller_orders(request: web.Request, query: OrderQuery) -> Page[OrderOut]:
    """Orders for your shop's products, newest first"""
    return await _orders_page(request, query, seller_id=principal(request).seller_id)


async def _orders_page(request: web.Request, query: OrderQuery, **whose: UUID) -> Page[OrderOut]:
    page = await orders.list_orders(
        db(request), **whose, status=query.status, limit=query.limit, cursor=query.cursor, viewer=principal(request)
    )
    return Page[OrderOut].model_validate(page)


@api.get("/api/orders/{id}", auth="user", response=OrderEnvelope)
async def get_order(request: web.Request) -> OrderEnvelope:
    """One of your orders (as its buyer or seller)"""
    return OrderEnvelope(order=await orders.get_order(db(request), path_id(request), principal(request)))


@api.post("/api/orders/{id}/ship", auth="user", body=ShipIn, response=OrderEnvelope)
async def ship_order(request: web.Request, body: ShipIn) -> OrderEnvelope:
    """Seller: mark a paid order shipped, with the carrier's tracking (the buyer sees it on the order)"""
    order = await orders.transition(
        db(request), "ship", path_id(request), principal(request), tracking=body.model_dump()
    )
    return OrderEnvelope(order=order)


@api.post("/api/orders/{id}/deliver", auth="user", response=OrderEnvelope)
async def deliver_order(request: web.Request) -> OrderEnvelope:
    """Mark a shipped order delivered: by its buyer or an admin, the earnings become available at once"""
    return OrderEnvelope(order=await orders.transition(db(request), "deliver", path_id(request), principal(request)))


@api.post("/api/orders/{id}/cancel", auth="user", body=CancelIn, response=OrderEnvelope)
async def cancel_order(request: web.Request, body: CancelIn) -> OrderEnvelope:
    """Cancel an order that has not shipped: money back to the buyer, stock back on the shelf"""
    order = await orders.transition(db(request), "cancel", path_id(request), principal(request), reason=body.reason)
    return OrderEnvelope(order=order)


@api.post("/api/orders/{id}/refund", auth="user", body=RefundIn, response=OrderEnvelope, idempotent=True)
async def refund_order(request: web.Request, body: RefundIn) -> OrderEnvelope:
    """Seller or admin: refund all or part of an order to the buyer's wallet"""
    order = await orders.transition(
        db(request), "refund", path_id(request), principal(request), amount_cents=body.amount_cents, reason=body.reason
    )
    return OrderEnvelope(order=order)
