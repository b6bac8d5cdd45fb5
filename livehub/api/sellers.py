"""Seller profiles: apply, view, follow."""

from datetime import datetime
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api.models import LongText, Text
from livehub.api.routing import Api, Model, Out, path_id, principal, resolve_principal
from livehub.shop import sellers
from livehub.shop.following import is_following

api = Api("sellers")
# A seller's id in the path, a UUID with or without dashes. Left unconstrained, the parameter would also
# match "apply": GET /api/sellers/apply would look for a seller named so, and OPTIONS would offer GET there.
SELLER = "/api/sellers/{id:[0-9a-fA-F-]{32,36}}"


class SellerApplyIn(Model):
    shop_name: Text
    description: LongText = ""


class SellerOut(Out):
    id: UUID
    user_id: UUID
    shop_name: str
    description: str
    status: str
    created_at: datetime
    approved_at: datetime | None
    followers: int
    products: int


class SellerEnvelope(Out):
    seller: SellerOut


class PublicSellerOut(SellerOut):
    following: bool | None = Field(None, description="whether you follow the shop; null when not signed in")


class PublicSellerEnvelope(Out):
    seller: PublicSellerOut


class FollowOut(Out):
    seller_id: UUID
    following: bool
    followers: int


@api.post("/api/sellers/apply", auth="user", body=SellerApplyIn, response=SellerEnvelope, status=201)
async def apply(request: web.Request, body: SellerApplyIn) -> SellerEnvelope:
    """Apply for a seller profile; an admin approves it"""
    seller = await sellers.apply(request.app[keys.POOL], principal(request).user_id, body.shop_name, body.description)
    return SellerEnvelope(seller=seller)


@api.get(SELLER, auth="optional", response=PublicSellerEnvelope)
async def get_seller(request: web.Request) -> PublicSellerEnvelope:
    """A shop's public profile (and whether you follow it, for its storefront's Follow button)"""
    viewer = await resolve_principal(request)
    pool = request.app[keys.POOL]
    seller = await sellers.public_seller(pool, path_id(request), viewer)
    if viewer is not None:
        seller = {**seller, "following": await is_following(pool, viewer.user_id, path_id(request))}
    return PublicSellerEnvelope(seller=seller)


@api.post(SELLER + "/follow", auth="user", response=FollowOut)
async def follow(request: web.Request) -> FollowOut:
    """Follow a shop (get notified when it goes live)"""
    result = await sellers.follow(request.app[keys.POOL], principal(request).user_id, path_id(request), True)
    return FollowOut.model_validate(result)


@api.delete(SELLER + "/follow", auth="user", response=FollowOut)
async def unfollow(request: web.Request) -> FollowOut:
    """Stop following a shop"""
    result = await sellers.follow(request.app[keys.POOL], principal(request).user_id, path_id(request), False)
    return FollowOut.model_validate(result)
