"""What a live room refuses over real websockets: a flash sale that would be a fake discount, and chat in
a show that has ended."""

from live_helpers import Viewer, live_show


async def test_a_flash_sale_above_the_price_is_refused_with_the_price_to_beat(client, make):
    show = await live_show(make, price=1000)
    host = await Viewer.connect(client, show.id, show.seller)
    fan = await Viewer.connect(client, show.id, await make.user())

    for price in (1500, 1000):
        reply = await host.request(
            "flash_sale", variant_id=show.variant(), price_cents=price, quantity=2, duration_s=60
        )
        assert reply["type"] == "error" and reply["code"] == "validation_error", reply
        assert "below" in reply["message"]
        assert reply["details"]["price_cents"] == 1000
        assert [e["loc"] for e in reply["details"]["errors"]] == [["price_cents"]]

    ok = await host.request("flash_sale", variant_id=show.variant(), price_cents=999, quantity=2, duration_s=60)
    assert ok["type"] == "ack", ok
    # Viewers only ever saw the real discount.
    sales = await fan.wait_for(lambda v: v.of_type("flash_sale"))
    assert [s["flash_sale"]["price_cents"] for s in sales] == [999]


async def test_chat_closes_with_the_show(client, make):
    show = await live_show(make)
    host = await Viewer.connect(client, show.id, show.seller)
    fan = await Viewer.connect(client, show.id, await make.user())
    assert (await fan.request("chat", text="before the end"))["type"] == "ack"

    res = await client.post(f"/api/streams/{show.id}/end", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    await fan.wait_for(lambda v: any(e["stream"]["status"] == "ended" for e in v.of_type("stream_status")))

    for who in (fan, host):
        reply = await who.request("chat", text="anyone still here?")
        assert reply["type"] == "error" and reply["code"] == "conflict", reply
        assert "ended" in reply["message"]
    # A viewer who opens the ended show is refused too, and nothing reached the room.
    late = await Viewer.connect(client, show.id, await make.user())
    assert late.welcome["stream"]["status"] == "ended"
    assert (await late.request("chat", text="hello?"))["code"] == "conflict"
    assert [m["text"] for m in late.welcome["recent"]] == ["before the end"]
    assert [e["text"] for e in fan.of_type("chat")] == ["before the end"]
