"""GET /api/streams/{id} tells a signed-in caller whether they follow the shop (the viewer page's
Follow button); anonymous callers get null."""

from live_helpers import live_show


async def test_stream_says_whether_you_follow_the_shop(client, make):
    show = await live_show(make, products=1, start=False)
    fan = await make.user()
    seller_id = show.stream["seller"]["id"]

    res = await client.get(f"/api/streams/{show.id}")
    assert res.status == 200
    assert (await res.json())["stream"]["following"] is None

    async def following() -> bool:
        res = await client.get(f"/api/streams/{show.id}", headers=fan.headers)
        assert res.status == 200, await res.text()
        return (await res.json())["stream"]["following"]

    assert await following() is False
    res = await client.post(f"/api/sellers/{seller_id}/follow", headers=fan.headers)
    assert res.status == 200, await res.text()
    assert await following() is True
    res = await client.delete(f"/api/sellers/{seller_id}/follow", headers=fan.headers)
    assert res.status == 200, await res.text()
    assert await following() is False
