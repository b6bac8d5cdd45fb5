"""Card payments through Stripe: top-ups as PaymentIntents, verified webhooks, refunds and disputes.

The ledger is the one truth inside, Stripe the one truth about a card: a top-up opens a `card_payments` row
and a PaymentIntent (its Stripe idempotency key derived from our payment id), and nothing is credited until
Stripe says the money was captured. Every webhook, whatever it says, only names the intent; the node then
asks Stripe for the intent and its charge and hands the figures (status, amount received, amount refunded)
to one storage function (functions/card_payments.sql), which applies each only by its growth. So a replayed
event, events out of order, two nodes getting the same event and the reconciliation job (which asks about
payments left pending) all end in the same ledger. A dispute is the exception: Stripe has no running total
of disputes on a charge, so each dispute id is applied once with its amount, after the intent's state.
"""

import logging
from typing import Any
from uuid import UUID, uuid4

import stripe

from livehub import jobs
from livehub.errors import PaymentProviderError, ValidationFailed
from livehub.settings import Settings
from storage.db import DB

log = logging.getLogger(__name__)

# Events that say something about an intent's state or its charge's refunds; any of them makes the node
# ask Stripe about the intent. Others are answered 200 and ignored.
INTENT_EVENTS = {
    "payment_intent.succeeded",
    "payment_intent.processing",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.amount_capturable_updated",
    "charge.succeeded",
    "charge.captured",
    "charge.refunded",
    "charge.refund.updated",
}
DISPUTE_EVENTS = {"charge.dispute.created", "charge.dispute.funds_withdrawn"}


class BadSignature(Exception):
    """A webhook whose Stripe-Signature does not verify (or is missing): nothing is done with it."""


class StripeCards:
    """A node's Stripe client (async, over aiohttp) and its keys."""

    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.publishable_key = settings.stripe_publishable_key
        self.webhook_secret = settings.stripe_webhook_secret
        self.http = stripe.AIOHTTPClient(timeout=20)
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self.client = stripe.StripeClient(
            settings.stripe_secret_key, base_addresses=base, http_client=self.http, max_network_retries=2
        )

    async def close(self) -> None:
        await self.http.close_async()

    async def create_intent(self, payment_id: UUID, user_id: UUID, amount_cents: int, currency: str):
        params: dict[str, Any] = {
            "amount": amount_cents,
            "currency": currency.lower(),
            "payment_method_types": ["card"],
            "metadata": {"livehub_payment_id": str(payment_id), "livehub_user_id": str(user_id)},
        }
        # Stripe answers a retry with this key with the intent it made the first time.
        options = {"idempotency_key": f"livehub-payment-{payment_id}"}
        return await self.client.v1.payment_intents.create_async(params, options)

    async def intent_state(self, intent_id: str) -> dict:
        """What Stripe says about an intent now: status, amount received (captured) and refunded."""
        intent = (await self.client.v1.payment_intents.retrieve_async(intent_id)).to_dict()
        charge = None
        charge_ref = intent.get("latest_charge")
        if isinstance(charge_ref, str):
            charge = (await self.client.v1.charges.retrieve_async(charge_ref)).to_dict()
        elif charge_ref is not None:
            charge = charge_ref
        received = intent.get("amount_received")
        if received is None:
            # Stripe always sends amount_received; a test server may not (localstripe): the charge's
            # captured amount is the same figure.
            captured = charge is not None and charge.get("status") == "succeeded" and charge.get("captured")
            received = (charge.get("amount_captured") or charge.get("amount") or 0) if captured else 0
        refunded = charge.get("amount_refunded", 0) if charge is not None else 0
        return {"status": intent["status"], "received": int(received), "refunded": int(refunded or 0)}

    def verify(self, payload: bytes, signature: str | None) -> dict:
        """The event, if Stripe signed it with our webhook secret (and not too long ago)."""
        try:
            return stripe.Webhook.construct_event(payload, signature or "", self.webhook_secret).to_dict()
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise BadSignature(str(exc)) from exc


async def top_up(
    db: DB,
    cards: StripeCards,
    settings: Settings,
    user_id: UUID,
    amount_cents: int,
    purpose: str = "top_up",
    purpose_data: dict | None = None,
) -> dict:
    """Open a card top-up: a pending payment and its PaymentIntent, for the browser to confirm. A purpose
    other than a top-up (a checkout's, livehub/shop/card_checkout.py) keeps what it needs in purpose_data."""
    if amount_cents < settings.card_min_top_up_cents:
        raise ValidationFailed(f"at least {settings.card_min_top_up_cents} cents per card top-up")
    payment_id = uuid4()
    await db.execute(
        "SELECT open_card_payment($1, $2, $3, $4, 'stripe', $5, $6, $7)",
        payment_id,
        user_id,
        amount_cents,
        settings.currency,
        settings.card_daily_top_up_cents or None,
        purpose,
        purpose_data,
    )
    try:
        intent = await cards.create_intent(payment_id, user_id, amount_cents, settings.currency)
    except stripe.StripeError as exc:
        log.warning("Stripe refused a payment intent for payment %s: %s", payment_id, exc)
        await db.execute("SELECT attach_card_intent($1, NULL)", payment_id)
        raise PaymentProviderError("the card payment could not be started, try again") from exc
    await db.execute("SELECT attach_card_intent($1, $2)", payment_id, intent["id"])
    return {
        "status": "requires_payment",
        "payment_id": payment_id,
        "client_secret": intent["client_secret"],
        "publishable_key": cards.publishable_key,
        "amount_cents": amount_cents,
        "currency": settings.currency,
    }


