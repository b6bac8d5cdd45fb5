"""Seller profiles and follows."""

from uuid import UUID

import asyncpg

from livehub.auth import Principal
from livehub.errors import Conflict, EmailUnverified, NotFound

SELLER_JSON = """
    json_build_object(
        'id', s.id, 'user_id', s.user_id, 'shop_name', s.shop_name, 'description', s.description,
        'status', s.status, 'created_at', s.created_at, 'approved_at', s.approved_at,
        'followers', (SELECT count(*) FROM follows f WHERE f.seller_id = s.id),
        'products', (SELECT count(*) FROM products p WHERE p.seller_id = s.id AND p.status = 'active'))
"""


async def apply(pool: asyncpg.Pool, user_id: UUID, shop_name: str, description: str) -> dict:
    """A pending seller profile; EmailUnverified until the account has verified its email (a seller is
    reached by email: orders, payouts, tickets)."""
    if not await pool.fetchval("SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1", user_id):
        raise EmailUnverified(
            "verify your email address before applying to sell: open the link we emailed you, or ask for a new one",
            {"resend": "/api/auth/verify-email/resend"},
        )
    try:
        seller_id = await pool.fetchval(
            "INSERT INTO sellers (user_id, shop_name, description) VALUES ($1, $2, $3) RETURNING id",
            user_id,
            shop_name,
            description,
        )
    except asyncpg.UniqueViolationError:
        raise Conflict("this account already has a seller profile") from None
    return await get_seller(pool, seller_id)


async def get_seller(pool: asyncpg.Pool, seller_id: UUID) -> dict:
    seller = await pool.fetchval(f"SELECT {SELLER_JSON} FROM sellers s WHERE s.id = $1", seller_id)
    if seller is None:
        raise NotFound("seller not found")
    return seller


async def public_seller(pool: asyncpg.Pool, seller_id: UUID, viewer: Principal | None) -> dict:
    """A shop as `viewer` may see it: shops not (or no longer) approved only to their owner and admins."""
    seller = await get_seller(pool, seller_id)
    visible = seller["status"] == "approved" or (
        viewer is not None and (viewer.is_admin or viewer.seller_id == seller_id)
    )
    if not visible:
        raise NotFound("seller not found")
    return seller


async def set_status(pool: asyncpg.Pool, seller_id: UUID, status: str, admin_id: UUID) -> dict:
    await pool.execute("SELECT set_seller_status($1, $2, $3)", seller_id, status, admin_id)
    return await get_seller(pool, seller_id)


async def list_sellers(pool: asyncpg.Pool, status: str | None, *, limit: int, after: UUID | None) -> dict:
    rows = await pool.fetch(
        f"""SELECT {SELLER_JSON} AS seller, s.id FROM sellers s
             WHERE ($1::text IS NULL OR s.status = $1) AND ($2::uuid IS NULL OR s.id > $2)
             ORDER BY s.id LIMIT $3""",
        status,
        after,
        limit + 1,
    )
    items = [r["seller"] for r in rows[:limit]]
    return {"items": items, "next_cursor": str(rows[limit - 1]["id"]) if len(rows) > limit else None}


async def follow(pool: asyncpg.Pool, user_id: UUID, seller_id: UUID, following: bool) -> dict:
    """Follow or unfollow a shop; repeating either is harmless."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.fetchval("SELECT status FROM sellers WHERE id = $1", seller_id)
        if status is None or (following and status != "approved"):
            raise NotFound("seller not found")
        if following:
            await conn.execute(
                "INSERT INTO follows (user_id, seller_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", user_id, seller_id
            )
        else:
            await conn.execute("DELETE FROM follows WHERE user_id = $1 AND seller_id = $2", user_id, seller_id)
        followers = await conn.fetchval("SELECT count(*) FROM follows WHERE seller_id = $1", seller_id)
    return {"seller_id": seller_id, "following": following, "followers": followers}
