"""Payouts with Stripe Connect (LIVEHUB_PAYOUTS=stripe-connect): approving a payout makes a Stripe Transfer
of its amount from the platform's balance to the earner's connected account (the `connect_account_id` of
the destination the payout copied), keyed by the payout's id so a retried approval makes one Transfer.

Only the Transfer call is here; Stripe then pays the connected account out to its bank on its own schedule.
A transfer reversed in full returns the money: Stripe's `transfer.reversed` event, signed with
LIVEHUB_STRIPE_CONNECT_WEBHOOK_SECRET, reaches `handle_event`, which fails the payout (fail_payout: once, however often
the event comes). The Transfer call itself is not tested against Stripe or a Stripe test server, since
localstripe has no Transfer or Account resources (docs/MONEY.md, "Payout providers").
"""

import logging

import aiohttp
import stripe

from livehub.errors import Unavailable, ValidationFailed
from storage.db import DB

log = logging.getLogger(__name__)


class StripeConnectPayouts:
    name = "stripe-connect"
    sends_itself = True

    def __init__(self, settings):
        self.api_key = settings.stripe_secret_key
        self.api_url = (settings.stripe_api_base or "https://api.stripe.com").rstrip("/")
        if not self.api_key:
            raise RuntimeError("LIVEHUB_PAYOUTS=stripe-connect needs STRIPE_SECRET_KEY")

    async def send_payout(self, payout: dict, destination: dict, currency: str, reference: str | None) -> str:
        account = destination.get("connect_account_id")
        if not account:
            raise ValidationFailed(
                "this payout's destination has no Stripe connected account: reject it so the earner adds one",
                {"field": "connect_account_id"},
            )
        form = {
            "amount": str(payout["amount_cents"]),
            "currency": currency.lower(),
            "destination": account,
            "transfer_group": f"payout-{payout['id']}",
            "metadata[payout_id]": str(payout["id"]),
        }
        headers = {"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": f"payout-{payout['id']}"}
        timeout = aiohttp.ClientTimeout(total=20)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(f"{self.api_url}/v1/transfers", data=form, headers=headers) as res,
            ):
                body = await res.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Unavailable(f"Stripe did not answer the transfer: {type(exc).__name__}") from None
        if res.status >= 400 or "id" not in body:
            message = (body.get("error") or {}).get("message", "refused") if isinstance(body, dict) else "refused"
            raise Unavailable(f"Stripe refused the transfer: {message}", {"stripe_status": res.status})
        return body["id"]


def verify(payload: bytes, signature: str | None, secret: str) -> dict:
    """The event, if Stripe signed it with `secret` (and not too long ago); ValueError otherwise."""
    try:
        return stripe.Webhook.construct_event(payload, signature or "", secret).to_dict()
    except stripe.SignatureVerificationError as exc:
        raise ValueError(str(exc)) from exc


async def handle_event(db: DB, event: dict) -> str:
    """A reversed transfer of one of our Connect payouts fails it (its amount is available earnings
    again); a partial reversal is logged for an admin, who decides. Returns what was done."""
    if event.get("type") != "transfer.reversed":
        return "ignored"
    transfer = (event.get("data") or {}).get("object") or {}
    payout_id = await db.fetchval(
        "SELECT id FROM payouts WHERE provider = 'stripe-connect' AND provider_reference = $1",
        str(transfer.get("id", "")),
    )
    if payout_id is None:
        return "not_ours"
    if transfer.get("amount_reversed", 0) < transfer.get("amount", 0):
        log.warning("Stripe transfer %s of payout %s was reversed in part only", transfer.get("id"), payout_id)
        return "ignored"
    await db.fetchrow("SELECT id FROM fail_payout($1, NULL, $2)", payout_id, "Stripe reversed the transfer")
    return "applied"
