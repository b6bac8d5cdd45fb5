"""The whole shop, walked end to end in Chromium (issue 14's "Done when"): a seller sets a shipping rate and
puts a picture on a product in the back office; a new user signs up on /signin, tops up on /wallet, opens
the product from the home page, adds it to the cart, adds an address there, checks out and sees the order
with its shipping and address; buys a digital code from the shop's storefront and reads it on the order;
the seller ships with a carrier and tracking number, the buyer sees the tracking, marks it received and
reviews it (the review shows on the product page); the buyer asks for a return, the seller approves it, and
the buyer sees the order refunded and the money back in the wallet.

The seller and products are seeded through the API; everything the buyer and the seller do after that
goes through the pages, by clicks and typing, asserting what they see. With LIVEHUB_SCREENSHOTS=1 the walk
also refreshes the README's pictures of the shop pages."""

import re

import pytest
from address_form import fill_address
from PIL import Image
from playwright.async_api import Page, expect

from conftest import settings_for

WAIT_MS = 15_000  # generous: two busy cores
ORDER_URL = re.compile(r"/orders/([0-9a-f-]{36})$")
PASSWORD = "a walk through the whole shop"


@pytest.fixture
def settings(database_url, tmp_path):
    """Pictures go to the test's own media directory."""
    return settings_for(database_url).model_copy(update={"data_dir": tmp_path})


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def clear_toasts(page: Page) -> None:
    """Passing messages would cover a screenshot."""
    await page.evaluate("document.getElementById('toasts')?.replaceChildren()")


async def assert_square(picture) -> None:
    """A product's picture shows in a square box, whatever its own size (its <img> carries the picture's
    width and height, which must not stretch the box)."""
    box = await picture.bounding_box()
    assert box is not None and box["width"] > 100 and abs(box["height"] - box["width"]) < 2, box


async def seed_shop(make):
    """A seller with a lamp that ships (stock 5) and a game key (two imported codes)."""
    seller = await make.seller(shop_name="Lumen & Keys")
    lamp = await make.product(
        seller,
        title="Walnut desk lamp",
        description="Warm light, turned walnut base, fabric cable.",
        variants=[{"sku": "LAMP-WAL", "price_cents": 3000, "stock": 5}],
    )
    key = await make.product(
        seller,
        title="Starfield game key",
        description="A download code, shown on your order.",
        variants=[{"sku": "KEY-STAR", "price_cents": 1200, "stock": 0, "digital": True}],
    )
    res = await make.client.post(
        f"/api/variants/{key['variants'][0]['id']}/units",
        data=b"STAR-0001-AAAA\nSTAR-0002-BBBB\n",
        headers={"Content-Type": "text/csv", **seller.headers},
    )
    await ok(res)
    return seller, lamp, key


# -- the seller, in the back office --------------------------------------------------------------------------


async def seller_sets_shipping(back_office: Page, screenshot) -> None:
    await back_office.get_by_role("link", name="Shipping").click()
    form = back_office.locator("#shipping-form")
    await form.get_by_label("Flat rate per order").fill("4.50")
    await form.get_by_label("Free shipping from").fill("100")
    await form.get_by_role("button", name="Save shipping").click()
    await expect(back_office.locator("#shipping-summary")).to_have_text(
        "Ships everywhere for $4.50 an order, free from $100.00."
    )
    await clear_toasts(back_office)
    await screenshot(back_office, "seller-shipping")


async def seller_uploads_a_picture(back_office: Page, product: dict, tmp_path) -> None:
    path = tmp_path / "lamp.png"
    image = Image.new("RGB", (1200, 900), (238, 214, 170))
    image.paste((120, 72, 40), (480, 520, 720, 860))  # a walnut base
    image.paste((250, 240, 200), (400, 140, 800, 520))  # a shade
    image.save(path, "PNG")
    await back_office.get_by_role("link", name="Products").click()
    card = back_office.locator("article.product", has=back_office.get_by_role("heading", name=product["title"]))
    await card.locator(f"#pictures-{product['id']}").set_input_files(path)
    preview = card.locator(".gallery-item img")
    await expect(preview).to_have_count(1)
    await expect(preview).to_have_attribute("alt", f"Picture 1 of {product['title']}")


async def seller_ships(back_office: Page, number: str) -> None:
    await back_office.get_by_role("link", name="Orders").click()
    row = back_office.locator("#orders-table tr", has_text=number)
    await row.get_by_text("Ship…").click()
    await row.get_by_label(f"Carrier for {number}").fill("Parcel Co")
    await row.get_by_label(f"Tracking number for {number}").fill("PC-778899")
    await row.get_by_role("button", name=f"Ship order {number}").click()
    await expect(row.locator(".badge")).to_have_text("shipped")


async def seller_approves_the_return(back_office: Page, number: str, screenshot) -> None:
    await back_office.get_by_role("link", name="Returns").click()
    returns = back_office.locator("#returns")
    row = returns.locator("#returns-table tbody tr", has_text=number)
    await expect(row).to_contain_text("The shade arrived dented.")
    # The whole order comes back: its shipping is refunded too.
    await expect(row).to_contain_text("Approving refunds $34.50")
    await clear_toasts(back_office)
    await screenshot(back_office, "seller-returns")
    await returns.get_by_role("button", name=f"Approve the return of {number}").click()
    await expect(row).to_contain_text("return approved")


