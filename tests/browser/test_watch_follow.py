"""Following the shop from the viewer page; the button remembers it on the next visit."""

import re

from playwright.async_api import expect

from live_helpers import live_show

WAIT_MS = 15_000


async def test_follow_the_seller_from_the_viewer_page(open_page, make):
    show = await live_show(make, products=1)
    viewer = await make.user()
    page = await open_page(f"/watch/{show.id}", viewer)
    follow = page.locator("#follow")
    await expect(follow).to_have_text("Follow", timeout=WAIT_MS)
    await follow.click()
    await expect(follow).to_have_text("Following ✓", timeout=WAIT_MS)
    await expect(follow).to_have_attribute("aria-pressed", "true")

    await page.reload()
    await expect(page.locator("#follow")).to_have_text("Following ✓", timeout=WAIT_MS)
    await page.locator("#follow").click()
    await expect(page.locator("#follow")).to_have_text("Follow", timeout=WAIT_MS)


async def test_following_asks_an_anonymous_viewer_to_sign_in_first(open_page, make):
    show = await live_show(make, products=1)
    page = await open_page(f"/watch/{show.id}")
    await page.locator("#follow").click()
    await expect(page).to_have_url(re.compile(rf"/signin\?next=%2Fwatch%2F{show.id}$"), timeout=WAIT_MS)
