"""The signed-in user's wallet."""

from datetime import datetime
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api.models import Amount, EntryPageQuery, Page
from livehub.api.routing import Api, Model, Out, db, principal
from livehub.errors import ValidationFailed
from livehub.shop import wallet

api = Api("wallet")


class WalletOut(Out):
    balance_cents: int
    currency: str


class WalletView(WalletOut):
    held_cents: int = Field(description="held out of the wallet for the auctions you lead (your maximum bids)")


class TopUpIn(Model):
    amount_cents: Amount


class TopUpOut(WalletOut):
    reference: str


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
    return WalletView.model_validate(balance | {"held_cents": await wallet.held(db(request), user_id)})


@api.get("/api/wallet/transactions", auth="user", query=EntryPageQuery, response=Page[EntryOut])
async def list_transactions(request: web.Request, query: EntryPageQuery) -> Page[EntryOut]:
    """Your wallet's ledger, newest first, each entry with the balance after it"""
    page = await wallet.transactions(db(request), principal(request).user_id, limit=query.limit, before=query.cursor)
    return Page[EntryOut].model_validate(page)


@api.post("/api/wallet/top-up", auth="user", body=TopUpIn, response=TopUpOut, idempotent=True)
async def top_up(request: web.Request, body: TopUpIn) -> TopUpOut:
    """Add money through the configured payment provider"""
    settings = request.app[keys.SETTINGS]
    if body.amount_cents > settings.max_top_up_cents:
        raise ValidationFailed(f"at most {settings.max_top_up_cents} cents per top-up")
    result = await wallet.top_up(
        db(request), request.app[keys.PAYMENTS], principal(request).user_id, body.amount_cents, settings.currency
    )
    return TopUpOut.model_validate(result)
