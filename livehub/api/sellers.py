"""Seller profiles: apply, view, follow."""

from datetime import datetime
from uuid import UUID

from aiohttp import web

from livehub import keys
from livehub.api.models import LongText, Text
from livehub.api.routing import Api, Model, Out, path_id, principal, resolve_principal
from livehub.shop import sellers

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


class FollowOut(Out):
    seller_id: UUID
    following: bool
    followers: int


@api.post("/api/sellers/apply", auth="user", body=SellerApplyIn, response=SellerEnvelope, status=201)
async def apply(request: web.Request, body: SellerApplyIn) -> SellerEnvelope:
    """Apply for a seller profile; an admin approves it"""
    seller = await sellers.apply(request.app[keys.POOL], principal(request).user_id, body.shop_name, body.description)
    return SellerEnvelope(seller=seller)


@api.get(SELLER, auth="optional", response=SellerEnvelope)
async def get_seller(request: web.Request) -> SellerEnvelope:
    """A shop's public profile"""
    viewer = await resolve_principal(request)
    return SellerEnvelope(seller=await sellers.public_seller(request.app[keys.POOL], path_id(request), viewer))


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
