"""The buyer's shop pages in Chromium: a product page to the cart (an address added there, each shop's
shipping and the totals), checkout and the order it makes; Buy now of a digital code read on the order
page; the order page's Mark received, review and return; a shop's storefront and Follow; the home
page's links to products and shops."""

import re

from address_form import fill_address
from image_helpers import picture, upload
from playwright.async_api import expect

from helpers import balance, top_up

WAIT_MS = 15_000


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def ships_for(make, seller, flat_rate_cents: int) -> None:
    body = {"flat_rate_cents": flat_rate_cents, "free_over_cents": None, "countries": []}
    await ok(await make.client.put("/api/seller/shipping", json=body, headers=seller.headers))


async def test_product_page_to_cart_checkout_and_order(open_page, make):
    seller = await make.seller(shop_name="Sneaker Barn")
    await ships_for(make, seller, 500)
    product = await make.product(
        seller,
        title="Canvas sneakers",
        description="Light and comfy.",
        variants=[
            {"sku": "SNK-S", "price_cents": 3000, "stock": 4, "options": {"size": "S"}},
            {"sku": "SNK-M", "price_cents": 3200, "stock": 2, "options": {"size": "M"}},
        ],
    )
    buyer = await make.user(address=False)
    await top_up(make.client, buyer, 10_000)

    page = await open_page(f"/products/{product['id']}", buyer)
    await expect(page.get_by_role("heading", name="Canvas sneakers")).to_be_visible(timeout=WAIT_MS)
    await expect(page.get_by_text("Light and comfy.")).to_be_visible()
    await expect(page.get_by_role("link", name="Sneaker Barn")).to_have_attribute(
        "href", f"/shops/{seller.seller['id']}"
    )
    await expect(page.get_by_role("img", name="No picture of Canvas sneakers")).to_be_visible()
    await page.get_by_label(re.compile(r"size: M")).check()
    await expect(page.locator("#variant-price")).to_have_text("$32.00")
    await expect(page.locator("#variant-stock")).to_have_text("In stock: 2")
    await page.get_by_label("Quantity").fill("2")
    await page.get_by_role("button", name="Add to cart").click()
    await expect(page.locator("#toasts")).to_contain_text("Added to your cart", timeout=WAIT_MS)
    await expect(page.locator("#cart-count")).to_have_text("2")

    await page.get_by_role("link", name="Go to your cart").click()
    await expect(page).to_have_url(re.compile(r"/cart$"))
    await expect(page.locator("#lines")).to_contain_text("Canvas sneakers", timeout=WAIT_MS)
    await expect(page.locator("#lines")).to_contain_text("$64.00")
    # No address yet: the totals wait for one, and checkout is not offered.
    await expect(page.locator("#summary-note")).to_contain_text("choose or add an address")
    await expect(page.get_by_role("link", name="Check out")).to_be_hidden()
    await fill_address(
        page, name="Ada Buyer", line1="12 Analytical Row", city="London", postal_code="N1 9GU", country="GB"
    )
    await page.get_by_role("button", name="Save and ship here").click()
    await expect(page.locator("#address-choice")).to_contain_text("12 Analytical Row", timeout=WAIT_MS)
    await expect(page.locator("#shops")).to_contain_text("shipping $5.00")
    await expect(page.locator('dd[data-total="subtotal"]')).to_have_text("$64.00")
    await expect(page.locator('dd[data-total="shipping"]')).to_have_text("$5.00")
    await expect(page.locator('dd[data-total="total"]')).to_have_text("$69.00")

    await page.get_by_role("link", name="Check out").click()
    await expect(page).to_have_url(re.compile(r"/checkout\?address_id="))
    await expect(page.locator("#ship-to")).to_contain_text(
        "Ada Buyer, 12 Analytical Row, London, N1 9GU GB", timeout=WAIT_MS
    )
    await expect(page.locator('dd[data-total="total"]')).to_have_text("$69.00")
    await page.get_by_role("button", name="Place order").click()

    await expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}$"), timeout=WAIT_MS)
    await expect(page.locator("#order-status")).to_have_text("Paid", timeout=WAIT_MS)
    await expect(page.locator("#items")).to_contain_text("2 × Canvas sneakers")
    await expect(page.locator("#address")).to_contain_text("12 Analytical Row")
    await expect(page.locator('dd[data-total="shipping"]')).to_have_text("$5.00")
    await expect(page.locator('dd[data-total="total"]')).to_have_text("$69.00")
    await expect(page.locator("#tracking")).to_have_text("Not shipped yet.")
    await expect(page.get_by_role("link", name="Sneaker Barn")).to_be_visible()
    assert await balance(make.client, buyer) == 10_000 - 6_900
    await expect(page.locator("#cart-count")).to_be_hidden()


