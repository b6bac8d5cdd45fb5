"""Earnings and payouts for sellers and stream hosts, and the payout destination (bank account) they go to."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field, StringConstraints

from livehub import keys
from livehub.api.models import Amount, Page, PageQuery, Text
from livehub.api.routing import Api, Model, Out, db, principal
from livehub.errors import BadSignature, NotFound, PayloadTooLarge
from livehub.http import client_address
from livehub.shop import payout_destinations, payouts, stripe_connect

api = Api("payouts")

PayoutStatus = Literal["requested", "paid", "rejected", "failed"]
# Letters, digits, spaces and dashes as people type them; the checks are in shop/payout_destinations.py.
BankNumber = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50, pattern=r"^[A-Za-z0-9 -]+$")
]


class PayoutDestinationIn(Model):
    holder_name: Text = Field(description="the account holder's name, as the bank has it")
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] = Field(
        description="ISO 3166 alpha-2 country of the bank"
    )
    iban: BankNumber | None = Field(default=None, description="in IBAN countries (checked with its check digits)")
    account_number: BankNumber | None = Field(default=None, description="elsewhere, with routing_number")
    routing_number: BankNumber | None = Field(
        default=None, description="routing, sort or transit code (a US one is an ABA number)"
    )
    connect_account_id: Annotated[str, StringConstraints(pattern=r"^acct_[A-Za-z0-9]{1,64}$")] | None = Field(
        default=None, description="a Stripe connected account, where payouts are sent with Stripe Connect"
    )


class PayoutDestinationCopy(Out):
    """The destination a payout pays, as it was when the payout was asked for (masked)."""

    holder_name: str
    country: str
    kind: Literal["iban", "account"]
    last4: str = Field(description="the last four characters of the IBAN or account number; never more")
    connect_account_id: str | None


class PayoutDestinationOut(PayoutDestinationCopy):
    """Your payout destination: masked, and when it last changed."""

    updated_at: datetime


class PayoutDestinationEnvelope(Out):
    destination: PayoutDestinationOut | None


class PayoutDestinationFull(Out):
    """The destination in full: only in an admin's payout decision view."""

    holder_name: str
    country: str
    kind: Literal["iban", "account"]
    number: str = Field(description="the IBAN or account number")
    routing_number: str | None
    connect_account_id: str | None


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
    destination: PayoutDestinationCopy | None = Field(description="null for a payout from before destinations")
    provider: str | None = Field(description="who sent it: manual, instant-dev or stripe-connect")
    failed_at: datetime | None = Field(description="when a sent payout came back (its amount is available again)")
    send_started_at: datetime | None = Field(
        description="when a Stripe Connect transfer was started: from then on it cannot be rejected, only approved "
        "again (which learns the transfer's outcome)"
    )


class PayoutEnvelope(Out):
    payout: PayoutOut


class PayoutQuery(PageQuery):
    status: PayoutStatus | None = None


@api.get("/api/seller/earnings", auth="user", response=EarningsOut)
async def get_earnings(request: web.Request) -> EarningsOut:
    """Your earnings as a seller or stream host: pending, available for payout, requested"""
    return EarningsOut.model_validate(await payouts.summary(db(request), principal(request).user_id))


@api.post(
    "/api/seller/payouts",
    auth="user",
    body=PayoutIn,
    response=PayoutEnvelope,
    status=201,
    idempotent=True,
    fresh_code=True,
)
async def request_payout(request: web.Request, body: PayoutIn) -> PayoutEnvelope:
    """Ask for a payout of available earnings (two-factor sign-in on, a current code); an admin approves it"""
    """Needs a current code in X-Two-Factor-Code, a payout destination (409 with
    details.payout_destination_required) and at least LIVEHUB_MIN_PAYOUT_CENTS (422 with details.min_payout_cents)."""
    payout = await payouts.request(
        db(request), principal(request).user_id, body.amount_cents, request.app[keys.SETTINGS].min_payout_cents
    )
    return PayoutEnvelope(payout=payout)


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


@api.get("/api/me/payout-destination", auth="user", response=PayoutDestinationEnvelope)
async def get_payout_destination(request: web.Request) -> PayoutDestinationEnvelope:
    """Where your payouts go, masked (the last four characters only); null until you add one"""
    destination = await payout_destinations.masked(db(request), principal(request).user_id)
    return PayoutDestinationEnvelope(destination=destination)


@api.route(
    "PUT",
    "/api/me/payout-destination",
    auth="user",
    body=PayoutDestinationIn,
    response=PayoutDestinationEnvelope,
    errors={503: "payout keys are not set on this server (bank details are never stored unencrypted)"},
    fresh_code=True,
)
async def put_payout_destination(request: web.Request, body: PayoutDestinationIn) -> PayoutDestinationEnvelope:
    """Add or change where your payouts go: an IBAN in IBAN countries, else account and routing number"""
    """Needs two-factor sign-in on and a current code in X-Two-Factor-Code, like asking for a payout: a stolen
    session alone cannot redirect payouts. The change is audit-logged (payout.destination_change, the last
    four only) and you are told (notification payout_destination_changed, and email)."""
    destination = payout_destinations.checked(
        holder_name=body.holder_name,
        country=body.country,
        iban=body.iban,
        account_number=body.account_number,
        routing_number=body.routing_number,
        connect_account_id=body.connect_account_id,
    )
    saved = await payout_destinations.save(
        db(request), request.app[keys.PAYOUT_BOX], principal(request).user_id, destination, client=_client(request)
    )
    return PayoutDestinationEnvelope(destination=saved)


@api.delete("/api/me/payout-destination", auth="user", status=204, fresh_code=True)
async def delete_payout_destination(request: web.Request) -> None:
    """Remove your payout destination (payouts already asked for still go where they were asked to)"""
    """Needs a current code in X-Two-Factor-Code; audit-logged and notified as a change is."""
    await payout_destinations.remove(db(request), principal(request).user_id, client=_client(request))


def _client(request: web.Request) -> dict:
    """Where a destination change came from, for its audit row."""
    return {"address": client_address(request), "user_agent": request.headers.get("User-Agent")}


class PayoutWebhookOut(Out):
    received: bool
    result: str = Field(description="applied, ignored (an event type or partial reversal we leave) or not_ours")


@api.post(
    "/api/payouts/stripe/webhook",
    response=PayoutWebhookOut,
    errors={400: "the Stripe-Signature header is missing or does not verify", 404: "Stripe Connect payouts are off"},
)
async def stripe_connect_webhook(request: web.Request) -> PayoutWebhookOut:
    """Stripe's events for Connect payouts: a reversed transfer fails its payout, the amount available again once

    Signed with LIVEHUB_STRIPE_CONNECT_WEBHOOK_SECRET, this endpoint's own secret."""
    settings = request.app[keys.SETTINGS]
    if settings.payouts != "stripe-connect" or not settings.stripe_connect_webhook_secret:
        raise NotFound("Stripe Connect payouts are not enabled here (LIVEHUB_PAYOUTS)")
    if (request.content_length or 0) > settings.max_json_bytes:
        raise PayloadTooLarge()
    payload = await request.read()
    try:
        event = stripe_connect.verify(
            payload, request.headers.get("Stripe-Signature"), settings.stripe_connect_webhook_secret
        )
    except ValueError as exc:
        raise BadSignature("the Stripe signature does not verify", {"reason": str(exc)}) from exc
    return PayoutWebhookOut(received=True, result=await stripe_connect.handle_event(db(request), event))
