"""The studio and the viewer page in Chromium, as a new seller found them: a flash sale's units and the
variant's stock told apart, the two revenue figures labelled, a flash price that is no discount refused
next to its field, toasts that never stand between the seller and a control, and chat and moderation
closing with the show."""

import re

from playwright.async_api import expect

from helpers import top_up
from live_helpers import Viewer

WAIT_MS = 20_000


async def live_lamp_show(make, *, stock: int = 20):
    seller = await make.seller(shop_name="Lamp Corner")
    lamp = await make.product(
        seller, title="Glow lamp", variants=[{"sku": "LAMP-1", "price_cents": 2500, "stock": stock}]
    )
    res = await make.client.post(
        "/api/streams",
        json={"title": "Evening lamps", "products": [{"product_id": lamp["id"]}]},
        headers=seller.headers,
    )
    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    res = await make.client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
    assert res.status == 200, await res.text()
    return seller, lamp, stream


async def toasts_let_clicks_through(page) -> None:
    """Wherever a toast is, the control under it gets the click: each point of every toast hits what is
    beneath it, not the toast."""
    hits = await page.evaluate(
        """() => [...document.querySelectorAll('#toasts .toast')].flatMap((t) => {
             const r = t.getBoundingClientRect();
             return [[0.5, 0.5], [0.1, 0.5], [0.9, 0.5]].map(([fx, fy]) => {
               const hit = document.elementFromPoint(r.left + r.width * fx, r.top + r.height * fy);
               return !!hit && !!hit.closest('#toasts');
             });
           })"""
    )
    assert hits and not any(hits), hits


async def test_the_studio_labels_its_figures_and_refuses_a_fake_discount(open_page, make, client):
    seller, lamp, stream = await live_lamp_show(make)
    variant = lamp["variants"][0]["id"]
    studio = await open_page(f"/studio?stream={stream['id']}", seller)
    item = studio.locator(f"li[data-product-id='{lamp['id']}']")
    await expect(item.locator(".units")).to_have_text("Stock: 20", timeout=WAIT_MS)

    # A flash price at or above the price in the show is refused, and the reason is by the price field.
    form = studio.get_by_role("form", name="Flash sale of Glow lamp")
    price = form.get_by_label("Flash price")
    await price.fill("30.00")
    await form.get_by_label("Units").fill("5")
    await form.get_by_role("button", name="Start flash sale").click()
    await expect(price).to_have_attribute("aria-invalid", "true", timeout=WAIT_MS)
    await expect(form.locator(".field-error")).to_have_text("Must be below $25.00, the price in this show")
    await toasts_let_clicks_through(studio)
    await expect(item.locator(".flash-running")).to_have_count(0)

    await price.fill("15.00")
    await form.get_by_role("button", name="Start flash sale").click()
    running = item.locator(".flash-running")
    await expect(running).to_contain_text("5 of 5 sale units left", timeout=WAIT_MS)
    # The variant's stock stays the stock, labelled as such.
    await expect(item.locator(".units")).to_have_text("Stock: 20")
    await toasts_let_clicks_through(studio)

    # Two buyers take two sale units: the sale's units and the stock both drop, each under its own name.
    buyers = [await make.user() for _ in range(2)]
    for buyer in buyers:
        await top_up(client, buyer, 10_000)
        fan = await Viewer.connect(client, stream["id"], buyer)
        reply = await fan.request("buy", variant_id=variant, quantity=1)
        assert reply.get("status") == "ok", reply
        await fan.close()
    await expect(running).to_contain_text("3 of 5 sale units left", timeout=WAIT_MS)
    await expect(item.locator(".units")).to_have_text("Stock: 18", timeout=WAIT_MS)

    # One order is refunded: the live feed's figure says it is before refunds, the stats' after.
    await expect(studio.locator("#orders li")).to_have_count(2, timeout=WAIT_MS)
    summary = studio.locator("#orders-summary")
    await expect(summary).to_have_text("2 orders · $30.00 in sales (before refunds)")
    order = (await (await client.get("/api/orders", headers=buyers[0].headers)).json())["items"][0]
    res = await client.post(f"/api/orders/{order['id']}/refund", json={"reason": "dented"}, headers=seller.headers)
    assert res.status == 200, await res.text()
    res = await client.post(f"/api/streams/{stream['id']}/end", headers=seller.headers)
    assert res.status == 200, await res.text()
    stats = studio.locator("#stats")
    await expect(stats).to_be_visible(timeout=WAIT_MS)
    revenue = stats.locator("dt", has_text="Revenue")
    await expect(revenue).to_have_text("Revenue after refunds")
    await expect(stats.locator("dt:has-text('Revenue') + dd")).to_have_text("$15.00")


