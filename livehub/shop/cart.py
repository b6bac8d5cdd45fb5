"""The cart: items a buyer means to buy, shown with today's prices and stock, checked out as one order
per seller."""

from uuid import UUID

from livehub.auth import Principal
from livehub.errors import NotFound, ValidationFailed
from livehub.shop import orders
from storage.db import DB, transaction

MAX_LINES = 100


async def view(db: DB, user_id: UUID) -> dict:
    items = await db.fetch(
        """SELECT c.variant_id, p.id AS product_id, p.title, v.sku, v.options, v.price_cents AS unit_price_cents,
                  c.quantity, v.stock AS available,
                  p.status = 'active' AND s.status = 'approved' AND v.stock >= c.quantity AS purchasable
             FROM cart_items c JOIN variants v ON v.id = c.variant_id
             JOIN products p ON p.id = v.product_id JOIN sellers s ON s.id = p.seller_id
            WHERE c.user_id = $1 ORDER BY c.added_at, c.variant_id""",
        user_id,
    )
    lines = [dict(r) for r in items]
    return {"items": lines, "subtotal_cents": sum(i["unit_price_cents"] * i["quantity"] for i in lines)}


async def add(db: DB, user_id: UUID, variant_id: UUID, quantity: int) -> dict:
    """Adds to the quantity already in the cart."""
    async with transaction(db) as conn:
        if not await conn.fetchval("SELECT 1 FROM variants WHERE id = $1", variant_id):
            raise NotFound("variant not found")
        if await conn.fetchval("SELECT count(*) FROM cart_items WHERE user_id = $1", user_id) >= MAX_LINES:
            raise ValidationFailed(f"a cart holds at most {MAX_LINES} different items")
        await conn.execute(
            """INSERT INTO cart_items (user_id, variant_id, quantity) VALUES ($1, $2, $3)
               ON CONFLICT (user_id, variant_id) DO UPDATE SET quantity = cart_items.quantity + EXCLUDED.quantity""",
            user_id,
            variant_id,
            quantity,
        )
        return await view(conn, user_id)


async def set_quantity(db: DB, user_id: UUID, variant_id: UUID, quantity: int) -> dict:
    done = await db.execute(
        "UPDATE cart_items SET quantity = $3 WHERE user_id = $1 AND variant_id = $2", user_id, variant_id, quantity
    )
    if done == "UPDATE 0":
        raise NotFound("that variant is not in the cart")
    return await view(db, user_id)


async def remove(db: DB, user_id: UUID, variant_id: UUID) -> dict:
    await db.execute("DELETE FROM cart_items WHERE user_id = $1 AND variant_id = $2", user_id, variant_id)
    return await view(db, user_id)


async def checkout(db: DB, pricing: orders.Pricing, buyer: Principal, address: dict | None) -> list[dict]:
    """Orders everything in the cart and empties it, in one transaction: a failed checkout keeps the cart."""
    async with transaction(db) as conn:
        rows = await conn.fetch(
            "SELECT variant_id, quantity FROM cart_items WHERE user_id = $1 FOR UPDATE", buyer.user_id
        )
        if not rows:
            raise ValidationFailed("the cart is empty")
        placed = await orders.place(conn, pricing, buyer, [dict(r) for r in rows], None, address)
        await conn.execute("DELETE FROM cart_items WHERE user_id = $1", buyer.user_id)
        return placed
