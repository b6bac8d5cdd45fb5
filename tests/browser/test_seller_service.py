"""The seller back office's after-sale tools in Chromium: the shipping profile, marking an order delivered,
deciding returns (approve; reject with a reason), replying to a review; and the admin hiding a review."""

import asyncio
import time

from playwright.async_api import expect

from helpers import top_up

TIMEOUT = 15_000  # ms: generous, two busy cores


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def delivered_order(client, seller, buyer, variant_id) -> dict:
    """An order of one unit, shipped by the seller and confirmed delivered by the buyer."""
    body = {"items": [{"variant_id": variant_id, "quantity": 1}]}
    order = (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
    tracking = {"carrier": "Post", "tracking_number": f"T-{order['number']}"}
    await ok(await client.post(f"/api/orders/{order['id']}/ship", json=tracking, headers=seller.headers))
    return (await ok(await client.post(f"/api/orders/{order['id']}/deliver", headers=buyer.headers)))["order"]


async def test_shipping_profile_delivery_returns_and_review_replies(client, make, open_page, db):
    seller = await make.seller()
    mug = await make.product(seller, title="Clay mug", variants=[{"sku": "SV-MUG", "price_cents": 1800, "stock": 20}])
    variant = mug["variants"][0]["id"]
    buyer = await make.user()
    await top_up(client, buyer, 20_000)

    # Two delivered orders whose buyer asks to return them, one reviewed; one order shipped, not delivered.
    kept, refused = [await delivered_order(client, seller, buyer, variant) for _ in range(2)]
    body = {"order_id": kept["id"], "rating": 4, "text": "Lovely glaze, a bit small."}
    review = (await ok(await client.post(f"/api/products/{mug['id']}/reviews", json=body, headers=buyer.headers), 201))[
        "review"
    ]
    for order, why in [(kept, "cracked in the post"), (refused, "changed my mind")]:
        await ok(
            await client.post(f"/api/orders/{order['id']}/return", json={"reason": why}, headers=buyer.headers), 201
        )
    body = {"items": [{"variant_id": variant, "quantity": 1}]}
    sent = (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
    tracking = {"carrier": "Post", "tracking_number": "T-SENT"}
    await ok(await client.post(f"/api/orders/{sent['id']}/ship", json=tracking, headers=seller.headers))

    page = await open_page("/seller#shipping", seller)
    expect.set_options(timeout=TIMEOUT)

    # The shipping profile: a flat rate, free from a threshold, two countries.
    form = page.locator("#shipping-form")
    await expect(form.get_by_label("Flat rate per order")).to_have_value("0.00")
    await form.get_by_label("Flat rate per order").fill("4.99")
    await form.get_by_label("Free shipping from").fill("75")
    await form.get_by_label("Countries shipped to").fill("us, de")
    await form.get_by_role("button", name="Save shipping").click()
    await expect(page.locator("#shipping-summary")).to_have_text(
        "Ships to DE, US for $4.99 an order, free from $75.00."
    )
    profile = await ok(await client.get("/api/seller/shipping", headers=seller.headers))
    assert profile == {"flat_rate_cents": 499, "free_over_cents": 7500, "countries": ["DE", "US"]}
    # Back to everywhere, no threshold.
    await form.get_by_label("Free shipping from").fill("")
    await form.get_by_label("Countries shipped to").fill("")
    await form.get_by_role("button", name="Save shipping").click()
    await expect(page.locator("#shipping-summary")).to_have_text("Ships everywhere for $4.99 an order.")

    # The shipped order is marked delivered from the orders list.
    await page.get_by_role("link", name="Orders").click()
    await page.get_by_role("button", name=f"Mark order {sent['number']} delivered").click()
    # The row's own button says "delivered" too: wait for the server to have it, then for the row to say so.
    deadline = time.monotonic() + 10
    while not await db.fetchval("SELECT delivered_at IS NOT NULL FROM orders WHERE id = $1", sent["id"]):
        assert time.monotonic() < deadline, "the order was not marked delivered"
        await asyncio.sleep(0.1)
    row = page.locator("#orders-table tbody tr", has_text=sent["number"])
    await expect(row).to_contain_text("delivered")

    # Returns to decide: both listed; one approved (refunded), one rejected with a reason.
    await page.get_by_role("link", name="Returns").click()
    returns = page.locator("#returns")  # the orders tab (hidden now) shows the same buttons
    rows = returns.locator("#returns-table tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.filter(has_text=kept["number"])).to_contain_text("cracked in the post")
    await expect(rows.filter(has_text=kept["number"])).to_contain_text("Approving refunds $18.00")
    await returns.get_by_role("button", name=f"Approve the return of {kept['number']}").click()
    await expect(rows.filter(has_text=kept["number"])).to_contain_text("return approved")
    await page.locator("#returns-table").get_by_text("Reject…").click()
    await returns.get_by_label(f"Reason to reject the return of {refused['number']}").fill("worn, not as sent")
    await returns.get_by_role("button", name=f"Reject the return of {refused['number']}").click()
    await expect(rows.filter(has_text=refused["number"])).to_contain_text("return rejected")
    decided = {
        r["number"]: (r["status"], r["decision_reason"])
        for r in await db.fetch(
            "SELECT o.number, r.status, r.decision_reason FROM order_returns r JOIN orders o ON o.id = r.order_id"
        )
    }
    assert decided == {kept["number"]: ("approved", None), refused["number"]: ("rejected", "worn, not as sent")}
    assert await db.fetchval("SELECT refunded_cents FROM orders WHERE id = $1", kept["id"]) == 1800
    # Nothing is left to decide.
    await page.get_by_role("link", name="Reviews").click()
    await page.get_by_role("link", name="Returns").click()
    await expect(page.locator("#returns-table tbody")).to_have_text("No returns to decide.")

    # The review, answered once.
    await page.get_by_role("link", name="Reviews").click()
    # The tab is shown (its newest load has begun) and that load has drawn the list (the one from the first
    # visit may come back later and is dropped).
    await expect(page.locator("#reviews")).to_be_visible()
    await expect(page.locator("#reviews-list")).not_to_have_attribute("aria-busy", "true")
    card = page.locator("article.review")
    await expect(card).to_have_count(1)
    await expect(card).to_contain_text("Lovely glaze, a bit small.")
    await expect(card.get_by_label("4 of 5 stars")).to_be_visible()
    await card.get_by_role("textbox").fill("Thanks! The large one comes next week.")
    await card.get_by_role("button", name="Reply").click()
    await expect(card).to_contain_text("Your reply: Thanks! The large one comes next week.")
    await expect(card.get_by_role("button", name="Reply")).to_have_count(0)
    page_ = await ok(await client.get(f"/api/products/{mug['id']}/reviews"))
    assert page_["items"][0]["id"] == review["id"]
    assert page_["items"][0]["reply"]["text"] == "Thanks! The large one comes next week."


async def test_admin_hides_a_review(client, make, open_page, db):
    admin = await make.admin()
    seller = await make.seller()
    mug = await make.product(seller, title="Tin mug", variants=[{"sku": "SV-TIN", "price_cents": 900, "stock": 5}])
    buyer = await make.user()
    await top_up(client, buyer, 5_000)
    order = await delivered_order(client, seller, buyer, mug["variants"][0]["id"])
    body = {"order_id": order["id"], "rating": 1, "text": "Visit my-spam-site for cheap mugs"}
    review = (await ok(await client.post(f"/api/products/{mug['id']}/reviews", json=body, headers=buyer.headers), 201))[
        "review"
    ]

    page = await open_page("/admin#reviews", admin)
    expect.set_options(timeout=TIMEOUT)
    form = page.locator("#review-hide-form")
    await form.get_by_label("Review id").fill(review["id"])
    await form.get_by_label("Reason").fill("spam link")
    await form.get_by_role("button", name="Hide review").click()
    await expect(page.locator("#hidden-reviews")).to_contain_text("Hidden: 1/5")
    assert await db.fetchval("SELECT hidden_at IS NOT NULL FROM reviews WHERE id = $1", review["id"])
    listed = await ok(await client.get(f"/api/products/{mug['id']}/reviews"))
    assert listed["items"] == []

    # Hiding it again is refused, and the form says so.
    await form.get_by_label("Review id").fill(review["id"])
    await form.get_by_label("Reason").fill("again")
    await form.get_by_role("button", name="Hide review").click()
    await expect(form.locator(".form-error")).not_to_be_empty()


async def test_the_shipping_form_cannot_be_typed_in_until_what_is_saved_is_filled_in(client, make, open_page):
    """The saved profile arriving after the seller began typing would overwrite what they typed: until it
    is filled in, the form's fields are disabled."""
    seller = await make.seller()
    body = {"flat_rate_cents": 300, "free_over_cents": None, "countries": []}
    await ok(await client.put("/api/seller/shipping", json=body, headers=seller.headers))
    page = await open_page("/seller", seller)
    expect.set_options(timeout=TIMEOUT)
    released = asyncio.Event()

    async def hold(route):
        await released.wait()
        await route.continue_()

    await page.route("**/api/seller/shipping", hold)
    await page.get_by_role("link", name="Shipping").click()
    flat_rate = page.locator("#shipping-form").get_by_label("Flat rate per order")
    await expect(flat_rate).to_be_visible()
    await expect(flat_rate).to_be_disabled()
    await expect(page.locator("#shipping-form").get_by_role("button", name="Save shipping")).to_be_disabled()

    released.set()
    await expect(flat_rate).to_be_enabled()
    await expect(flat_rate).to_have_value("3.00")
