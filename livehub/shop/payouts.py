"""Earnings and payouts of sellers and stream hosts."""

from uuid import UUID

from livehub.shop.payments import PaymentProvider
from storage.db import DB, transaction

PAYOUT_COLUMNS = "id, user_id, amount_cents, status, provider_reference, reason, requested_at, decided_at"


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


async def request(db: DB, user_id: UUID, amount_cents: int) -> dict:
    row = await db.fetchrow(f"SELECT {PAYOUT_COLUMNS} FROM request_payout($1, $2)", user_id, amount_cents)
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
    provider: PaymentProvider,
    payout_id: UUID,
    admin_id: UUID,
    *,
    approve: bool,
    reason: str | None,
    currency: str,
) -> dict:
    """Approve (the provider sends the money, then the books record it) or reject a payout request.
    The payout row stays locked throughout, so two admins cannot send one payout twice."""
    async with transaction(db) as conn:
        payout = await conn.fetchrow(
            "SELECT * FROM payouts WHERE id = $1 AND status = 'requested' FOR UPDATE", payout_id
        )
        reference = None
        if payout is not None and approve:
            reference = await provider.send_payout(payout_id, payout["user_id"], payout["amount_cents"], currency)
        # The storage function gives not_found / conflict for a missing or already decided payout.
        row = await conn.fetchrow(
            f"SELECT {PAYOUT_COLUMNS} FROM decide_payout($1, $2, $3, $4, $5)",
            payout_id,
            admin_id,
            approve,
            reference,
            reason,
        )
        return dict(row)