async def test_checkout_without_the_money_points_to_the_wallet(open_page, make):
    seller = await make.seller()
    product = await make.product(
        seller, title="Pricey lamp", variants=[{"sku": "LAMP-1", "price_cents": 9900, "stock": 3}]
    )
    buyer = await make.user()
    await ok(
        await make.client.post(
            "/api/cart/items", json={"variant_id": product["variants"][0]["id"]}, headers=buyer.headers
        )
    )
    page = await open_page("/checkout", buyer)
    await expect(page.locator('dd[data-total="total"]')).to_have_text("$99.00", timeout=WAIT_MS)
    await page.get_by_role("button", name="Place order").click()
    error = page.locator("#place .form-error")
    await expect(error).to_contain_text("balance is too low", timeout=WAIT_MS)
    await error.get_by_role("link", name="Top up your wallet").click()
    await expect(page).to_have_url(re.compile(r"/wallet$"))


async def test_buy_now_a_digital_code_and_read_it_on_the_order(open_page, make):
    seller = await make.seller()
    product = await make.product(
        seller, title="Game key", variants=[{"sku": "KEY-1", "price_cents": 1500, "stock": 0, "digital": True}]
    )
    res = await make.client.post(
        f"/api/variants/{product['variants'][0]['id']}/units",
        data=b"AAAA-1111-ZZZZ\n",
        headers={"Content-Type": "text/csv", **seller.headers},
    )
    await ok(res)
    buyer = await make.user(address=False)
    await top_up(make.client, buyer, 5_000)

    page = await open_page(f"/products/{product['id']}", buyer)
    await expect(page.locator("#ship-to")).to_contain_text("digital code", timeout=WAIT_MS)
    await page.get_by_role("button", name="Buy now").click()
    await expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}$"), timeout=WAIT_MS)
    await expect(page.locator(".codes")).to_contain_text("AAAA-1111-ZZZZ", timeout=WAIT_MS)
    await expect(page.locator("#order-status")).to_have_text("Delivered")
    # Nothing ships: no address, no shipping section.
    await expect(page.locator("#shipping-section")).to_be_hidden()
    assert await balance(make.client, buyer) == 3_500


