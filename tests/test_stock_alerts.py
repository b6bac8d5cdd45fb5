"""Low-stock alerts (once per crossing, in checkouts, adjustments and buy_batch) and stock history."""

import asyncio
import time
import uuid

import aiohttp
import pytest

from helpers import error_of, top_up
from live_helpers import Viewer, live_show
from livehub.app import create_app
from livehub.shop import stock_alerts
from smtp_server import body_html, body_text

WAIT_S = 15.0


@pytest.fixture
async def client(aiohttp_client, settings, db):
    # The test's settings (mailing the test's SMTP server when it takes smtp_server first), rooms ticking fast.
    app = create_app(settings.model_copy(update={"tick_ms": 20}))
    return await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=0))


async def queued_low_stock(db) -> int:
    """low_stock jobs queued so far (pgqueuer logs each job's 'queued' once, whether it has run or not)."""
    return await db.fetchval("SELECT count(*) FROM pgqueuer_log WHERE entrypoint = 'low_stock' AND status = 'queued'")


async def low_stock_notices(db, seller) -> list[dict]:
    rows = await db.fetch(
        "SELECT payload FROM notifications WHERE user_id = $1 AND kind = 'low_stock' ORDER BY created_at, id",
        uuid.UUID(seller.id),
    )
    return [r["payload"] for r in rows]


