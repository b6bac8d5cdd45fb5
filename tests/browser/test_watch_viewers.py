"""Anonymous viewers in two browsers at one address count as two; a page's reconnects count once (the page
keeps an id for its browser and sends it as ?client_id=)."""

from playwright.async_api import expect

from live_helpers import live_show

WAIT_MS = 20_000


async def test_two_anonymous_browsers_at_one_address_are_two_viewers(open_page, make, client):
    show = await live_show(make, products=1)
    first = await open_page(f"/watch/{show.id}")
    second = await open_page(f"/watch/{show.id}")
    for page in (first, second):
        await expect(page.locator("body")).to_have_attribute("data-room", "open", timeout=WAIT_MS)
    await expect(first.locator("#viewers")).to_have_text("2 watching", timeout=WAIT_MS)

    # A reconnect (a flaky network) and a reload are the same browser: still two.
    await second.evaluate("window.livehubRoom.ws.close(4000)")
    await expect(second.locator("body")).to_have_attribute("data-recovered", "true", timeout=WAIT_MS)
    await second.reload()
    await expect(second.locator("body")).to_have_attribute("data-room", "open", timeout=WAIT_MS)
    await expect(second.locator("#viewers")).to_have_text("2 watching", timeout=WAIT_MS)
    await expect(first.locator("#viewers")).to_have_text("2 watching", timeout=WAIT_MS)
