"""A live show end to end in Chromium: a seller signs in and goes live from the studio with the fake
camera, pins a product and starts a flash sale; viewers in other browser contexts watch the video, chat,
buy, and see the stock drop; the seller sees the order and moderates the chat."""

import asyncio
import re
import time

import pytest
from playwright.async_api import expect

from conftest import settings_for

WAIT_MS = 20_000


@pytest.fixture
def settings(database_url):
    # WebRTC on one machine: the server offers only its loopback address as an ICE candidate. The relay
    # is the default, encoded one: the seller's own VP8 frames reach the viewers.
    return settings_for(database_url).model_copy(update={"media_host_addresses": ["127.0.0.1"]})


async def until(page, expression: str) -> None:
    # Polled from here: wait_for_function compiles its predicate in the page, which the page's
    # Content-Security-Policy (no eval) refuses.
    deadline = time.monotonic() + WAIT_MS / 1000
    while not await page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        await asyncio.sleep(0.05)


async def video_playing(page) -> None:
    """The viewer's video has frames and its clock moves."""
    await until(page, "document.getElementById('video').videoWidth > 0")
    start = await page.evaluate("document.getElementById('video').currentTime")
    await until(page, f"document.getElementById('video').currentTime > {start} + 0.5")


async def test_live_show(open_page, make, screenshot):
    seller = await make.seller(shop_name="Lamp Corner")
    lamp = await make.product(seller, title="Glow lamp", variants=[{"sku": "LAMP-1", "price_cents": 2500, "stock": 20}])
    viewer = await make.user()
    res = await make.client.post("/api/wallet/top-up", json={"amount_cents": 10_000}, headers=viewer.headers)
    assert res.status == 200, await res.text()

    # The seller signs in through the sign-in page and lands in the studio.
    studio = await open_page("/signin?next=/studio")
    await studio.get_by_label("Email or phone").fill(seller.user["email"])
    await studio.get_by_label("Password", exact=True).fill(seller.password)
    await studio.get_by_role("button", name="Sign in", exact=True).click()
    await expect(studio).to_have_url(re.compile(r"/studio"), timeout=WAIT_MS)

    # Plans a show featuring the lamp, goes live with the fake camera, pins the lamp, starts a flash sale.
    await studio.get_by_label("Title").fill("Evening lamps")
    await studio.get_by_label("Starts at").fill("2030-01-04T18:30")
    await studio.get_by_role("checkbox", name="Glow lamp").check()
    await studio.get_by_role("button", name="Create show").click()
    await studio.get_by_role("button", name="Go live").click()
    await expect(studio.locator("#status")).to_have_text("LIVE", timeout=WAIT_MS)
    await expect(studio.locator("#on-air")).to_be_visible(timeout=WAIT_MS)
    stream_id = await studio.evaluate("document.body.dataset.streamId")
    await studio.locator(f"#pin-{lamp['id']}").click()
    await expect(studio.locator(f"#pin-{lamp['id']}")).to_have_text("Unpin", timeout=WAIT_MS)
    await studio.get_by_label("Flash price").fill("15.00")
    await studio.get_by_label("Units").fill("5")
    await studio.get_by_label("Seconds").fill("300")
    await studio.get_by_role("button", name="Start flash sale").click()
    await expect(studio.locator(".flash-running")).to_contain_text("5 of 5 sale units left", timeout=WAIT_MS)

    # A signed-in viewer sees the video playing and the pinned lamp at its flash price.
    watch = await open_page(f"/watch/{stream_id}", viewer)
    await expect(watch.locator("#stream-title")).to_have_text("Evening lamps", timeout=WAIT_MS)
    await expect(watch.locator("#product-title")).to_have_text("Glow lamp", timeout=WAIT_MS)
    await expect(watch.locator("#price")).to_have_text("$15.00")
    await expect(watch.locator("#units-left")).to_have_text("5")
    await expect(watch.locator("#countdown")).to_have_text(re.compile(r"\d:\d\d"))
    await expect(watch.locator("#wallet")).to_have_text("Wallet: $100.00", timeout=WAIT_MS)
    await video_playing(watch)

    # Chat both ways; a message with HTML in it is shown literally on both pages.
    await watch.get_by_label("Message").fill("Is it warm light?")
    await watch.get_by_label("Message").press("Enter")
    await expect(studio.locator("#chat-list")).to_contain_text("Is it warm light?", timeout=WAIT_MS)
    await studio.get_by_label("Message to viewers").fill("Yes, 2700 K and dimmable")
    await studio.get_by_role("button", name="Send").click()
    await expect(watch.locator("#chat-list")).to_contain_text("Yes, 2700 K and dimmable", timeout=WAIT_MS)
    html = '<img src=x onerror="document.title=1"><b>bold?</b>'
    await watch.get_by_label("Message").fill(html)
    await watch.get_by_role("button", name="Send").click()
    await expect(watch.get_by_text(html)).to_be_visible(timeout=WAIT_MS)
    await expect(studio.get_by_text(html)).to_be_visible(timeout=WAIT_MS)
    assert await watch.locator("#chat-list img, #chat-list b").count() == 0

    # The viewer buys: the result shows, the units left drop, the wallet is charged.
    await watch.get_by_role("button", name="Buy now · $15.00").click()
    await expect(watch.locator("#purchase-result")).to_contain_text("Bought! Order", timeout=WAIT_MS)
    await expect(watch.locator("#units-left")).to_have_text("4", timeout=WAIT_MS)
    await expect(watch.locator("#wallet")).to_have_text("Wallet: $85.00", timeout=WAIT_MS)
    # ... and the seller sees the order in the live feed, and the stock in the studio.
    await expect(studio.locator("#orders li")).to_have_count(1, timeout=WAIT_MS)
    await expect(studio.locator("#orders li")).to_contain_text("Glow lamp")
    await expect(studio.locator("#orders li")).to_contain_text("$15.00")
    await expect(studio.locator(".flash-running")).to_contain_text("4 of 5 sale units left", timeout=WAIT_MS)
    # The chart of the last minutes counts it (bars of orders, a line of viewers).
    chart = studio.get_by_role("img", name=re.compile(r"^Last 10 minutes: up to \d+ viewers?, 1 order$"))
    await expect(chart).to_be_visible(timeout=WAIT_MS)
    await expect(chart.locator("rect")).to_have_count(1)

    # The seller removes the HTML message; the viewer sees it marked as removed.
    await studio.get_by_role("button", name=re.compile(r"^Delete .*<img")).click()
    removed = watch.locator("#chat-list li.deleted")
    await expect(removed).to_have_count(1, timeout=WAIT_MS)
    await expect(removed).to_contain_text("message removed by a moderator")
    await expect(watch.get_by_text(html)).to_have_count(0)

    # On a phone the viewer page shows the video, the product card and the chat.
    phone = await open_page(f"/watch/{stream_id}", viewport={"width": 390, "height": 844})
    await expect(phone.locator("#product-title")).to_have_text("Glow lamp", timeout=WAIT_MS)
    await expect(phone.locator("#video")).to_be_visible()
    await expect(phone.locator("#chat-list")).to_contain_text("Yes, 2700 K and dimmable")
    await expect(phone.get_by_role("link", name="Sign in to buy")).to_be_visible()
    await video_playing(phone)
    for page in (phone, watch):
        box = await page.locator("#video").bounding_box()
        viewport = page.viewport_size
        assert box["width"] <= viewport["width"], "the video fits the screen"

    await screenshot(watch, "watch")
    await screenshot(phone, "watch-phone")
    await studio.evaluate("window.scrollTo(0, 0)")
    await screenshot(studio, "studio")

    # The seller ends the show: viewers are told, the studio shows how it went.
    await studio.get_by_role("button", name="End show").click()
    await expect(watch.locator("#video-note")).to_have_text(re.compile("This show has ended"), timeout=WAIT_MS)
    stats = studio.locator("#stats")
    await expect(stats).to_be_visible(timeout=WAIT_MS)
    await expect(stats.locator("dd").nth(5)).to_have_text("1")  # orders
    await expect(stats.locator("dd").nth(6)).to_have_text("$15.00")  # revenue
    await expect(stats.locator("tbody tr")).to_contain_text("Glow lamp")
