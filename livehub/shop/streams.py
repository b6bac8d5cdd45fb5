"""Streams and their rooms: the storage calls behind the REST API and the live rooms.

Every rule (who may do what, which state allows it) lives in storage/functions/streams.sql, one
transaction per call; these wrappers only pass arguments. JSON crosses the boundary through the
connection's jsonb codec (storage.db.init_connection), as everywhere else: Python objects in, Python
objects out. Times inside Postgres-built JSON are RFC 3339 UTC strings.

Shapes:
- stream: `{id, title, status, seller: {id, shop_name}, host_id, host_status, scheduled_at, started_at, ended_at,
  pinned_product_id, unlisted, record, products: [product]}`
- product: `{id, title, position, live_price_cents, per_buyer_limit, variants: [{id, sku, options,
  price_cents, available, digital}]}`; a variant's price_cents is the stream's price when no flash sale runs.
- flash sale: `{id, variant_id, product_id, price_cents, quantity, remaining, per_buyer_limit,
  starts_at, ends_at, ended, ended_reason}`
"""

from datetime import datetime
from uuid import UUID

from storage.db import DB

# Listing order, and the order a cursor continues in: live streams first (newest started first), then
# scheduled ones (soonest first, unscheduled last), then ended ones (newest ended first); ties by id.
LIST_ORDER = """array_position(ARRAY['live', 'scheduled', 'ended'], {s}.status),
    CASE {s}.status
        WHEN 'live' THEN -extract(epoch FROM coalesce({s}.started_at, {s}.created_at))
        WHEN 'scheduled' THEN coalesce(extract(epoch FROM {s}.scheduled_at), 'Infinity')
        ELSE -extract(epoch FROM coalesce({s}.ended_at, {s}.created_at)) END,
    {s}.id"""


async def create_stream(
    db: DB,
    user_id: UUID,
    *,
    title: str,
    scheduled_at: datetime | None,
    products: list[dict],
    moderators: list[UUID],
    host_id: UUID | None = None,
    host_commission_bps: int = 0,
    unlisted: bool = False,
    record: bool = True,
) -> dict:
    """A new scheduled stream of the caller's (approved) shop, which the caller hosts, or another user
    invited to host it for host_commission_bps (livehub/shop/hosts.py). `products`:
    [{product_id, live_price_cents, per_buyer_limit}] in the order shown, the shop's own and active.
    `unlisted`: a practice show (never listed, no follower told); `record`: false opts it out of recording."""
    return await db.fetchval(
        "SELECT create_stream($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9)",
        user_id,
        title,
        scheduled_at,
        products,
        list(moderators),
        host_id,
        host_commission_bps,
        unlisted,
        record,
    )


async def start_stream(db: DB, stream_id: UUID, actor_id: UUID) -> tuple[dict, list[UUID]]:
    """scheduled -> live, by the host. Returns the stream and the shop's followers, each of whom got a
    `stream_live` notification in the same transaction (none for an unlisted stream)."""
    out = await db.fetchval("SELECT start_stream($1, $2)", stream_id, actor_id)
    return out["stream"], [UUID(u) for u in out["followers"]]


async def end_stream(db: DB, stream_id: UUID, actor_id: UUID) -> dict:
    """live -> ended, by the host or an admin; a running flash sale ends ('stream_ended'), the pin goes."""
    return await db.fetchval("SELECT end_stream($1, $2)", stream_id, actor_id)


async def get_stream(db: DB, stream_id: UUID) -> dict | None:
    return await db.fetchval("SELECT stream_json($1)", stream_id)


async def list_streams(
    db: DB,
    *,
    status: str | None,
    seller_id: UUID | None,
    limit: int,
    before: UUID | None,
    with_unlisted: bool = False,
) -> dict:
    """A page of streams in LIST_ORDER; `next_cursor` is the id of the page's last stream, and a page
    asked for with it continues after that stream's place in the order. Unlisted (practice) streams are
    left out unless `with_unlisted` (the shop asking for its own in the studio, or an admin)."""
    rows = await db.fetch(
        f"""SELECT stream_json(s.id) AS stream, s.id FROM streams s
             WHERE ($1::text IS NULL OR s.status = $1) AND ($2::uuid IS NULL OR s.seller_id = $2)
               AND (NOT s.unlisted OR $5)
               AND ($3::uuid IS NULL OR ({LIST_ORDER.format(s="s")})
                                        > (SELECT {LIST_ORDER.format(s="c")} FROM streams c WHERE c.id = $3))
             ORDER BY {LIST_ORDER.format(s="s")}
             LIMIT $4""",
        status,
        seller_id,
        before,
        limit + 1,
        with_unlisted,
    )
    items = [r["stream"] for r in rows[:limit]]
    return {"items": items, "next_cursor": str(rows[limit - 1]["id"]) if len(rows) > limit else None}


async def room_snapshot(db: DB, stream_id: UUID) -> dict | None:
    """What a room needs at load: `{stream, flash_sale (the running one or None), moderators: [user id],
    slow_mode_s, blocked_words, timeouts: {user id: until}}` (timeouts still in force only)."""
    return await db.fetchval("SELECT room_snapshot($1)", stream_id)


