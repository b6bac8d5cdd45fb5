"""Admin tools. Every route here requires the admin role."""

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import AfterValidator, Field, StringConstraints

from livehub import keys
from livehub.api.catalog import CategoryOut
from livehub.api.models import Page, PageQuery, Text
from livehub.api.orders import OrderOut, OrderQuery
from livehub.api.payouts import PayoutDestinationFull, PayoutEnvelope, PayoutOut, PayoutQuery
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.api.sellers import SellerEnvelope, SellerOut
from livehub.api.wallet import WalletOut
from livehub.errors import NotFound
from livehub.shop import catalog, orders, payouts, reports, sellers, wallet

api = Api("admin")


class SellerListQuery(PageQuery):
    status: Literal["pending", "approved", "suspended"] | None = None


Slug = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]


class CategoryIn(Model):
    slug: Slug
    name: Text
    parent_id: UUID | None = None
    position: Annotated[int, Field(ge=0, le=100_000)] = 0


@api.get("/api/admin/sellers", auth="admin", query=SellerListQuery, response=Page[SellerOut])
async def list_sellers(request: web.Request, query: SellerListQuery) -> Page[SellerOut]:
    """Seller profiles, optionally by status (pending applications to review)"""
    page = await sellers.list_sellers(request.app[keys.POOL], query.status, limit=query.limit, after=query.cursor)
    return Page[SellerOut].model_validate(page)


@api.post(
    "/api/admin/sellers/{id}/approve",
    auth="admin",
    changes_listings=True,
    audit="seller.approve",
    response=SellerEnvelope,
)
async def approve_seller(request: web.Request) -> SellerEnvelope:
    """Approve (or reinstate) a seller profile"""
    seller = await sellers.set_status(db(request), path_id(request), "approved", principal(request).user_id)
    return SellerEnvelope(seller=seller)


@api.post(
    "/api/admin/sellers/{id}/suspend",
    auth="admin",
    changes_listings=True,
    audit="seller.suspend",
    response=SellerEnvelope,
)
async def suspend_seller(request: web.Request) -> SellerEnvelope:
    """Suspend a seller: their products leave listings and they cannot sell"""
    seller = await sellers.set_status(db(request), path_id(request), "suspended", principal(request).user_id)
    return SellerEnvelope(seller=seller)


@api.post(
    "/api/admin/categories", auth="admin", body=CategoryIn, response=CategoryOut, status=201, audit="category.create"
)
async def create_category(request: web.Request, body: CategoryIn) -> CategoryOut:
    """Add a category, optionally under a parent"""
    category = await catalog.create_category(db(request), body.slug, body.name, body.parent_id, body.position)
    return CategoryOut.model_validate(category)


class CategoryPatch(Model):
    # Leave a field out to keep it. parent_id: another category's id, or null for the top level.
    slug: Slug = None
    name: Text = None
    parent_id: UUID | None = None
    position: Annotated[int, Field(ge=0, le=100_000)] = None


@api.patch(
    "/api/admin/categories/{id}",
    auth="admin",
    body=CategoryPatch,
    response=CategoryOut,
    changes_listings=True,
    audit="category.update",
)
async def update_category(request: web.Request, body: CategoryPatch) -> CategoryOut:
    """Rename a category, change its slug or position, or move it under another (or to the top)"""
    changes = body.model_dump(exclude_unset=True)
    category = await catalog.update_category(db(request), path_id(request), changes)
    return CategoryOut.model_validate(category)


class CategoryDeleteQuery(Model):
    # Where its products go: another category, or none.
    move_to: UUID | None = None


class CategoryDeletedOut(Out):
    moved_products: int


@api.delete(
    "/api/admin/categories/{id}",
    auth="admin",
    query=CategoryDeleteQuery,
    response=CategoryDeletedOut,
    changes_listings=True,
    audit="category.delete",
)
async def delete_category(request: web.Request, query: CategoryDeleteQuery) -> CategoryDeletedOut:
    """Delete a category: its products move to `move_to` (or to no category), its subcategories to its parent"""
    moved = await catalog.delete_category(db(request), path_id(request), query.move_to)
    return CategoryDeletedOut(moved_products=moved)


