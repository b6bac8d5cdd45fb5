"""What a room records and pushes beyond chat: stream stats from real viewers, go-live notifications to
connected followers, and a clean goodbye when the server shuts down."""

import asyncio

import aiohttp
import pytest

from conftest import settings_for
from helpers import top_up
from live_helpers import Viewer, live_show
from livehub import keys
from livehub.app import create_app
from livehub.jsonx import loads
from livehub.live import hub


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20, "presence_interval_s": 0.1, **backplane})
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


async def stats(client, show) -> dict:
    res = await client.get(f"/api/streams/{show.id}/stats", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def eventually(check, timeout: float = 10.0):
    for _ in range(int(timeout / 0.05)):
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_the_room_records_viewers_clicks_reactions_chat_and_sales(client, make, db):
    show = await live_show(make, products=2, price=1000)
    fans = [await make.user() for _ in range(3)]
    await top_up(client, fans[0], 5000)
    viewers = [await Viewer.connect(client, show.id, fan) for fan in fans]
    again = await Viewer.connect(client, show.id, fans[0])  # a second tab is not a second viewer
    anon = await Viewer.connect(client, show.id)
    await anon.wait_for(lambda v: v.of_type("viewers") and v.of_type("viewers")[-1]["count"] == 4)

    product = show.products[1]["id"]
    for v in viewers:
        await v.send(type="click", product_id=product)
    await viewers[1].send(type="react", kind="fire")
    await viewers[2].send(type="react", kind="fire")
    await viewers[0].request("chat", text="love it")
    assert (await again.request("buy", variant_id=show.variant(1)))["status"] == "ok"

    async def recorded():
        s = await stats(client, show)
        return s if s["chat_messages"] == 1 and s["reactions"] == {"fire": 2} else None

    s = await eventually(recorded)
    assert s["peak_viewers"] == 4
    assert s["unique_viewers"] == 4  # three accounts and one anonymous client
    assert (s["orders"], s["revenue_cents"]) == (1, 1000)
    by_product = {p["product_id"]: p for p in s["products"]}
    assert by_product[product]["clicks"] == 3 and by_product[product]["orders"] == 1


async def test_a_room_closing_on_this_node_withdraws_its_viewer_count_at_once(client, make, monkeypatch):
    monkeypatch.setattr(hub, "ROOM_GRACE_S", 0.05)
    show = await live_show(make)
    viewer = await Viewer.connect(client, show.id)
    await viewer.wait_for(lambda v: v.of_type("viewers") and v.of_type("viewers")[-1]["count"] == 1)

    async def viewers() -> int:
        res = await client.get(f"/api/streams/{show.id}")
        assert res.status == 200, await res.text()
        return (await res.json())["stream"]["viewers"]

    async def released() -> bool:
        return not client.server.app[keys.HUB].rooms

    assert await viewers() == 1
    await viewer.close()
    await eventually(released)
    # Nothing reports for a room that is gone: the count is 0 only because the room withdrew it.
    assert await viewers() == 0


async def test_connected_followers_are_told_when_the_shop_goes_live(client, make):
    show = await live_show(make, start=False)
    elsewhere = await live_show(make)
    fan, stranger = await make.user(), await make.user()
    res = await client.post(f"/api/sellers/{show.seller.seller['id']}/follow", headers=fan.headers)
    assert res.status == 200, await res.text()

    inbox = await client.ws_connect("/ws/me", headers=fan.headers)
    assert loads((await inbox.receive(timeout=5)).data)["type"] == "welcome"
    watching = await Viewer.connect(client, elsewhere.id, fan)  # the fan is watching another stream
    bystander = await Viewer.connect(client, elsewhere.id, stranger)

    res = await client.post(f"/api/streams/{show.id}/start", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    note = loads((await inbox.receive(timeout=15)).data)
    assert note["type"] == "notification" and note["notification"]["kind"] == "stream_live"
    assert note["notification"]["payload"]["stream_id"] == show.id
    pushed = await watching.wait_for(lambda v: v.replies("notification"))
    assert pushed[0]["notification"]["payload"]["stream_id"] == show.id
    await asyncio.sleep(0.2)
    assert bystander.replies("notification") == []

    anon = await client.ws_connect("/ws/me")
    await anon.receive(timeout=5)
    assert anon.close_code == 4001
    await inbox.close()


async def test_viewers_are_told_the_server_is_going_away(client, make):
    show = await live_show(make)
    viewer = await Viewer.connect(client, show.id)
    await client.server.close()  # runs the app's shutdown, as SIGTERM would
    await viewer.wait_for(lambda v: v.close_code is not None)
    assert viewer.close_code == 1001
