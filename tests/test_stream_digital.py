"""A stream's products say which variants are digital (codes, no shipping address): in GET /api/streams/{id}
and in the live room's copy (welcome and pins), so the viewer page needs no other request to know."""

from live_helpers import Viewer


async def test_stream_products_say_which_variants_are_digital(client, make):
    seller = await make.seller()
    key = await make.product(
        seller, title="Game key", variants=[{"sku": "DG-KEY", "price_cents": 1500, "stock": 0, "digital": True}]
    )
    mug = await make.product(
        seller,
        title="Mug",
        variants=[
            {"sku": "DG-MUG", "price_cents": 900, "stock": 4},
            {"sku": "DG-MUG-CODE", "price_cents": 500, "stock": 0, "digital": True},
        ],
    )
    res = await client.post(
        "/api/streams",
        json={"title": "Codes and mugs", "products": [{"product_id": key["id"]}, {"product_id": mug["id"]}]},
        headers=seller.headers,
    )
    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    expected = {"DG-KEY": True, "DG-MUG": False, "DG-MUG-CODE": True}

    def digital_by_sku(products):
        return {v["sku"]: v["digital"] for p in products for v in p["variants"]}

    assert digital_by_sku(stream["products"]) == expected
    detail = await client.get(f"/api/streams/{stream['id']}")
    assert detail.status == 200
    assert digital_by_sku((await detail.json())["stream"]["products"]) == expected

    assert (await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)).status == 200
    host = await Viewer.connect(client, stream["id"], seller)
    try:
        assert digital_by_sku(host.welcome["stream"]["products"]) == expected
        assert (await host.request("pin", product_id=key["id"]))["type"] == "ack"
        late = await Viewer.connect(client, stream["id"])
        try:
            assert [v["digital"] for v in late.welcome["state"]["pinned"]["variants"]] == [True]
        finally:
            await late.close()
    finally:
        await host.close()
