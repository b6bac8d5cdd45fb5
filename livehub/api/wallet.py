"""The signed-in user's wallet."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api.models import Amount, EntryPageQuery, Page
from livehub.api.routing import Api, Model, Out, db, principal
from livehub.errors import ValidationFailed
from livehub.shop import card_payments, wallet

api = Api("wallet")


class WalletOut(Out):
    balance_cents: int
    currency: str


class WalletView(WalletOut):
    held_cents: int = Field(description="held out of the wallet for the auctions you lead (your maximum bids)")
    pays_by_card: bool = Field(description="top-ups (and a checkout's difference) are paid by card here (Stripe)")


class TopUpIn(Model):
    amount_cents: Amount


class TopUpOut(Out):
    """instant-dev: `succeeded` with the new balance and the provider's reference. stripe:
    `requires_payment` with what Stripe.js needs to take the card; the wallet is credited when Stripe says
    the money was captured (GET /api/payments/{payment_id} shows it)."""

    status: Literal["succeeded", "requires_payment"]
    amount_cents: int
    currency: str
    balance_cents: int | None = Field(default=None, description="succeeded: the wallet's new balance")
    reference: str | None = Field(default=None, description="succeeded: the provider's reference")
    payment_id: UUID | None = Field(default=None, description="requires_payment: the card payment")
    client_secret: str | None = Field(default=None, description="requires_payment: for Stripe.js")
    publishable_key: str | None = Field(default=None, description="requires_payment: for Stripe.js")
    stripe_js_url: str | None = Field(default=None, description="requires_payment: where to load Stripe.js from")


class EntryOut(Out):
    id: int
    type: str
    amount_cents: int
    balance_before_cents: int
    balance_after_cents: int
    order_id: UUID | None
    payout_id: UUID | None
    memo: str | None
    created_at: datetime


@api.get("/api/wallet", auth="user", response=WalletView)
async def get_wallet(request: web.Request) -> WalletView:
    """Your wallet's balance, and what your leading auction bids hold out of it"""
    settings = request.app[keys.SETTINGS]
    user_id = principal(request).user_id
    balance = await wallet.wallet(db(request), user_id, settings.currency)
    held = await wallet.held(db(request), user_id)
    return WalletView.model_validate(
        balance | {"held_cents": held, "pays_by_card": request.app[keys.CARDS] is not None}
    )


@api.get("/api/wallet/transactions", auth="user", query=EntryPageQuery, response=Page[EntryOut])
async def list_transactions(request: web.Request, query: EntryPageQuery) -> Page[EntryOut]:
    """Your wallet's ledger, newest first, each entry with the balance after it"""
    page = await wallet.transactions(db(request), principal(request).user_id, limit=query.limit, before=query.cursor)
    return Page[EntryOut].model_validate(page)


@api.post("/api/wallet/top-up", auth="user", body=TopUpIn, response=TopUpOut, idempotent=True)
async def top_up(request: web.Request, body: TopUpIn) -> TopUpOut:
    """Add money through the configured payment provider (at once, or by card through Stripe)"""
    settings = request.app[keys.SETTINGS]
    if body.amount_cents > settings.max_top_up_cents:
        raise ValidationFailed(f"at most {settings.max_top_up_cents} cents per top-up")
    user_id = principal(request).user_id
    if (cards := request.app[keys.CARDS]) is not None:
        opened = await card_payments.top_up(db(request), cards, settings, user_id, body.amount_cents)
        return TopUpOut.model_validate(opened | {"stripe_js_url": settings.stripe_js})
    result = await wallet.top_up(db(request), request.app[keys.PAYMENTS], user_id, body.amount_cents, settings.currency)
    return TopUpOut.model_validate(result | {"status": "succeeded", "amount_cents": body.amount_cents})
