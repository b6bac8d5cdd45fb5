"""A chat message whose publish lost its reply (the publish pipeline sent its batch again) reaches the
viewers on every node once, with one offset, and the chat archive once: the publish id made the retry
harmless all the way from Redis to PostgreSQL."""

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError
from test_live_nodes import client, nodes  # noqa: F401 (fixtures: two nodes on one Redis)

from live_helpers import Viewer, live_show
from livehub import keys
from redis_server import redis_url  # noqa: F401


async def test_a_chat_whose_reply_was_lost_is_shown_and_archived_once(nodes, make, db):  # noqa: F811
    a, b = nodes
    show = await live_show(make, products=1, stock=1)
    on_a = await Viewer.connect(a, show.id)
    host_on_b = await Viewer.connect(b, show.id, show.seller)

    pipeline = b.app[keys.HUB].broker.pipeline
    original, lost = pipeline._round_trip, []

    async def reply_lost_once(batch):
        replies = await original(batch)  # Redis ran the publish...
        if not lost:
            lost.append(len(batch))
            raise RedisConnectionError("connection lost before the reply was read")  # ...and B never heard
        return replies

    pipeline._round_trip = reply_lost_once
    ack = await host_on_b.request("chat", text="said once")
    assert ack["type"] == "ack", ack
    assert lost == [1] and pipeline.retries == 1
    after = await host_on_b.request("chat", text="next")
    assert after["offset"] == ack["offset"] + 1  # nothing appended by the retry

    for viewer in (on_a, host_on_b):
        await viewer.wait_for(lambda v: len(v.of_type("chat")) == 2)
        assert [(e["offset"], e["text"]) for e in viewer.of_type("chat")] == [
            (ack["offset"], "said once"),
            (after["offset"], "next"),
        ]

    rows = []
    for _ in range(100):  # the archive is written every half second
        rows = await db.fetch('SELECT "offset", text FROM chat_messages WHERE stream_id = $1', show.id)
        if len(rows) >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)  # one more round of the archive: a doubled message would show by now
    rows = await db.fetch('SELECT "offset", text FROM chat_messages WHERE stream_id = $1', show.id)
    assert sorted((r["offset"], r["text"]) for r in rows) == [(ack["offset"], "said once"), (after["offset"], "next")]
