"""The viewer page knows a digital product from the stream's own data: a viewer with no saved address buys a
code in the show without being asked for one, and the page asks no product page for it."""

from playwright.async_api import expect

from live_helpers import Viewer

WAIT_MS = 20_000


async def test_a_digital_code_is_bought_without_an_address(open_page, make, client, db):
    seller = await make.seller()
    key = await make.product(
        seller, title="Game key", variants=[{"sku": "WD-KEY", "price_cents": 1500, "stock": 0, "digital": True}]
    )
    res = await client.post(
        f"/api/variants/{key['variants'][0]['id']}/units",
        data=b"WDWD-1111-ZZZZ\n",
        headers={"Content-Type": "text/csv", **seller.headers},
    )
    assert res.status in (200, 201), await res.text()
    res = await client.post(
        "/api/streams", json={"title": "Codes", "products": [{"product_id": key["id"]}]}, headers=seller.headers
    )
    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    assert (await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)).status == 200
    host = await Viewer.connect(client, stream["id"], seller)
    assert (await host.request("pin", product_id=key["id"]))["type"] == "ack"

    buyer = await make.user(address=False)
    res = await client.post("/api/wallet/top-up", json={"amount_cents": 5_000}, headers=buyer.headers)
    assert res.status == 200, await res.text()
    asked = []
    page = await open_page(f"/watch/{stream['id']}", buyer)
    # Every request of the page from its start: listened to, then loaded again.
    page.on("request", lambda r: asked.append(r.url) if "/api/products/" in r.url else None)
    await page.reload()
    await expect(page.locator("#ship-to")).to_contain_text("No shipping address yet", timeout=WAIT_MS)
    await page.get_by_role("button", name="Buy now · $15.00").click()
    await expect(page.locator("#purchase-result")).to_contain_text("Bought!", timeout=WAIT_MS)
    await expect(page.locator("#address-form")).to_be_hidden()
    assert await db.fetchval("SELECT count(*) FROM orders WHERE address IS NULL") == 1
    assert asked == []
    await host.close()
