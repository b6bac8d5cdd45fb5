"""The order state machine, cancellations, refunds, earnings (fees, host commission, hold), payouts and
admin wallet adjustments, through the REST API against a real PostgreSQL."""

import asyncio
import uuid

from livehub import jobs, keys
from livehub.app import create_app
from tests.helpers import balance, error_of, top_up

PRICE = 1000  # the platform keeps 10% (platform_fee_bps defaults to 1000)


def U(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def earnings(client, account) -> dict:
    res = await client.get("/api/seller/earnings", headers=account.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def books(client, admin) -> dict:
    res = await client.get("/api/admin/books", headers=admin.headers)
    assert res.status == 200, await res.text()
    body = await res.json()
    assert body["balanced"] is True, body
    return body


async def platform_for(db, order_id) -> int:
    """What the platform holds from one order's fee entries."""
    return await db.fetchval(
        """SELECT coalesce(sum(e.amount_cents), 0)::bigint FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
            WHERE a.kind = 'platform' AND e.order_id = $1""",
        U(order_id),
    )


async def stock(db, variant_id) -> int:
    return await db.fetchval("SELECT stock FROM variants WHERE id = $1", U(variant_id))


TRACKING = {"carrier": "Parcel Co", "tracking_number": "PC123456789"}


async def act(client, account, order_id, action: str, body: dict | None = None):
    kw = {"json": body} if body is not None else {}
    if action in ("cancel",) and body is None:
        kw = {"json": {}}
    if action == "ship" and body is None:
        kw = {"json": TRACKING}
    return await client.post(f"/api/orders/{order_id}/{action}", headers=account.headers, **kw)


async def done(client, account, order_id, action: str, body: dict | None = None) -> dict:
    res = await act(client, account, order_id, action, body)
    assert res.status == 200, await res.text()
    return (await res.json())["order"]


class World:
    """A seller (with two-factor sign-in on, so it may ask for payouts) with a product (PRICE, 10 in stock), a
    funded buyer and an admin."""

    def __init__(self, client, db):
        self.client, self.db = client, db

    async def build(self, make, *, funds: int = 10_000, price: int = PRICE):
        self.admin = await make.admin()
        self.seller = await make.seller(two_factor=True)
        self.buyer = await make.user()
        product = await make.product(
            self.seller, variants=[{"sku": f"SKU-{uuid.uuid4().hex[:10]}", "price_cents": price, "stock": 10}]
        )
        self.product_id = product["id"]
        self.vid = product["variants"][0]["id"]
        await top_up(self.client, self.buyer, funds)
        self.funds = funds
        return self

    async def order(self, quantity: int = 1, **body) -> dict:
        res = await self.client.post(
            "/api/orders",
            json={"items": [{"variant_id": self.vid, "quantity": quantity}], **body},
            headers=self.buyer.headers,
        )
        assert res.status == 201, await res.text()
        return (await res.json())["order"]


async def world(client, db, make, **kw) -> World:
    return await World(client, db).build(make, **kw)


# -- state machine --------------------------------------------------------------------------------------


async def test_ship_and_deliver(client, make, db):
    w = await world(client, db, make)
    stranger = await make.user()
    order = await w.order()
    oid = order["id"]

    # The buyer may see the order but not ship it; a stranger is told it does not exist.
    await error_of(await act(client, w.buyer, oid, "ship"), 403, "forbidden")
    await error_of(await act(client, stranger, oid, "ship"), 404, "not_found")
    # Not shipped yet: cannot be delivered.
    await error_of(await act(client, w.buyer, oid, "deliver"), 409, "conflict")

    shipped = await done(client, w.seller, oid, "ship")
    assert shipped["status"] == "shipped" and shipped["shipped_at"] is not None
    await error_of(await act(client, w.seller, oid, "ship"), 409, "conflict")
    await error_of(await act(client, w.buyer, oid, "cancel"), 409, "conflict")
    await error_of(await act(client, w.seller, oid, "cancel"), 409, "conflict")
    await error_of(await act(client, w.admin, oid, "cancel"), 409, "conflict")
    await error_of(await act(client, stranger, oid, "deliver"), 404, "not_found")

    delivered = await done(client, w.buyer, oid, "deliver")
    assert delivered["status"] == "delivered" and delivered["delivered_at"] is not None
    await error_of(await act(client, w.seller, oid, "deliver"), 409, "conflict")

    events = delivered["events"]
    assert [(e["from"], e["to"], e["actor_id"]) for e in events] == [
        (None, "paid", w.buyer.id),
        ("paid", "shipped", w.seller.id),
        ("shipped", "delivered", w.buyer.id),
    ]
    assert all(e["at"] for e in events)
    # The buyer's view shows the same history.
    res = await client.get(f"/api/orders/{oid}", headers=w.buyer.headers)
    assert (await res.json())["order"]["events"] == events


async def test_seller_may_deliver_and_anyone_involved_may_cancel(client, make, db):
    w = await world(client, db, make)
    order = await w.order()
    await done(client, w.seller, order["id"], "ship")
    assert (await done(client, w.seller, order["id"], "deliver"))["status"] == "delivered"

    for who in (w.buyer, w.seller, w.admin):
        order = await w.order()
        cancelled = await done(client, who, order["id"], "cancel", {"reason": "changed my mind"})
        assert cancelled["status"] == "cancelled"
        last = cancelled["events"][-1]
        assert (last["from"], last["to"], last["actor_id"], last["reason"]) == (
            "paid",
            "cancelled",
            who.id,
            "changed my mind",
        )
        await error_of(await act(client, who, order["id"], "cancel"), 409, "conflict")
        await error_of(await act(client, w.seller, order["id"], "ship"), 409, "conflict")

    stranger = await make.user()
    order = await w.order()
    await error_of(await act(client, stranger, order["id"], "cancel"), 404, "not_found")
    await error_of(await act(client, w.seller, str(uuid.uuid4()), "ship"), 404, "not_found")


async def test_cancel_puts_everything_back(client, make, db):
    w = await world(client, db, make)
    order = await w.order(quantity=3)
    assert await balance(client, w.buyer) == w.funds - 3 * PRICE
    assert await stock(db, w.vid) == 7
    assert (await earnings(client, w.seller))["pending_cents"] == 2700

    cancelled = await done(client, w.buyer, order["id"], "cancel", {})
    assert cancelled["status"] == "cancelled"
    assert await balance(client, w.buyer) == w.funds
    assert await stock(db, w.vid) == 10
    move = await db.fetchrow(
        "SELECT delta, stock_after, actor_id, reference FROM stock_movements WHERE variant_id = $1 ORDER BY id DESC",
        U(w.vid),
    )
    assert (move["delta"], move["stock_after"], move["actor_id"], move["reference"]) == (
        3,
        10,
        U(w.buyer.id),
        order["number"],
    )
    summary = await earnings(client, w.seller)
    assert summary["pending_cents"] == 0 and summary["available_cents"] == 0
    assert [(e["amount_cents"], e["reversed_cents"]) for e in summary["recent"]] == [(2700, 2700)]
    assert await platform_for(db, order["id"]) == 0
    await books(client, w.admin)


# -- refunds --------------------------------------------------------------------------------------------


async def test_partial_then_full_refund_nets_to_zero(client, make, db):
    w = await world(client, db, make)
    order = await w.order()
    oid = order["id"]
    assert await platform_for(db, oid) == 100

    part = await done(client, w.seller, oid, "refund", {"amount_cents": 333, "reason": "dented box"})
    assert part["status"] == "partially_refunded" and part["refunded_cents"] == 333
    assert await balance(client, w.buyer) == w.funds - PRICE + 333
    summary = await earnings(client, w.seller)
    # 333 of 1000 goes back: the seller gives up 333 * 900 / 1000 (rounded down), the platform the rest.
    assert summary["pending_cents"] == 900 - 299
    assert summary["recent"][0]["reversed_cents"] == 299
    assert await platform_for(db, oid) == 100 - 34
    last = part["events"][-1]
    assert (last["to"], last["actor_id"], last["reason"], last["amount_cents"]) == (
        "partially_refunded",
        w.seller.id,
        "dented box",
        333,
    )

    await error_of(
        await act(client, w.admin, oid, "refund", {"amount_cents": 668, "reason": "too much"}),
        422,
        "validation_error",
    )
    rest = await done(client, w.admin, oid, "refund", {"reason": "returned"})  # no amount: what is left
    assert rest["status"] == "refunded" and rest["refunded_cents"] == PRICE
    assert rest["events"][-1]["amount_cents"] == 667 and rest["events"][-1]["actor_id"] == w.admin.id
    assert await balance(client, w.buyer) == w.funds
    summary = await earnings(client, w.seller)
    assert summary["pending_cents"] == 0 and summary["available_cents"] == 0
    assert summary["recent"][0]["reversed_cents"] == 900
    assert await platform_for(db, oid) == 0
    await books(client, w.admin)
    # Nothing left to refund.
    await error_of(await act(client, w.admin, oid, "refund", {"reason": "again"}), 409, "conflict")


async def test_full_refund_of_a_delivered_order(client, make, db):
    w = await world(client, db, make)
    order = await w.order(quantity=2)
    await done(client, w.seller, order["id"], "ship")
    await done(client, w.buyer, order["id"], "deliver")
    assert (await earnings(client, w.seller))["available_cents"] == 1800

    refunded = await done(client, w.seller, order["id"], "refund", {"amount_cents": 2000, "reason": "faulty"})
    assert refunded["status"] == "refunded"
    assert await balance(client, w.buyer) == w.funds
    summary = await earnings(client, w.seller)
    assert summary["available_cents"] == 0 and summary["pending_cents"] == 0
    assert await platform_for(db, order["id"]) == 0
    await books(client, w.admin)


async def test_refund_rules(client, make, db):
    w = await world(client, db, make)
    other_seller = await make.seller()
    order = await w.order()
    oid = order["id"]

    await error_of(
        await act(client, w.seller, oid, "refund", {"amount_cents": PRICE + 1, "reason": "x"}), 422, "validation_error"
    )
    await error_of(await act(client, w.seller, oid, "refund", {"amount_cents": 0, "reason": "x"}), 422)
    await error_of(await act(client, w.seller, oid, "refund", {"amount_cents": 10}), 422, "validation_error")
    # The code answers another shop's seller 404 (it may not even see the order), the buyer 403.
    await error_of(await act(client, other_seller, oid, "refund", {"reason": "x"}), 404, "not_found")
    await error_of(await act(client, w.buyer, oid, "refund", {"reason": "x"}), 403, "forbidden")

    assert await balance(client, w.buyer) == w.funds - PRICE
    assert await db.fetchval("SELECT refunded_cents FROM orders WHERE id = $1", U(oid)) == 0
    assert (await earnings(client, w.seller))["pending_cents"] == 900

    # A cancelled order has nothing left to refund.
    await done(client, w.buyer, oid, "cancel", {})
    await error_of(await act(client, w.seller, oid, "refund", {"reason": "x"}), 409, "conflict")
    assert await balance(client, w.buyer) == w.funds


async def test_concurrent_refunds_never_refund_more_than_paid(client, make, db):
    w = await world(client, db, make)
    order = await w.order()
    results = await asyncio.gather(
        *(act(client, w.seller, order["id"], "refund", {"amount_cents": 400, "reason": f"r{i}"}) for i in range(4))
    )
    statuses = sorted(r.status for r in results)
    for r in results:
        await r.read()
    assert statuses == [200, 200, 422, 422]
    assert await balance(client, w.buyer) == w.funds - PRICE + 800
    assert await db.fetchval("SELECT refunded_cents FROM orders WHERE id = $1", U(order["id"])) == 800
    await books(client, w.admin)


# -- earnings and payouts -------------------------------------------------------------------------------


async def test_delivery_makes_earnings_available_and_payouts(client, make, db):
    w = await world(client, db, make)
    order = await w.order()
    summary = await earnings(client, w.seller)
    assert (summary["pending_cents"], summary["available_cents"]) == (900, 0)
    assert summary["recent"][0]["status"] == "pending" and summary["recent"][0]["role"] == "seller"
    res = await client.post("/api/seller/payouts", json={"amount_cents": 1}, headers=w.seller.headers)
    await error_of(res, 409, "insufficient_funds")

    await done(client, w.seller, order["id"], "ship")
    await done(client, w.buyer, order["id"], "deliver")
    summary = await earnings(client, w.seller)
    assert (summary["pending_cents"], summary["available_cents"]) == (0, 900)
    assert summary["recent"][0]["status"] == "available" and summary["recent"][0]["order_number"] == order["number"]

    res = await client.post("/api/seller/payouts", json={"amount_cents": 901}, headers=w.seller.headers)
    await error_of(res, 409, "insufficient_funds")

    # Request, reject: the money returns to available.
    res = await client.post("/api/seller/payouts", json={"amount_cents": 400}, headers=w.seller.headers)
    assert res.status == 201, await res.text()
    payout = (await res.json())["payout"]
    assert payout["status"] == "requested" and payout["amount_cents"] == 400
    summary = await earnings(client, w.seller)
    assert (summary["available_cents"], summary["payouts_requested_cents"]) == (500, 400)
    res = await client.post(
        f"/api/admin/payouts/{payout['id']}/reject", json={"reason": "check ID"}, headers=w.admin.headers
    )
    assert res.status == 200, await res.text()
    rejected = (await res.json())["payout"]
    assert rejected["status"] == "rejected" and rejected["reason"] == "check ID" and rejected["decided_at"]
    summary = await earnings(client, w.seller)
    assert (summary["available_cents"], summary["payouts_requested_cents"]) == (900, 0)
    res = await client.post(f"/api/admin/payouts/{payout['id']}/approve", json={}, headers=w.admin.headers)
    await error_of(res, 409, "conflict")

    # Request everything, approve: paid out with the provider's reference; a second approval is refused.
    res = await client.post("/api/seller/payouts", json={"amount_cents": 900}, headers=w.seller.headers)
    assert res.status == 201, await res.text()
    payout = (await res.json())["payout"]
    res = await client.post(f"/api/admin/payouts/{payout['id']}/approve", json={}, headers=w.seller.headers)
    await error_of(res, 403, "forbidden")
    res = await client.post(f"/api/admin/payouts/{payout['id']}/approve", json={}, headers=w.admin.headers)
    assert res.status == 200, await res.text()
    paid = (await res.json())["payout"]
    assert paid["status"] == "paid" and paid["provider_reference"]
    res = await client.post(f"/api/admin/payouts/{payout['id']}/approve", json={}, headers=w.admin.headers)
    await error_of(res, 409, "conflict")
    res = await client.post(f"/api/admin/payouts/{payout['id']}/reject", json={"reason": "x"}, headers=w.admin.headers)
    await error_of(res, 409, "conflict")
    res = await client.post(f"/api/admin/payouts/{uuid.uuid4()}/approve", json={}, headers=w.admin.headers)
    await error_of(res, 404, "not_found")

    summary = await earnings(client, w.seller)
    assert (summary["pending_cents"], summary["available_cents"], summary["payouts_requested_cents"]) == (0, 0, 0)
    figures = await books(client, w.admin)
    assert figures["money_out_cents"] == 900
    assert figures["platform_cents"] == 100
    res = await client.get("/api/seller/payouts", headers=w.seller.headers)
    assert [(p["status"], p["amount_cents"]) for p in (await res.json())["items"]] == [("paid", 900), ("rejected", 400)]


async def test_concurrent_approvals_pay_once(client, make, db):
    w = await world(client, db, make)
    order = await w.order()
    await done(client, w.seller, order["id"], "ship")
    await done(client, w.buyer, order["id"], "deliver")
    res = await client.post("/api/seller/payouts", json={"amount_cents": 900}, headers=w.seller.headers)
    payout = (await res.json())["payout"]
    results = await asyncio.gather(
        *(client.post(f"/api/admin/payouts/{payout['id']}/approve", json={}, headers=w.admin.headers) for _ in range(3))
    )
    for r in results:
        await r.read()
    assert sorted(r.status for r in results) == [200, 409, 409]
    assert (await books(client, w.admin))["money_out_cents"] == 900


async def test_stream_host_earns_commission(client, make, db):
    w = await world(client, db, make)
    host = await make.two_factor(await make.user())  # paid out below, which needs the second factor
    await make.payout_destination(host)  # and a destination
    stream = await db.fetchval(
        """INSERT INTO streams (seller_id, host_id, title, status, host_commission_bps)
           VALUES ($1, $2, 'Live', 'live', 500) RETURNING id""",
        U(w.seller.seller["id"]),
        U(host.id),
    )
    await db.execute(
        "INSERT INTO stream_products (stream_id, product_id, live_price_cents) VALUES ($1, $2, 2000)",
        stream,
        U(w.product_id),
    )
    order = await w.order(stream_id=str(stream))
    assert order["total_cents"] == 2000 and order["stream_id"] == str(stream)

    # 2000: the platform 10% (200), the host 5% (100), the seller the rest (1700).
    host_summary = await earnings(client, host)
    assert host_summary["pending_cents"] == 100
    assert [(e["role"], e["amount_cents"], e["order_id"]) for e in host_summary["recent"]] == [
        ("host", 100, order["id"])
    ]
    assert (await earnings(client, w.seller))["pending_cents"] == 1700
    assert await platform_for(db, order["id"]) == 200

    await done(client, w.seller, order["id"], "ship")
    await done(client, w.buyer, order["id"], "deliver")
    assert (await earnings(client, host))["available_cents"] == 100
    assert (await earnings(client, w.seller))["available_cents"] == 1700
    # The host can be paid out like a seller.
    res = await client.post("/api/seller/payouts", json={"amount_cents": 100}, headers=host.headers)
    assert res.status == 201, await res.text()
    await res.read()

    # A full refund of a second (still pending) order takes the host's commission back too.
    second = await w.order(stream_id=str(stream))
    await done(client, w.admin, second["id"], "refund", {"reason": "return"})
    host_summary = await earnings(client, host)
    assert host_summary["pending_cents"] == 0
    assert await platform_for(db, second["id"]) == 0
    await books(client, w.admin)


async def one_sale(client, make):
    """(seller, buyer, order) of one item bought at PRICE through `client`'s app."""
    seller = await make.seller()
    buyer = await make.user()
    product = await make.product(
        seller, variants=[{"sku": f"SKU-{uuid.uuid4().hex[:8]}", "price_cents": PRICE, "stock": 5}]
    )
    await top_up(client, buyer, 5000)
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": product["variants"][0]["id"]}]}, headers=buyer.headers
    )
    assert res.status == 201, await res.text()
    return seller, buyer, (await res.json())["order"]


async def release_round(app) -> None:
    """One run of the release_earnings schedule (each minute on one node; livehub/jobs.py), now."""
    await jobs.SCHEDULES["release_earnings"].handler(app[keys.JOBS].context())


async def test_earnings_released_after_the_hold(aiohttp_client, settings, make, db):
    quick = await aiohttp_client(create_app(settings.model_copy(update={"earnings_hold_s": 0})))
    seller, buyer, order = await one_sale(quick, make)
    assert (await earnings(quick, seller))["pending_cents"] == 900

    await release_round(quick.server.app)
    summary = await earnings(quick, seller)
    assert (summary["pending_cents"], summary["available_cents"]) == (0, 900)
    assert summary["recent"][0]["status"] == "available" and summary["recent"][0]["released_at"]
    res = await quick.get(f"/api/orders/{order['id']}", headers=buyer.headers)
    assert (await res.json())["order"]["status"] == "paid"  # released without delivery


async def test_default_hold_keeps_undelivered_earnings_pending(client, make, db):
    # The release runs, but the default 14-day hold has not passed.
    seller, buyer, _ = await one_sale(client, make)
    for _ in range(3):
        await release_round(client.server.app)
    summary = await earnings(client, seller)
    assert (summary["pending_cents"], summary["available_cents"]) == (900, 0)


# -- admin wallet adjustments ---------------------------------------------------------------------------


async def test_admin_wallet_adjust(client, make, db):
    admin = await make.admin()
    user = await make.user()
    await top_up(client, user, 1000)

    res = await client.post(
        f"/api/admin/wallets/{user.id}/adjust", json={"amount_cents": 250, "reason": "goodwill"}, headers=admin.headers
    )
    assert res.status == 200, await res.text()
    assert (await res.json())["balance_cents"] == 1250
    res = await client.post(
        f"/api/admin/wallets/{user.id}/adjust",
        json={"amount_cents": -400, "reason": "chargeback"},
        headers=admin.headers,
    )
    assert res.status == 200, await res.text()
    assert (await res.json())["balance_cents"] == 850

    res = await client.post(
        f"/api/admin/wallets/{user.id}/adjust", json={"amount_cents": -851, "reason": "too much"}, headers=admin.headers
    )
    err = await error_of(res, 409, "insufficient_funds")
    assert err["details"].get("balance_cents") == 850
    res = await client.post(
        f"/api/admin/wallets/{user.id}/adjust",
        json={"amount_cents": 100, "reason": "self-service"},
        headers=user.headers,
    )
    await error_of(res, 403, "forbidden")
    res = await client.post(
        f"/api/admin/wallets/{uuid.uuid4()}/adjust", json={"amount_cents": 100, "reason": "x"}, headers=admin.headers
    )
    await error_of(res, 404, "not_found")
    res = await client.post(
        f"/api/admin/wallets/{user.id}/adjust", json={"amount_cents": 0, "reason": "x"}, headers=admin.headers
    )
    await error_of(res, 422, "validation_error")
    res = await client.post(f"/api/admin/wallets/{user.id}/adjust", json={"amount_cents": 5}, headers=admin.headers)
    await error_of(res, 422, "validation_error")
    assert await balance(client, user) == 850

    res = await client.get("/api/wallet/transactions", headers=user.headers)
    assert res.status == 200
    entries = (await res.json())["items"]
    assert [(e["type"], e["amount_cents"], e["balance_after_cents"], e["memo"]) for e in entries] == [
        ("adjustment", -400, 850, "chargeback"),
        ("adjustment", 250, 1250, "goodwill"),
        ("deposit", 1000, 1000, entries[-1]["memo"]),
    ]
    assert entries[0]["balance_before_cents"] == 1250
    res = await client.get("/api/wallet/transactions?limit=1", headers=user.headers)
    page = await res.json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    res = await client.get(f"/api/wallet/transactions?limit=5&cursor={page['next_cursor']}", headers=user.headers)
    assert [e["memo"] for e in (await res.json())["items"]][:1] == ["goodwill"]
    figures = await books(client, admin)
    assert figures["wallets_cents"] == 850


async def test_buyer_cannot_cancel_a_digital_order_after_receiving_its_codes(client, make, db):
    """Codes are delivered with the order (the buyer has seen them); cancel keeps them with the order. A
    buyer who could still cancel would get the money back and keep the codes."""
    w = await world(client, db, make)
    product = await make.product(
        w.seller, variants=[{"sku": f"GIFT-{uuid.uuid4().hex[:8]}", "price_cents": 2500, "digital": True}]
    )
    vid = product["variants"][0]["id"]
    res = await client.post(
        f"/api/variants/{vid}/units", data=b"GIFT-1\nGIFT-2\n", headers={"Content-Type": "text/csv", **w.seller.headers}
    )
    assert res.status == 200, await res.text()
    await res.read()
    res = await client.post("/api/orders", json={"items": [{"variant_id": vid}]}, headers=w.buyer.headers)
    assert res.status == 201, await res.text()
    order = (await res.json())["order"]
    res = await client.get(f"/api/orders/{order['id']}", headers=w.buyer.headers)
    codes = (await res.json())["order"]["items"][0]["codes"]
    assert len(codes) == 1

    res = await act(client, w.buyer, order["id"], "cancel", {"reason": "changed my mind"})
    body = await res.json()
    assert res.status == 409, f"buyer cancelled a delivered digital order and keeps {codes}: {res.status} {body}"
    assert await balance(client, w.buyer) == w.funds - 2500
    res = await client.get(f"/api/orders/{order['id']}", headers=w.buyer.headers)
    assert (await res.json())["order"]["status"] == "delivered"  # digital goods are delivered on purchase
