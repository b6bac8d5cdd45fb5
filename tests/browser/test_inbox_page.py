"""The header bell and the inbox in Chromium: the bell on a page with the signed-in header shows the unread
count and goes up live when a notification arrives on /ws/me; the inbox (/notifications) lists them newest
first with links to what they are about, marks one read and then all; email is turned off for a kind."""

import asyncio
import re
import time
import uuid

from playwright.async_api import expect

from tests.helpers import top_up

WAIT_MS = 15_000  # generous: two busy cores
TRACKING = {"carrier": "Parcel Co", "tracking_number": "PC123456789"}


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def until(check, timeout_s: float = 15.0) -> None:
    """Wait (a bounded poll) until the database shows what the page did."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "the page's change never reached the database"
        await asyncio.sleep(0.05)


async def test_the_bell_counts_live_and_the_inbox_marks_read(open_page, make, db, screenshot):
    client = make.client
    seller = await make.seller(shop_name="Parcel Shop")
    buyer = await make.user()
    product = await make.product(
        seller, title="Teapot", variants=[{"sku": f"POT-{uuid.uuid4().hex[:6]}", "price_cents": 1000, "stock": 10}]
    )
    await top_up(client, buyer, 5000)
    orders = []
    for _ in range(2):
        res = await client.post(
            "/api/orders", json={"items": [{"variant_id": product["variants"][0]["id"]}]}, headers=buyer.headers
        )
        orders.append((await ok(res, 201))["order"])

    page = await open_page("/orders", buyer)
    bell = page.locator("#bell")
    await expect(bell).to_have_attribute("data-unread", "2", timeout=WAIT_MS)
    await expect(page.locator("#bell-count")).to_have_text("2")
    await expect(page.locator("body")).to_have_attribute("data-bell", "open", timeout=WAIT_MS)

    # Shipped while the page is open: the bell goes up without a reload.
    await ok(await client.post(f"/api/orders/{orders[0]['id']}/ship", json=TRACKING, headers=seller.headers))
    await expect(bell).to_have_attribute("data-unread", "3", timeout=WAIT_MS)

    await bell.click()
    await expect(page).to_have_url(re.compile(r"/notifications$"), timeout=WAIT_MS)
    await expect(page.locator("body")).to_have_attribute("data-inbox", "loaded", timeout=WAIT_MS)
    items = page.locator("#notices > li")
    await expect(items).to_have_count(3)
    # Newest first, each a link to what it is about.
    first = items.nth(0).get_by_role("link")
    await expect(first).to_contain_text(f"{orders[0]['number']} shipped with Parcel Co")
    await expect(first).to_have_attribute("href", f"/orders/{orders[0]['id']}")
    await expect(items.nth(1).get_by_role("link")).to_contain_text(f"{orders[1]['number']} from Parcel Shop is placed")
    await expect(items.nth(2).get_by_role("link")).to_have_attribute("href", f"/orders/{orders[0]['id']}")
    await expect(page.locator("#notices .unread")).to_have_count(3)
    # Another one arrives while the inbox is open: on top at once.
    await ok(await client.post(f"/api/orders/{orders[1]['id']}/ship", json=TRACKING, headers=seller.headers))
    await expect(items).to_have_count(4, timeout=WAIT_MS)
    await expect(items.nth(0).get_by_role("link")).to_contain_text(f"{orders[1]['number']} shipped")
    await expect(bell).to_have_attribute("data-unread", "4", timeout=WAIT_MS)
    await screenshot(page, "inbox")

    # One marked read...
    await items.nth(1).get_by_role("button", name=re.compile("^Mark read")).click()
    await expect(bell).to_have_attribute("data-unread", "3", timeout=WAIT_MS)
    await expect(page.locator("#notices .unread")).to_have_count(3)

    async def unread() -> int:
        return await db.fetchval(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL", uuid.UUID(buyer.id)
        )

    await until(lambda: _equals(unread(), 3))
    # ... then all.
    await page.get_by_role("button", name="Mark all read").click()
    await expect(page.locator("#bell-count")).to_be_hidden(timeout=WAIT_MS)
    await expect(page.locator("#notices .unread")).to_have_count(0)
    await until(lambda: _equals(unread(), 0))

    # Email off for shipped orders, saved.
    shipped = page.get_by_label("Orders shipped")
    await expect(shipped).to_be_checked(timeout=WAIT_MS)
    await shipped.uncheck()
    await page.get_by_role("button", name="Save email choices").click()
    await expect(page.locator("#toasts")).to_contain_text("Email choices saved", timeout=WAIT_MS)

    async def shipped_off() -> bool:
        return (
            await db.fetchval(
                "SELECT email FROM notification_settings WHERE user_id = $1 AND kind = 'order_shipped'",
                uuid.UUID(buyer.id),
            )
            is False
        )

    await until(shipped_off)
    await page.reload()
    await expect(page.get_by_label("Orders shipped")).not_to_be_checked(timeout=WAIT_MS)
    await expect(page.get_by_label("Refunds")).to_be_checked()


async def _equals(value, expected) -> bool:
    return await value == expected


async def test_the_wallet_page_shows_a_refund_as_it_happens(open_page, make):
    client = make.client
    seller = await make.seller()
    buyer = await make.user()
    product = await make.product(
        seller, variants=[{"sku": f"MUG-{uuid.uuid4().hex[:6]}", "price_cents": 1250, "stock": 3}]
    )
    await top_up(client, buyer, 5000)
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": product["variants"][0]["id"]}]}, headers=buyer.headers
    )
    order = (await ok(res, 201))["order"]

    page = await open_page("/wallet", buyer)
    await expect(page.locator("#balance")).to_have_text("$37.50", timeout=WAIT_MS)
    await expect(page.locator("body")).to_have_attribute("data-bell", "open", timeout=WAIT_MS)
    res = await client.post(
        f"/api/orders/{order['id']}/refund", json={"reason": "out of glaze"}, headers=seller.headers
    )
    await ok(res)
    # Pushed on /ws/me (a wallet frame), no reload.
    await expect(page.locator("#balance")).to_have_text("$50.00", timeout=WAIT_MS)
    await expect(page.locator("#bell")).to_have_attribute("data-unread", "2", timeout=WAIT_MS)

    # Following a notification's link opens what it is about and marks it read.
    await page.locator("#bell").click()
    await expect(page.locator("body")).to_have_attribute("data-inbox", "loaded", timeout=WAIT_MS)
    await page.get_by_role("link", name=re.compile(r"\$12\.50 refunded on your order")).click()
    await expect(page).to_have_url(re.compile(f"/orders/{order['id']}$"), timeout=WAIT_MS)

    async def refund_read() -> bool:
        return bool(
            await make.db.fetchval(
                "SELECT read_at IS NOT NULL FROM notifications WHERE user_id = $1 AND kind = 'order_refunded'",
                uuid.UUID(buyer.id),
            )
        )

    await until(refund_read)
    await expect(page.locator("#bell")).to_have_attribute("data-unread", "1", timeout=WAIT_MS)


async def test_an_open_order_page_shows_it_shipped_as_it_happens(open_page, make):
    client = make.client
    seller = await make.seller()
    buyer = await make.user()
    product = await make.product(
        seller, variants=[{"sku": f"LAMP-{uuid.uuid4().hex[:6]}", "price_cents": 2000, "stock": 3}]
    )
    await top_up(client, buyer, 5000)
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": product["variants"][0]["id"]}]}, headers=buyer.headers
    )
    order = (await ok(res, 201))["order"]

    page = await open_page(f"/orders/{order['id']}", buyer)
    await expect(page.locator("#order-status")).to_contain_text("Paid", timeout=WAIT_MS, ignore_case=True)
    await expect(page.locator("body")).to_have_attribute("data-bell", "open", timeout=WAIT_MS)
    await ok(await client.post(f"/api/orders/{order['id']}/ship", json=TRACKING, headers=seller.headers))
    # The order_shipped notification on /ws/me: the page shows the order as it is now, no reload.
    await expect(page.locator("#tracking")).to_contain_text("PC123456789", timeout=WAIT_MS)
    await expect(page.locator("#order-status")).to_contain_text("Shipped", ignore_case=True)
