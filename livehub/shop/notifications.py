"""A user's notifications: listed newest first, marked read. They are written by the storage functions
that cause them (a followed seller going live), in the same transaction."""

from uuid import UUID

from storage.db import DB


async def list_notifications(db: DB, user_id: UUID, *, limit: int, before: UUID | None) -> dict:
    """The user's notifications, newest first; `next_cursor` is the last one's id."""
    rows = await db.fetch(
        """SELECT id, kind, payload, created_at, read_at FROM notifications
            WHERE user_id = $1
              AND ($2::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM notifications
                                                            WHERE id = $2 AND user_id = $1))
            ORDER BY created_at DESC, id DESC LIMIT $3""",
        user_id,
        before,
        limit + 1,
    )
    items = [dict(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": str(items[-1]["id"]) if len(rows) > limit else None}


async def mark_read(db: DB, user_id: UUID, ids: list[UUID] | None) -> int:
    """Marks the user's unread notifications read (those named, or all with None); returns how many."""
    result = await db.execute(
        """UPDATE notifications SET read_at = now()
            WHERE user_id = $1 AND read_at IS NULL AND ($2::uuid[] IS NULL OR id = ANY ($2))""",
        user_id,
        None if ids is None else list(ids),
    )
    return int(result.split()[-1])


async def unread_count(db: DB, user_id: UUID) -> int:
    """How many of the user's notifications are unread (the header bell's number)."""
    return await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL", user_id)