async def test_order_page_mark_received_review_and_return(open_page, make):
    seller = await make.seller()
    product = await make.product(
        seller, title="Wool scarf", variants=[{"sku": "SCARF-1", "price_cents": 2000, "stock": 5}]
    )
    buyer = await make.user()
    await top_up(make.client, buyer, 5_000)
    body = {"items": [{"variant_id": product["variants"][0]["id"], "quantity": 1}]}
    order = (await ok(await make.client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
    tracking = {"carrier": "Parcel Co", "tracking_number": "PC123456", "tracking_url": "https://track.example/PC123456"}
    await ok(await make.client.post(f"/api/orders/{order['id']}/ship", json=tracking, headers=seller.headers))

    page = await open_page(f"/orders/{order['id']}", buyer)
    await expect(page.locator("#order-status")).to_have_text("Shipped", timeout=WAIT_MS)
    await expect(page.locator("#tracking")).to_contain_text("Parcel Co")
    await expect(page.locator("#tracking")).to_contain_text("PC123456")
    await expect(page.get_by_role("link", name="Track the parcel")).to_have_attribute(
        "href", "https://track.example/PC123456"
    )
    await page.get_by_role("button", name="Mark as received").click()
    await expect(page.locator("#order-status")).to_have_text("Delivered", timeout=WAIT_MS)
    await expect(page.locator("#timeline")).to_contain_text("Delivered")

    await page.get_by_label("Rating").select_option("4")
    await page.get_by_label("Your review (optional)").fill("Warm and soft.")
    await page.get_by_role("button", name="Post review").click()
    await expect(page.locator("#review-list")).to_contain_text("Warm and soft.", timeout=WAIT_MS)
    await expect(page.locator("#review-list .stars")).to_have_text("★★★★☆")
    reviews = await ok(await make.client.get(f"/api/products/{product['id']}/reviews"))
    assert [(r["rating"], r["text"]) for r in reviews["items"]] == [(4, "Warm and soft.")]

    await page.get_by_text("Request a return…").click()
    await page.get_by_label("Why are you returning it?").fill("Too scratchy.")
    await page.get_by_role("button", name="Request a return").click()
    await expect(page.locator("#return-status")).to_contain_text("Requested", timeout=WAIT_MS)
    await expect(page.locator("#return-status")).to_contain_text("Too scratchy.")
    # Reloaded, the review written stays shown instead of the form.
    await page.reload()
    await expect(page.locator("#review-list")).to_contain_text("Warm and soft.", timeout=WAIT_MS)
    await expect(page.get_by_role("button", name="Post review")).to_have_count(0)


async def test_cancel_an_order_before_it_ships(open_page, make):
    seller = await make.seller()
    product = await make.product(seller, title="Mug", variants=[{"sku": "MUG-1", "price_cents": 1200, "stock": 5}])
    buyer = await make.user()
    await top_up(make.client, buyer, 5_000)
    body = {"items": [{"variant_id": product["variants"][0]["id"], "quantity": 1}]}
    order = (await ok(await make.client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]

    page = await open_page("/orders", buyer)
    await page.get_by_role("link", name=f"Order {order['number']}").click()
    await expect(page.locator("#order-status")).to_have_text("Paid", timeout=WAIT_MS)
    await page.get_by_role("button", name="Cancel order").click()
    await expect(page.locator("#order-status")).to_have_text("Cancelled", timeout=WAIT_MS)
    await expect(page.get_by_role("button", name="Cancel order")).to_have_count(0)
    assert await balance(make.client, buyer) == 5_000


async def test_storefront_lists_products_and_shows_and_follows(open_page, make):
    seller = await make.seller(shop_name="Tea & Co")
    product = await make.product(seller, title="Green tea")
    res = await make.client.post(
        "/api/streams",
        json={"title": "Tasting night", "products": [{"product_id": product["id"]}]},
        headers=seller.headers,
    )
    stream = (await ok(res, 201))["stream"]
    fan = await make.user()

    page = await open_page(f"/shops/{seller.seller['id']}", fan)
    await expect(page.get_by_role("heading", name="Tea & Co")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#shop-followers")).to_have_text("0 followers")
    await expect(page.get_by_role("link", name="Tasting night")).to_have_attribute("href", f"/watch/{stream['id']}")
    follow = page.locator("#follow")
    await expect(follow).to_have_text("Follow")
    await follow.click()
    await expect(follow).to_have_text("Following", timeout=WAIT_MS)
    await expect(page.locator("#shop-followers")).to_have_text("1 follower")
    await page.reload()
    await expect(page.locator("#follow")).to_have_text("Following", timeout=WAIT_MS)

    await page.get_by_role("link", name="Green tea").click()
    await expect(page).to_have_url(re.compile(f"/products/{product['id']}$"))
    await expect(page.get_by_role("heading", name="Green tea")).to_be_visible(timeout=WAIT_MS)


async def test_home_links_products_and_shops_and_the_shop_pages(open_page, make):
    seller = await make.seller(shop_name="Hat Hut")
    product = await make.product(seller, title="Straw hat")
    buyer = await make.user()

    page = await open_page("/", buyer)
    products = page.locator("#products")
    await expect(products.get_by_role("link", name="Straw hat")).to_have_attribute(
        "href", f"/products/{product['id']}", timeout=WAIT_MS
    )
    await expect(products.get_by_role("link", name="Hat Hut")).to_have_attribute(
        "href", f"/shops/{seller.seller['id']}"
    )
    nav = page.locator("#top nav")
    for name, href in [("Cart", "/cart"), ("Orders", "/orders"), ("Wallet", "/wallet"), ("Account", "/account")]:
        await expect(nav.get_by_role("link", name=name, exact=True)).to_have_attribute("href", href)


async def test_signed_out_the_buyer_pages_ask_to_sign_in(open_page):
    page = await open_page("/cart")
    await expect(page).to_have_url(re.compile(r"/signin\?next=%2Fcart$"), timeout=WAIT_MS)


async def test_buy_now_asks_for_the_address_when_there_is_none(open_page, make):
    seller = await make.seller()
    product = await make.product(
        seller, title="Desk plant", variants=[{"sku": "PLANT-1", "price_cents": 1800, "stock": 3}]
    )
    buyer = await make.user(address=False)
    await top_up(make.client, buyer, 5_000)

    page = await open_page(f"/products/{product['id']}", buyer)
    await expect(page.locator("#ship-to")).to_contain_text("you have none yet", timeout=WAIT_MS)
    await page.get_by_text("Where should it go?").click()
    form = page.locator("#buy-address-form")
    await fill_address(form, name="Grace Buyer", line1="7 Compiler Lane", city="Arlington", country="us")
    await form.get_by_role("button", name="Save address").click()
    await expect(page.locator("#ship-to")).to_contain_text("Ships to Grace Buyer, 7 Compiler Lane", timeout=WAIT_MS)
    await expect(page.locator("#buy-address")).to_be_hidden()

    await page.get_by_role("button", name="Buy now").click()
    await expect(page).to_have_url(re.compile(r"/orders/[0-9a-f-]{36}$"), timeout=WAIT_MS)
    await expect(page.locator("#address")).to_contain_text("7 Compiler Lane, Arlington, US", timeout=WAIT_MS)
    assert await balance(make.client, buyer) == 5_000 - 1_800


async def test_product_gallery_switches_pictures(open_page, make):
    seller = await make.seller()
    product = await make.product(seller, title="Red and blue")
    first = await upload(make.client, seller, product["id"], picture("PNG", (800, 800), (200, 30, 30)))
    second = await upload(make.client, seller, product["id"], picture("PNG", (800, 800), (30, 30, 200)))

    page = await open_page(f"/products/{product['id']}")
    main = page.locator("#gallery-main img")
    await expect(main).to_have_attribute("src", first["url"], timeout=WAIT_MS)
    await expect(page.locator("#gallery-thumbs button")).to_have_count(2)
    await page.get_by_role("button", name="Show picture 2").click()
    await expect(main).to_have_attribute("src", second["url"])
    await expect(page.get_by_role("button", name="Show picture 2")).to_have_attribute("aria-pressed", "true")
    # The picture really loads from the server.
    assert await main.evaluate("img => img.complete && img.naturalWidth > 0")

    # The cart shows each line with its product's first picture.
    buyer = await make.user()
    body = {"variant_id": product["variants"][0]["id"]}
    await ok(await make.client.post("/api/cart/items", json=body, headers=buyer.headers))
    page = await open_page("/cart", buyer)
    await expect(page.locator(".cart-line img")).to_have_attribute("src", first["url"], timeout=WAIT_MS)


async def test_cart_changes_quantity_removes_and_says_where_a_shop_does_not_ship(open_page, make):
    seller = await make.seller(shop_name="Local Only")
    await make.client.put(
        "/api/seller/shipping",
        json={"flat_rate_cents": 300, "free_over_cents": None, "countries": ["US"]},
        headers=seller.headers,
    )
    kept = await make.product(seller, title="Jam", variants=[{"sku": "JAM-1", "price_cents": 400, "stock": 9}])
    dropped = await make.product(seller, title="Honey", variants=[{"sku": "HON-1", "price_cents": 700, "stock": 9}])
    buyer = await make.user()  # default address in the US
    abroad = await make.address(buyer, line1="3 Rue Lointaine", city="Lyon", country="FR")
    for p in (kept, dropped):
        body = {"variant_id": p["variants"][0]["id"]}
        await ok(await make.client.post("/api/cart/items", json=body, headers=buyer.headers))

    page = await open_page("/cart", buyer)
    await expect(page.locator('dd[data-total="total"]')).to_have_text("$14.00", timeout=WAIT_MS)
    await page.get_by_label("Quantity of Jam").fill("3")
    await page.get_by_label("Quantity of Jam").press("Enter")
    await page.get_by_label("Quantity of Jam").blur()
    await expect(page.locator('dd[data-total="subtotal"]')).to_have_text("$19.00", timeout=WAIT_MS)
    await page.get_by_role("button", name="Remove Honey").click()
    await expect(page.locator("#lines")).not_to_contain_text("Honey", timeout=WAIT_MS)
    await expect(page.locator('dd[data-total="total"]')).to_have_text("$15.00")
    await expect(page.locator("#cart-count")).to_have_text("3")

    await page.get_by_label(re.compile("3 Rue Lointaine")).check()
    await expect(page.locator("#shops")).to_contain_text("does not ship to this address", timeout=WAIT_MS)
    await expect(page.locator("#summary-note")).to_contain_text("Local Only does not ship to this address")
    await expect(page.get_by_role("link", name="Check out")).to_be_hidden()
    assert f"address_id={abroad['id']}" in page.url


async def test_product_reviews_page_with_show_more(open_page, make):
    seller = await make.seller()
    product = await make.product(seller, title="Notebook", variants=[{"sku": "NB-1", "price_cents": 500, "stock": 20}])
    tracking = {"carrier": "Parcel Co", "tracking_number": "PC1"}
    for n in range(6):
        buyer = await make.user()
        await top_up(make.client, buyer, 1_000)
        body = {"items": [{"variant_id": product["variants"][0]["id"]}]}
        order = (await ok(await make.client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
        await ok(await make.client.post(f"/api/orders/{order['id']}/ship", json=tracking, headers=seller.headers))
        await ok(await make.client.post(f"/api/orders/{order['id']}/deliver", headers=buyer.headers))
        review = {"order_id": order["id"], "rating": 5 if n % 2 else 3, "text": f"Review number {n}"}
        res = await make.client.post(f"/api/products/{product['id']}/reviews", json=review, headers=buyer.headers)
        await ok(res, 201)

    page = await open_page(f"/products/{product['id']}")
    reviews = page.locator("#reviews article.review")
    await expect(reviews).to_have_count(5, timeout=WAIT_MS)
    await expect(page.locator("#product-rating")).to_contain_text("4.0 out of 5 · 6 reviews")
    await expect(reviews.first).to_contain_text("Review number 5")
    await page.get_by_role("button", name="Show more").click()
    await expect(reviews).to_have_count(6, timeout=WAIT_MS)
    await expect(reviews.last).to_contain_text("Review number 0")
    await expect(page.get_by_role("button", name="Show more")).to_be_hidden()


async def test_a_shop_owner_sees_no_follow_button_on_their_storefront(open_page, make):
    seller = await make.seller(shop_name="My own shop")
    page = await open_page(f"/shops/{seller.seller['id']}", seller)
    await expect(page.get_by_role("heading", name="My own shop")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#follow")).to_be_hidden()
    # Signed out, Follow asks to sign in first.
    page = await open_page(f"/shops/{seller.seller['id']}")
    await page.get_by_role("button", name="Follow").click()
    await expect(page).to_have_url(re.compile(r"/signin\?next="), timeout=WAIT_MS)
