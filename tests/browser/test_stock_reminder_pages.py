"""In Chromium: "Remind me" on a scheduled show's viewer page, and the back office's stock alerts tab (the
low-stock list, a variant's own threshold, its stock history)."""

import asyncio
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

from playwright.async_api import expect

from helpers import top_up

TIMEOUT = 15_000  # ms: generous, two busy cores


async def reminder_rows(db, stream_id: str) -> int:
    return await db.fetchval("SELECT count(*) FROM stream_reminders WHERE stream_id = $1", uuid.UUID(stream_id))


async def wait_rows(db, stream_id: str, expected: int) -> None:
    deadline = time.monotonic() + TIMEOUT / 1000
    while await reminder_rows(db, stream_id) != expected:
        assert time.monotonic() < deadline, f"{await reminder_rows(db, stream_id)} reminders, not {expected}"
        await asyncio.sleep(0.05)


async def test_remind_me_on_a_scheduled_show(client, make, db, open_page):
    seller = await make.seller()
    product = await make.product(seller)
    at = datetime.now(UTC) + timedelta(hours=2)
    res = await client.post(
        "/api/streams",
        json={"title": "Sunday drop", "scheduled_at": at.isoformat(), "products": [{"product_id": product["id"]}]},
        headers=seller.headers,
    )
    stream = (await res.json())["stream"]
    early = await make.user()
    assert (await client.post(f"/api/streams/{stream['id']}/remind", headers=early.headers)).status == 200

    viewer = await make.user()
    page = await open_page(f"/watch/{stream['id']}", viewer)
    expect.set_options(timeout=TIMEOUT)
    remind = page.locator("#remind")
    await expect(remind).to_have_text("Remind me")
    await expect(page.locator("#reminders")).to_have_text("1 reminder")
    await remind.click()
    await expect(remind).to_have_text("Reminder set ✓")
    await expect(remind).to_have_attribute("aria-pressed", "true")
    await expect(page.locator("#reminders")).to_have_text("2 reminders")
    await wait_rows(db, stream["id"], 2)

    await page.reload()
    await expect(page.locator("#remind")).to_have_text("Reminder set ✓")
    await page.locator("#remind").click()
    await expect(page.locator("#remind")).to_have_text("Remind me")
    await expect(page.locator("#reminders")).to_have_text("1 reminder")
    await wait_rows(db, stream["id"], 1)

    # Once the show is live there is nothing to be reminded of.
    res = await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
    assert res.status == 200
    await expect(page.locator("#remind-box")).to_be_hidden()


async def test_the_stock_alerts_tab_lists_low_variants_and_their_history(client, make, open_page, screenshot):
    seller = await make.seller()
    mug = await make.product(seller, title="Blue mug", variants=[{"sku": "MUG-B", "price_cents": 900, "stock": 8}])
    await make.product(seller, title="Red mug", variants=[{"sku": "MUG-R", "price_cents": 900, "stock": 40}])
    variant = mug["variants"][0]["id"]
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": variant, "quantity": 4}]}, headers=buyer.headers
    )
    assert res.status == 201, await res.text()

    page = await open_page("/seller#stock", seller)
    expect.set_options(timeout=TIMEOUT)
    await expect(page.locator("#threshold-default")).to_be_enabled()
    await expect(page.locator("#threshold-default")).to_have_value("5")
    rows = page.locator("#low-stock-table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Blue mug")
    await expect(rows.first.locator(".stock")).to_have_text("4")

    # The shop's default up to 50: the red mug (40) is low too.
    await page.locator("#threshold-default").fill("50")
    await page.get_by_role("button", name="Save shop default").click()
    await expect(rows).to_have_count(2)
    # The blue mug's own threshold of 2: it leaves the list.
    blue = page.locator("#low-stock-table tr", has_text="MUG-B")
    await blue.get_by_label("Own low-stock threshold of MUG-B").fill("2")
    await blue.get_by_role("button", name="Save threshold of MUG-B").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("MUG-R")

    # The blue mug's history from the products tab: the sale (by the buyer, linked to the order), then its
    # first stock.
    await page.goto("/seller#products")
    await page.get_by_role("button", name="Stock history of MUG-B").click()
    history = page.locator("#history")
    await expect(history).to_be_visible()
    await expect(page.locator("#history-title")).to_have_text("Stock history of Blue mug (MUG-B)")
    lines = history.locator("tbody tr")
    await expect(lines).to_have_count(2)
    await expect(lines.nth(0)).to_contain_text("-4")
    await expect(lines.nth(0)).to_contain_text("sale")
    await expect(lines.nth(0)).to_contain_text(buyer.user["display_name"])
    await expect(lines.nth(0).get_by_role("link")).to_have_attribute("href", re.compile(r"^/orders/"))
    await expect(lines.nth(1)).to_contain_text("+8")
    await page.evaluate("document.getElementById('toasts')?.replaceChildren()")
    await screenshot(page, "seller-stock")
