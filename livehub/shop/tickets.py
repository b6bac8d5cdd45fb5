"""Support tickets: a signed-in user opens one (about one of their orders, or not), the order's seller or an
admin answers, and each reply tells every other party of it. The rules, the status a reply moves the ticket to and
the notifications are storage functions (storage/functions/tickets.sql), one transaction per write; this
module picks the function, passes the caller, reads the lists, and shapes the answer."""

from typing import Literal
from uuid import UUID

from livehub.auth import Principal
from livehub.errors import NotFound
from storage.db import DB, transaction

Scope = Literal["mine", "shop"]
Sort = Literal["recent", "oldest"]


async def ticket_json(db: DB, ticket_id: UUID, *, messages: bool = True) -> dict:
    ticket = await db.fetchval("SELECT ticket_json($1, $2)", ticket_id, messages)
    if ticket is None:
        raise NotFound("ticket not found")
    return ticket


async def open_ticket(db: DB, opener: Principal, subject: str, body: str, order_id: UUID | None) -> dict:
    """Opens a ticket with its first message; the order's seller (or, without one, the admins) is notified.
    Returns the ticket with its messages."""
    async with transaction(db) as conn:
        ticket_id = await conn.fetchval(
            "SELECT open_ticket($1, $2, $3, $4, $5)", opener.user_id, opener.is_admin, subject, body, order_id
        )
        return await ticket_json(conn, ticket_id)


async def get_ticket(db: DB, ticket_id: UUID, viewer: Principal) -> dict:
    """A ticket with its messages, for its opener, the seller of the order it is about, or an admin; anyone
    else is told it does not exist."""
    ticket = await db.fetchval(
        """SELECT ticket_json(t.id, true) FROM tickets t
            WHERE t.id = $1 AND ticket_role(t, $2, $3) IS NOT NULL""",
        ticket_id,
        viewer.user_id,
        viewer.is_admin,
    )
    if ticket is None:
        raise NotFound("ticket not found")
    return ticket


async def reply(db: DB, ticket_id: UUID, author: Principal, body: str) -> dict:
    """Adds `body` to the ticket as `author`; the opener, the order's seller and the admins who have written in
    it are notified, never the author. Returns the ticket."""
    async with transaction(db) as conn:
        await conn.execute("SELECT reply_ticket($1, $2, $3, $4)", ticket_id, author.user_id, author.is_admin, body)
        return await ticket_json(conn, ticket_id)


async def set_status(db: DB, ticket_id: UUID, actor: Principal, status: str) -> dict:
    """Moves the ticket to `status` (the opener may only close or reopen it). Returns the ticket."""
    async with transaction(db) as conn:
        await conn.execute("SELECT set_ticket_status($1, $2, $3, $4)", ticket_id, actor.user_id, actor.is_admin, status)
        return await ticket_json(conn, ticket_id)


async def list_tickets(
    db: DB,
    viewer: Principal,
    *,
    scope: Scope | None,
    status: str | None,
    older_than_s: int | None,
    sort: Sort,
    limit: int,
    cursor: UUID | None,
) -> dict:
    """A page of the tickets `viewer` may see (without messages): those they opened, those about their shop's
    orders, and for an admin every ticket; `scope` narrows it to the first (mine) or the second (shop).
    `older_than_s`: only tickets whose last message is at least that old. `sort`: recent (latest message
    first) or oldest (longest without a message first: the queue). `cursor` is the previous page's last
    ticket, a position only if it is in this viewer's list."""
    # The order's direction is one of two fixed strings, never the caller's text.
    direction, after = ("DESC", "<") if sort == "recent" else ("ASC", ">")
    visible = """(CASE $2::text
                    WHEN 'mine' THEN {t}.opener_id = $1
                    WHEN 'shop' THEN {t}.seller_id = $3
                    ELSE $4 OR {t}.opener_id = $1 OR {t}.seller_id = $3 END)"""
    rows = await db.fetch(
        f"""SELECT t.id, ticket_json(t.id, false) AS ticket FROM tickets t
             WHERE {visible.format(t="t")}
               AND ($5::text IS NULL OR t.status = $5)
               AND ($6::integer IS NULL OR t.last_reply_at <= now() - make_interval(secs => $6))
               AND ($7::uuid IS NULL OR (t.last_reply_at, t.id) {after} (
                    SELECT c.last_reply_at, c.id FROM tickets c WHERE c.id = $7 AND {visible.format(t="c")}))
             ORDER BY t.last_reply_at {direction}, t.id {direction} LIMIT $8""",
        viewer.user_id,
        scope,
        viewer.seller_id,
        viewer.is_admin,
        status,
        older_than_s,
        cursor,
        limit + 1,
    )
    items = [r["ticket"] for r in rows[:limit]]
    return {"items": items, "next_cursor": str(rows[limit - 1]["id"]) if len(rows) > limit else None}
