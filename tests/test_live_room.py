"""A live room over real websockets on one node: ordering, recovery, bad frames, slow viewers."""

import asyncio
import uuid

import aiohttp
import pytest

from conftest import settings_for
from helpers import balance, top_up
from live_helpers import Viewer, live_show
from livehub import keys
from livehub.app import create_app


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(
        update={
            "tick_ms": 20,
            "presence_interval_s": 0.2,
            "viewer_buffer_kib": 64,
            "max_ws_frame_bytes": 4096,
            **backplane,
        }
    )
    # Hundreds of websockets from one test: no client-side connection limit.
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


def durable_types(viewer: Viewer) -> list[str]:
    return [e["type"] for e in viewer.durable]


async def test_two_viewers_and_a_host_see_the_same_events_in_order(client, make):
    show = await live_show(make)
    fan, other = await make.user(), await make.user()
    host = await Viewer.connect(client, show.id, show.seller)
    a = await Viewer.connect(client, show.id, fan)
    b = await Viewer.connect(client, show.id, other)
    assert host.welcome["you"]["role"] == "host" and a.welcome["you"]["role"] == "viewer"
    start = a.welcome["offset"]

    product = show.products[0]["id"]
    assert (await host.request("pin", product_id=product))["type"] != "error"
    await a.request("chat", text="is it true to size?")
    for _ in range(3):
        await b.send(type="react", kind="heart")
    await host.request("unpin")
    await host.send(type="flash_sale", variant_id=show.variant(1), price_cents=500, quantity=5, duration_s=60)
    await a.wait_for(lambda v: v.of_type("flash_sale"))
    await host.send(type="end_flash_sale")

    expected = ["pin", "chat", "unpin", "flash_sale", "flash_sale"]
    for viewer in (a, b, host):
        await viewer.wait_for(lambda v: len(v.durable) >= 5)
        assert durable_types(viewer) == expected
        assert [e["offset"] for e in viewer.durable] == list(range(start + 1, start + 6))
        await viewer.wait_for(lambda v: v.of_type("reactions") and v.of_type("reactions")[-1]["counts"] == {"heart": 3})
    chat = a.of_type("chat")[0]
    assert chat["text"] == "is it true to size?" and chat["user"]["id"] == fan.id
    assert a.of_type("pin")[0]["product"]["id"] == product
    running, ended = a.of_type("flash_sale")
    assert running["flash_sale"]["ended"] is False and running["flash_sale"]["price_cents"] == 500
    assert ended["flash_sale"]["ended"] is True and ended["flash_sale"]["ended_reason"] == "host"
    # Reactions arrive as counts, never one event per tap.
    assert all(set(e) == {"type", "counts"} for e in a.of_type("reactions"))
    # Everything came in `events` frames; nothing was sent one event per frame.
    assert {f["type"] for f in a.frames} <= {"welcome", "events", "ack"}


async def test_a_viewer_that_reconnects_with_since_gets_exactly_what_it_missed(client, make):
    show = await live_show(make)
    host = await Viewer.connect(client, show.id, show.seller)
    fan = await Viewer.connect(client, show.id, await make.user())
    offset, epoch = fan.welcome["offset"], fan.welcome["epoch"]
    await fan.close()

    for text in ("one", "two", "three"):
        await host.request("chat", text=text)
    back = await Viewer.connect(client, show.id, since=offset, epoch=epoch)
    assert back.welcome["recovered"] is True
    await back.wait_for(lambda v: len(v.durable) >= 3)
    assert [(e["offset"], e["text"]) for e in back.durable] == [
        (offset + 1, "one"),
        (offset + 2, "two"),
        (offset + 3, "three"),
    ]

    stale = await Viewer.connect(client, show.id, since=offset, epoch="another-epoch")
    assert stale.welcome["recovered"] is False
    assert [m["text"] for m in stale.welcome["recent"]] == ["one", "two", "three"]
    assert stale.welcome["offset"] == offset + 3


