"""GET /api/sellers/{id} tells a signed-in caller whether they follow the shop (its storefront's Follow
button), and anonymous callers null."""


async def following(client, seller_id: str, headers=None):
    res = await client.get(f"/api/sellers/{seller_id}", headers=headers or {})
    assert res.status == 200, await res.text()
    return (await res.json())["seller"]


async def test_a_shop_says_whether_you_follow_it(client, make):
    seller = await make.seller()
    fan = await make.user()
    sid = seller.seller["id"]
    assert (await following(client, sid))["following"] is None
    assert (await following(client, sid, fan.headers))["following"] is False

    res = await client.post(f"/api/sellers/{sid}/follow", headers=fan.headers)
    assert res.status == 200, await res.text()
    shop = await following(client, sid, fan.headers)
    assert shop["following"] is True and shop["followers"] == 1
    # Someone else does not follow it; the owner neither.
    assert (await following(client, sid, (await make.user()).headers))["following"] is False
    assert (await following(client, sid, seller.headers))["following"] is False

    res = await client.delete(f"/api/sellers/{sid}/follow", headers=fan.headers)
    assert res.status == 200, await res.text()
    assert (await following(client, sid, fan.headers))["following"] is False
