"""Card payments: Stripe's webhook, a card payment's status, and the admins' list of users who owe."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

import stripe
from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.errors import BadSignature, NotFound, PayloadTooLarge, PaymentProviderError
from livehub.shop import card_checkout, card_confirm, card_payments

api = Api("payments")


class CardPaymentOut(Out):
    payment_id: UUID
    purpose: str = Field(description="top_up, or order: the difference of a checkout (its order is placed when paid)")
    status: str = Field(description="pending, succeeded, failed or canceled")
    amount_cents: int
    received_cents: int = Field(description="what the card paid, credited to the wallet")
    refunded_cents: int
    disputed_cents: int
    currency: str
    owed_cents: int = Field(description="what you owe after refunds or disputes took back spent money")
    created_at: datetime
    succeeded_at: datetime | None
    outcome: str | None = Field(
        description="a checkout's payment, once paid: ordered (order_ids) or not_ordered (the money stayed in "
        "your wallet; outcome_code and outcome_message say why)"
    )
    outcome_code: str | None = Field(description="not_ordered: the error code, e.g. out_of_stock")
    outcome_message: str | None
    order_ids: list[UUID] | None


class CardTokenIn(Model):
    token: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^tok_\w+$")] = Field(
        description="Stripe.js's token of the card (createToken)"
    )


class CardConfirmOut(Out):
    status: str = Field(description="Stripe's: succeeded, processing, or requires_action (3-D Secure in Stripe.js)")
    client_secret: str


class WebhookOut(Out):
    received: bool
    result: str = Field(description="applied, ignored (an event type we do not use) or not_ours")


class OwingQuery(Model):
    limit: Annotated[int, Field(ge=1, le=1000)] = 100


class OwingOut(Out):
    user_id: UUID
    email: str
    owed_cents: int


class OwingList(Out):
    items: list[OwingOut]


def _cards(request: web.Request) -> card_payments.StripeCards:
    cards = request.app[keys.CARDS]
    if cards is None:
        raise NotFound("card payments are not enabled here (LIVEHUB_PAYMENTS)")
    return cards


@api.post(
    "/api/payments/stripe/webhook",
    response=WebhookOut,
    errors={
        400: "the Stripe-Signature header is missing or does not verify",
        404: "Stripe is not enabled",
        502: "Stripe could not be asked about the event's intent: Stripe delivers it again",
    },
)
async def stripe_webhook(request: web.Request) -> WebhookOut:
    """Stripe's events (signed with STRIPE_WEBHOOK_SECRET); each only names the intent Stripe is asked about"""
    cards = _cards(request)
    if (request.content_length or 0) > request.app[keys.SETTINGS].max_json_bytes:
        raise PayloadTooLarge()
    payload = await request.read()
    try:
        event = cards.verify(payload, request.headers.get("Stripe-Signature"))
    except card_payments.BadSignature as exc:
        raise BadSignature("the Stripe signature does not verify", {"reason": str(exc)}) from exc
    try:
        result = await card_payments.handle_event(db(request), cards, event)
    except stripe.StripeError as exc:
        # Not applied: a 5xx makes Stripe deliver the event again later (and reconciliation catches up).
        raise PaymentProviderError("Stripe could not be asked about this event, try again") from exc
    return WebhookOut(received=True, result=result)


@api.get("/api/payments/{id}", auth="user", response=CardPaymentOut)
async def get_payment(request: web.Request) -> CardPaymentOut:
    """One of your card payments: pending until Stripe says the money was captured"""
    found = await card_payments.payment(db(request), path_id(request), principal(request).user_id)
    if found is None:
        raise NotFound("payment not found")
    return CardPaymentOut.model_validate(found | {"outcome_code": card_checkout.outcome_code(found["outcome_code"])})


@api.post(
    "/api/payments/{id}/card",
    auth="user",
    body=CardTokenIn,
    response=CardConfirmOut,
    errors={502: "Stripe did not answer", 409: "the card was declined, or the payment is no longer pending"},
)
async def confirm_payment(request: web.Request, body: CardTokenIn) -> CardConfirmOut:
    """Pay one of your pending card payments with a card Stripe.js tokenized (the wallet is credited when
    Stripe says the money was captured)"""
    confirmed = await card_confirm.confirm_with_token(
        db(request), _cards(request), path_id(request), principal(request).user_id, body.token
    )
    return CardConfirmOut.model_validate(confirmed)


@api.get("/api/admin/owed", auth="admin", query=OwingQuery, response=OwingList)
async def users_owing(request: web.Request, query: OwingQuery) -> OwingList:
    """Users who owe money after card refunds or disputes, the largest debt first"""
    return OwingList(items=await card_payments.users_owing(db(request), query.limit))