# -- the buyer, in the pages ---------------------------------------------------------------------------------


async def buyer_signs_up(page: Page) -> None:
    form = page.locator("#register")
    await form.get_by_label("Your name").fill("Wanda Walker")
    await form.get_by_label("Email").fill("wanda@example.test")
    await form.get_by_label("Password (at least 8 characters)").fill(PASSWORD)
    await form.get_by_role("button", name="Create account").click()
    # Signed up and in, the page goes where sign-in was asked from: the wallet.
    await expect(page).to_have_url(re.compile(r"/wallet$"))


async def buyer_tops_up(page: Page) -> None:
    await expect(page.locator("#balance")).to_have_text("$0.00")
    await page.get_by_label("Top up (amount)").fill("100")
    await page.get_by_role("button", name="Top up").click()
    await expect(page.locator("#balance")).to_have_text("$100.00")
    await expect(page.locator("#history tbody tr").first).to_contain_text("+$100.00")


async def buyer_adds_the_lamp_to_the_cart(page: Page, lamp: dict, screenshot) -> None:
    await page.get_by_role("link", name="LiveHub").first.click()
    await page.locator("#products").get_by_role("link", name=lamp["title"]).click()
    await expect(page).to_have_url(re.compile(f"/products/{lamp['id']}$"))
    await expect(page.get_by_role("heading", name=lamp["title"])).to_be_visible()
    main_picture = page.locator("#gallery-main img")
    await expect(main_picture).to_have_attribute("src", re.compile(r"^/media/images/"))
    await page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=await main_picture.element_handle())
    await assert_square(main_picture)
    await expect(page.locator("#variant-price")).to_have_text("$30.00")
    await expect(page.locator("#variant-stock")).to_have_text("In stock: 5")
    await screenshot(page, "product")
    await page.get_by_role("button", name="Add to cart").click()
    await expect(page.locator("#toasts")).to_contain_text("Added to your cart")
    await expect(page.locator("#cart-count")).to_have_text("1")
    await page.get_by_role("link", name="Go to your cart").click()
    await expect(page).to_have_url(re.compile(r"/cart$"))


async def buyer_adds_an_address_in_the_cart(page: Page, screenshot) -> None:
    await expect(page.locator("#lines")).to_contain_text("Walnut desk lamp")
    await expect(page.get_by_role("link", name="Check out")).to_be_hidden()
    await fill_address(
        page, name="Wanda Walker", line1="4 Lantern Street", city="Portland", postal_code="97201", country="US"
    )
    await page.get_by_role("button", name="Save and ship here").click()
    await expect(page.locator("#address-choice")).to_contain_text("4 Lantern Street")
    await expect(page.locator('dd[data-total="shipping"]')).to_have_text("$4.50")
    await expect(page.locator('dd[data-total="total"]')).to_have_text("$34.50")
    await clear_toasts(page)
    await screenshot(page, "cart")


async def buyer_checks_out(page: Page, screenshot) -> tuple[str, str]:
    """Places the order on /checkout; its id and number, read off the order page."""
    await page.get_by_role("link", name="Check out").click()
    await expect(page).to_have_url(re.compile(r"/checkout\?address_id="))
    await expect(page.locator("#ship-to")).to_contain_text("Wanda Walker, 4 Lantern Street, Portland, 97201 US")
    await expect(page.locator('dd[data-total="total"]')).to_have_text("$34.50")
    await screenshot(page, "checkout")
    await page.get_by_role("button", name="Place order").click()
    await expect(page).to_have_url(ORDER_URL)
    await expect(page.locator("#order-status")).to_have_text("Paid")
    await expect(page.locator("#items")).to_contain_text("1 × Walnut desk lamp")
    await expect(page.locator("#address")).to_contain_text("Ships to Wanda Walker, 4 Lantern Street, Portland")
    await expect(page.locator('dd[data-total="shipping"]')).to_have_text("$4.50")
    await expect(page.locator("#tracking")).to_have_text("Not shipped yet.")
    number = (await page.locator("#order-number").text_content()).removeprefix("Order ")
    return ORDER_URL.search(page.url).group(1), number


async def buyer_buys_the_key_from_the_storefront(page: Page, seller, key: dict, screenshot) -> None:
    await page.locator("#order-shop").click()
    await expect(page).to_have_url(re.compile(f"/shops/{seller.seller['id']}$"))
    await expect(page.get_by_role("heading", name="Lumen & Keys")).to_be_visible()
    await expect(page.get_by_role("link", name="Walnut desk lamp")).to_be_visible()
    await assert_square(page.locator("#products li", has_text="Walnut desk lamp").locator("img"))
    await screenshot(page, "shop")
    await page.get_by_role("link", name=key["title"]).click()
    await expect(page.locator("#ship-to")).to_contain_text("digital code")
    await page.get_by_role("button", name="Buy now").click()
    await expect(page).to_have_url(ORDER_URL)
    await expect(page.locator("#order-status")).to_have_text("Delivered")
    await expect(page.locator(".codes")).to_contain_text(re.compile(r"STAR-000[12]-(AAAA|BBBB)"))


