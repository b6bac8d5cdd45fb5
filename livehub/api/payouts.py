"""Earnings and payouts for sellers and stream hosts."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from aiohttp import web

from livehub.api.models import Amount, Page, PageQuery
from livehub.api.routing import Api, Model, Out, db, principal
from livehub.shop import payouts
from livehub.twofactor import require_enabled

api = Api("payouts")

PayoutStatus = Literal["requested", "paid", "rejected"]


class EarningOut(Out):
    order_id: UUID
    order_number: str
    role: Literal["seller", "host"]
    amount_cents: int
    reversed_cents: int
    status: Literal["pending", "available"]
    available_after: datetime
    released_at: datetime | None


class EarningsOut(Out):
    pending_cents: int
    available_cents: int
    payouts_requested_cents: int
    recent: list[EarningOut]


class PayoutIn(Model):
    amount_cents: Amount


class PayoutOut(Out):
    id: UUID
    user_id: UUID
    amount_cents: int
    status: PayoutStatus
    provider_reference: str | None
    reason: str | None
    requested_at: datetime
    decided_at: datetime | None


class PayoutEnvelope(Out):
    payout: PayoutOut


class PayoutQuery(PageQuery):
    status: PayoutStatus | None = None


@api.get("/api/seller/earnings", auth="user", response=EarningsOut)
async def get_earnings(request: web.Request) -> EarningsOut:
    """Your earnings as a seller or stream host: pending, available for payout, requested"""
    return EarningsOut.model_validate(await payouts.summary(db(request), principal(request).user_id))


@api.post("/api/seller/payouts", auth="user", body=PayoutIn, response=PayoutEnvelope, status=201, idempotent=True)
async def request_payout(request: web.Request, body: PayoutIn) -> PayoutEnvelope:
    """Ask for a payout of available earnings (two-factor sign-in must be on); an admin approves it"""
    require_enabled(principal(request).two_factor, "payouts go only to accounts with a second factor")
    return PayoutEnvelope(payout=await payouts.request(db(request), principal(request).user_id, body.amount_cents))


@api.get("/api/seller/payouts", auth="user", query=PayoutQuery, response=Page[PayoutOut])
async def list_payouts(request: web.Request, query: PayoutQuery) -> Page[PayoutOut]:
    """Your payouts and their status, newest first"""
    page = await payouts.list_payouts(
        db(request),
        user_id=principal(request).user_id,
        status=query.status,
        limit=query.limit,
        before=query.cursor,
    )
    return Page[PayoutOut].model_validate(page)
