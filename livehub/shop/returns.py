"""Returns of delivered orders: the buyer asks within the return window, the seller (or an admin) approves,
which refunds through the order's refund, or rejects with a reason. The rules are storage functions
(storage/functions/returns.sql); the order's JSON carries its latest return."""

from uuid import UUID

from livehub.auth import Principal
from livehub.shop.orders import order_json
from storage.db import DB, transaction


async def request(
    db: DB, order_id: UUID, buyer: Principal, reason: str, items: list[dict] | None, window_s: int
) -> dict:
    """The buyer asks to return `items` ([{variant_id, quantity}]; None: every physical item not returned
    yet). Returns the order."""
    async with transaction(db) as conn:
        await conn.execute(
            "SELECT request_return($1, $2, $3, $4, $5)", order_id, buyer.user_id, reason, items, window_s
        )
        return await order_json(conn, order_id, buyer)


async def approve(db: DB, order_id: UUID, actor: Principal) -> dict:
    """Approve the order's open return and refund it. Returns the order."""
    async with transaction(db) as conn:
        await conn.execute("SELECT approve_return($1, $2, $3)", order_id, actor.user_id, actor.is_admin)
        return await order_json(conn, order_id, actor)


async def reject(db: DB, order_id: UUID, actor: Principal, reason: str) -> dict:
    """Reject the order's open return, saying why. Returns the order."""
    async with transaction(db) as conn:
        await conn.execute("SELECT reject_return($1, $2, $3, $4)", order_id, actor.user_id, actor.is_admin, reason)
        return await order_json(conn, order_id, actor)