async def test_bad_frames_get_an_error_and_the_connection_stays(client, make):
    show = await live_show(make, price=1000)
    buyer = await make.user()
    await top_up(client, buyer, 5000)
    viewer = await Viewer.connect(client, show.id, buyer)

    await viewer.ws.send_str("{not json")
    await viewer.ws.send_json({"type": "buy", "variant_id": show.variant(), "quantity": "2", "request_id": "q"})
    await viewer.ws.send_json({"type": "teleport", "request_id": "t"})
    await viewer.ws.send_json(["chat"])
    await viewer.wait_for(lambda v: len(v.replies("error")) >= 4)
    errors = viewer.replies("error")
    assert [e["code"] for e in errors] == ["validation_error"] * 4
    assert errors[0]["message"] == "frame is not valid JSON"
    assert errors[1]["request_id"] == "q" and errors[1]["details"]["errors"][0]["loc"][-1] == "quantity"
    assert errors[2]["message"] == "unknown frame type"

    # A foreign price is ignored: the database's price is charged.
    reply = await viewer.request("buy", variant_id=show.variant(), quantity=1, price_cents=1)
    assert reply["type"] == "purchase" and reply["status"] == "ok", reply
    assert await balance(client, buyer) == 4000

    # Too big a frame closes the socket with 1009.
    await viewer.ws.send_str('{"type": "chat", "text": "' + "x" * 5000 + '"}')
    await viewer.wait_for(lambda v: v.close_code is not None)
    assert viewer.close_code == 1009


async def test_anonymous_viewers_watch_but_cannot_chat_or_buy(client, make):
    show = await live_show(make)
    anon = await Viewer.connect(client, show.id)
    assert anon.welcome["you"] == {"user_id": None, "role": "anonymous"}
    assert [p["id"] for p in anon.welcome["stream"]["products"]] == [p["id"] for p in show.products]
    assert (await anon.request("chat", text="hi"))["code"] == "unauthorized"
    assert (await anon.request("buy", variant_id=show.variant()))["code"] == "unauthorized"
    assert (await anon.request("ping"))["type"] == "pong"


async def test_unknown_streams_and_bad_tokens_are_closed_with_their_codes(client, make):
    show = await live_show(make)
    missing = await Viewer.connect(client, str(uuid.uuid4()))
    assert missing.close_code == 4004
    garbage = await Viewer.connect(client, "not-a-uuid")
    assert garbage.close_code == 4004
    forged = await Viewer.connect(client, show.id, token="forged")
    assert forged.close_code == 4001


async def test_a_sign_in_the_busy_database_cannot_check_now_is_told_to_reconnect_not_to_sign_in(client, make):
    """A pool with no connection to spare for a second is not an invalid session: 1013, never 4001 (which
    makes the viewer page ask to sign in again)."""
    show = await live_show(make)
    fan = await make.user()
    pool = client.app[keys.POOL]
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        ws = await client.ws_connect(f"/ws/streams/{show.id}", headers=fan.headers)
        assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1013
    finally:
        for conn in held:
            await pool.release(conn)
    viewer = await Viewer.connect(client, show.id, fan)
    assert viewer.welcome is not None
    await viewer.close()


async def test_chat_limits_and_viewer_counts(client, make):
    show = await live_show(make)
    fan = await Viewer.connect(client, show.id, await make.user())
    watcher = await Viewer.connect(client, show.id)
    await watcher.wait_for(lambda v: v.of_type("viewers") and v.of_type("viewers")[-1]["count"] == 2)
    too_long = await fan.request("chat", text="x" * 501)
    assert too_long["code"] == "validation_error"
    # The default burst is 5 messages; the sixth within a second is refused.
    replies = [await fan.request("chat", text=f"m{i}") for i in range(6)]
    assert [r["type"] for r in replies[:5]] == ["ack"] * 5
    assert replies[5]["code"] == "rate_limited"


async def test_a_slow_viewer_is_dropped_with_4008_while_others_keep_up(client, make):
    show = await live_show(make)
    fast = await Viewer.connect(client, show.id)
    # A raw client that never reads: aiohttp stops reading its socket once its own buffer is full.
    slow = await client.ws_connect(f"/ws/streams/{show.id}")
    hub = client.server.app[keys.HUB]
    room = hub.rooms[uuid.UUID(show.id)]
    await fast.wait_for(lambda v: len(room.connections) == 2)

    big = "y" * 50_000
    author = {"id": show.seller.id, "name": "Host", "role": "host"}
    last = None
    for i in range(400):  # up to 20 MB, far more than the socket buffers hold
        chat = {"type": "chat", "id": str(uuid.uuid4()), "user": author, "text": big, "at": "2026-01-01T00:00:00Z"}
        last = await hub.broker.publish(show.id, chat)
        if i % 10 == 0:
            await asyncio.sleep(0.03)
        if any(c.closing for c in room.connections):
            break
    assert any(c.closing for c in room.connections), "the slow viewer was never dropped"
    # Read what was queued for it: the last thing is the close frame with 4008.
    while (await slow.receive(timeout=10)).type.name not in ("CLOSE", "CLOSED", "ERROR"):
        pass
    assert slow.close_code == 4008
    await fast.wait_for(lambda v: v.durable and v.durable[-1]["offset"] == last["offset"], timeout=20)
    assert fast.close_code is None