class WalletAdjustIn(Model):
    amount_cents: Annotated[int, Field(ge=-(10**12), le=10**12, json_schema_extra={"not": {"const": 0}})]
    reason: Text


class RejectIn(Model):
    reason: Text


class BooksOut(Out):
    balanced: bool
    mismatched_accounts: int
    unbalanced_transactions: int
    mismatched_orders: int = Field(
        description="orders whose total (items and shipping), refunds, fee and earnings disagree with the ledger"
    )
    money_in_cents: int
    money_out_cents: int
    held_cents: int
    wallets_cents: int
    earnings_cents: int
    payouts_requested_cents: int
    platform_cents: int
    shipping_cents: int = Field(description="shipping charged on all orders (part of their totals)")
    holds_cents: int = Field(description="what auction leaders' hold accounts keep (part of held_cents)")
    mismatched_holds_cents: int = Field(
        description="holds less what the running auctions hold for their leaders: 0 when balanced"
    )
    owed_cents: int = Field(
        description="what users owe after card refunds or disputes took back money they had spent "
        "(part of held_cents, negative there)"
    )


@api.post(
    "/api/admin/wallets/{user_id}/adjust",
    auth="admin",
    body=WalletAdjustIn,
    response=WalletOut,
    idempotent=True,
    audit="wallet.adjust",
    fresh_code=True,
)
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
        db(request), user_id=None, status=query.status, limit=query.limit, before=query.cursor
    )
    return Page[PayoutOut].model_validate(page)


class ApproveIn(Model):
    reference: Text | None = Field(
        default=None, description="the bank transfer's reference: required with manual payouts (LIVEHUB_PAYOUTS)"
    )


class PayoutDecisionOut(Out):
    payout: PayoutOut
    destination: PayoutDestinationFull | None = Field(
        description="the destination the payout pays, in full; null for a payout from before destinations"
    )


@api.get(
    "/api/admin/payouts/{id}",
    auth="admin",
    response=PayoutDecisionOut,
    audit="payout.view_destination",
)
async def payout_decision_view(request: web.Request) -> PayoutDecisionOut:
    """A payout with the bank details it pays, in full, to pay it by hand (every look is audit-logged)"""
    found = await payouts.with_destination(db(request), request.app[keys.PAYOUT_BOX], path_id(request))
    if found is None:
        raise NotFound("payout not found")
    payout, destination = found
    return PayoutDecisionOut(payout=PayoutOut.model_validate(payout), destination=destination)


@api.post(
    "/api/admin/payouts/{id}/approve",
    auth="admin",
    body=ApproveIn,
    response=PayoutEnvelope,
    audit="payout.approve",
    fresh_code=True,
)
async def approve_payout(request: web.Request, body: ApproveIn) -> PayoutEnvelope:
    """Approve a payout: the payout provider sends the money (manual: you did, and give the reference)"""
    return await _decide(request, approve=True, reason=None, reference=body.reference)


@api.post(
    "/api/admin/payouts/{id}/reject",
    auth="admin",
    body=RejectIn,
    response=PayoutEnvelope,
    audit="payout.reject",
    fresh_code=True,
)
async def reject_payout(request: web.Request, body: RejectIn) -> PayoutEnvelope:
    """Reject a payout: the amount returns to the seller's available earnings"""
    return await _decide(request, approve=False, reason=body.reason, reference=None)


@api.post(
    "/api/admin/payouts/{id}/fail",
    auth="admin",
    body=RejectIn,
    response=PayoutEnvelope,
    audit="payout.fail",
    fresh_code=True,
)
async def fail_payout(request: web.Request, body: RejectIn) -> PayoutEnvelope:
    """A paid payout came back from the bank: its amount is the seller's available earnings again (once)"""
    payout = await payouts.fail(db(request), path_id(request), principal(request).user_id, body.reason)
    return PayoutEnvelope(payout=payout)


