"""Admin tools. Every route here requires the admin role."""

from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field, StringConstraints

from livehub import keys
from livehub.api.catalog import CategoryOut
from livehub.api.models import Page, PageQuery, Text
from livehub.api.routing import Api, Model, path_id, principal
from livehub.api.sellers import SellerEnvelope, SellerOut
from livehub.errors import ValidationFailed
from livehub.shop import catalog, sellers

api = Api("admin")


class SellerListQuery(PageQuery):
    status: Literal["pending", "approved", "suspended"] | None = None


class CategoryIn(Model):
    slug: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
    name: Text
    parent_id: UUID | None = None
    position: Annotated[int, Field(ge=0, le=100_000)] = 0


@api.get("/api/admin/sellers", auth="admin", query=SellerListQuery, response=Page[SellerOut])
async def list_sellers(request: web.Request, query: SellerListQuery) -> Page[SellerOut]:
    """Seller profiles, optionally by status (pending applications to review)"""
    after = None
    if query.cursor:
        try:
            after = UUID(query.cursor)
        except ValueError:
            raise ValidationFailed("invalid cursor") from None
    page = await sellers.list_sellers(request.app[keys.POOL], query.status, limit=query.limit, after=after)
    return Page[SellerOut].model_validate(page)


@api.post("/api/admin/sellers/{id}/approve", auth="admin", response=SellerEnvelope)
async def approve_seller(request: web.Request) -> SellerEnvelope:
    """Approve (or reinstate) a seller profile"""
    seller = await sellers.set_status(request.app[keys.POOL], path_id(request), "approved", principal(request).user_id)
    return SellerEnvelope(seller=seller)


@api.post("/api/admin/sellers/{id}/suspend", auth="admin", response=SellerEnvelope)
async def suspend_seller(request: web.Request) -> SellerEnvelope:
    """Suspend a seller: their products leave listings and they cannot sell"""
    seller = await sellers.set_status(request.app[keys.POOL], path_id(request), "suspended", principal(request).user_id)
    return SellerEnvelope(seller=seller)


@api.post("/api/admin/categories", auth="admin", body=CategoryIn, response=CategoryOut, status=201)
async def create_category(request: web.Request, body: CategoryIn) -> CategoryOut:
    """Add a category, optionally under a parent"""
    category = await catalog.create_category(
        request.app[keys.POOL], body.slug, body.name, body.parent_id, body.position
    )
    return CategoryOut.model_validate(category)
