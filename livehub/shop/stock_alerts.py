"""Low-stock alerts and stock history.

The rule is in storage/functions/stock_alerts.sql: every statement that lowers a variant's stock is checked
once (a trigger), and a crossing of the threshold downward queues one `low_stock` job in that transaction;
`run_low_stock` is that job: it stores and delivers the seller's notification (notify_user)."""

from uuid import UUID

from livehub import jobs
from livehub.auth import Principal
from livehub.errors import Forbidden, NotFound
from storage.db import DB


async def shop_settings(db: DB, seller_id: UUID) -> dict:
    threshold = await db.fetchval("SELECT low_stock_threshold FROM sellers WHERE id = $1", seller_id)
    return {"low_stock_threshold": threshold}


async def set_shop_settings(db: DB, seller_id: UUID, low_stock_threshold: int) -> dict:
    threshold = await db.fetchval(
        "UPDATE sellers SET low_stock_threshold = $2 WHERE id = $1 RETURNING low_stock_threshold",
        seller_id,
        low_stock_threshold,
    )
    return {"low_stock_threshold": threshold}


async def low_stock(db: DB, seller_id: UUID, limit: int) -> dict:
    """The shop's variants at or under their threshold, lowest stock first, and the shop's default."""
    row = await db.fetchrow(
        "SELECT low_stock_variants($1, $2) AS items, low_stock_threshold FROM sellers WHERE id = $1",
        seller_id,
        limit,
    )
    return {"items": row["items"], "low_stock_threshold": row["low_stock_threshold"]}


async def stock_history(db: DB, viewer: Principal, variant_id: UUID, *, limit: int, cursor: int | None) -> dict:
    """A variant's stock movements, newest first: only its shop's seller or an admin may read them."""
    owner = await db.fetchrow(
        """SELECT p.seller_id, v.stock, v.sku, p.title, p.id AS product_id,
                  v.low_stock_threshold AS own_threshold, low_stock_threshold(v.low_stock_threshold, p.id) AS threshold
             FROM variants v JOIN products p ON p.id = v.product_id WHERE v.id = $1""",
        variant_id,
    )
    if owner is None:
        raise NotFound("variant not found")
    if owner["seller_id"] != viewer.seller_id and not viewer.is_admin:
        raise Forbidden("only the variant's shop or an admin can read its stock history")
    rows = await db.fetch(
        """SELECT m.id, m.delta, m.stock_after, m.reason, m.reference, m.created_at,
                  m.actor_id, u.display_name AS actor_name, o.id AS order_id
             FROM stock_movements m
             LEFT JOIN users u ON u.id = m.actor_id
             -- The order a movement's reference names, if it is this shop's (a seller's own reference could
             -- name another shop's order number).
             LEFT JOIN LATERAL (SELECT o.id FROM orders o WHERE o.number = m.reference AND o.seller_id = $4
                                 LIMIT 1) o ON true
            WHERE m.variant_id = $1 AND ($2::bigint IS NULL OR m.id < $2)
            ORDER BY m.id DESC LIMIT $3""",
        variant_id,
        cursor,
        limit + 1,
        owner["seller_id"],
    )
    items = [
        {
            "id": r["id"],
            "delta": r["delta"],
            "stock_after": r["stock_after"],
            "reason": r["reason"],
            "reference": r["reference"],
            "order_id": r["order_id"],
            "actor": {"id": r["actor_id"], "name": r["actor_name"]} if r["actor_id"] else None,
            "created_at": r["created_at"],
        }
        for r in rows[:limit]
    ]
    return {
        "variant": {
            "id": variant_id,
            "product_id": owner["product_id"],
            "title": owner["title"],
            "sku": owner["sku"],
            "stock": owner["stock"],
            "threshold": owner["threshold"],
            "own_threshold": owner["own_threshold"],
        },
        "items": items,
        "next_cursor": str(items[-1]["id"]) if len(rows) > limit else None,
    }


async def run_low_stock(db: DB, payload: dict) -> UUID | None:
    """The `low_stock` job: the seller's notification for one crossing (stored, pushed, emailed per settings),
    once even when the job runs again."""
    return await db.fetchval(
        "SELECT low_stock_notify($1, $2, $3, $4)",
        UUID(payload["variant_id"]),
        int(payload["stock"]),
        int(payload["threshold"]),
        payload.get("crossing"),
    )


@jobs.job("low_stock")
async def low_stock_job(ctx: jobs.Context, payload: dict) -> None:
    """Queued by low_stock_crossing() (storage/functions/stock_alerts.sql) in the transaction that crossed."""
    await run_low_stock(ctx.pool, payload)
