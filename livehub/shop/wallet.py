"""Wallets: balances, ledger history, top-ups and admin adjustments."""

import secrets
from uuid import UUID

from livehub.errors import NotFound
from livehub.shop.payments import PaymentProvider
from storage.db import DB, long_statements


async def wallet(db: DB, user_id: UUID, currency: str) -> dict:
    balance = await db.fetchval("SELECT balance_cents FROM accounts WHERE user_id = $1 AND kind = 'wallet'", user_id)
    return {"balance_cents": balance or 0, "currency": currency}


async def held(db: DB, user_id: UUID) -> int:
    """What the user's leading auction bids hold out of the wallet (their hold account)."""
    held = await db.fetchval("SELECT balance_cents FROM accounts WHERE user_id = $1 AND kind = 'hold'", user_id)
    return held or 0


async def transactions(db: DB, user_id: UUID, *, limit: int, before: int | None) -> dict:
    """The wallet's ledger entries, newest first; the cursor is the last entry's id."""
    rows = await db.fetch(
        """SELECT e.id, e.type, e.amount_cents, e.balance_before_cents, e.balance_after_cents, e.order_id,
                  e.payout_id, e.memo, e.created_at
             FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
            WHERE a.user_id = $1 AND a.kind = 'wallet' AND ($2::bigint IS NULL OR e.id < $2)
            ORDER BY e.id DESC LIMIT $3""",
        user_id,
        before,
        limit + 1,
    )
    items = [dict(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(items[-1]["id"]) if len(rows) > limit else None}


async def top_up(db: DB, provider: PaymentProvider, user_id: UUID, amount_cents: int, currency: str) -> dict:
    """Charge the user through the provider, then credit the wallet."""
    reference = await provider.charge(user_id, amount_cents, currency, secrets.token_hex(8))
    balance = await db.fetchval("SELECT top_up($1, $2, $3)", user_id, amount_cents, reference)
    return {"balance_cents": balance, "currency": currency, "reference": reference}


async def adjust(db: DB, user_id: UUID, amount_cents: int, reason: str, admin_id: UUID, currency: str) -> dict:
    if not await db.fetchval("SELECT 1 FROM users WHERE id = $1", user_id):
        raise NotFound("user not found")
    balance = await db.fetchval("SELECT adjust_wallet($1, $2, $3, $4)", user_id, amount_cents, reason, admin_id)
    return {"balance_cents": balance, "currency": currency}


async def books(db: DB) -> dict:
    # Reads the whole ledger: the long budget, not a request's.
    async with long_statements(db) as conn:
        return await conn.fetchval("SELECT check_books()")
