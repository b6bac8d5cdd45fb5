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


PROVIDERS: dict[str, type] = {"instant-dev": InstantDevProvider}


def provider_named(name: str) -> PaymentProvider:
    return PROVIDERS[name]()
