"""Payment providers: how money enters (top-ups) and leaves (payouts) LiveHub.

A provider only moves money outside; the ledger inside is the storage functions' business. A real
provider (card acquirer, bank transfer) implements the same two calls, idempotent on the key given.
"""

from typing import Protocol
from uuid import UUID


class PaymentProvider(Protocol):
    name: str

    async def charge(self, user_id: UUID, amount_cents: int, currency: str, key: str) -> str:
        """Take money from the user's payment method; returns the provider's reference."""

    async def send_payout(self, payout_id: UUID, user_id: UUID, amount_cents: int, currency: str) -> str:
        """Send money to the user's bank; returns the provider's reference."""


class InstantDevProvider:
    """Development only: every charge succeeds at once and every payout is 'sent', with no real money
    moving anywhere. Never configure it where real buyers pay."""

    name = "instant-dev"

    async def charge(self, user_id: UUID, amount_cents: int, currency: str, key: str) -> str:
        return f"dev-charge-{key}"

    async def send_payout(self, payout_id: UUID, user_id: UUID, amount_cents: int, currency: str) -> str:
        return f"dev-payout-{payout_id}"


class CardIntents:
    """A card provider (Stripe) charges nothing at once: a top-up opens a payment intent that the buyer
    confirms in the browser and the wallet is credited when the provider says it was captured
    (livehub/shop/card_payments.py). Payouts are the payout provider's business."""

    name = "stripe"

    async def charge(self, user_id: UUID, amount_cents: int, currency: str, key: str) -> str:
        raise RuntimeError("card top-ups go through payment intents (livehub/shop/card_payments.py)")

    async def send_payout(self, payout_id: UUID, user_id: UUID, amount_cents: int, currency: str) -> str:
        raise RuntimeError("payouts go through the payout provider (LIVEHUB_PAYOUTS)")


PROVIDERS: dict[str, type] = {"instant-dev": InstantDevProvider, "stripe": CardIntents}


def provider_named(name: str) -> PaymentProvider:
    return PROVIDERS[name]()
