"""The admin console in Chromium: approving a seller, the books check, approving a payout, the platform
figures with their chart, and finding and adjusting a wallet."""

from playwright.async_api import expect

from helpers import top_up

TIMEOUT = 15_000  # ms: generous, two busy cores


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def confirm_with_code(page, admin) -> None:
    """A money action: the page asks for the admin's current two-factor code."""
    dialog = page.get_by_role("dialog", name="Confirm with your authenticator app")
    await dialog.get_by_label("Code from your authenticator app").fill(admin.totp.now())
    await dialog.get_by_role("button", name="Confirm").click()


async def test_admin_approves_a_seller_and_a_payout_and_sees_balanced_books_and_figures(
    client, db, make, open_page, screenshot
):
    admin = await make.admin()
    pending = await make.seller(approved=False, shop_name="Pending <i>Pottery</i>")
    # A sale in a live stream, shipped and delivered: its earnings are available, and paid out in part.
    seller = await make.seller(shop_name="Lamp Shop", two_factor=True)  # payouts need it
    lamp = await make.product(seller, title="Desk lamp", variants=[{"sku": "LAMP-1", "price_cents": 4000, "stock": 9}])
    body = {"title": "Lamps after dark", "products": [{"product_id": lamp["id"]}]}
    stream = (await ok(await client.post("/api/streams", json=body, headers=seller.headers), 201))["stream"]
    await ok(await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers))
    buyer = await make.user()
    await top_up(client, buyer, 50_000)
    body = {"items": [{"variant_id": lamp["variants"][0]["id"], "quantity": 2}], "stream_id": stream["id"]}
    order = (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
    tracking = {"carrier": "Parcel Co", "tracking_number": "PC1"}
    await ok(await client.post(f"/api/orders/{order['id']}/ship", json=tracking, headers=seller.headers))
    await ok(await client.post(f"/api/orders/{order['id']}/deliver", headers=buyer.headers))
    # Earlier sales outside the stream, placed 3, 6 and 12 days ago.
    for quantity, days_ago in [(1, 3), (3, 6), (2, 12)]:
        body = {"items": [{"variant_id": lamp["variants"][0]["id"], "quantity": quantity}]}
        earlier = (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
        await db.execute(
            "UPDATE orders SET created_at = now() - make_interval(days => $2) WHERE id = $1::text::uuid",
            earlier["id"],
            days_ago,
        )
    body = {"amount_cents": 5000}
    payout = (await ok(await client.post("/api/seller/payouts", json=body, headers=seller.headers), 201))["payout"]

    page = await open_page("/admin", admin)
    expect.set_options(timeout=TIMEOUT)

    # Platform figures with the chart: 320.00 of sales on four days, the stream's 80.00 at the top.
    figures = page.locator("#stats-figures")
    await expect(figures.locator(".figure", has_text="GMV")).to_contain_text("$320.00")
    await expect(figures.locator(".figure", has_text="Orders")).to_contain_text("4")
    await expect(figures.locator(".figure", has_text="Platform fees")).to_contain_text("$32.00")
    chart = page.get_by_role("img", name="Sales per day")
    await expect(chart).to_be_visible()
    bars = chart.locator("rect.bar")
    await expect(bars).to_have_count(30)
    heights = [float(h) for h in await bars.evaluate_all("bars => bars.map(b => b.getAttribute('height'))")]
    # The tallest bar is the 120.00 day, six days ago; today's 80.00 is two thirds of it.
    assert [i for i, h in enumerate(heights) if h > 0] == [17, 23, 26, 29]
    assert max(heights) == heights[23] and abs(heights[29] / heights[23] - 2 / 3) < 0.01
    top = page.locator("#top-streams tbody tr").first
    await expect(top).to_contain_text("Lamps after dark")
    await expect(top).to_contain_text("$80.00")
    await expect(page.locator("#books-verdict")).to_contain_text("Balanced")
    await screenshot(page, "admin")

    # Approve the pending seller: its name shown as text.
    await page.get_by_role("link", name="Sellers").click()
    row = page.locator("#sellers-table tbody tr", has_text="Pending <i>Pottery</i>")
    await row.get_by_role("button", name="Approve Pending <i>Pottery</i>").click()
    await expect(row.locator(".badge")).to_have_text("approved")
    shop = await ok(await client.get(f"/api/sellers/{pending.seller['id']}"))
    assert shop["seller"]["status"] == "approved"

    # Approve the payout: the provider sends it.
    await page.get_by_role("link", name="Payouts").click()
    row = page.locator("#payouts-table tbody tr", has_text="$50.00")
    await expect(row).to_contain_text(seller.user["display_name"])
    # Where it goes: masked in the row, in full when asked for (to pay it by hand), with the bank reference.
    await expect(row).to_contain_text("IBAN …3000 · DE")
    await row.get_by_role("button", name="Show bank details of the payout of $50.00").click()
    await expect(row).to_contain_text("DE89370400440532013000")
    await row.get_by_label("Bank transfer reference for the payout of $50.00").fill("BANK-50")
    await row.get_by_role("button", name="Approve payout of $50.00").click()
    await confirm_with_code(page, admin)
    await expect(row.locator(".badge")).to_have_text("paid")
    await expect(row).to_contain_text("ref. BANK-50")
    paid = await ok(await client.get("/api/seller/payouts", headers=seller.headers))
    assert [(p["id"], p["status"], p["provider_reference"]) for p in paid["items"]] == [
        (payout["id"], "paid", "BANK-50")
    ]

    # The books still balance with the money paid out.
    await page.get_by_role("link", name="Overview").click()
    await expect(page.locator("#books-verdict")).to_contain_text("Balanced")
    await expect(page.locator("#books-table")).to_contain_text("$50.00")


async def test_admin_finds_a_wallet_and_adjusts_it(client, make, open_page):
    admin = await make.admin()
    user = await make.user(email="carol@example.test")
    await top_up(client, user, 1_000)
    page = await open_page("/admin#wallets", admin)
    expect.set_options(timeout=TIMEOUT)
    await page.get_by_label("Find a user").fill("carol@")
    await page.get_by_role("button", name="Search").click()
    # The search's answer, not the tab's first list (which has the admin too): it redraws the rows.
    await expect(page.locator("#wallets-table tbody tr")).to_have_count(1)
    row = page.locator("#wallets-table tbody tr", has_text="carol@example.test")
    await expect(row).to_have_count(1)
    await expect(row.locator("td").nth(1)).to_have_text("$10.00")
    await row.get_by_text("Adjust…").click()
    await row.get_by_label("Adjustment for carol@example.test").fill("2.50")
    await row.get_by_label("Adjustment reason for carol@example.test").fill("goodwill credit")
    await row.get_by_role("button", name="Apply adjustment to carol@example.test").click()
    await confirm_with_code(page, admin)
    await expect(row.locator("td").nth(1)).to_have_text("$12.50")
    wallet = await ok(await client.get("/api/wallet", headers=user.headers))
    assert wallet["balance_cents"] == 1_250


async def test_admin_refunds_an_order_and_adds_a_category(client, make, open_page):
    admin = await make.admin()
    seller = await make.seller()
    mug = await make.product(seller, title="Mug", variants=[{"sku": "MUG-1", "price_cents": 1200, "stock": 5}])
    buyer = await make.user()
    await top_up(client, buyer, 5_000)
    body = {"items": [{"variant_id": mug["variants"][0]["id"], "quantity": 1}]}
    order = (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
    await ok(
        await client.post("/api/admin/categories", json={"slug": "kitchen", "name": "Kitchen"}, headers=admin.headers),
        201,
    )

    page = await open_page("/admin#orders", admin)
    expect.set_options(timeout=TIMEOUT)
    row = page.locator("#orders-table tbody tr", has_text=order["number"])
    await expect(row).to_contain_text(buyer.user["email"])
    await row.get_by_text("Refund…").click()
    await row.get_by_label(f"Refund amount for {order['number']} (empty: all)").fill("2")
    await row.get_by_label(f"Refund reason for {order['number']}").fill("chipped handle")
    await row.get_by_role("button", name=f"Refund order {order['number']}").click()
    await expect(row.locator(".badge")).to_have_text("partially refunded")
    await expect(row).to_contain_text("refunded $2.00")

    await page.get_by_role("link", name="Categories").click()
    form = page.locator("#category-form")
    await form.get_by_label("Name").fill("Tea <cups>")
    await expect(form.get_by_label("Slug")).to_have_value("tea-cups")
    await form.get_by_label("Parent").select_option(label="Kitchen")
    await form.get_by_role("button", name="Create category").click()
    tree = page.locator("#category-tree")
    await expect(tree.locator("li", has_text="Kitchen").locator("li")).to_contain_text("Tea <cups>")
    res = await client.get("/api/categories")
    [kitchen] = (await res.json())["items"]
    assert [c["slug"] for c in kitchen["children"]] == ["tea-cups"]
