"""What a purchase function wrote, in a form two runs of it can be compared by: the tests that hold the
set-based writer to the loops it replaced (tests/test_buy_batch_baseline.py, tests/test_place_order_baseline.py)
run the old and the new function on the same world and compare what each wrote, with generated ids and
numbers replaced by the order's place in the call's answer."""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

# What an order row is compared by (its id, number and timestamps are generated).
ORDER_FIELDS = (
    "buyer_id",
    "seller_id",
    "stream_id",
    "status",
    "total_cents",
    "fee_cents",
    "host_id",
    "host_commission_cents",
    "address",
    "request_id",
    "shipping_cents",
)


async def new_users(db, n: int, prefix: str) -> list[uuid.UUID]:
    rows = await db.fetch(
        """INSERT INTO users (email, display_name, password_hash)
           SELECT $1 || i || '@example.test', 'u', 'x' FROM generate_series(1, $2) i RETURNING id""",
        f"{prefix}-{uuid.uuid4().hex[:8]}-",
        n,
    )
    return [r["id"] for r in rows]


@dataclass
class Mark:
    """Where the append-only tables stood before a call, and the orders that existed."""

    last_ids: dict[str, int]
    earlier_orders: list[uuid.UUID]


async def mark(db) -> Mark:
    last_ids = {
        t: await db.fetchval(f"SELECT coalesce(max(id), 0) FROM {t}")
        for t in ("ledger_entries", "order_events", "stock_movements")
    }
    return Mark(last_ids, [r["id"] for r in await db.fetch("SELECT id FROM orders")])


async def written_since(db, since: Mark, order: Callable[[object], object]) -> dict:
    """Every row written since `since` and the state it left (accounts, codes, flash sales, stock, the
    books), each order named by `order(order_id)`."""
    new = "NOT (o.id = ANY ($1::uuid[]))"
    rows = await db.fetch(f"SELECT o.* FROM orders o WHERE {new} ORDER BY o.number", since.earlier_orders)
    checkouts: dict = {}
    orders = [
        (
            order(o["id"]),
            checkouts.setdefault(o["checkout_id"], len(checkouts)),
            o["delivered_at"] is not None,
            *[json.dumps(o[k], sort_keys=True, default=str) for k in ORDER_FIELDS],
        )
        for o in rows
    ]
    items = sorted(
        (order(r["order_id"]), str(r["variant_id"]), str(r["product_id"]), r["title"], r["sku"])
        + (json.dumps(r["options"], sort_keys=True), r["quantity"], r["unit_price_cents"], str(r["flash_sale_id"]))
        for r in await db.fetch(
            f"SELECT i.* FROM order_items i JOIN orders o ON o.id = i.order_id WHERE {new}", since.earlier_orders
        )
    )
    numbers = {o["number"]: o["id"] for o in rows}
    txns: dict[int, int] = {}
    ledger = [
        (
            order(e["order_id"]),
            txns.setdefault(e["txn_id"], len(txns)),
            e["kind"],
            str(e["user_id"]),
            e["type"],
            e["amount_cents"],
            e["balance_before_cents"],
            e["balance_after_cents"],
            str(e["actor_id"]),
            numbers.get(e["memo"]) == e["order_id"],
        )
        for e in await db.fetch(
            """SELECT e.*, a.kind, a.user_id FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
                WHERE e.id > $1 ORDER BY e.id""",
            since.last_ids["ledger_entries"],
        )
    ]
    earnings = sorted(
        (order(r["order_id"]), str(r["user_id"]), r["role"], r["amount_cents"], r["status"])
        for r in await db.fetch(
            f"SELECT e.* FROM earnings e JOIN orders o ON o.id = e.order_id WHERE {new}", since.earlier_orders
        )
    )
    events = [
        (order(r["order_id"]), r["from_status"], r["to_status"], str(r["actor_id"]), r["reason"])
        for r in await db.fetch("SELECT * FROM order_events WHERE id > $1 ORDER BY id", since.last_ids["order_events"])
    ]
    movements = [
        (
            str(r["variant_id"]),
            r["delta"],
            r["stock_after"],
            r["reason"],
            str(r["actor_id"]),
            order(numbers[r["reference"]]) if r["reference"] in numbers else None,
        )
        for r in await db.fetch(
            "SELECT * FROM stock_movements WHERE id > $1 ORDER BY id", since.last_ids["stock_movements"]
        )
    ]
    codes = sorted(
        (str(r["variant_id"]), str(order(r["order_id"])), r["code"], r["status"])
        for r in await db.fetch("SELECT * FROM digital_units")
    )
    accounts = sorted(
        (str(r["user_id"]), r["kind"], r["balance_cents"]) for r in await db.fetch("SELECT * FROM accounts")
    )
    sales = [tuple(r) for r in await db.fetch("SELECT variant_id, sold, ended_reason FROM flash_sales ORDER BY id")]
    stock = [tuple(r) for r in await db.fetch("SELECT id, stock FROM variants ORDER BY id")]
    books = await db.fetchval("SELECT check_books()")
    return {
        "orders": orders,
        "items": items,
        "ledger": ledger,
        "earnings": earnings,
        "events": events,
        "movements": movements,
        "codes": codes,
        "accounts": accounts,
        "flash_sales": sales,
        "stock": stock,
        "balanced": books["balanced"],
    }
