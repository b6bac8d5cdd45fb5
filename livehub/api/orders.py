"""Cart, orders (buyer and seller views) and the order state machine."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field, StringConstraints

from livehub import keys
from livehub.api.models import Amount, Page, PageQuery, text_map
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.shop import cart, orders

api = Api("orders")

Quantity = Annotated[int, Field(ge=1, le=1000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Address = text_map(20, 200)
OrderStatus = Literal["paid", "shipped", "delivered", "cancelled", "refunded", "partially_refunded"]


class ItemIn(Model):
    variant_id: UUID
    quantity: Quantity = 1


class OrderIn(Model):
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=100)]
    stream_id: UUID | None = None
    address: Address | None = None


class CheckoutIn(Model):
    address: Address | None = None


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


class OrderOut(Out):
    id: UUID
    number: str
    status: OrderStatus
    buyer_id: UUID
    seller_id: UUID
    stream_id: UUID | None
    checkout_id: UUID
    items: list[OrderItemOut]
    total_cents: int
    refunded_cents: int
    address: dict[str, Any] | None
    events: list[OrderEventOut]
    created_at: datetime
    updated_at: datetime
    shipped_at: datetime | None
    delivered_at: datetime | None


class OrderEnvelope(Out):
    order: OrderOut


class PlacedOut(Out):
    order: OrderOut = Field(description="the first order (the only one unless the items span several sellers)")
    orders: list[OrderOut] = Field(description="one order per seller")


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


class CartOut(Out):
    items: list[CartLineOut]
    subtotal_cents: int


class OrderQuery(PageQuery):
    status: OrderStatus | None = None


def pricing(request: web.Request) -> orders.Pricing:
    settings = request.app[keys.SETTINGS]
    return orders.Pricing(fee_bps=settings.platform_fee_bps, hold_s=settings.earnings_hold_s)


def placed(result: list[dict]) -> PlacedOut:
    return PlacedOut.model_validate({"order": result[0], "orders": result})


@api.get("/api/cart", auth="user", response=CartOut)
async def get_cart(request: web.Request) -> CartOut:
    """Your cart with today's prices and stock"""
    return CartOut.model_validate(await cart.view(db(request), principal(request).user_id))


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


@api.post("/api/cart/checkout", auth="user", body=CheckoutIn, response=PlacedOut, status=201, idempotent=True)
async def checkout(request: web.Request, body: CheckoutIn) -> PlacedOut:
    """Buy everything in your cart: one order per seller, paid from your wallet"""
    return placed(await cart.checkout(db(request), pricing(request), principal(request), body.address))


@api.post("/api/orders", auth="user", body=OrderIn, response=PlacedOut, status=201, idempotent=True)
async def place_order(request: web.Request, body: OrderIn) -> PlacedOut:
    """Buy now: pay from your wallet at the database's price (list, stream live or flash-sale price)"""
    items = [{"variant_id": i.variant_id, "quantity": i.quantity} for i in body.items]
    result = await orders.place(db(request), pricing(request), principal(request), items, body.stream_id, body.address)
    return placed(result)


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


@api.post("/api/orders/{id}/ship", auth="user", response=OrderEnvelope)
async def ship_order(request: web.Request) -> OrderEnvelope:
    """Seller: mark a paid order shipped"""
    return OrderEnvelope(order=await orders.transition(db(request), "ship", path_id(request), principal(request)))


@api.post("/api/orders/{id}/deliver", auth="user", response=OrderEnvelope)
async def deliver_order(request: web.Request) -> OrderEnvelope:
    """Buyer or seller: mark a shipped order delivered; the seller's earnings become available"""
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
