"""The viewer page's shop: the show's whole line-up, each product buyable (the pinned one marked, pictures
shown); where buys ship ('Ships to … · change'), an address asked for inline when there is none or the
shop does not ship there; a confirmation for buys over the viewer's threshold; Buy disabled once the
per-buyer limit is reached."""

from image_helpers import picture, upload
from playwright.async_api import expect

from live_helpers import Viewer

WAIT_MS = 20_000


async def live_show(client, make, seller, products):
    """A live stream of `products` ([(product, live_price_cents, per_buyer_limit)]), the first pinned."""
    res = await client.post(
        "/api/streams",
        json={
            "title": "Lineup night",
            "products": [
                {"product_id": p["id"], "live_price_cents": price, "per_buyer_limit": limit}
                for p, price, limit in products
            ],
        },
        headers=seller.headers,
    )
    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    assert (await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)).status == 200
    host = await Viewer.connect(client, stream["id"], seller)
    assert (await host.request("pin", product_id=products[0][0]["id"]))["type"] == "ack"
    return stream, host


async def funded(client, account, cents=50_000):
    res = await client.post("/api/wallet/top-up", json={"amount_cents": cents}, headers=account.headers)
    assert res.status == 200, await res.text()
    return account


async def test_lineup_confirmation_and_per_buyer_limit(open_page, make, client, db):
    seller = await make.seller()
    shirt = await make.product(
        seller,
        title="Linen shirt",
        variants=[
            {"sku": "LU-S", "options": {"size": "S"}, "price_cents": 4000, "stock": 7},
            {"sku": "LU-M", "options": {"size": "M"}, "price_cents": 4000, "stock": 9},
        ],
    )
    scarf = await make.product(
        seller, title="Wool scarf", variants=[{"sku": "LU-SCARF", "price_cents": 6000, "stock": 5}]
    )
    await upload(client, seller, scarf["id"], picture(), filename="scarf.jpg")
    stream, host = await live_show(client, make, seller, [(shirt, 3500, 1), (scarf, None, None)])
    buyer = await funded(client, await make.user())
    page = await open_page(f"/watch/{stream['id']}", buyer)

    # Every product of the show, the pinned one marked, each with its price and stock.
    items = page.locator("#lineup .lineup-item")
    await expect(items).to_have_count(2, timeout=WAIT_MS)
    await expect(items.nth(0)).to_contain_text("Linen shirt")
    await expect(items.nth(0)).to_contain_text("Pinned")
    await expect(items.nth(0)).to_have_attribute("aria-current", "true")
    await expect(items.nth(1)).to_contain_text("Wool scarf")
    await expect(items.nth(1)).to_contain_text("$60.00")
    await expect(items.nth(1)).to_contain_text("5 left")
    await expect(items.nth(1)).not_to_have_attribute("aria-current", "true")
    # The scarf's picture; the shirt has none.
    await expect(items.nth(1).locator("img.lineup-photo")).to_have_count(1)
    await expect(items.nth(0).locator("img")).to_have_count(0)
    await expect(page.locator("#ship-to-text")).to_have_text(f"Ships to {buyer.user['display_name']}, Springfield, US")

    # $60 is over the default $50: the buy asks first; cancelling buys nothing.
    buy_scarf = page.get_by_role("button", name="Buy Wool scarf · $60.00")
    await buy_scarf.click()
    await expect(page.locator("#confirm-box")).to_be_visible()
    await expect(page.locator("#confirm-text")).to_have_text("Buy Wool scarf for $60.00 plus shipping?")
    await page.get_by_role("button", name="Cancel", exact=True).click()
    await expect(page.locator("#confirm-box")).to_be_hidden()
    assert await db.fetchval("SELECT count(*) FROM orders") == 0
    await buy_scarf.click()
    await page.get_by_role("button", name="Confirm", exact=True).click()
    await expect(items.nth(1)).to_contain_text("Bought!", timeout=WAIT_MS)
    await expect(items.nth(1)).to_contain_text("4 left", timeout=WAIT_MS)

    # Below the threshold one tap buys: the pinned shirt, whose limit is 1 per buyer.
    await expect(page.locator("#limit-note")).to_have_text("Up to 1 per buyer in this show.")
    await page.get_by_role("button", name="Buy now · $35.00").click()
    await expect(page.locator("#purchase-result")).to_contain_text("Bought!", timeout=WAIT_MS)
    await expect(page.locator("#buy")).to_be_disabled()
    await expect(page.locator("#buy")).to_have_text("Limit reached")
    await expect(page.get_by_role("button", name="Linen shirt: limit reached")).to_be_disabled()
    await expect(page.locator("#limit-note")).to_have_text("You have 1 of the 1 one buyer may take in this show.")

    # A new page counts what this viewer bought in the show from their orders: still at the limit.
    again = await open_page(f"/watch/{stream['id']}", buyer)
    await expect(again.locator("#buy")).to_have_text("Limit reached", timeout=WAIT_MS)
    await expect(again.locator("#buy")).to_be_disabled()

    # A higher threshold (kept in this browser): the scarf is one tap now.
    await again.get_by_label("Ask me to confirm buys over $").fill("100")
    await again.get_by_label("Ask me to confirm buys over $").press("Enter")
    await again.get_by_label("Ask me to confirm buys over $").blur()
    await again.get_by_role("button", name="Buy Wool scarf · $60.00").click()
    await expect(again.locator("#lineup .lineup-item").nth(1)).to_contain_text("Bought!", timeout=WAIT_MS)
    await expect(again.locator("#confirm-box")).to_be_hidden()
    assert await db.fetchval("SELECT count(*) FROM orders") == 3

    # A flash sale has its own limit: the shirt on sale is buyable again, at the sale's price.
    medium = next(v["id"] for v in shirt["variants"] if v["sku"] == "LU-M")
    sale = {"variant_id": medium, "price_cents": 2000, "quantity": 3, "duration_s": 120}
    assert (await host.request("flash_sale", **sale))["type"] == "ack"
    await expect(again.locator("#buy")).to_have_text("Buy now · $20.00", timeout=WAIT_MS)
    await again.locator("#buy").click()
    await expect(again.locator("#purchase-result")).to_contain_text("Bought!", timeout=WAIT_MS)
    assert await db.fetchval("SELECT count(*) FROM orders") == 4
    await host.close()


