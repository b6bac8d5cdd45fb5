"""The cart: items a buyer means to buy, shown with today's prices and stock and a quote of each seller's
shipping to an address, checked out as one order per seller."""

from uuid import UUID

from livehub.auth import Principal
from livehub.errors import NotFound, ValidationFailed
from livehub.shop import orders
from storage.db import DB, transaction

MAX_LINES = 100


async def view(db: DB, user_id: UUID, address_id: UUID | None = None) -> dict:
    """The cart's lines, and what checking it out would charge: per seller (one order each) the items'
    subtotal and the shipping to `address_id`, or to the default address (storage's shipping_for, the
    function checkout charges with)."""
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
    return {
        "items": lines,
        "subtotal_cents": sum(i["unit_price_cents"] * i["quantity"] for i in lines),
        **await _quote(db, user_id, address_id),
    }


async def _quote(db: DB, user_id: UUID, address_id: UUID | None) -> dict:
    address = await db.fetchrow(
        "SELECT address_json(a) AS json, a.country FROM buyer_address($1, $2) a WHERE a.id IS NOT NULL",
        user_id,
        address_id,
    )
    if address_id is not None and address is None:
        raise NotFound("address not found")
    country = address["country"] if address else None
    rows = await db.fetch(
        """SELECT seller_id, shop_name, subtotal_cents, ships,
                  CASE WHEN NOT ships THEN 0 WHEN $2::text IS NOT NULL
                       THEN shipping_for(seller_id, subtotal_cents, $2) END AS shipping_cents
             FROM (SELECT p.seller_id, s.shop_name, sum(v.price_cents * c.quantity)::bigint AS subtotal_cents,
                          bool_or(NOT v.digital) AS ships
                     FROM cart_items c JOIN variants v ON v.id = c.variant_id
                     JOIN products p ON p.id = v.product_id JOIN sellers s ON s.id = p.seller_id
                    WHERE c.user_id = $1 GROUP BY p.seller_id, s.shop_name) per_seller
            ORDER BY seller_id""",
        user_id,
        country,
    )
    sellers = [
        {
            "seller_id": r["seller_id"],
            "shop_name": r["shop_name"],
            "subtotal_cents": r["subtotal_cents"],
            "shipping_cents": r["shipping_cents"],
            "total_cents": None if r["shipping_cents"] is None else r["subtotal_cents"] + r["shipping_cents"],
            # Known only with an address: False when this seller does not ship there.
            "ships_to_address": None if country is None or not r["ships"] else r["shipping_cents"] is not None,
        }
        for r in rows
    ]
    known = all(s["total_cents"] is not None for s in sellers)
    return {
        "address": address["json"] if address else None,
        "address_required": country is None and any(r["ships"] for r in rows),
        "sellers": sellers,
        "shipping_cents": sum(s["shipping_cents"] for s in sellers) if known else None,
        "total_cents": sum(s["total_cents"] for s in sellers) if known else None,
    }


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


async def lines(db: DB, user_id: UUID) -> list[dict]:
    """What the cart holds, as place_order takes it: [{variant_id, quantity}]."""
    rows = await db.fetch("SELECT variant_id, quantity FROM cart_items WHERE user_id = $1", user_id)
    return [dict(r) for r in rows]


async def checkout(
    db: DB, pricing: orders.Pricing, buyer: Principal, address: dict | None, address_id: UUID | None = None
) -> list[dict]:
    """Orders everything in the cart and empties it, in one transaction: a failed checkout keeps the cart.
    Goods that ship go to `address` (given inline), else to the saved `address_id`, else to the default
    address."""
    async with transaction(db) as conn:
        rows = await conn.fetch(
            "SELECT variant_id, quantity FROM cart_items WHERE user_id = $1 FOR UPDATE", buyer.user_id
        )
        if not rows:
            raise ValidationFailed("the cart is empty")
        placed = await orders.place(conn, pricing, buyer, [dict(r) for r in rows], None, address, address_id)
        await conn.execute("DELETE FROM cart_items WHERE user_id = $1", buyer.user_id)
        return placed
