"""The viewer page before, during and after a show: it follows the stream's status by itself."""

import re

from playwright.async_api import expect

from live_helpers import live_show

WAIT_MS = 20_000


async def test_viewer_page_follows_the_show_from_scheduled_to_ended(open_page, make):
    show = await live_show(make, products=1, start=False)
    page = await open_page(f"/watch/{show.id}")
    note = page.locator("#video-note")
    await expect(note).to_have_text(re.compile("has not started yet"), timeout=WAIT_MS)
    await expect(page.locator("#live-badge")).to_be_hidden()

    res = await make.client.post(f"/api/streams/{show.id}/start", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    await expect(page.locator("#live-badge")).to_be_visible(timeout=WAIT_MS)
    # Live, but the seller's camera is not on yet: the page says so and keeps trying.
    await expect(note).to_have_text("Waiting for the seller's camera…", timeout=WAIT_MS)

    res = await make.client.post(f"/api/streams/{show.id}/end", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    await expect(note).to_have_text(re.compile("This show has ended"), timeout=WAIT_MS)
    await expect(page.locator("#live-badge")).to_be_hidden()


async def test_a_missing_stream_says_so(open_page):
    page = await open_page("/watch/00000000-0000-0000-0000-000000000000")
    await expect(page.locator("#stream-title")).to_have_text("This stream does not exist.", timeout=WAIT_MS)
