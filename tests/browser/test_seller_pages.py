"""The seller back office in Chromium: a product with a variant, a stock adjustment, a CSV import of
digital codes with its progress bar and report, shipping an order, and the application form."""

from playwright.async_api import expect

from helpers import top_up

TIMEOUT = 15_000  # ms: generous, two busy cores
# Line 1 is the header; line 4 repeats line 2 and line 5 has a second column: 2 codes imported.
CODES_CSV = b"code\nGIFT-AAA-111\nGIFT-BBB-222\nGIFT-AAA-111\nGIFT-CCC-333,extra\n"


async def hide_toasts(page) -> None:
    """Passing messages would cover the screenshot."""
    await page.evaluate("document.getElementById('toasts')?.replaceChildren()")


async def test_seller_lists_a_product_adjusts_stock_imports_codes_and_ships(client, make, open_page, screenshot):
    seller = await make.seller(shop_name="Corner <b>Shop</b>")
    # Set up through the API: a digital product to import codes into, and a paid order to ship.
    await make.product(seller, title="Gift card", variants=[{"sku": "GIFT-10", "price_cents": 1000, "digital": True}])
    tee = await make.product(seller, title="Plain tee", variants=[{"sku": "TEE-M", "price_cents": 1500, "stock": 5}])
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    body = {"items": [{"variant_id": tee["variants"][0]["id"], "quantity": 1}]}
    res = await client.post("/api/orders", json=body, headers=buyer.headers)
    assert res.status == 201, await res.text()
    order = (await res.json())["order"]

    page = await open_page("/seller", seller)
    expect.set_options(timeout=TIMEOUT)
    # The shop's name is text, never HTML.
    await expect(page.get_by_role("heading", level=1)).to_have_text("Corner <b>Shop</b>")

    # A new product with one variant.
    await page.get_by_text("New product").click()
    form = page.locator("#product-form")
    await form.get_by_label("Title", exact=True).fill("Canvas tote")
    await form.get_by_label("Description", exact=True).fill("Heavy cotton, long handles")
    await form.get_by_label("SKU", exact=True).fill("TOTE-1")
    await form.get_by_label("Options", exact=True).fill("colour=natural")
    await form.get_by_label("Price", exact=True).fill("24.50")
    await form.get_by_label("Stock", exact=True).fill("3")
    await form.get_by_role("button", name="Create product").click()
    tote = page.locator("article.product", has=page.get_by_role("heading", name="Canvas tote"))
    await expect(tote).to_be_visible()
    row = tote.locator("tr", has_text="TOTE-1")
    await expect(row).to_contain_text("colour: natural")
    await expect(row.locator(".available")).to_have_text("3")

    # Stock up by 5 with a reason: the new figure shows.
    await page.get_by_label("Stock change for TOTE-1").fill("5")
    await page.get_by_label("Reason for TOTE-1").fill("restocked from supplier")
    await page.get_by_role("button", name="Adjust stock of TOTE-1").click()
    await expect(row.locator(".available")).to_have_text("8")
    # And a new price.
    await row.get_by_label("Change price of TOTE-1").click()
    await row.get_by_label("New price of TOTE-1").fill("22")
    await row.get_by_role("button", name="Save price of TOTE-1").click()
    await expect(row.locator("td.price")).to_contain_text("$22.00")
    await hide_toasts(page)
    await screenshot(page, "seller")

    # Import codes into the gift card: progress to the end, then the report.
    await page.get_by_role("button", name="Import codes for GIFT-10").click()
    panel = page.locator("#import")
    await expect(panel.get_by_role("heading")).to_have_text("Import codes into Gift card (GIFT-10)")
    await panel.get_by_label("CSV file of codes").set_input_files(
        files=[{"name": "codes.csv", "mimeType": "text/csv", "buffer": CODES_CSV}]
    )
    await panel.get_by_role("button", name="Upload").click()
    bar = panel.get_by_role("progressbar")
    await expect(bar).to_be_visible()
    await expect(bar).to_have_js_property("value", 100)
    await expect(panel.locator(".import-summary")).to_have_text("Imported 2 codes. 2 rows were not imported:")
    report = panel.locator("table.report tbody tr")
    await expect(report).to_have_count(2)
    await expect(report.nth(0)).to_have_text("4duplicate of line 2")
    await expect(report.nth(1)).to_have_text("5expected one column: the code")
    gift = page.locator("article.product", has=page.get_by_role("heading", name="Gift card"))
    await expect(gift.locator("tr", has_text="GIFT-10").locator(".available")).to_have_text("2")
    await hide_toasts(page)
    await screenshot(page, "seller-import")
    await panel.get_by_role("button", name="Close").click()
    await expect(panel).to_be_hidden()

    # Ship the paid order with its tracking, then mark it delivered.
    await page.get_by_role("link", name="Orders").click()
    order_row = page.locator("#orders-table tr", has_text=order["number"])
    await expect(order_row).to_contain_text("1 × Plain tee (TEE-M)")
    await order_row.get_by_text("Ship…").click()
    await order_row.get_by_label(f"Carrier for {order['number']}").fill("Parcel Co")
    await order_row.get_by_label(f"Tracking number for {order['number']}").fill("PC123456789")
    await order_row.get_by_label(f"Tracking page for {order['number']} (optional)").fill(
        "https://track.example/PC123456789"
    )
    await order_row.get_by_role("button", name=f"Ship order {order['number']}").click()
    await expect(order_row.locator(".badge")).to_have_text("shipped")
    await expect(order_row.get_by_role("button", name=f"Ship order {order['number']}")).to_have_count(0)

    res = await client.get(f"/api/orders/{order['id']}", headers=seller.headers)
    shipped = (await res.json())["order"]
    assert shipped["status"] == "shipped"
    assert shipped["tracking"] == {
        "carrier": "Parcel Co",
        "tracking_number": "PC123456789",
        "tracking_url": "https://track.example/PC123456789",
    }
    await order_row.get_by_role("button", name=f"Mark order {order['number']} delivered").click()
    await expect(order_row.locator(".badge")).to_have_text("delivered")
    res = await client.get(f"/api/orders/{order['id']}", headers=seller.headers)
    assert (await res.json())["order"]["status"] == "delivered"
    res = await client.get(f"/api/products/{tee['id']}")
    assert res.status == 200


async def test_a_user_without_a_shop_applies_to_sell(client, make, open_page, base_url):
    user = await make.user()
    page = await open_page("/", user)
    expect.set_options(timeout=TIMEOUT)
    await page.get_by_role("link", name="Start selling").click()
    await expect(page).to_have_url(f"{base_url}/seller")
    await page.get_by_label("Shop name").fill("Night Market")
    await page.get_by_role("button", name="Apply to sell").click()
    await expect(page.get_by_role("heading", name="Application received")).to_be_visible()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Night Market")
    await expect(page.get_by_role("link", name="My shop")).to_be_visible()
    res = await client.get("/api/me", headers=user.headers)
    seller_id = (await res.json())["user"]["seller_id"]
    res = await client.get(f"/api/sellers/{seller_id}", headers=user.headers)
    assert (await res.json())["seller"]["status"] == "pending"