async def buyer_sees_the_tracking_marks_received_and_reviews(page: Page, order_id: str, screenshot) -> None:
    await page.goto(f"/orders/{order_id}")
    await expect(page.locator("#order-status")).to_have_text("Shipped")
    await expect(page.locator("#tracking")).to_contain_text("Carrier: Parcel Co")
    await expect(page.locator("#tracking")).to_contain_text("PC-778899")
    await page.get_by_role("button", name="Mark as received").click()
    await expect(page.locator("#order-status")).to_have_text("Delivered")
    await page.get_by_label("Rating").select_option("5")
    await page.get_by_label("Your review (optional)").fill("Lovely warm light, and the walnut is beautiful.")
    await page.get_by_role("button", name="Post review").click()
    await expect(page.locator("#review-list")).to_contain_text("Lovely warm light")
    await clear_toasts(page)
    await page.evaluate("window.scrollTo(0, 0)")
    await screenshot(page, "order")


async def buyer_sees_the_review_on_the_product(page: Page) -> None:
    await page.locator("#items").get_by_role("link", name="Walnut desk lamp").click()
    review = page.locator("#reviews article.review")
    await expect(review).to_have_count(1)
    await expect(review).to_contain_text("Wanda Walker")
    await expect(review).to_contain_text("Lovely warm light, and the walnut is beautiful.")
    await expect(review.locator(".stars")).to_have_attribute("aria-label", "5 out of 5")
    await expect(page.locator("#product-rating")).to_contain_text("5.0 out of 5 · 1 review")


async def buyer_requests_a_return(page: Page, order_id: str) -> None:
    await page.goto(f"/orders/{order_id}")
    await page.get_by_text("Request a return…").click()
    await page.get_by_label("Why are you returning it?").fill("The shade arrived dented.")
    await page.get_by_role("button", name="Request a return").click()
    await expect(page.locator("#return-status")).to_contain_text("Requested")


async def buyer_sees_the_refund(page: Page, order_id: str, screenshot) -> None:
    await page.goto(f"/orders/{order_id}")
    await expect(page.locator("#order-status")).to_have_text("Refunded")
    await expect(page.locator("#return-status")).to_contain_text("Approved · refund $34.50")
    await expect(page.locator('dd[data-total="refunded"]')).to_have_text("$34.50")

    await page.get_by_role("link", name="Orders", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/orders$"))
    listed = page.get_by_role("link", name=re.compile(r"^Order "))
    await expect(listed).to_have_count(2)
    await screenshot(page, "orders")

    await page.get_by_role("link", name="Wallet", exact=True).click()
    # 100.00 topped up, 34.50 for the lamp and 12.00 for the key; the lamp's 34.50 back.
    await expect(page.locator("#balance")).to_have_text("$88.00")
    await expect(page.locator("#history tbody tr").first).to_contain_text("+$34.50")
    await screenshot(page, "wallet")

    await page.get_by_role("link", name="Account", exact=True).click()
    await expect(page.locator("#email")).to_have_text("wanda@example.test")
    await expect(page.locator("#address-list > li")).to_contain_text("4 Lantern Street")
    await screenshot(page, "account")


async def test_a_new_buyer_walks_the_whole_shop(open_page, make, screenshot, tmp_path):
    expect.set_options(timeout=WAIT_MS)
    seller, lamp, key = await seed_shop(make)

    back_office = await open_page("/seller", seller)
    await seller_sets_shipping(back_office, screenshot)
    await seller_uploads_a_picture(back_office, lamp, tmp_path)

    page = await open_page("/signin?next=%2Fwallet")
    await buyer_signs_up(page)
    await buyer_tops_up(page)
    await buyer_adds_the_lamp_to_the_cart(page, lamp, screenshot)
    await buyer_adds_an_address_in_the_cart(page, screenshot)
    order_id, number = await buyer_checks_out(page, screenshot)
    await buyer_buys_the_key_from_the_storefront(page, seller, key, screenshot)

    await back_office.reload()
    await seller_ships(back_office, number)
    await buyer_sees_the_tracking_marks_received_and_reviews(page, order_id, screenshot)
    await buyer_sees_the_review_on_the_product(page)

    await buyer_requests_a_return(page, order_id)
    await back_office.reload()
    await seller_approves_the_return(back_office, number, screenshot)
    await buyer_sees_the_refund(page, order_id, screenshot)

    # What the pages showed is what the server holds.
    order = await ok(await make.client.get(f"/api/orders/{order_id}", headers=seller.headers))
    assert order["order"]["status"] == "refunded"
    assert order["order"]["tracking"]["tracking_number"] == "PC-778899"
    session = next(c for c in await page.context.cookies() if c["name"] == "livehub_session")
    wallet = await ok(await make.client.get("/api/wallet", headers={"Authorization": f"Bearer {session['value']}"}))
    assert wallet["balance_cents"] == 8_800
