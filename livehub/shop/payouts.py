"""Earnings and payouts of sellers and stream hosts, and the payout providers that send them.

A payout pays the destination it copied when it was asked for (functions/orders.sql, request_payout).
Approving one hands it to the node's payout provider (LIVEHUB_PAYOUTS), then the books record it leaving;
a paid payout that comes back (fail) returns its amount to the available earnings, once.
"""

from typing import Protocol
from uuid import UUID

from livehub.errors import ValidationFailed
from livehub.sealing import SecretBox
from livehub.shop import payout_destinations
from livehub.shop.payments import InstantDevProvider
from storage.db import DB, transaction

PAYOUT_COLUMNS = (
    "id, user_id, amount_cents, status, provider_reference, reason, requested_at, decided_at, destination, "
    "provider, failed_at, send_started_at"
)


class PayoutProvider(Protocol):
    name: str
    # True for a provider that moves the money itself (Stripe Connect): its send is marked on the payout,
    # committed before the call, so a lost answer cannot be followed by a reject and a second send.
    sends_itself: bool

    async def send_payout(self, payout: dict, destination: dict, currency: str, reference: str | None) -> str:
        """Send the payout to `destination` (opened: number, routing number, connected account); returns the
        reference its books entry carries. `reference` is what the approving admin typed, if anything."""


class ManualPayouts:
    """The admin pays by bank transfer from the platform's bank and types the transfer's reference when
    approving; nothing is sent from here. The reference is required, so every paid payout can be traced
    to a bank statement line."""

    name = "manual"
    sends_itself = False

    async def send_payout(self, payout: dict, destination: dict, currency: str, reference: str | None) -> str:
        if not reference:
            raise ValidationFailed(
                "type the bank transfer's reference: with manual payouts you pay it yourself, then approve",
                {"field": "reference"},
            )
        return reference


class InstantDevPayouts:
    """Development only: the payment provider's pretend payout (livehub/shop/payments.py)."""

    name = "instant-dev"
    sends_itself = False

    async def send_payout(self, payout: dict, destination: dict, currency: str, reference: str | None) -> str:
        return reference or await InstantDevProvider().send_payout(
            payout["id"], payout["user_id"], payout["amount_cents"], currency
        )


def payout_provider_named(name: str, settings) -> PayoutProvider:
    if name == "stripe-connect":
        from livehub.shop.stripe_connect import StripeConnectPayouts

        return StripeConnectPayouts(settings)
    return {"manual": ManualPayouts, "instant-dev": InstantDevPayouts}[name]()


async def summary(db: DB, user_id: UUID) -> dict:
    balances = {
        r["kind"]: r["balance_cents"]
        for r in await db.fetch("SELECT kind, balance_cents FROM accounts WHERE user_id = $1", user_id)
    }
    recent = await db.fetch(
        """SELECT e.order_id, o.number AS order_number, e.role, e.amount_cents, e.reversed_cents, e.status,
                  e.available_after, e.released_at
             FROM earnings e JOIN orders o ON o.id = e.order_id
            WHERE e.user_id = $1 ORDER BY o.created_at DESC LIMIT 50""",
        user_id,
    )
    return {
        "pending_cents": balances.get("earnings_pending", 0),
        "available_cents": balances.get("earnings_available", 0),
        "payouts_requested_cents": balances.get("payouts", 0),
        "recent": [dict(r) for r in recent],
    }


async def request(db: DB, user_id: UUID, amount_cents: int, min_cents: int) -> dict:
    row = await db.fetchrow(
        f"SELECT {PAYOUT_COLUMNS} FROM request_payout($1, $2, $3)", user_id, amount_cents, min_cents
    )
    return dict(row)


async def with_destination(db: DB, box: SecretBox, payout_id: UUID) -> tuple[dict, dict | None] | None:
    """A payout, and the destination it pays opened in full (number, routing number): the admin's decision
    view. None for an unknown payout; the destination None for one asked for before destinations existed."""
    row = await db.fetchrow(f"SELECT {PAYOUT_COLUMNS}, destination_sealed FROM payouts WHERE id = $1", payout_id)
    if row is None:
        return None
    payout = dict(row)
    sealed = payout.pop("destination_sealed")
    full = payout_destinations.opened(box, payout["destination"], sealed) if sealed is not None else None
    return payout, full


async def fail(db: DB, payout_id: UUID, actor_id: UUID | None, reason: str) -> dict:
    """A paid payout came back: its amount is available earnings again (once, however often this is said)."""
    row = await db.fetchrow(f"SELECT {PAYOUT_COLUMNS} FROM fail_payout($1, $2, $3)", payout_id, actor_id, reason)
    return dict(row)


async def list_payouts(db: DB, *, user_id: UUID | None, status: str | None, limit: int, before: UUID | None) -> dict:
    rows = await db.fetch(
        f"""SELECT {PAYOUT_COLUMNS} FROM payouts
             WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::text IS NULL OR status = $2)
               AND ($3::uuid IS NULL OR (requested_at, id) < (SELECT requested_at, id FROM payouts WHERE id = $3))
             ORDER BY requested_at DESC, id DESC LIMIT $4""",
        user_id,
        status,
        before,
        limit + 1,
    )
    items = [dict(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(items[-1]["id"]) if len(rows) > limit else None}


async def decide(
    db: DB,
    provider: PayoutProvider,
    box: SecretBox,
    payout_id: UUID,
    admin_id: UUID,
    *,
    approve: bool,
    reason: str | None,
    reference: str | None,
    currency: str,
    pool: DB,
) -> dict:
    """Approve (the provider sends the money to the payout's own copy of its destination, then the books
    record it) or reject a payout request. The payout row stays locked throughout, so two admins cannot
    send one payout twice.

    A provider that sends the money itself may send it and lose the answer (a timeout): this transaction
    then rolls back and the payout stays `requested`. So before calling it, `send_started_at` is committed
    on the payout on its own (`pool`, outside the request's transaction, and before the row lock so it
    does not wait on it): from then on decide_payout refuses to reject the payout, and approving again
    re-sends with the same idempotency key (the payout's id), which learns the first send's outcome
    instead of making a second transfer."""
    if approve and provider.sends_itself:
        await pool.execute(
            """UPDATE payouts SET send_started_at = coalesce(send_started_at, now())
                WHERE id = $1 AND status = 'requested'""",
            payout_id,
        )
    async with transaction(db) as conn:
        payout = await conn.fetchrow(
            "SELECT * FROM payouts WHERE id = $1 AND status = 'requested' FOR UPDATE", payout_id
        )
        if payout is not None and approve:
            destination = (
                payout_destinations.opened(box, payout["destination"], payout["destination_sealed"])
                if payout["destination_sealed"] is not None
                else {}
            )
            reference = await provider.send_payout(dict(payout), destination, currency, reference)
        # The storage function gives not_found / conflict for a missing or already decided payout.
        row = await conn.fetchrow(
            f"SELECT {PAYOUT_COLUMNS} FROM decide_payout($1, $2, $3, $4, $5, $6)",
            payout_id,
            admin_id,
            approve,
            reference if approve else None,
            reason,
            provider.name if approve else None,
        )
        return dict(row)
