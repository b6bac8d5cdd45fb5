"""The home page and sign-in in Chromium: live and scheduled shows, the catalog search with titles as
text, registering and signing in with a return to where the user was going."""

import re

from playwright.async_api import expect

from live_helpers import live_show

WAIT_MS = 15_000


async def test_home_lists_products_and_searches(open_page, make):
    seller = await make.seller()
    await make.product(seller, title="Blue <b>sneakers</b>")
    await make.product(seller, title="Red hoodie")

    page = await open_page("/")
    await expect(page.get_by_text("Red hoodie")).to_be_visible()
    # Seller text is shown literally, never parsed as HTML.
    await expect(page.get_by_text("Blue <b>sneakers</b>")).to_be_visible()

    await page.get_by_role("searchbox").fill("hoodie")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_text("Blue <b>sneakers</b>")).to_have_count(0)
    await expect(page.get_by_text("Red hoodie")).to_be_visible()


async def test_home_shows_live_and_scheduled_streams(open_page, make, screenshot):
    show = await live_show(make, products=2)
    res = await make.client.post(
        "/api/streams",
        json={"title": "Sunday <i>restock</i>", "products": [{"product_id": show.products[0]["id"]}]},
        headers=show.seller.headers,
    )
    assert res.status == 201, await res.text()

    page = await open_page("/")
    live = page.locator("#live")
    await expect(live.get_by_role("link", name="Live now", exact=True)).to_have_attribute("href", f"/watch/{show.id}")
    await expect(live).to_contain_text(show.stream["seller"]["shop_name"])
    await expect(live).to_contain_text("watching")
    await expect(page.locator("#scheduled")).to_contain_text("Sunday <i>restock</i>")
    await screenshot(page, "home")

    await live.get_by_role("link", name="Live now", exact=True).click()
    await expect(page).to_have_url(re.compile(f"/watch/{show.id}$"))
    await expect(page.locator("#stream-title")).to_have_text("Live now", timeout=WAIT_MS)


async def test_register_and_sign_in_return_to_next(open_page, make):
    page = await open_page("/signin?next=/watch/00000000-0000-0000-0000-000000000000")
    await page.get_by_label("Your name").fill("Ada")
    await page.get_by_label("Email", exact=True).fill("ada@example.test")
    await page.get_by_label("Password (at least 8 characters)").fill("correct horse battery")
    await page.get_by_role("button", name="Create account").click()
    await expect(page).to_have_url(re.compile(r"/watch/0{8}-"), timeout=WAIT_MS)
    await expect(page.locator("#top")).to_contain_text("Ada", timeout=WAIT_MS)

    # Signed out, a wrong password says so; the right one goes on to ?next= (only paths on this site).
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/$"))
    await page.goto("/signin?next=https://evil.example/")
    await page.get_by_label("Email or phone").fill("ada@example.test")
    await page.get_by_label("Password", exact=True).fill("wrong password")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("#signin .form-error")).not_to_be_empty(timeout=WAIT_MS)
    await page.get_by_label("Password", exact=True).fill("correct horse battery")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/$"), timeout=WAIT_MS)
    await expect(page.locator("#top")).to_contain_text("Ada")


async def test_home_tells_a_follower_when_the_shop_goes_live(open_page, make):
    show = await live_show(make, products=1, start=False)
    fan = await make.user()
    res = await make.client.post(f"/api/sellers/{show.stream['seller']['id']}/follow", headers=fan.headers)
    assert res.status == 200, await res.text()

    page = await open_page("/", fan)
    await expect(page.locator("#live-empty")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#scheduled")).to_contain_text("Live now")
    # Once the page's notification socket is open, the shop goes live.
    await expect(page.locator("body")).to_have_attribute("data-notifications", "open", timeout=WAIT_MS)
    res = await make.client.post(f"/api/streams/{show.id}/start", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    await expect(page.locator("#toasts")).to_contain_text("is live now: Live now", timeout=WAIT_MS)
    await expect(page.locator("#live").get_by_role("link", name="Live now", exact=True)).to_be_visible()
