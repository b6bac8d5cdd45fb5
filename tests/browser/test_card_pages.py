"""Card payments in Chromium, through localstripe's Stripe.js stand-in (tests/stripe_server.py): the page
loads it from the server's configured Stripe.js URL, the buyer types the test card into its card fields,
and the page shows the new balance once localstripe's webhook reached the node."""

import re
import uuid

import test_card_payments
from playwright.async_api import expect

from live_helpers import live_show

# test_card_payments.py's node paying by card, with localstripe's webhooks sent to it.
client = test_card_payments.client
webhooks_to = test_card_payments.webhooks_to
TEST_CARD = {"number": "4242424242424242", "exp_month": "12", "exp_year": "30", "cvc": "123", "postal_code": "10001"}


async def fill_card(box) -> None:
    """The stand-in's card Element: one text input per field, named by its placeholder."""
    for field, value in TEST_CARD.items():
        await box.locator(f"input[placeholder={field}]").fill(value)


async def test_a_wallet_top_up_by_card_raises_the_balance_once_the_webhook_came(client, make, open_page, webhooks_to):
    buyer = await make.user()
    page = await open_page("/wallet", buyer)
    await expect(page.locator("#balance")).to_have_text("$0.00")
    await page.fill("#top-up-amount", "25.00")
    await page.click("#top-up button[type=submit]")
    box = page.locator("#card-payment")
    await expect(box.get_by_role("button", name=re.compile(r"Pay \$25\.00"))).to_be_visible()
    await fill_card(box)
    await box.get_by_role("button", name=re.compile("Pay")).click()
    await expect(page.locator("#balance")).to_have_text("$25.00", timeout=30_000)
    await expect(page.locator("#history tbody tr").first).to_contain_text("Top-up")


async def test_a_declined_card_is_told_next_to_the_form(client, make, open_page, db, webhooks_to):
    buyer = await make.user()
    page = await open_page("/wallet", buyer)
    await page.fill("#top-up-amount", "10.00")
    await page.click("#top-up button[type=submit]")
    box = page.locator("#card-payment")
    await fill_card(box)
    await box.locator("input[placeholder=number]").fill("4000000000000341")  # declined when charged
    await box.get_by_role("button", name=re.compile("Pay")).click()
    await expect(box.locator(".card-error")).not_to_be_empty()
    assert (
        await db.fetchval(
            "SELECT count(*) FROM card_payments WHERE user_id = $1 AND status = 'succeeded'", uuid.UUID(buyer.id)
        )
        == 0
    )


async def test_buy_now_pays_the_difference_by_card_and_lands_on_the_order(client, make, open_page, db, webhooks_to):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "CARD-DIFF", "price_cents": 1_500, "stock": 3}])
    buyer = await make.user()
    await db.execute("SELECT adjust_wallet($1, 500, 'credit', $1)", uuid.UUID(buyer.id))
    page = await open_page(f"/products/{product['id']}", buyer)
    await page.click("#buy-now")
    offer = page.get_by_role("button", name=re.compile(r"Pay \$[\d.]+ difference by card"))
    await offer.click()
    box = page.locator(".card-payment")
    await fill_card(box)
    await box.get_by_role("button", name=re.compile("Pay")).click()
    await page.wait_for_url(re.compile(r"/orders/[0-9a-f-]+$"), timeout=30_000)
    assert await db.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1", uuid.UUID(buyer.id)) == 1
    assert await db.fetchval("SELECT outcome FROM card_payments WHERE user_id = $1", uuid.UUID(buyer.id)) == "ordered"


async def test_the_viewer_page_tops_up_by_card_in_a_dialog(client, make, open_page, db, webhooks_to):
    show = await live_show(make, products=1, stock=5, price=1_000)
    buyer = await make.user()
    page = await open_page(f"/watch/{show.id}", buyer)
    await page.click("#quick-top-up-open")
    dialog = page.locator("#quick-top-up")
    await dialog.locator("#quick-top-up-amount").fill("12.00")
    await dialog.get_by_role("button", name="Continue").click()
    await fill_card(dialog)
    await dialog.get_by_role("button", name=re.compile(r"Pay \$12\.00")).click()
    await expect(dialog.get_by_role("status")).to_have_text("Topped up $12.00.", timeout=30_000)
    assert (
        await db.fetchval(
            "SELECT balance_cents FROM accounts WHERE user_id = $1 AND kind = 'wallet'", uuid.UUID(buyer.id)
        )
        == 1_200
    )


async def test_checkout_pays_the_difference_by_card_and_empties_the_cart(client, make, open_page, db, webhooks_to):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "CARD-CART", "price_cents": 2_000, "stock": 3}])
    buyer = await make.user()
    res = await client.post("/api/cart/items", json={"variant_id": product["variants"][0]["id"]}, headers=buyer.headers)
    assert res.status in (200, 201), await res.text()
    page = await open_page("/checkout", buyer)
    await page.get_by_role("button", name="Place order").click()
    await page.get_by_role("button", name=re.compile(r"Pay \$[\d.]+ difference by card")).click()
    box = page.locator(".card-payment")
    await fill_card(box)
    await box.get_by_role("button", name=re.compile("Pay")).click()
    await page.wait_for_url(re.compile(r"/orders/[0-9a-f-]+$"), timeout=30_000)
    assert await db.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1", uuid.UUID(buyer.id)) == 1
    assert await db.fetchval("SELECT count(*) FROM cart_items WHERE user_id = $1", uuid.UUID(buyer.id)) == 0


async def test_a_card_asking_for_3d_secure_is_checked_in_the_page(client, make, open_page, webhooks_to):
    buyer = await make.user()
    page = await open_page("/wallet", buyer)
    await page.fill("#top-up-amount", "15.00")
    await page.click("#top-up button[type=submit]")
    box = page.locator("#card-payment")
    await fill_card(box)
    await box.locator("input[placeholder=number]").fill("4000002500003155")  # asks for 3-D Secure
    await box.get_by_role("button", name=re.compile("Pay")).click()
    # The stand-in's own 3-D Secure dialog, as Stripe.js shows the bank's.
    await page.get_by_role("button", name="Complete authentication").click()
    await expect(page.locator("#balance")).to_have_text("$15.00", timeout=30_000)
