"""The seller's earnings tab in Chromium: adding where payouts go (a wrong IBAN refused next to its field),
seeing it masked, the payout request waiting for it, and removing it. Each change asks for a current
two-factor code, as the server requires."""

from playwright.async_api import expect

from tests.browser.test_admin_pages import confirm_with_code

TIMEOUT = 15_000  # ms: generous, two busy cores
IBAN = "DE89370400440532013000"


async def test_a_seller_adds_a_payout_destination_and_sees_it_masked(make, db, open_page):
    seller = await make.two_factor(await make.seller())
    page = await open_page("/seller#earnings", seller)
    expect.set_options(timeout=TIMEOUT)

    # No destination yet: the payout request waits for one, saying so.
    await expect(page.locator("#payout-needs-destination")).to_be_visible()
    await expect(page.get_by_role("button", name="Request payout")).to_be_disabled()

    form = page.get_by_role("form", name="Payout destination")
    await form.get_by_label("Account holder").fill("Ada Lovelace")
    await form.get_by_label("Country (2 letters)").fill("de")
    await form.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 01")  # one digit off
    await form.get_by_role("button", name="Save payout destination").click()
    await confirm_with_code(page, seller)
    await expect(form.locator(".form-error")).to_contain_text("IBAN: Not a valid IBAN")
    assert await db.fetchval("SELECT count(*) FROM payout_destinations") == 0

    await form.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
    await form.get_by_role("button", name="Save payout destination").click()
    await confirm_with_code(page, seller)
    shown = page.get_by_test_id("payout-destination")
    await expect(shown).to_have_text("Ada Lovelace · IBAN ending 3000 · DE")
    await expect(page.get_by_role("button", name="Request payout")).to_be_enabled()
    await expect(page.locator("#payout-needs-destination")).to_be_hidden()
    # Neither the page nor the database has the number in the clear.
    assert IBAN not in await page.content()
    row = await db.fetchval("SELECT row_to_json(d)::text FROM payout_destinations d")
    assert IBAN not in row and '"last4":"3000"' in row

    # A reload shows it masked again; removing it brings the form back.
    await page.reload()
    await expect(shown).to_have_text("Ada Lovelace · IBAN ending 3000 · DE")
    await page.get_by_role("button", name="Remove payout destination").click()
    await confirm_with_code(page, seller)
    await expect(page.get_by_role("form", name="Payout destination")).to_be_visible()
    await expect(page.get_by_role("button", name="Request payout")).to_be_disabled()
    assert await db.fetchval("SELECT count(*) FROM payout_destinations") == 0
    told = "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'payout_destination_changed'"
    assert await db.fetchval(told, seller.id) == 2  # saved, removed


async def test_a_guest_host_adds_a_payout_destination_in_the_studio(client, make, db, open_page):
    """A host without a shop has no seller page: the studio's hosting card takes the destination."""
    seller = await make.seller(shop_name="Lamp Corner")
    lamp = await make.product(seller, variants=[{"sku": "LAMP-P", "price_cents": 2500, "stock": 5}])
    host = await make.two_factor(await make.user())
    body = {"title": "Lamps, hosted", "products": [{"product_id": lamp["id"]}], "host_id": host.id}
    body["host_commission_bps"] = 1000
    res = await client.post("/api/streams", json=body, headers=seller.headers)
    assert res.status == 201, await res.text()

    page = await open_page("/studio", host)
    expect.set_options(timeout=TIMEOUT)
    card = page.locator("#host-earnings")
    await expect(card).to_be_visible()
    form = card.get_by_role("form", name="Payout destination")
    await form.get_by_label("Account holder").fill("Grace Host")
    await form.get_by_label("Country (2 letters)").fill("US")
    await form.get_by_label("Bank details as").select_option("account")
    await form.get_by_label("Account number").fill("000123456789")
    await form.get_by_label("Routing number").fill("011000015")
    await form.get_by_role("button", name="Save payout destination").click()
    await confirm_with_code(page, host)
    await expect(card.get_by_test_id("payout-destination")).to_have_text("Grace Host · account ending 6789 · US")
    row = await db.fetchval("SELECT row_to_json(d)::text FROM payout_destinations d WHERE user_id = $1", host.id)
    assert "000123456789" not in row and "011000015" not in row and '"kind":"account"' in row
