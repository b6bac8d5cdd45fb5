"""Read-only figures for the admin pages: users' wallets and balances, and the platform's sales.

The sales figures are storage/functions/reports.sql's platform_stats(); see there for how they
reconcile with the ledger.
"""

from uuid import UUID

from storage.db import DB, long_statements


def _like(text: str) -> str:
    """`text` as an ILIKE pattern matching it anywhere, its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def find_wallets(db: DB, q: str | None, *, limit: int, cursor: UUID | None) -> dict:
    """Users whose email or name contains `q` (or whose id it is), by email, with every balance they
    hold: wallet, pending and available earnings, requested payouts."""
    exact: UUID | None = None
    if q:
        try:
            exact = UUID(q)
        except ValueError:
            pass
    rows = await db.fetch(
        """SELECT u.id AS user_id, u.email, u.display_name, s.id AS seller_id, s.status AS seller_status,
                  u.deactivated_at,
                  coalesce(sum(a.balance_cents) FILTER (WHERE a.kind = 'wallet'), 0) AS balance_cents,
                  coalesce(sum(a.balance_cents) FILTER (WHERE a.kind = 'earnings_pending'), 0)
                      AS earnings_pending_cents,
                  coalesce(sum(a.balance_cents) FILTER (WHERE a.kind = 'earnings_available'), 0)
                      AS earnings_available_cents,
                  coalesce(sum(a.balance_cents) FILTER (WHERE a.kind = 'payouts'), 0) AS payouts_requested_cents
             FROM users u
             LEFT JOIN accounts a ON a.user_id = u.id
             LEFT JOIN sellers s ON s.user_id = u.id
            WHERE ($1::text IS NULL OR u.email ILIKE $1 OR u.display_name ILIKE $1 OR u.id = $2)
              AND ($3::uuid IS NULL OR u.email > (SELECT c.email FROM users c WHERE c.id = $3))
            GROUP BY u.id, s.id
            ORDER BY u.email
            LIMIT $4""",
        _like(q) if q else None,
        exact,
        cursor,
        limit + 1,
    )
    items = [dict(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(items[-1]["user_id"]) if len(rows) > limit else None}


async def platform_stats(db: DB, days: int, top: int = 5) -> dict:
    # Every order of the period and the ledger behind them: the long budget, not a request's.
    async with long_statements(db) as conn:
        return await conn.fetchval("SELECT platform_stats($1, $2)", days, top)
