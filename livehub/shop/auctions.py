"""Auctions: the storage calls behind the room's auction format (livehub/live/formats/auction.py).

Every rule (who may start or bid, the proxy bidding, the anti-snipe extension, the holds, the closing sale)
lives in storage/functions/auctions.sql, one transaction per call.

An auction: `{id, stream_id, variant_id, product: {id, title, sku, options}, start_cents, current_cents,
increment_cents, min_bid_cents, leader: {id, name} | null, bids, starts_at, ends_at, mode, extend_s, ended,
ended_reason?, winner?: {id, name} | null, order_id?}`. A bidder's maximum is never in it.
"""

from datetime import datetime
from uuid import UUID

from storage.db import DB


async def start_auction(
    db: DB,
    stream_id: UUID,
    actor_id: UUID,
    *,
    variant_id: UUID,
    start_cents: int,
    increment_cents: int | None,
    duration_s: int,
    mode: str,
    extend_s: int,
) -> dict:
    """Starts the stream's auction (host or moderator, live stream, featured variant in stock, no auction or
    flash sale running)."""
    return await db.fetchval(
        "SELECT start_auction($1, $2, $3, $4, $5, $6, $7, $8)",
        stream_id,
        actor_id,
        variant_id,
        start_cents,
        increment_cents,
        duration_s,
        mode,
        extend_s,
    )


async def bid_batch(db: DB, auction_id: UUID, bids: list[dict], now: datetime | None = None) -> dict:
    """Decides bids `[{request_id, bidder_id, amount_cents | max_cents}]` in order: `{results: [{request_id,
    bidder_id, status, current_cents, reason?}], auction, changed}`."""
    if now is None:
        return await db.fetchval("SELECT bid_batch($1, $2)", auction_id, bids)
    return await db.fetchval("SELECT bid_batch($1, $2, $3)", auction_id, bids, now)


async def close_auction(
    db: DB, auction_id: UUID, *, fee_bps: int, hold_s: int, now: datetime | None = None
) -> dict | None:
    """Ends the auction if it is due and still running, its winner paying; None otherwise (ended already, by
    another node, or extended)."""
    if now is None:
        return await db.fetchval("SELECT close_auction($1, $2, $3)", auction_id, fee_bps, hold_s)
    return await db.fetchval("SELECT close_auction($1, $2, $3, $4)", auction_id, fee_bps, hold_s, now)
