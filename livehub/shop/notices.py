"""What happens to your orders and money, told to you: the jobs behind order confirmations of in-stream
purchases and the wallet and earnings pushes (storage/functions/notices.sql queues them).

- `orders_placed` {order_ids}: buy_batch queues ONE per batch (hundreds of buyers), so a flash sale's
  locked row never waits on notifications; this job writes each buyer's order_placed notification (with
  the digital codes issued; delivered and emailed by deliver_notification like any other) and pushes
  their wallet balances. Run twice, it tells each buyer once.
- `push_balances` {user_ids, kind, reason}: after a top-up, a checkout or a refund (kind `wallet`), or
  earnings released (kind `earnings`), each user's sockets (`/ws/me` and open stream sockets) get
  `{"type": "wallet", "balance_cents", "reason"}` or `{"type": "earnings", "available_cents"}`. The
  balance is read when the job runs, so a push never shows a figure older than one pushed before it.
"""

import logging
from uuid import UUID

from livehub import jobs

log = logging.getLogger(__name__)

WALLET_REASONS = ("purchase", "refund", "top_up")
ACCOUNT_KIND = {"wallet": "wallet", "earnings": "earnings_available"}


def balance_frame(kind: str, cents: int, reason: str) -> dict:
    if kind == "earnings":
        return {"type": "earnings", "available_cents": cents}
    return {"type": "wallet", "balance_cents": cents, "reason": reason}


async def push_balances(ctx: jobs.Context, user_ids: list[UUID], kind: str, reason: str) -> None:
    """Push each user's balance of `kind` (wallet or earnings) to wherever they are connected."""
    if ctx.hub is None or not user_ids:
        return
    rows = await ctx.pool.fetch(
        """SELECT u.id, coalesce(a.balance_cents, 0) AS cents
             FROM unnest($1::uuid[]) AS u (id)
             LEFT JOIN accounts a ON a.user_id = u.id AND a.kind = $2""",
        list(dict.fromkeys(user_ids)),
        ACCOUNT_KIND[kind],
    )
    for row in rows:
        await ctx.hub.notify([row["id"]], balance_frame(kind, row["cents"], reason))


@jobs.job("orders_placed")
async def orders_placed(ctx: jobs.Context, payload: dict) -> None:
    order_ids = [UUID(i) for i in payload.get("order_ids") or []]
    await ctx.pool.execute("SELECT notify_orders_placed($1::uuid[])", order_ids)
    # Pushed whether or not this run wrote the notifications (a retry after a push failed pushes again).
    buyers = await ctx.pool.fetchval(
        "SELECT array_agg(DISTINCT buyer_id) FROM orders WHERE id = ANY ($1::uuid[])", order_ids
    )
    await push_balances(ctx, buyers or [], "wallet", "purchase")


@jobs.job("push_balances")
async def push_balances_job(ctx: jobs.Context, payload: dict) -> None:
    kind = payload.get("kind", "wallet")
    if kind not in ACCOUNT_KIND:
        log.warning("push_balances: unknown kind %r", kind)
        return
    await push_balances(ctx, [UUID(u) for u in payload.get("user_ids") or []], kind, payload.get("reason", ""))