async def _decide(request: web.Request, *, approve: bool, reason: str | None, reference: str | None) -> PayoutEnvelope:
    payout = await payouts.decide(
        db(request),
        request.app[keys.PAYOUTS],
        request.app[keys.PAYOUT_BOX],
        path_id(request),
        principal(request).user_id,
        approve=approve,
        reason=reason,
        reference=reference,
        currency=request.app[keys.SETTINGS].currency,
        pool=request.app[keys.POOL],
    )
    return PayoutEnvelope(payout=payout)


@api.get("/api/admin/books", auth="admin", response=BooksOut)
async def check_books(request: web.Request) -> BooksOut:
    """Reconcile the ledger: balances equal their entries, and money in equals money out plus balances"""
    return BooksOut.model_validate(await wallet.books(db(request)))


class AdminOrderQuery(OrderQuery):
    buyer: UUID | None = None
    seller: UUID | None = None


@api.get("/api/admin/orders", auth="admin", query=AdminOrderQuery, response=Page[OrderOut])
async def list_all_orders(request: web.Request, query: AdminOrderQuery) -> Page[OrderOut]:
    """Every order, newest first, optionally by status, buyer or seller"""
    page = await orders.list_orders(
        db(request),
        buyer_id=query.buyer,
        seller_id=query.seller,
        status=query.status,
        limit=query.limit,
        cursor=query.cursor,
        viewer=principal(request),
    )
    return Page[OrderOut].model_validate(page)


def _searchable(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("contains control characters")
    return value


class WalletQuery(PageQuery):
    q: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=200),
            AfterValidator(_searchable),
            Field(json_schema_extra={"pattern": r"^[^\x00-\x1f\x7f]*$"}),
        ]
        | None
    ) = Field(default=None, description="part of an email or display name, or a user id")


class UserWalletOut(Out):
    user_id: UUID
    email: str
    display_name: str
    seller_id: UUID | None
    seller_status: Literal["pending", "approved", "suspended"] | None
    balance_cents: int = Field(description="the wallet's balance")
    earnings_pending_cents: int
    earnings_available_cents: int = Field(description="may be below zero: refunds after a payout")
    payouts_requested_cents: int
    deactivated_at: datetime | None = Field(description="set while an admin has deactivated the account")


@api.get("/api/admin/wallets", auth="admin", query=WalletQuery, response=Page[UserWalletOut])
async def find_wallets(request: web.Request, query: WalletQuery) -> Page[UserWalletOut]:
    """Users by email, name or id, with their wallet, earnings and requested payouts"""
    page = await reports.find_wallets(db(request), query.q or None, limit=query.limit, cursor=query.cursor)
    return Page[UserWalletOut].model_validate(page)


class StatsQuery(Model):
    days: Annotated[int, Field(ge=1, le=366)] = 30


class DayOut(Out):
    day: date
    orders: int
    gmv_cents: int
    net_cents: int


class TopStreamOut(Out):
    stream_id: UUID
    title: str
    status: str
    seller_id: UUID
    shop_name: str
    orders: int = Field(description="orders not cancelled")
    revenue_cents: int = Field(description="what its orders kept after refunds")


class StatsOut(Out):
    days: int
    first_day: date
    last_day: date
    orders: int = Field(description="orders placed in the window, cancelled ones included")
    cancelled_orders: int
    buyers: int
    gmv_cents: int = Field(description="gross merchandise value: the totals of the orders placed")
    refunded_cents: int = Field(description="refunded of those orders since, cancellations included")
    net_cents: int = Field(description="gmv_cents - refunded_cents")
    fees_cents: int = Field(description="the platform's fees kept on those orders (its ledger entries)")
    series: list[DayOut] = Field(description="one entry per UTC day, oldest first, days without orders too")
    top_streams: list[TopStreamOut] = Field(description="the five streams whose orders brought in most")


@api.get("/api/admin/stats", auth="admin", query=StatsQuery, response=StatsOut)
async def platform_stats(request: web.Request, query: StatsQuery) -> StatsOut:
    """Platform figures over the last `days` UTC days: GMV, orders, refunds, fees, per day, top streams"""
    return StatsOut.model_validate(await reports.platform_stats(db(request), query.days))
