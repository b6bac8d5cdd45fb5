"""Admin tools. Every route here requires the admin role."""

from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field, StringConstraints

from livehub import keys
from livehub.api.catalog import CategoryOut, catalog_changed
from livehub.api.models import Page, PageQuery, Text
from livehub.api.payouts import PayoutEnvelope, PayoutOut, PayoutQuery, payout_cursor
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.api.sellers import SellerEnvelope, SellerOut
from livehub.api.wallet import WalletOut
from livehub.errors import ValidationFailed
from livehub.shop import catalog, payouts, sellers, wallet

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
    catalog_changed(request)  # the seller's products join or leave listings
    return SellerEnvelope(seller=seller)


@api.post("/api/admin/sellers/{id}/suspend", auth="admin", response=SellerEnvelope)
async def suspend_seller(request: web.Request) -> SellerEnvelope:
    """Suspend a seller: their products leave listings and they cannot sell"""
    seller = await sellers.set_status(request.app[keys.POOL], path_id(request), "suspended", principal(request).user_id)
    catalog_changed(request)  # the seller's products join or leave listings
    return SellerEnvelope(seller=seller)


@api.post("/api/admin/categories", auth="admin", body=CategoryIn, response=CategoryOut, status=201)
async def create_category(request: web.Request, body: CategoryIn) -> CategoryOut:
    """Add a category, optionally under a parent"""
    category = await catalog.create_category(
        request.app[keys.POOL], body.slug, body.name, body.parent_id, body.position
    )
    return CategoryOut.model_validate(category)


class WalletAdjustIn(Model):
    amount_cents: Annotated[int, Field(ge=-(10**12), le=10**12)]
    reason: Text


class RejectIn(Model):
    reason: Text


class BooksOut(Out):
    balanced: bool
    mismatched_accounts: int
    unbalanced_transactions: int
    money_in_cents: int
    money_out_cents: int
    held_cents: int
    wallets_cents: int
    earnings_cents: int
    payouts_requested_cents: int
    platform_cents: int


@api.post("/api/admin/wallets/{user_id}/adjust", auth="admin", body=WalletAdjustIn, response=WalletOut, idempotent=True)
async def adjust_wallet(request: web.Request, body: WalletAdjustIn) -> WalletOut:
    """Credit (positive) or debit (negative) a user's wallet, with a reason"""
    result = await wallet.adjust(
        db(request),
        path_id(request, "user_id"),
        body.amount_cents,
        body.reason,
        principal(request).user_id,
        request.app[keys.SETTINGS].currency,
    )
    return WalletOut.model_validate(result)


@api.get("/api/admin/payouts", auth="admin", query=PayoutQuery, response=Page[PayoutOut])
async def list_all_payouts(request: web.Request, query: PayoutQuery) -> Page[PayoutOut]:
    """Payout requests, optionally by status"""
    page = await payouts.list_payouts(
        db(request), user_id=None, status=query.status, limit=query.limit, before=payout_cursor(query.cursor)
    )
    return Page[PayoutOut].model_validate(page)


@api.post("/api/admin/payouts/{id}/approve", auth="admin", response=PayoutEnvelope)
async def approve_payout(request: web.Request) -> PayoutEnvelope:
    """Approve a payout: the payment provider sends the money"""
    return await _decide(request, approve=True, reason=None)


@api.post("/api/admin/payouts/{id}/reject", auth="admin", body=RejectIn, response=PayoutEnvelope)
async def reject_payout(request: web.Request, body: RejectIn) -> PayoutEnvelope:
    """Reject a payout: the amount returns to the seller's available earnings"""
    return await _decide(request, approve=False, reason=body.reason)


async def _decide(request: web.Request, *, approve: bool, reason: str | None) -> PayoutEnvelope:
    payout = await payouts.decide(
        db(request),
        request.app[keys.PAYMENTS],
        path_id(request),
        principal(request).user_id,
        approve=approve,
        reason=reason,
        currency=request.app[keys.SETTINGS].currency,
    )
    return PayoutEnvelope(payout=payout)


@api.get("/api/admin/books", auth="admin", response=BooksOut)
async def check_books(request: web.Request) -> BooksOut:
    """Reconcile the ledger: balances equal their entries, and money in equals money out plus balances"""
    return BooksOut.model_validate(await wallet.books(db(request)))