async def sync_intent(db: DB, cards: StripeCards, intent_id: str) -> dict | None:
    """Ask Stripe about an intent and apply what it says; None for an intent we never created."""
    if not await db.fetchval("SELECT 1 FROM card_payments WHERE intent_id = $1", intent_id):
        return None
    return await _apply(db, intent_id, await cards.intent_state(intent_id))


async def _apply(db: DB, intent_id: str, state: dict) -> dict | None:
    """What Stripe said about an intent (cards.intent_state), applied to its payment."""
    return await db.fetchval(
        "SELECT apply_card_payment($1, $2, $3, $4)", intent_id, state["status"], state["received"], state["refunded"]
    )


async def handle_event(db: DB, cards: StripeCards, event) -> str:
    """Apply a verified event; returns what was done ('applied', 'ignored', 'not_ours')."""
    kind = event["type"]
    obj = event["data"]["object"]
    if kind in INTENT_EVENTS:
        intent_id = obj["id"] if obj.get("object") == "payment_intent" else obj.get("payment_intent")
    elif kind in DISPUTE_EVENTS:
        intent_id = obj.get("payment_intent")
        if intent_id is None and obj.get("charge"):
            charge = await cards.client.v1.charges.retrieve_async(obj["charge"])
            intent_id = charge.to_dict().get("payment_intent")
    else:
        return "ignored"
    if not intent_id:
        return "ignored"
    result = await sync_intent(db, cards, intent_id)
    if result is None:
        log.info("Stripe event %s (%s) for intent %s, which is not ours: ignored", event["id"], kind, intent_id)
        return "not_ours"
    if kind in DISPUTE_EVENTS:
        await db.fetchval("SELECT apply_card_dispute($1, $2, $3)", intent_id, obj["id"], int(obj["amount"]))
    return "applied"


async def payment(db: DB, payment_id: UUID, user_id: UUID) -> dict | None:
    """A card payment of the user's, as the API shows it."""
    return await db.fetchval(
        "SELECT card_payment_json(p) FROM card_payments p WHERE p.id = $1 AND p.user_id = $2", payment_id, user_id
    )


# An intent in one of these is still waiting for the buyer: canceling it cannot undo a payment.
UNPAID_INTENT_STATES = {"requires_payment_method", "requires_confirmation", "requires_action"}


async def reconcile(db: DB, cards: StripeCards, settings: Settings, limit: int = 100) -> int:
    """Ask Stripe about card payments left pending (a lost or late webhook), the least recently checked
    first, and cancel those left unpaid past card_payment_abandon_s; returns how many changed. A payment
    that fails to check (Stripe or the database) is logged and the others are still checked."""
    rows = await db.fetch(
        "SELECT * FROM card_payments_to_reconcile(make_interval(secs => $1), make_interval(secs => $2), $3)",
        float(settings.card_reconcile_after_s),
        float(settings.card_reconcile_max_age_s),
        limit,
    )
    changed = 0
    for row in rows:
        try:
            result = await _reconcile_one(db, cards, settings, row)
        except Exception:
            log.exception("reconciling card payment %s failed; it is tried again in a later run", row["id"])
            continue
        if result is not None and result["status"] != "pending":
            changed += 1
    return changed


async def _reconcile_one(db: DB, cards: StripeCards, settings: Settings, row) -> dict | None:
    state = await cards.intent_state(row["intent_id"])
    if row["age_s"] > settings.card_payment_abandon_s and state["status"] in UNPAID_INTENT_STATES:
        # Canceled at Stripe first: once it is, the buyer can no longer pay it, so the row may say so.
        # Stripe refuses if the buyer paid in between; the next run sees that payment.
        intent = (await cards.client.v1.payment_intents.cancel_async(row["intent_id"])).to_dict()
        log.info("card payment %s left unpaid; its intent %s is canceled", row["id"], row["intent_id"])
        state = {**state, "status": intent["status"]}
    return await _apply(db, row["intent_id"], state)


async def users_owing(db: DB, limit: int) -> list[dict]:
    return await db.fetchval("SELECT users_owing($1)", limit)


@jobs.schedule("reconcile_card_payments", lambda settings: settings.card_reconcile_cron)
async def reconcile_card_payments(ctx: jobs.Context) -> None:
    """A lost webhook never loses money: card payments still pending a while after they were opened are
    looked up at Stripe and applied as their webhook would have been."""
    if ctx.settings.payment_provider != "stripe":
        return
    cards = StripeCards(ctx.settings)
    try:
        if changed := await reconcile(ctx.pool, cards, ctx.settings):
            log.info("reconciliation settled %d card payments a webhook had not", changed)
    finally:
        await cards.close()
