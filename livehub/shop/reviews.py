"""Product reviews: written by buyers whose order of the product was delivered, answered once by its
seller, hidden by admins. The rules are storage functions (storage/functions/reviews.sql), which also give
a product its `rating`."""

from uuid import UUID

from livehub.errors import NotFound
from storage.db import DB, transaction


async def review_json(db: DB, review_id: UUID) -> dict:
    review = await db.fetchval("SELECT review_json(r) FROM reviews r WHERE r.id = $1", review_id)
    if review is None:
        raise NotFound("review not found")
    return review


async def write(db: DB, product_id: UUID, author_id: UUID, order_id: UUID, rating: int, text: str) -> dict:
    async with transaction(db) as conn:
        review_id = await conn.fetchval(
            "SELECT write_review($1, $2, $3, $4, $5)", product_id, author_id, order_id, rating, text
        )
        return await review_json(conn, review_id)


async def list_reviews(db: DB, product_id: UUID, *, limit: int, cursor: UUID | None) -> dict:
    """A page of the product's listed reviews, newest first; `cursor` is the previous page's last review."""
    if not await db.fetchval("SELECT EXISTS (SELECT 1 FROM products WHERE id = $1)", product_id):
        raise NotFound("product not found")
    rows = await db.fetch(
        """SELECT r.id, review_json(r) AS review FROM reviews r
            WHERE r.product_id = $1 AND r.hidden_at IS NULL
              AND ($2::uuid IS NULL OR (r.created_at, r.id) < (
                   SELECT c.created_at, c.id FROM reviews c WHERE c.id = $2 AND c.product_id = $1))
            ORDER BY r.created_at DESC, r.id DESC LIMIT $3""",
        product_id,
        cursor,
        limit + 1,
    )
    items = [r["review"] for r in rows[:limit]]
    return {"items": items, "next_cursor": str(rows[limit - 1]["id"]) if len(rows) > limit else None}


async def reply(db: DB, product_id: UUID, review_id: UUID, seller_user_id: UUID, text: str) -> dict:
    async with transaction(db) as conn:
        await conn.execute("SELECT reply_to_review($1, $2, $3, $4)", product_id, review_id, seller_user_id, text)
        return await review_json(conn, review_id)


async def hide(db: DB, review_id: UUID, admin_id: UUID, reason: str) -> dict:
    async with transaction(db) as conn:
        await conn.execute("SELECT hide_review($1, $2, $3)", review_id, admin_id, reason)
        return await review_json(conn, review_id)
