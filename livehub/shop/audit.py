"""The audit log: who did what to whom, from which address and browser. Append-only (a trigger refuses
changes). Admin actions are recorded by the REST layer in the same transaction as the action itself
(routes declared with `audit=`), so an action is never without its row; sign-ins and sign-outs are recorded
by the sign-in code. Admins read it with filters (GET /api/admin/audit)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from storage.db import DB

# Body fields never copied into the log, whatever the action.
_SECRET = ("password", "code", "secret", "token", "recovery")


def redacted(details: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[redacted]" if any(s in k.lower() for s in _SECRET) else v) for k, v in details.items()}


async def record(
    db: DB,
    action: str,
    *,
    actor_id: UUID | None,
    target_type: str | None = None,
    target_id: str | None = None,
    address: str | None = None,
    user_agent: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await db.execute(
        """INSERT INTO audit_log (actor_id, action, target_type, target_id, address, user_agent, details)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        actor_id,
        action,
        target_type,
        target_id,
        address,
        (user_agent or "")[:500] or None,
        redacted(details or {}),
    )


async def entries(
    db: DB,
    *,
    actor_id: UUID | None,
    action: str | None,
    target_id: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    before: int | None,
) -> dict:
    """A page of the log, newest first, filtered; `next_cursor` is the page's last entry id. Actions match
    exactly or by prefix with a trailing dot (`seller.` matches `seller.approve`)."""
    rows = await db.fetch(
        """SELECT a.id, a.at, a.actor_id, u.email AS actor_email, a.action, a.target_type, a.target_id,
                  a.address, a.user_agent, a.details
             FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
            WHERE ($1::uuid IS NULL OR a.actor_id = $1)
              AND ($2::text IS NULL OR a.action = $2 OR (right($2, 1) = '.' AND starts_with(a.action, $2)))
              AND ($3::text IS NULL OR a.target_id = $3)
              AND ($4::timestamptz IS NULL OR a.at >= $4) AND ($5::timestamptz IS NULL OR a.at < $5)
              AND ($6::bigint IS NULL OR a.id < $6)
            ORDER BY a.id DESC LIMIT $7""",
        actor_id,
        action,
        target_id,
        since,
        until,
        before,
        limit + 1,
    )
    items = [dict(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(items[-1]["id"]) if len(rows) > limit else None}