async def role_in_stream(db: DB, stream_id: UUID, user_id: UUID | None) -> str:
    """'host', 'moderator' (named by the host, or an admin) or 'viewer'; NotFound for no such stream."""
    return await db.fetchval("SELECT stream_role($1, $2)", stream_id, user_id)


async def is_banned(db: DB, stream_id: UUID, user_id: UUID) -> bool:
    """Whether the stream's shop has banned the user (a ban covers all the shop's streams)."""
    # The same function the purchases ask (storage/functions/money.sql): one rule for every way in.
    return await db.fetchval("SELECT banned_from_stream($1, $2)", stream_id, user_id)


async def pin_product(db: DB, stream_id: UUID, actor_id: UUID, product_id: UUID | None) -> dict | None:
    """Pins a featured product in a live stream (None unpins); returns the product as shown, or None."""
    return await db.fetchval("SELECT pin_product($1, $2, $3)", stream_id, actor_id, product_id)


async def start_flash_sale(
    db: DB,
    stream_id: UUID,
    actor_id: UUID,
    *,
    variant_id: UUID,
    price_cents: int,
    quantity: int,
    duration_s: int,
    per_buyer_limit: int | None,
) -> dict:
    """Starts the stream's flash sale (host or moderator, live stream, one at a time)."""
    return await db.fetchval(
        "SELECT start_flash_sale($1, $2, $3, $4, $5, $6, $7)",
        stream_id,
        actor_id,
        variant_id,
        price_cents,
        quantity,
        duration_s,
        per_buyer_limit,
    )


async def end_flash_sale(db: DB, sale_id: UUID, reason: str) -> dict | None:
    """Ends the sale if it still runs and returns it; None if it had already ended (or never existed),
    so of several nodes ending it at once exactly one gets it back."""
    return await db.fetchval("SELECT end_flash_sale($1, $2)", sale_id, reason)


async def end_flash_sale_by_host(db: DB, stream_id: UUID, actor_id: UUID) -> dict | None:
    """The host or a moderator ends the running sale (reason 'host'); None when none runs."""
    return await db.fetchval("SELECT end_flash_sale_by_host($1, $2)", stream_id, actor_id)


async def ban_user(db: DB, stream_id: UUID, actor_id: UUID, user_id: UUID, reason: str | None) -> None:
    """Bans the user from every stream of this stream's shop. Forbidden on the host or a moderator."""
    await db.execute("SELECT ban_user($1, $2, $3, $4)", stream_id, actor_id, user_id, reason)


async def unban_user(db: DB, stream_id: UUID, actor_id: UUID, user_id: UUID) -> None:
    await db.execute("SELECT unban_user($1, $2, $3)", stream_id, actor_id, user_id)


async def timeout_user(db: DB, stream_id: UUID, actor_id: UUID, user_id: UUID, seconds: int) -> datetime:
    """Silences the user in this stream for 1 to 86400 seconds from now; returns until when."""
    return await db.fetchval("SELECT timeout_user($1, $2, $3, $4)", stream_id, actor_id, user_id, seconds)


async def set_slow_mode(db: DB, stream_id: UUID, actor_id: UUID, seconds: int) -> None:
    """Seconds between one user's chat messages, 0 (off) to 3600."""
    await db.execute("SELECT set_slow_mode($1, $2, $3)", stream_id, actor_id, seconds)


async def set_blocked_words(db: DB, stream_id: UUID, actor_id: UUID, words: list[str]) -> list[str]:
    """Replaces the blocked words; returns them normalised (lower-case, trimmed, distinct, sorted)."""
    return list(await db.fetchval("SELECT set_blocked_words($1, $2, $3)", stream_id, actor_id, list(words)))


async def add_moderator(db: DB, stream_id: UUID, actor_id: UUID, user_id: UUID) -> None:
    """The host names a moderator."""
    await db.execute("SELECT set_moderator($1, $2, $3, true)", stream_id, actor_id, user_id)


async def remove_moderator(db: DB, stream_id: UUID, actor_id: UUID, user_id: UUID) -> None:
    await db.execute("SELECT set_moderator($1, $2, $3, false)", stream_id, actor_id, user_id)


async def record_presence(
    db: DB,
    stream_id: UUID,
    *,
    viewers: int,
    viewer_keys: list[str],
    clicks: dict[UUID, int],
    reactions: dict[str, int],
) -> None:
    """Adds a room's audience figures: the viewer count now (a new peak is kept), viewer keys seen
    (each counted once), and click and reaction counts since the last call."""
    await db.execute(
        "SELECT record_presence($1, $2, $3, $4::jsonb, $5::jsonb)",
        stream_id,
        viewers,
        list(viewer_keys),
        {str(k): v for k, v in clicks.items()},
        reactions,
    )


async def stream_stats(db: DB, stream_id: UUID, actor_id: UUID, is_admin: bool) -> dict:
    """The stream's audience and sales figures, for its host or an admin."""
    return await db.fetchval("SELECT stream_stats($1, $2, $3)", stream_id, actor_id, is_admin)
