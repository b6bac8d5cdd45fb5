"""Low-stock alerts and stock history for the back office."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub.api.models import EntryPageQuery
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.shop import stock_alerts

api = Api("stock_alerts")

Threshold = Annotated[int, Field(ge=0, le=1_000_000)]


class ShopSettingsOut(Out):
    low_stock_threshold: int = Field(
        description="the shop's default: a variant without its own threshold is low at or under it"
    )


class ShopSettingsIn(Model):
    low_stock_threshold: Threshold


class LowStockItemOut(Out):
    variant_id: UUID
    product_id: UUID
    title: str
    sku: str
    options: dict[str, Any]
    digital: bool
    stock: int
    threshold: int = Field(description="the threshold that applies: the variant's own, else the shop's")
    own_threshold: int | None = Field(description="the variant's own threshold; null: the shop's default applies")


class LowStockOut(Out):
    items: list[LowStockItemOut]
    low_stock_threshold: int = Field(description="the shop's default threshold")


class LowStockQuery(Model):
    limit: Annotated[int, Field(ge=1, le=500)] = 200


class ActorOut(Out):
    id: UUID
    name: str | None


class MovementOut(Out):
    id: int
    delta: int
    stock_after: int
    reason: str = Field(description="sale, a seller's reason for an adjustment, digital codes imported, ...")
    reference: str | None = Field(description="the order's number for a sale, else what the adjustment gave")
    order_id: UUID | None = Field(description="the order the reference names, if it names one")
    actor: ActorOut | None = Field(description="who moved the stock: the buyer of a sale, the seller, ...")
    created_at: datetime


class HistoryVariantOut(Out):
    id: UUID
    product_id: UUID
    title: str
    sku: str
    stock: int
    threshold: int
    own_threshold: int | None


class StockHistoryOut(Out):
    variant: HistoryVariantOut
    items: list[MovementOut]
    next_cursor: str | None


@api.get("/api/seller/settings", auth="seller", response=ShopSettingsOut)
async def get_shop_settings(request: web.Request) -> ShopSettingsOut:
    """Your shop's settings: the default low-stock threshold"""
    return ShopSettingsOut.model_validate(await stock_alerts.shop_settings(db(request), principal(request).seller_id))


@api.patch("/api/seller/settings", auth="seller", body=ShopSettingsIn, response=ShopSettingsOut)
async def set_shop_settings(request: web.Request, body: ShopSettingsIn) -> ShopSettingsOut:
    """Change your shop's default low-stock threshold (a variant's own, set with PATCH /api/variants/{id}, wins)"""
    result = await stock_alerts.set_shop_settings(db(request), principal(request).seller_id, body.low_stock_threshold)
    return ShopSettingsOut.model_validate(result)


@api.get("/api/seller/low-stock", auth="seller", query=LowStockQuery, response=LowStockOut)
async def low_stock(request: web.Request, query: LowStockQuery) -> LowStockOut:
    """Your variants at or under their low-stock threshold (active products), lowest stock first"""
    result = await stock_alerts.low_stock(db(request), principal(request).seller_id, query.limit)
    return LowStockOut.model_validate(result)


@api.get("/api/variants/{id}/stock-history", auth="user", query=EntryPageQuery, response=StockHistoryOut)
async def stock_history(request: web.Request, query: EntryPageQuery) -> StockHistoryOut:
    """A variant's stock movements, newest first, with reason, actor and reference (its shop or an admin)"""
    page = await stock_alerts.stock_history(
        db(request), principal(request), path_id(request), limit=query.limit, cursor=query.cursor
    )
    return StockHistoryOut.model_validate(page)
