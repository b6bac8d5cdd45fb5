"""Giveaways: the storage calls behind the room's giveaway format (livehub/live/formats/giveaway.py).

Every rule (who may start or enter, the draw, the prize order) lives in storage/functions/giveaways.sql,
one transaction per call. The seed is made here with the OS's CSPRNG and handed to the database, which
stores it and shows only its SHA-256 until the giveaway ends.

A giveaway: `{id, stream_id, variant_id, product: {id, title, sku, options, digital}, eligibility, entries,
seed_hash, starts_at, ends_at, ended, ended_reason, seed (hex, once ended), winner: {id, name} | null,
order_id, prize_status}`.
"""

import hashlib
import secrets
from uuid import UUID

from storage.db import DB

SEED_BYTES = 32


async def start_giveaway(
    db: DB, stream_id: UUID, actor_id: UUID, *, variant_id: UUID, duration_s: int, eligibility: str
) -> dict:
    """Starts the stream's giveaway (host or moderator, live stream, featured variant in stock, one at a time)."""
    seed = secrets.token_bytes(SEED_BYTES)
    return await db.fetchval(
        "SELECT start_giveaway($1, $2, $3, $4, $5, $6)", stream_id, actor_id, variant_id, duration_s, eligibility, seed
    )


async def enter_giveaway(db: DB, giveaway_id: UUID, user_id: UUID) -> dict:
    """Enters the user (once). `{giveaway, entered}`: entered is False when they had entered already."""
    return await db.fetchval("SELECT enter_giveaway($1, $2)", giveaway_id, user_id)


async def get_giveaway(db: DB, giveaway_id: UUID) -> dict | None:
    """The giveaway as the room shows it (the seed only once ended); None when there is none."""
    return await db.fetchval("SELECT giveaway_json(g) FROM giveaways g WHERE g.id = $1", giveaway_id)


async def giveaway_with_entrants(db: DB, giveaway_id: UUID) -> dict | None:
    """`{giveaway, entrants}`: entrants (user ids sorted as the draw sorts them) only once it has ended."""
    row = await db.fetchrow(
        """SELECT giveaway_json(g) AS giveaway,
                  CASE WHEN g.ended_at IS NOT NULL THEN ARRAY(
                      SELECT e.user_id FROM giveaway_entries e WHERE e.giveaway_id = g.id
                       ORDER BY e.user_id::text COLLATE "C") END AS entrants
             FROM giveaways g WHERE g.id = $1""",
        giveaway_id,
    )
    return dict(row) if row is not None else None


async def end_giveaway(db: DB, giveaway_id: UUID, reason: str, hold_s: int) -> dict | None:
    """Draws and ends it if it still runs and returns it; None if it had already ended, so of several
    nodes ending it at once exactly one gets it back."""
    return await db.fetchval("SELECT end_giveaway($1, $2, $3)", giveaway_id, reason, hold_s)


async def end_giveaway_by_host(db: DB, stream_id: UUID, actor_id: UUID, hold_s: int) -> dict | None:
    """The host or a moderator draws the running giveaway now; None when none runs."""
    return await db.fetchval("SELECT end_giveaway_by_host($1, $2, $3)", stream_id, actor_id, hold_s)


def draw(seed: bytes, user_ids: list[str]) -> str | None:
    """The draw as docs/PROTOCOL.md gives it (the database's giveaway_draw_index does the same)."""
    ids = sorted(user_ids)
    if not ids:
        return None
    digest = hashlib.sha256(seed + "\n".join(ids).encode()).digest()
    return ids[int.from_bytes(digest, "big") % len(ids)]