async def test_chat_and_moderation_close_with_the_show(open_page, make, client):
    seller, lamp, stream = await live_lamp_show(make)
    fan = await make.user(display_name="Fan")
    studio = await open_page(f"/studio?stream={stream['id']}", seller)
    watch = await open_page(f"/watch/{stream['id']}", fan)
    await expect(watch.locator("#viewers")).to_have_text(re.compile(r"\d+ watching"), timeout=WAIT_MS)
    await watch.get_by_label("Message").fill("Does it dim?")
    await watch.get_by_role("button", name="Send").click()
    message = studio.locator("#chat-list li", has_text="Does it dim?")
    await expect(message.get_by_role("button", name=re.compile("^Ban "))).to_be_visible(timeout=WAIT_MS)
    await expect(studio.locator("#slow-mode")).to_be_enabled()

    res = await client.post(f"/api/streams/{stream['id']}/end", headers=seller.headers)
    assert res.status == 200, await res.text()

    # The viewer page: no composer, no viewer count, a word that chat is closed; the messages stay.
    await expect(watch.locator("#chat-form")).to_be_hidden(timeout=WAIT_MS)
    await expect(watch.locator("#chat-closed")).to_have_text("The show has ended: chat is closed.")
    await expect(watch.locator("#viewers")).to_be_hidden()
    await expect(watch.locator("#chat-list")).to_contain_text("Does it dim?")
    for button in await watch.locator("#reactions button").all():
        await expect(button).to_be_disabled()
    # The studio: no composer, no moderation on messages, slow mode off limits, no viewer count.
    await expect(studio.locator("#chat-form")).to_be_hidden(timeout=WAIT_MS)
    await expect(studio.locator("#chat-closed")).to_be_visible()
    await expect(message.locator(".chat-actions button")).to_have_count(0)
    await expect(studio.locator("#slow-mode")).to_be_disabled()
    await expect(studio.locator("#viewers")).to_be_hidden()

    # Opening the ended show later shows it closed from the start.
    again = await open_page(f"/watch/{stream['id']}", fan)
    await expect(again.locator("#chat-closed")).to_be_visible(timeout=WAIT_MS)
    await expect(again.locator("#chat-form")).to_be_hidden()
    later = await open_page(f"/studio?stream={stream['id']}", seller)
    await expect(later.locator("#chat-closed")).to_be_visible(timeout=WAIT_MS)
    await expect(later.locator("#chat-list li", has_text="Does it dim?")).to_be_visible()
    await expect(later.locator("#chat-list .chat-actions button")).to_have_count(0)


async def test_a_flash_price_being_typed_survives_the_show_changing_around_it(open_page, make):
    """In a busy show the product list changes every second (stock, pins): the flash-sale form the seller
    is typing in is kept, not rebuilt with its defaults."""
    seller, lamp, stream = await live_lamp_show(make)
    studio = await open_page(f"/studio?stream={stream['id']}", seller)
    item = studio.locator(f"li[data-product-id='{lamp['id']}']")
    pin = studio.get_by_role("button", name="Pin")
    await expect(pin).to_be_enabled(timeout=WAIT_MS)
    form = studio.get_by_role("form", name="Flash sale of Glow lamp")
    price = form.get_by_label("Flash price")
    await price.fill("12.34")

    await pin.click()  # the pin comes back as an event, and the product list is drawn again
    await expect(item).to_have_class(re.compile(r"\bpinned\b"), timeout=WAIT_MS)
    await expect(studio.get_by_role("button", name="Unpin")).to_be_visible()
    await expect(price).to_have_value("12.34")
