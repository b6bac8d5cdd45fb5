"""Whether a user follows a shop (following itself is `sellers.follow`)."""

from uuid import UUID

import asyncpg


async def is_following(db: asyncpg.Pool | asyncpg.Connection, user_id: UUID, seller_id: UUID) -> bool:
    return await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM follows WHERE user_id = $1 AND seller_id = $2)", user_id, seller_id
    )
