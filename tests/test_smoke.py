async def test_register_and_me(make, client):
    alice = await make.user()
    res = await client.get("/api/me", headers=alice.headers)
    assert res.status == 200
    assert (await res.json())["user"]["email"] == alice.user["email"]
    seller = await make.seller()
    p = await make.product(seller)
    res = await client.get(f"/api/products/{p['id']}")
    assert (await res.json())["product"]["variants"][0]["available"] == 10
