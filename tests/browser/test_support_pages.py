"""Support tickets in Chromium: a buyer opens a ticket from their order's page, the seller answers it from the
back office's link in another browser, and the buyer's open conversation shows the answer (pushed over
/ws/me, no reload); the admin queue lists it with its filters."""

from playwright.async_api import expect

from helpers import top_up

TIMEOUT = 20_000  # ms: generous, two busy cores shared by several runs


async def hide_toasts(page) -> None:
    """Passing messages would cover the screenshot."""
    await page.evaluate("document.getElementById('toasts')?.replaceChildren()")


async def test_a_ticket_conversation_between_a_buyer_and_a_seller(client, make, db, open_page, screenshot):
    expect.set_options(timeout=TIMEOUT)
    seller = await make.seller(shop_name="Glow Lab")
    tee = await make.product(seller, title="Plain tee", variants=[{"sku": "TEE-M", "price_cents": 1500, "stock": 5}])
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    body = {"items": [{"variant_id": tee["variants"][0]["id"], "quantity": 1}]}
    res = await client.post("/api/orders", json=body, headers=buyer.headers)
    assert res.status == 201, await res.text()
    order = (await res.json())["order"]

    # The buyer asks for help from the order's page: the new-ticket form opens with the order chosen.
    buyer_page = await open_page(f"/orders/{order['id']}", buyer)
    await buyer_page.get_by_role("link", name="Get help with this order").click()
    await buyer_page.wait_for_url("**/support?order=*")
    form = buyer_page.locator("#ticket-form")
    await expect(form.get_by_label("About an order")).to_have_value(order["id"])
    await form.get_by_label("Subject").fill("Wrong size")
    await form.get_by_label("What happened?").fill("I ordered M <b>but</b> got S.\nCan you swap it?")
    await form.get_by_role("button", name="Send to support").click()
    await buyer_page.wait_for_url("**/support/*")
    ticket_id = buyer_page.url.rsplit("/", 1)[1]
    await expect(buyer_page.get_by_role("heading", level=1)).to_have_text("Wrong size")
    await expect(buyer_page.locator("#ticket-status")).to_have_text("Open")
    messages = buyer_page.locator("#messages > li")
    await expect(messages).to_have_count(1)
    # The buyer's words are text, never HTML, lines kept.
    words = "I ordered M <b>but</b> got S.\nCan you swap it?"
    await expect(messages.nth(0).locator(".message-body")).to_have_text(words)
    row = await db.fetchrow("SELECT order_id, status FROM tickets WHERE id = $1::uuid", ticket_id)
    assert (str(row["order_id"]), row["status"]) == (order["id"], "open")
    # The buyer's page listens for the answer.
    await expect(buyer_page.locator("body")).to_have_attribute("data-notifications", "open")

    # The seller, in another browser, goes from the back office to the shop's tickets and answers.
    seller_page = await open_page("/seller", seller)
    await seller_page.get_by_role("link", name="Support tickets").click()
    await seller_page.wait_for_url("**/support#shop")
    item = seller_page.locator("#shop-list li", has_text="Wrong size")
    await expect(item).to_contain_text(f"Order {order['number']}")
    await expect(item).to_contain_text("Open")
    await item.get_by_role("link", name="Wrong size").click()
    await seller_page.wait_for_url(f"**/support/{ticket_id}")
    reply = seller_page.get_by_label("Your reply")
    await expect(reply).to_be_enabled()
    await reply.fill("Sorry about that! An M is on its way today.")
    await seller_page.get_by_role("button", name="Send reply").click()
    await expect(seller_page.locator("#messages > li")).to_have_count(2)
    await expect(seller_page.locator("#ticket-status")).to_have_text("Waiting on the customer")

    # The buyer's open conversation shows the answer without a reload.
    await expect(messages).to_have_count(2)
    answer = messages.nth(1)
    await expect(answer).to_contain_text("An M is on its way today.")
    await expect(answer.locator(".badge.role")).to_have_text("shop")
    await expect(buyer_page.locator("#ticket-status")).to_have_text("Waiting on the customer")
    await hide_toasts(buyer_page)
    await screenshot(buyer_page, "ticket")

    # The buyer closes it: no reply box any more; it is listed as closed.
    await buyer_page.get_by_role("button", name="Close ticket").click()
    await expect(buyer_page.locator("#ticket-status")).to_have_text("Closed")
    await expect(buyer_page.locator("#closed-note")).to_be_visible()
    await expect(buyer_page.locator("#reply-form")).to_be_hidden()
    assert await db.fetchval("SELECT status FROM tickets WHERE id = $1::uuid", ticket_id) == "closed"


async def test_the_admin_queue_oldest_without_a_reply_first(client, make, db, open_page):
    expect.set_options(timeout=TIMEOUT)
    admin = await make.admin()
    buyers = [await make.user() for _ in range(3)]
    for i, buyer in enumerate(buyers):
        res = await client.post(
            "/api/tickets", json={"subject": f"Question {i}", "body": "Help?"}, headers=buyer.headers
        )
        assert res.status == 201, await res.text()
    # Ages on the rows: question i last heard from (3 - i) days ago; question 1 waits on its customer.
    await db.execute(
        """UPDATE tickets SET last_reply_at = now() - make_interval(days => 3 - substr(subject, 10)::int),
                              status = CASE subject WHEN 'Question 1' THEN 'waiting' ELSE status END"""
    )

    page = await open_page("/admin", admin)
    await page.get_by_role("link", name="Support queue").click()
    await page.wait_for_url("**/support#queue")
    queue = page.locator("#queue-list li a")
    filters = page.locator("#queue-filters")
    # Open ones (the default filter), oldest first.
    await expect(queue).to_have_text(["Question 0", "Question 2"])
    await filters.get_by_label("No reply for").select_option(label="1 day or more")
    await expect(queue).to_have_text(["Question 0", "Question 2"])
    await filters.get_by_label("No reply for").select_option(label="3 days or more")
    await expect(queue).to_have_text(["Question 0"])
    await filters.get_by_label("Status").select_option(label="Any")
    await filters.get_by_label("No reply for").select_option(label="Any time")
    await expect(queue).to_have_text(["Question 0", "Question 1", "Question 2"])
