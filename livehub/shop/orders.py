"""Orders: placing them (directly or from the cart), reading them, and moving them through their states.

Every rule is in storage/functions (money.sql, orders.sql); this module picks the function, passes the
caller, and shapes the answer. Digital codes are shown to the order's buyer only.
"""

from dataclasses import dataclass
from uuid import UUID

from livehub.auth import Principal
from livehub.errors import NotFound
from storage.db import DB, transaction


@dataclass(frozen=True)
class Pricing:
    """What the storage functions need from settings."""

    fee_bps: int
    hold_s: int


async def order_json(db: DB, order_id: UUID, viewer: Principal | None) -> dict:
    """The order's API shape; its digital codes only when `viewer` is its buyer."""
    order = await db.fetchval(
        "SELECT order_json(id, buyer_id = $2) FROM orders WHERE id = $1", order_id, viewer and viewer.user_id
    )
    if order is None:
        raise NotFound("order not found")
    return order


async def place(
    db: DB,
    pricing: Pricing,
    buyer: Principal,
    items: list[dict],
    stream_id: UUID | None,
    address: dict | None,
    address_id: UUID | None = None,
) -> list[dict]:
    """Places the order (one per seller, each with its shipping) and returns them. Goods that ship go to
    `address` (given inline), else to the buyer's saved `address_id`, else to the default address."""
    async with transaction(db) as conn:
        order_ids = await conn.fetchval(
            "SELECT place_order($1, $2, $3, $4, $5, $6, $7)",
            buyer.user_id,
            items,
            stream_id,
            address,
            pricing.fee_bps,
            pricing.hold_s,
            address_id,
        )
        return [await order_json(conn, order_id, buyer) for order_id in order_ids]


async def list_orders(
    db: DB,
    *,
    buyer_id: UUID | None = None,
    seller_id: UUID | None = None,
    status: str | None,
    limit: int,
    cursor: UUID | None,
    viewer: Principal,
) -> dict:
    """A page of orders of one buyer or one seller, newest first; `cursor` is the previous page's last
    order (only one of the same list counts: another's order is no position in it)."""
    rows = await db.fetch(
        """SELECT id, created_at, order_json(id, buyer_id = $6) AS order FROM orders
            WHERE ($1::uuid IS NULL OR buyer_id = $1) AND ($2::uuid IS NULL OR seller_id = $2)
              AND ($3::text IS NULL OR status = $3)
              AND ($4::uuid IS NULL OR (created_at, id) < (
                   SELECT c.created_at, c.id FROM orders c
                    WHERE c.id = $4 AND ($1::uuid IS NULL OR c.buyer_id = $1)
                      AND ($2::uuid IS NULL OR c.seller_id = $2)))
            ORDER BY created_at DESC, id DESC LIMIT $5""",
        buyer_id,
        seller_id,
        status,
        cursor,
        limit + 1,
        viewer.user_id,
    )
    items = [r["order"] for r in rows[:limit]]
    return {"items": items, "next_cursor": str(rows[limit - 1]["id"]) if len(rows) > limit else None}


async def get_order(db: DB, order_id: UUID, viewer: Principal) -> dict:
    """An order its buyer, its seller or an admin may read; anyone else is told it does not exist."""
    order = await db.fetchval(
        """SELECT order_json(o.id, o.buyer_id = $2) FROM orders o JOIN sellers s ON s.id = o.seller_id
            WHERE o.id = $1 AND ($3 OR $2 IN (o.buyer_id, s.user_id))""",
        order_id,
        viewer.user_id,
        viewer.is_admin,
    )
    if order is None:
        raise NotFound("order not found")
    return order


async def transition(db: DB, action: str, order_id: UUID, actor: Principal, **kw) -> dict:
    """ship (with `tracking`), deliver, cancel or refund: the storage function checks the state and who may."""
    async with transaction(db) as conn:
        if action == "refund":
            await conn.execute(
                "SELECT refund_order($1, $2, $3, $4, $5)",
                order_id,
                actor.user_id,
                actor.is_admin,
                kw.get("amount_cents"),
                kw["reason"],
            )
        elif action == "cancel":
            await conn.execute(
                "SELECT cancel_order($1, $2, $3, $4)", order_id, actor.user_id, actor.is_admin, kw.get("reason")
            )
        elif action == "ship":
            await conn.execute(
                "SELECT ship_order($1, $2, $3, $4)", order_id, actor.user_id, actor.is_admin, kw["tracking"]
            )
        elif action == "deliver":
            await conn.execute("SELECT deliver_order($1, $2, $3)", order_id, actor.user_id, actor.is_admin)
        else:
            raise ValueError(f"no such transition: {action}")
        return await order_json(conn, order_id, actor)
