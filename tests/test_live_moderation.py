"""Chat moderation in a live room: bans, slow mode, timeouts, deletions, blocked words, moderators."""

import asyncio
import uuid

import aiohttp
import pytest

from conftest import settings_for
from live_helpers import Viewer, live_show
from livehub.app import create_app


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20, **backplane})
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


async def test_a_ban_closes_the_socket_and_blocks_rejoining(client, make, db):
    show = await live_show(make)
    troll = await make.user()
    host = await Viewer.connect(client, show.id, show.seller)
    bad = await Viewer.connect(client, show.id, troll)
    other_tab = await Viewer.connect(client, show.id, troll)
    reply = await host.request("moderate", action="ban", user_id=troll.id, reason="spam")
    assert reply["type"] == "ack", reply
    for socket in (bad, other_tab):
        await socket.wait_for(lambda v: v.close_code is not None)
        assert socket.close_code == 4003
    again = await Viewer.connect(client, show.id, troll)
    assert again.close_code == 4003
    # The ban is the seller's: it holds in the seller's next stream too, and it is stored.
    assert await db.fetchval("SELECT count(*) FROM seller_bans WHERE user_id = $1", uuid.UUID(troll.id)) == 1

    assert (await host.request("moderate", action="unban", user_id=troll.id))["type"] == "ack"
    back = await Viewer.connect(client, show.id, troll)
    assert back.close_code is None and back.welcome is not None
    assert (await back.request("chat", text="sorry"))["type"] == "ack"


async def test_slow_mode_refuses_early_messages_but_not_the_host(client, make):
    show = await live_show(make)
    host = await Viewer.connect(client, show.id, show.seller)
    fan = await Viewer.connect(client, show.id, await make.user())
    assert (await host.request("moderate", action="slow_mode", seconds=30))["type"] == "ack"
    await fan.wait_for(lambda v: any(e.get("action") == "slow_mode" for e in v.of_type("moderation")))

    assert (await fan.request("chat", text="first"))["type"] == "ack"
    early = await fan.request("chat", text="second")
    assert early["code"] == "rate_limited" and "slow mode" in early["message"]
    assert 0 < early["details"]["retry_after_s"] <= 30
    assert (await host.request("chat", text="host one"))["type"] == "ack"
    assert (await host.request("chat", text="host two"))["type"] == "ack"

    # Newcomers learn the slow mode from their welcome.
    late = await Viewer.connect(client, show.id)
    assert late.welcome["state"]["slow_mode_s"] == 30


async def test_deleted_messages_leave_every_viewer_and_the_archive(client, make, db):
    show = await live_show(make)
    host = await Viewer.connect(client, show.id, show.seller)
    fan = await Viewer.connect(client, show.id, await make.user())
    ack = await fan.request("chat", text="buy followers at spam.example")
    await host.wait_for(lambda v: v.of_type("chat"))
    message_id = host.of_type("chat")[0]["id"]
    assert ack["offset"] == host.of_type("chat")[0]["offset"]

    assert (await host.request("moderate", action="delete", message_id=message_id))["type"] == "ack"
    await fan.wait_for(lambda v: v.of_type("chat_deleted"))
    assert fan.of_type("chat_deleted")[0]["message_id"] == message_id
    late = await Viewer.connect(client, show.id)
    assert late.welcome["recent"] == []

    async def deleted() -> bool:
        return bool(
            await db.fetchval("SELECT deleted_at IS NOT NULL FROM chat_messages WHERE id = $1", uuid.UUID(message_id))
        )

    for _ in range(100):  # chat is written in the background, twice a second
        if await deleted():
            break
        await asyncio.sleep(0.05)
    assert await deleted()


async def test_timeouts_and_blocked_words(client, make):
    show = await live_show(make)
    user = await make.user()
    host = await Viewer.connect(client, show.id, show.seller)
    fan = await Viewer.connect(client, show.id, user)
    reply = await host.request("moderate", action="block_words", words=["Scam", "free money"])
    assert reply["type"] == "ack", reply  # in force on this node from the ack on
    refused = await fan.request("chat", text="This is a SCAM!")
    assert refused["code"] == "validation_error"
    assert (await fan.request("chat", text="scampi for dinner"))["type"] == "ack"

    assert (await host.request("moderate", action="timeout", user_id=user.id, seconds=60))["type"] == "ack"
    await fan.wait_for(lambda v: any(e.get("action") == "timeout" for e in v.of_type("moderation")))
    timed_out = await fan.request("chat", text="hello?")
    assert timed_out["code"] == "forbidden" and "until" in timed_out["details"]


async def test_only_the_host_and_moderators_moderate(client, make, db):
    show = await live_show(make)
    helper, fan = await make.user(), await make.user()
    viewer = await Viewer.connect(client, show.id, fan)
    for frame in (
        {"action": "ban", "user_id": helper.id},
        {"action": "slow_mode", "seconds": 10},
        {"action": "delete", "message_id": str(uuid.uuid4())},
    ):
        assert (await viewer.request("moderate", **frame))["code"] == "forbidden"
    assert (await viewer.request("pin", product_id=show.products[0]["id"]))["code"] == "forbidden"

    res = await client.post(
        f"/api/streams/{show.id}/moderators", json={"user_id": helper.id}, headers=show.seller.headers
    )
    assert res.status == 204, await res.text()
    mod = await Viewer.connect(client, show.id, helper)
    assert mod.welcome["you"]["role"] == "moderator"
    assert (await mod.request("moderate", action="slow_mode", seconds=5))["type"] == "ack"
    # A moderator cannot ban the host.
    assert (await mod.request("moderate", action="ban", user_id=show.seller.id))["type"] == "error"
    # Bad moderation frames are errors, not crashes.
    assert (await mod.request("moderate", action="timeout", user_id=fan.id))["code"] == "validation_error"
    assert (await mod.request("moderate", action="obliterate"))["code"] == "validation_error"