async def settled_notices(db, seller, expected: int) -> list[dict]:
    """The seller's low_stock notifications once every queued low_stock job has run (a bounded poll)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        pending = await db.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = 'low_stock'")
        notices = await low_stock_notices(db, seller)
        if pending == 0 and len(notices) >= expected:
            return notices
        assert time.monotonic() < deadline, f"{len(notices)} low_stock notifications, {pending} jobs pending"
        await asyncio.sleep(0.05)


async def buy(client, buyer, variant_id: str, quantity: int) -> None:
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": variant_id, "quantity": quantity}]}, headers=buyer.headers
    )
    assert res.status == 201, await res.text()


async def adjust(client, seller, variant_id: str, delta: int, reason: str = "count") -> None:
    res = await client.post(
        f"/api/variants/{variant_id}/stock", json={"delta": delta, "reason": reason}, headers=seller.headers
    )
    assert res.status == 200, await res.text()


async def test_a_seller_is_alerted_once_per_crossing_and_a_restock_rearms_it(client, make, db):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "LOW-1", "price_cents": 100, "stock": 10}])
    variant = product["variants"][0]["id"]
    buyer = await make.user()
    await top_up(client, buyer, 10_000)

    # The shop's default threshold is 5: 10 -> 6 crosses nothing; 6 -> 4 crosses; 4 -> 3 -> 2 do not.
    await buy(client, buyer, variant, 4)
    assert await queued_low_stock(db) == 0
    for quantity in (2, 1, 1):
        await buy(client, buyer, variant, quantity)
    assert await queued_low_stock(db) == 1
    (notice,) = await settled_notices(db, seller, 1)
    assert notice["variant_id"] == variant and notice["stock"] == 4 and notice["threshold"] == 5
    assert notice["sku"] == "LOW-1" and notice["title"] == product["title"]
    # The job run again (its node died after it stored the notification): nothing more is stored.
    again = {k: notice[k] for k in ("variant_id", "stock", "threshold", "crossing")}
    assert await stock_alerts.run_low_stock(db, again) is None
    assert len(await low_stock_notices(db, seller)) == 1

    # A restock above the threshold re-arms it; selling under it again is a second crossing, and only one.
    await adjust(client, seller, variant, 8)  # 2 -> 10
    assert await queued_low_stock(db) == 1
    await buy(client, buyer, variant, 5)  # 10 -> 5: at the threshold is low
    await buy(client, buyer, variant, 1)
    assert await queued_low_stock(db) == 2
    notices = await settled_notices(db, seller, 2)
    # One job per crossing; the queue may run the two in either order.
    assert sorted(n["stock"] for n in notices) == [4, 5]

    # A write-off crosses too (the same rule in every path that lowers stock).
    await adjust(client, seller, variant, 10)  # 4 -> 14
    await adjust(client, seller, variant, -10, "damaged")  # 14 -> 4
    notices = await settled_notices(db, seller, 3)
    assert sorted(n["stock"] for n in notices[:2]) == [4, 5] and notices[2]["stock"] == 4


async def test_the_variant_threshold_overrides_the_shop_default(client, make, db):
    seller = await make.seller()
    product = await make.product(
        seller,
        variants=[
            {"sku": "OWN-1", "price_cents": 100, "stock": 30},
            {"sku": "SHOP-1", "price_cents": 100, "stock": 30},
        ],
    )
    own, shop = (v["id"] for v in product["variants"])

    res = await client.patch("/api/seller/settings", json={"low_stock_threshold": 12}, headers=seller.headers)
    assert res.status == 200 and (await res.json()) == {"low_stock_threshold": 12}
    res = await client.get("/api/seller/settings", headers=seller.headers)
    assert (await res.json()) == {"low_stock_threshold": 12}
    res = await client.patch(f"/api/variants/{own}", json={"low_stock_threshold": 20}, headers=seller.headers)
    assert res.status == 200, await res.text()
    res = await client.patch("/api/seller/settings", json={"low_stock_threshold": -1}, headers=seller.headers)
    await error_of(res, 422, "validation_error")

    await adjust(client, seller, own, -15)  # 30 -> 15: under its own 20
    await adjust(client, seller, shop, -15)  # 30 -> 15: above the shop's 12
    res = await client.get("/api/seller/low-stock", headers=seller.headers)
    body = await res.json()
    assert res.status == 200 and body["low_stock_threshold"] == 12
    assert [(i["sku"], i["stock"], i["threshold"], i["own_threshold"]) for i in body["items"]] == [
        ("OWN-1", 15, 20, 20)
    ]
    await adjust(client, seller, shop, -5)  # 15 -> 10: under the shop's 12
    body = await (await client.get("/api/seller/low-stock", headers=seller.headers)).json()
    assert [(i["sku"], i["stock"], i["threshold"], i["own_threshold"]) for i in body["items"]] == [
        ("SHOP-1", 10, 12, None),
        ("OWN-1", 15, 20, 20),
    ]
    # One job per crossing; the queue may run the two in either order.
    assert sorted(n["sku"] for n in await settled_notices(db, seller, 2)) == ["OWN-1", "SHOP-1"]

    # Back to the shop's default (null): 15 is above 12, so the variant leaves the list.
    res = await client.patch(f"/api/variants/{own}", json={"low_stock_threshold": None}, headers=seller.headers)
    assert res.status == 200, await res.text()
    body = await (await client.get("/api/seller/low-stock", headers=seller.headers)).json()
    assert [i["sku"] for i in body["items"]] == ["SHOP-1"]

    buyer = await make.user()
    res = await client.get("/api/seller/low-stock", headers=buyer.headers)
    await error_of(res, 403, "forbidden")


async def test_a_flash_sale_crossing_in_buy_batch_queues_one_alert(client, make, db):
    # 40 buyers on real room sockets press buy on a flash sale of the variant's 30 units: the batches
    # (LIVEHUB_BUY_BATCH_MAX a call) take the stock from 30 to 0 and cross the threshold (5) once.
    show = await live_show(make, products=1, stock=30, price=1000)
    variant = show.variant()
    host = await Viewer.connect(client, show.id, show.seller)
    buyers = [await make.user() for _ in range(40)]
    for buyer in buyers:
        await top_up(client, buyer, 10_000)
    viewers = await asyncio.gather(*(Viewer.connect(client, show.id, b) for b in buyers))
    sale = await host.request("flash_sale", variant_id=variant, price_cents=400, quantity=30, duration_s=60)
    assert sale["type"] == "ack", sale
    await asyncio.gather(*(v.wait_for(lambda v: v.of_type("flash_sale")) for v in viewers))
    sale_id = viewers[0].of_type("flash_sale")[0]["flash_sale"]["id"]
    await asyncio.gather(
        *(v.send(type="buy", variant_id=variant, flash_sale_id=sale_id, request_id="go") for v in viewers)
    )
    replies = await asyncio.gather(*(v.wait_for(lambda v: v.replies("purchase")) for v in viewers))
    assert [r[0]["status"] for r in replies].count("ok") == 30
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(variant)) == 0
    calls = await db.fetchval(
        "SELECT count(DISTINCT o.created_at) FROM orders o WHERE o.stream_id = $1", uuid.UUID(show.id)
    )

    assert await queued_low_stock(db) == 1, f"one alert for {calls} buy_batch calls"
    (notice,) = await settled_notices(db, show.seller, 1)
    assert notice["variant_id"] == variant and notice["stock"] <= 5 and notice["threshold"] == 5
    for v in (host, *viewers):
        await v.close()


async def test_stock_history_pages_newest_first_for_its_shop_and_admins_only(client, make, db):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "HIST-1", "price_cents": 100, "stock": 50}])
    variant = product["variants"][0]["id"]
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    await adjust(client, seller, variant, 5, "delivery from the maker")
    await buy(client, buyer, variant, 2)
    await adjust(client, seller, variant, -1, "damaged")
    order = await db.fetchrow("SELECT id, number FROM orders WHERE buyer_id = $1", uuid.UUID(buyer.id))

    res = await client.get(f"/api/variants/{variant}/stock-history?limit=2", headers=seller.headers)
    assert res.status == 200, await res.text()
    page = await res.json()
    assert page["variant"]["sku"] == "HIST-1" and page["variant"]["stock"] == 52
    assert page["variant"]["threshold"] == 5 and page["variant"]["own_threshold"] is None
    first, second = page["items"]
    assert (first["delta"], first["stock_after"], first["reason"]) == (-1, 52, "damaged")
    assert first["actor"]["id"] == seller.id and first["order_id"] is None
    assert (second["delta"], second["stock_after"], second["reason"]) == (-2, 53, "sale")
    assert second["reference"] == order["number"] and second["order_id"] == str(order["id"])
    assert second["actor"] == {"id": buyer.id, "name": buyer.user["display_name"]}
    assert page["next_cursor"] is not None

    res = await client.get(
        f"/api/variants/{variant}/stock-history?limit=2&cursor={page['next_cursor']}", headers=seller.headers
    )
    rest = await res.json()
    assert [(m["delta"], m["stock_after"]) for m in rest["items"]] == [(5, 55), (50, 50)]
    assert rest["next_cursor"] is None

    # A reference naming another shop's order number does not link (or reveal) that order.
    elsewhere = await make.seller()
    theirs = await make.product(elsewhere, variants=[{"sku": "ELSE-1", "price_cents": 100, "stock": 5}])
    await buy(client, buyer, theirs["variants"][0]["id"], 1)
    other_number = await db.fetchval(
        "SELECT number FROM orders WHERE buyer_id = $1 AND number <> $2", uuid.UUID(buyer.id), order["number"]
    )
    res = await client.post(
        f"/api/variants/{variant}/stock",
        json={"delta": -1, "reason": "sent as a replacement", "reference": other_number},
        headers=seller.headers,
    )
    assert res.status == 200, await res.text()
    res = await client.get(f"/api/variants/{variant}/stock-history?limit=1", headers=seller.headers)
    (named,) = (await res.json())["items"]
    assert named["reference"] == other_number and named["order_id"] is None

    admin = await make.admin()
    res = await client.get(f"/api/variants/{variant}/stock-history", headers=admin.headers)
    assert res.status == 200 and len((await res.json())["items"]) == 5
    other = await make.seller()
    for who in (buyer, other):
        res = await client.get(f"/api/variants/{variant}/stock-history", headers=who.headers)
        await error_of(res, 403, "forbidden")
    res = await client.get(f"/api/variants/{variant}/stock-history")
    await error_of(res, 401, "unauthorized")
    res = await client.get(f"/api/variants/{uuid.uuid4()}/stock-history", headers=seller.headers)
    await error_of(res, 404, "not_found")
    res = await client.get(f"/api/variants/{variant}/stock-history?cursor=0", headers=seller.headers)
    await error_of(res, 422, "validation_error")


async def all_emailed(db, seller) -> None:
    """Every low_stock notification of the seller has been through its delivery job (a bounded poll)."""
    deadline = time.monotonic() + WAIT_S
    query = "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'low_stock' AND emailed_at IS NULL"
    while await db.fetchval(query, uuid.UUID(seller.id)):
        assert time.monotonic() < deadline, "low_stock notifications not delivered"
        await asyncio.sleep(0.05)


async def test_low_stock_is_emailed_once_per_crossing(smtp_server, client, make, db, settings):
    seller = await make.seller(shop_name="Tea & Co")
    product = await make.product(
        seller, title="Green tea", variants=[{"sku": "TEA-G", "price_cents": 100, "stock": 10}]
    )
    variant = product["variants"][0]["id"]
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    email = seller.user["email"]

    for quantity in (6, 1, 1):  # 10 -> 4 crosses 5; 4 -> 3 -> 2 do not
        await buy(client, buyer, variant, quantity)
    msg = await smtp_server.wait_for(email, subject="Low stock")
    assert msg["Subject"] == "Low stock: Green tea (TEA-G) is down to 4"
    text = body_text(msg)
    assert "Tea & Co" in text and "threshold of 5" in text and f"{settings.public_url}/seller" in text
    assert f'href="{settings.public_url}/seller"' in body_html(msg) and "Tea &amp; Co" in body_html(msg)
    await settled_notices(db, seller, 1)
    await all_emailed(db, seller)
    assert len(smtp_server.messages(email, subject="Low stock")) == 1

    await adjust(client, seller, variant, 20)  # 2 -> 22: re-armed
    await buy(client, buyer, variant, 17)  # 22 -> 5
    await buy(client, buyer, variant, 1)
    second = await smtp_server.wait_for(email, subject="Low stock", count=2)
    assert second["Subject"] == "Low stock: Green tea (TEA-G) is down to 5"
    await settled_notices(db, seller, 2)
    await all_emailed(db, seller)
    assert len(smtp_server.messages(email, subject="Low stock")) == 2