async def test_address_asked_inline_and_changed(open_page, make, client, db):
    seller = await make.seller()
    lamp = await make.product(seller, title="Desk lamp", variants=[{"sku": "LU-LAMP", "price_cents": 2000, "stock": 9}])
    stream, host = await live_show(client, make, seller, [(lamp, None, None)])

    # No saved address: the first buy asks for one in the page, then goes ahead.
    buyer = await funded(client, await make.user(address=False))
    page = await open_page(f"/watch/{stream['id']}", buyer)
    await expect(page.locator("#ship-to")).to_contain_text("No shipping address yet", timeout=WAIT_MS)
    await page.get_by_role("button", name="Buy now · $20.00").click()
    form = page.locator("#address-form")
    await expect(form).to_be_visible()
    await form.get_by_label("Name").fill("Ada Lovelace")
    await form.get_by_label("Address").fill("12 St James's Square")
    await form.get_by_label("City").fill("London")
    await form.get_by_label("Country code").fill("gb")
    await form.get_by_role("button", name="Save and buy").click()
    await expect(page.locator("#purchase-result")).to_contain_text("Bought!", timeout=WAIT_MS)
    await expect(form).to_be_hidden()
    await expect(page.locator("#ship-to-text")).to_have_text("Ships to Ada Lovelace, London, GB")
    assert (await db.fetchval("SELECT address->>'city' FROM orders WHERE buyer_id = $1", buyer.id)) == "London"
    assert await db.fetchval("SELECT is_default FROM addresses WHERE user_id = $1", buyer.id)

    # Another saved address picked with "change" is where the next buy goes.
    await make.address(buyer, name="Ada at work", city="Cambridge")
    page = await open_page(f"/watch/{stream['id']}", buyer)
    await expect(page.locator("#ship-to-text")).to_have_text("Ships to Ada Lovelace, London, GB", timeout=WAIT_MS)
    await page.get_by_role("button", name="Change the shipping address").click()
    await page.get_by_label("Ship to").select_option(label="Ada at work, Cambridge, US")
    await expect(page.locator("#ship-to-text")).to_have_text("Ships to Ada at work, Cambridge, US")
    await page.get_by_role("button", name="Buy now · $20.00").click()
    await expect(page.locator("#purchase-result")).to_contain_text("Bought!", timeout=WAIT_MS)
    cities = await db.fetch(
        "SELECT address->>'city' AS city FROM orders WHERE buyer_id = $1 ORDER BY created_at", buyer.id
    )
    assert [r["city"] for r in cities] == ["London", "Cambridge"]
    await host.close()


async def test_address_required_reply_asks_for_an_address_the_shop_ships_to(open_page, make, client, db):
    seller = await make.seller()
    res = await client.put(
        "/api/seller/shipping",
        json={"flat_rate_cents": 500, "free_over_cents": None, "countries": ["DE"]},
        headers=seller.headers,
    )
    assert res.status == 200, await res.text()
    mug = await make.product(seller, title="Stein mug", variants=[{"sku": "LU-MUG", "price_cents": 1500, "stock": 9}])
    stream, host = await live_show(client, make, seller, [(mug, None, None)])
    buyer = await funded(client, await make.user())  # its default address is in the US

    page = await open_page(f"/watch/{stream['id']}", buyer)
    await page.get_by_role("button", name="Buy now · $15.00").click(timeout=WAIT_MS)
    form = page.locator("#address-form")
    await expect(form).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#address-why")).not_to_be_empty()
    assert await db.fetchval("SELECT count(*) FROM orders") == 0
    await form.get_by_label("Name").fill("Max Muster")
    await form.get_by_label("Address").fill("Hauptstr. 1")
    await form.get_by_label("City").fill("Munich")
    await form.get_by_label("Country code").fill("DE")
    await form.get_by_role("button", name="Save and buy").click()
    await expect(page.locator("#purchase-result")).to_contain_text("Bought!", timeout=WAIT_MS)
    order = await db.fetchrow("SELECT address->>'country' AS country, shipping_cents FROM orders")
    assert (order["country"], order["shipping_cents"]) == ("DE", 500)
    await host.close()
