"""What the admin pages read: every order, users' wallets and the platform's figures, through the REST
API against a real PostgreSQL, with the money figures checked against the ledger itself."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from helpers import assert_books_balanced, error_of, top_up


def U(value) -> uuid.UUID:
    return uuid.UUID(str(value))


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def order(client, buyer, variant_id, quantity: int = 1, stream_id=None) -> dict:
    body = {"items": [{"variant_id": variant_id, "quantity": quantity}]}
    if stream_id:
        body["stream_id"] = stream_id
    return (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]


async def live_stream(client, seller, product, title: str) -> dict:
    body = {"title": title, "products": [{"product_id": product["id"]}]}
    stream = (await ok(await client.post("/api/streams", json=body, headers=seller.headers), 201))["stream"]
    await ok(await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers))
    return stream


async def ledger_sum(db, kind: str, entry_type: str | None = None) -> int:
    return await db.fetchval(
        """SELECT coalesce(sum(e.amount_cents), 0)::bigint FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
            WHERE a.kind = $1 AND ($2::text IS NULL OR e.type = $2) AND e.order_id IS NOT NULL""",
        kind,
        entry_type,
    )


@pytest.fixture
async def shop(client, make):
    """Two sellers, two live streams, two buyers and these orders: 2 x 10.00 direct (0.50 refunded
    since), 1 x 25.00 in seller B's stream, 1 x 10.00 in seller A's stream (cancelled since)."""
    admin = await make.admin()
    a = await make.seller(shop_name="Alpha")
    b = await make.seller(shop_name="Beta")
    pa = await make.product(a, variants=[{"sku": "A-1", "price_cents": 1000, "stock": 20}])
    pb = await make.product(b, variants=[{"sku": "B-1", "price_cents": 2500, "stock": 20}])
    alpha_live = await live_stream(client, a, pa, "Alpha live")
    beta_live = await live_stream(client, b, pb, "Beta live")
    ann = await make.user(email="ann.buyer@example.test")
    bob = await make.user(email="bob_buyer@example.test")
    for buyer in (ann, bob):
        await top_up(client, buyer, 50_000)

    direct = await order(client, ann, pa["variants"][0]["id"], 2)
    in_beta = await order(client, bob, pb["variants"][0]["id"], 1, beta_live["id"])
    in_alpha = await order(client, ann, pa["variants"][0]["id"], 1, alpha_live["id"])
    refund = {"amount_cents": 500, "reason": "scuffed box"}
    await ok(await client.post(f"/api/orders/{direct['id']}/refund", json=refund, headers=a.headers))
    await ok(await client.post(f"/api/orders/{in_alpha['id']}/cancel", json={}, headers=ann.headers))
    return {
        "admin": admin,
        "sellers": (a, b),
        "buyers": (ann, bob),
        "streams": (alpha_live, beta_live),
        "orders": (direct, in_beta, in_alpha),
    }


async def stats(client, admin, query: str = "") -> dict:
    return await ok(await client.get(f"/api/admin/stats{query}", headers=admin.headers))


async def test_platform_figures_come_from_the_orders_and_reconcile_with_the_ledger(client, db, shop):
    figures = await stats(client, shop["admin"])
    assert figures["days"] == 30
    assert figures["orders"] == 3
    assert figures["cancelled_orders"] == 1
    assert figures["buyers"] == 2
    assert figures["gmv_cents"] == 2000 + 2500 + 1000
    assert figures["refunded_cents"] == 500 + 1000
    assert figures["net_cents"] == 5500 - 1500
    # 10% of each sale; the partial refund gives back the platform's 50 of its 500, the cancel all 100.
    assert figures["fees_cents"] == 200 + 250 + 100 - 50 - 100

    # The same figures from the ledger: what buyers paid, what came back to them, what the platform kept.
    assert figures["gmv_cents"] == -(await ledger_sum(db, "wallet", "purchase"))
    assert figures["refunded_cents"] == await ledger_sum(db, "wallet", "refund")
    assert figures["fees_cents"] == await ledger_sum(db, "platform")
    await assert_books_balanced(db)

    series = figures["series"]
    assert len(series) == 30
    today = datetime.now(UTC).date().isoformat()
    assert series[-1] == {"day": today, "orders": 3, "gmv_cents": 5500, "net_cents": 4000}
    assert figures["last_day"] == today and series[0]["day"] == figures["first_day"]
    assert all(day["orders"] == 0 and day["gmv_cents"] == 0 for day in series[:-1])

    alpha_live, beta_live = shop["streams"]
    assert [
        (s["stream_id"], s["title"], s["shop_name"], s["orders"], s["revenue_cents"]) for s in figures["top_streams"]
    ] == [
        (beta_live["id"], "Beta live", "Beta", 1, 2500),
        (alpha_live["id"], "Alpha live", "Alpha", 0, 0),
    ]
    # The same revenue as the stream's own stats.
    beta_stats = await ok(await client.get(f"/api/streams/{beta_live['id']}/stats", headers=shop["admin"].headers))
    assert beta_stats["revenue_cents"] == 2500


async def test_the_window_counts_orders_by_the_day_they_were_placed(client, db, shop):
    direct = shop["orders"][0]
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    await db.execute("UPDATE orders SET created_at = $2 WHERE id = $1", U(direct["id"]), ten_days_ago)

    week = await stats(client, shop["admin"], "?days=7")
    assert len(week["series"]) == 7
    assert (week["orders"], week["gmv_cents"], week["net_cents"]) == (2, 3500, 2500)
    assert week["fees_cents"] == 250 + 100 - 100

    month = await stats(client, shop["admin"], "?days=30")
    assert (month["orders"], month["gmv_cents"]) == (3, 5500)
    day = next(d for d in month["series"] if d["day"] == ten_days_ago.date().isoformat())
    assert day == {"day": ten_days_ago.date().isoformat(), "orders": 1, "gmv_cents": 2000, "net_cents": 1500}
    assert sum(d["gmv_cents"] for d in month["series"]) == month["gmv_cents"]
    assert sum(d["net_cents"] for d in month["series"]) == month["net_cents"]

    today = await stats(client, shop["admin"], "?days=1")
    assert len(today["series"]) == 1 and today["orders"] == 2


async def test_an_empty_platform_has_zero_figures(client, make):
    admin = await make.admin()
    figures = await stats(client, admin, "?days=3")
    assert figures["orders"] == figures["gmv_cents"] == figures["fees_cents"] == 0
    assert figures["top_streams"] == []
    assert [d["orders"] for d in figures["series"]] == [0, 0, 0]


async def test_admin_lists_every_order_with_filters_and_pages(client, shop):
    admin = shop["admin"]
    direct, in_beta, in_alpha = shop["orders"]
    a, b = shop["sellers"]
    ann, bob = shop["buyers"]

    async def numbers(query: str = "") -> list[str]:
        page = await ok(await client.get(f"/api/admin/orders{query}", headers=admin.headers))
        return [o["number"] for o in page["items"]]

    assert await numbers() == [in_alpha["number"], in_beta["number"], direct["number"]]
    assert await numbers("?status=cancelled") == [in_alpha["number"]]
    assert await numbers("?status=partially_refunded") == [direct["number"]]
    assert await numbers(f"?seller={b.seller['id']}") == [in_beta["number"]]
    assert await numbers(f"?buyer={ann.id}") == [in_alpha["number"], direct["number"]]
    assert await numbers(f"?buyer={bob.id}&seller={a.seller['id']}") == []

    first = await ok(await client.get("/api/admin/orders?limit=2", headers=admin.headers))
    assert [o["number"] for o in first["items"]] == [in_alpha["number"], in_beta["number"]]
    second = await ok(
        await client.get(f"/api/admin/orders?limit=2&cursor={first['next_cursor']}", headers=admin.headers)
    )
    assert [o["number"] for o in second["items"]] == [direct["number"]] and second["next_cursor"] is None
    # Refunds recorded on the order, as the admin page shows them.
    listed = (await ok(await client.get("/api/admin/orders?status=partially_refunded", headers=admin.headers)))["items"]
    assert listed[0]["refunded_cents"] == 500 and listed[0]["events"][-1]["reason"] == "scuffed box"


async def test_admin_finds_wallets_with_every_balance(client, make, shop):
    admin = shop["admin"]
    a, _ = shop["sellers"]
    ann, bob = shop["buyers"]

    async def find(q: str, **params) -> list[dict]:
        res = await client.get("/api/admin/wallets", params={"q": q, **params}, headers=admin.headers)
        return (await ok(res))["items"]

    [found] = await find("ann.buyer")
    # 500.00 topped up, 20.00 + 10.00 paid, 5.00 refunded and 10.00 back on the cancel.
    assert found == {
        "user_id": ann.id,
        "email": "ann.buyer@example.test",
        "display_name": ann.user["display_name"],
        "seller_id": None,
        "seller_status": None,
        "balance_cents": 50_000 - 2000 - 1000 + 500 + 1000,
        "earnings_pending_cents": 0,
        "earnings_available_cents": 0,
        "payouts_requested_cents": 0,
        "deactivated_at": None,
    }
    assert [w["email"] for w in await find(bob.id)] == ["bob_buyer@example.test"]
    # LIKE wildcards in the query are taken literally: "_" matches bob's underscore, not ann's dot.
    assert [w["email"] for w in await find("b_buyer")] == ["bob_buyer@example.test"]
    assert await find("%") == []
    [seller] = await find(a.user["display_name"])
    assert seller["seller_id"] == a.seller["id"] and seller["seller_status"] == "approved"
    # The seller kept 1,800 of the 2,000 sale, gave back 450 of it with the 500 refund.
    assert seller["earnings_pending_cents"] == 1800 - 450

    everyone = await ok(await client.get("/api/admin/wallets?limit=100", headers=admin.headers))
    emails = [w["email"] for w in everyone["items"]]
    assert emails == sorted(emails) and len(emails) == 5
    pages, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await ok(await client.get(f"/api/admin/wallets{query}", headers=admin.headers))
        pages += [w["email"] for w in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert pages == emails


@pytest.mark.parametrize(
    "path",
    [
        "/api/admin/stats?days=0",
        "/api/admin/stats?days=367",
        "/api/admin/stats?days=week",
        "/api/admin/stats?from=yesterday",
        "/api/admin/orders?status=lost",
        "/api/admin/orders?cursor=zz",
        "/api/admin/orders?buyer=nobody",
        "/api/admin/orders?limit=0",
        "/api/admin/wallets?cursor=zz",
        "/api/admin/wallets?cursor=00",
        "/api/admin/wallets?q=a%00b",
        "/api/admin/wallets?q=" + "x" * 201,
    ],
)
async def test_bad_query_parameters_are_validation_errors(client, make, path):
    admin = await make.admin()
    await error_of(await client.get(path, headers=admin.headers), 422, "validation_error")


@pytest.mark.parametrize("path", ["/api/admin/stats", "/api/admin/orders", "/api/admin/wallets"])
async def test_only_admins_read_them(client, make, path):
    await error_of(await client.get(path), 401, "unauthorized")
    seller = await make.seller()
    await error_of(await client.get(path, headers=seller.headers), 403, "forbidden")
