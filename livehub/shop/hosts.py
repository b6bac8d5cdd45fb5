"""Guest hosts: a seller's stream run by another user for a commission.

The rules (who may invite, accept or decline, when, the commission's bounds, the notification) live in
storage/functions/hosts.sql, one transaction per call; these wrappers pass arguments.

Shape of an invitation: `{stream: stream (livehub/shop/streams.py), host_status: invited | accepted |
declined, host_commission_bps, host: {id, name}}`.
"""

from uuid import UUID

from storage.db import DB


async def set_host(db: DB, stream_id: UUID, actor_id: UUID, host_id: UUID | None, commission_bps: int) -> dict:
    """The seller invites another host or changes the invitation (host_id, commission_bps), or takes the
    stream back (host_id None): only while the stream is scheduled."""
    return await db.fetchval("SELECT set_stream_host($1, $2, $3, $4)", stream_id, actor_id, host_id, commission_bps)


async def answer(db: DB, stream_id: UUID, actor_id: UUID, *, accept: bool, commission_bps: int | None = None) -> dict:
    """The invited host accepts (the commission they saw: refused if the shop changed it) or declines, while
    the stream is scheduled."""
    return await db.fetchval(
        "SELECT answer_host_invitation($1, $2, $3, $4)", stream_id, actor_id, accept, commission_bps
    )


async def hosting_of(db: DB, user_id: UUID) -> list[dict]:
    """The user's invitations and accepted guest-host streams not ended yet (live first, then soonest)."""
    return await db.fetchval("SELECT hosting_of($1)", user_id)
