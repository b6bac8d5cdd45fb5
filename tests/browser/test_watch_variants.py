"""The pinned product's options on the viewer page: the flash-sale option first, another at its own price
with its own stock, and the switch back to the sale."""

from playwright.async_api import expect

from live_helpers import Viewer

WAIT_MS = 20_000


async def test_choose_an_option_and_buy_it(open_page, make, client):
    seller = await make.seller()
    shirt = await make.product(
        seller,
        title="Linen shirt",
        variants=[
            {"sku": "LIN-S", "options": {"size": "S"}, "price_cents": 4000, "stock": 7},
            {"sku": "LIN-M", "options": {"size": "M"}, "price_cents": 4000, "stock": 9},
        ],
    )
    res = await client.post(
        "/api/streams",
        json={"title": "Linen day", "products": [{"product_id": shirt["id"], "live_price_cents": 3500}]},
        headers=seller.headers,
    )
    stream = (await res.json())["stream"]
    assert (await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)).status == 200
    by_sku = {v["sku"]: v["id"] for v in shirt["variants"]}
    small, medium = by_sku["LIN-S"], by_sku["LIN-M"]
    host = await Viewer.connect(client, stream["id"], seller)
    await host.request("pin", product_id=shirt["id"])
    sale = {"variant_id": medium, "price_cents": 2000, "quantity": 3, "duration_s": 120}
    assert (await host.request("flash_sale", **sale))["type"] == "ack"

    buyer = await make.user()
    res = await client.post("/api/wallet/top-up", json={"amount_cents": 10_000}, headers=buyer.headers)
    assert res.status == 200, await res.text()
    page = await open_page(f"/watch/{stream['id']}", buyer)
    await expect(page.locator("#product-title")).to_have_text("Linen shirt", timeout=WAIT_MS)
    # The option on sale is shown first, at the flash price with the sale's units.
    await expect(page.get_by_label("Option")).to_have_value(medium)
    await expect(page.locator("#price")).to_have_text("$20.00")
    await expect(page.locator("#units-left")).to_have_text("3")

    # Another option: the stream's live price and its own stock; buying it takes one of those.
    await page.get_by_label("Option").select_option(small)
    await expect(page.locator("#price")).to_have_text("$35.00")
    await expect(page.locator("#units-left")).to_have_text("7")
    await page.get_by_role("button", name="Buy now · $35.00").click()
    await expect(page.locator("#purchase-result")).to_contain_text("Bought!", timeout=WAIT_MS)
    await expect(page.locator("#units-left")).to_have_text("6", timeout=WAIT_MS)

    # Back to the sale from the hint on the card.
    await page.get_by_role("button", name="Choose it").click()
    await expect(page.locator("#price")).to_have_text("$20.00")

    # A buyer with an empty wallet is told so, and nothing is taken.
    broke = await open_page(f"/watch/{stream['id']}", await make.user())
    await broke.get_by_role("button", name="Buy now · $20.00").click()
    await expect(broke.locator("#purchase-result")).to_have_text("Not enough money in your wallet.", timeout=WAIT_MS)
    await expect(broke.locator("#units-left")).to_have_text("3")
    await host.close()
