"""Accounts as admins manage them: deactivation ends every way in (storage/functions/admin.sql)."""

from uuid import UUID

from storage.db import DB


async def deactivate(db: DB, user_id: UUID, admin_id: UUID) -> dict:
    """Sessions end, sign-in is refused, the shop is suspended and its live streams end; returns
    `{user_id, seller_id, ended_streams: [stream]}`."""
    return await db.fetchval("SELECT deactivate_user($1, $2)", user_id, admin_id)


async def reactivate(db: DB, user_id: UUID) -> None:
    await db.execute("SELECT reactivate_user($1)", user_id)
