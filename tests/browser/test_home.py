"""The home page in Chromium: the catalog search shows products, and their titles as text."""

from playwright.async_api import expect


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
