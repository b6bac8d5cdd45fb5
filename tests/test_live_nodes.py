"""Several nodes on one Redis serve the same rooms: same offsets everywhere, stock and viewer counts
shared, and a node that survives Redis restarting."""

import asyncio
import secrets

import aiohttp
import pytest

from conftest import settings_for
from helpers import top_up
from live_helpers import Viewer, live_show
from livehub.app import create_app
from redis_server import RedisServer, free_port, redis_executable, redis_url  # noqa: F401


def node_settings(database_url: str, redis: str, prefix: str):
    return settings_for(database_url).model_copy(
        update={
            "redis_url": redis,
            "redis_prefix": prefix,
            "tick_ms": 20,
            "presence_interval_s": 0.2,
            "room_history_ttl_s": 120,
        }
    )


async def two_nodes(aiohttp_client, database_url: str, redis: str):
    prefix = f"t{secrets.token_hex(4)}"
    nodes = []
    for _ in range(2):
        app = create_app(node_settings(database_url, redis, prefix))
        nodes.append(await aiohttp_client(app, connector=aiohttp.TCPConnector(limit=0)))
    return nodes


@pytest.fixture
async def nodes(aiohttp_client, database_url, redis_url, db):  # noqa: F811
    return await two_nodes(aiohttp_client, database_url, redis_url)


@pytest.fixture
async def client(nodes):
    # The Factory builds data through node A.
    return nodes[0]


async def test_a_viewer_on_node_a_sees_chat_from_node_b_with_the_same_offsets(nodes, make, db):
    a, b = nodes
    show = await live_show(make, products=1, stock=10)
    buyer = await make.user()
    await top_up(a, buyer, 10_000)
    on_a = await Viewer.connect(a, show.id)
    host_on_b = await Viewer.connect(b, show.id, show.seller)
    buyer_on_b = await Viewer.connect(b, show.id, buyer)
    assert on_a.welcome["epoch"] == host_on_b.welcome["epoch"]

    for text in ("hello from b", "second"):
        assert (await host_on_b.request("chat", text=text))["type"] == "ack"
    await on_a.wait_for(lambda v: len(v.of_type("chat")) == 2)
    await host_on_b.wait_for(lambda v: len(v.of_type("chat")) == 2)
    seen_a = [(e["offset"], e["text"]) for e in on_a.of_type("chat")]
    assert seen_a == [(e["offset"], e["text"]) for e in host_on_b.of_type("chat")]
    assert [t for _, t in seen_a] == ["hello from b", "second"]

    # A purchase on B updates the stock that viewers on A see.
    reply = await buyer_on_b.request("buy", variant_id=show.variant(), quantity=3)
    assert reply["status"] == "ok", reply
    stock = await on_a.wait_for(lambda v: v.of_type("stock"))
    assert stock[-1] == {"type": "stock", "variant_id": show.variant(), "available": 7}

    # Viewer counts are summed over both nodes.
    await on_a.wait_for(lambda v: v.of_type("viewers") and v.of_type("viewers")[-1]["count"] == 3)

    # A viewer reconnecting to the other node recovers from the same offsets.
    offset, epoch = on_a.welcome["offset"], on_a.welcome["epoch"]
    back_on_b = await Viewer.connect(b, show.id, since=offset, epoch=epoch)
    assert back_on_b.welcome["recovered"] is True
    await back_on_b.wait_for(lambda v: len(v.of_type("chat")) == 2)
    assert [(e["offset"], e["text"]) for e in back_on_b.of_type("chat")] == seen_a


@pytest.mark.skipif(redis_executable() is None, reason="needs a redis-server binary to restart")
async def test_nodes_survive_redis_restarting_and_cross_node_chat_resumes(aiohttp_client, database_url, db):
    server = RedisServer(free_port()).start()
    try:
        a, b = await two_nodes(aiohttp_client, database_url, server.url)
        from conftest import Factory

        make = Factory(a, db)
        show = await live_show(make, products=1, stock=10)
        buyer = await make.user()
        await top_up(a, buyer, 10_000)
        on_a = await Viewer.connect(a, show.id, buyer)
        host_on_b = await Viewer.connect(b, show.id, show.seller)
        assert (await host_on_b.request("chat", text="before"))["type"] == "ack"
        await on_a.wait_for(lambda v: v.of_type("chat"))

        server.stop()
        # Chat needs Redis: refused with `unavailable`, and the node stays up.
        refused = await host_on_b.request("chat", text="during")
        assert refused["code"] == "unavailable", refused
        # Buying needs only PostgreSQL: it goes on.
        assert (await on_a.request("buy", variant_id=show.variant()))["status"] == "ok"
        # A newcomer still joins the room on A.
        late = await Viewer.connect(a, show.id)
        assert late.welcome is not None and late.close_code is None

        server.start()
        # Redis came back empty: both nodes resubscribe, the room's history restarts (a fresh welcome),
        # and chat from B reaches A again.
        for _ in range(200):
            reply = await host_on_b.request("chat", text="after")
            if reply["type"] == "ack":
                break
            await asyncio.sleep(0.05)
        assert reply["type"] == "ack", reply
        await on_a.wait_for(lambda v: any(e["text"] == "after" for e in v.of_type("chat")), timeout=15)
        welcomes = [f for f in on_a.frames if f["type"] == "welcome"]
        assert len(welcomes) == 2 and welcomes[1]["epoch"] != welcomes[0]["epoch"]
        assert on_a.close_code is None and host_on_b.close_code is None
        assert (await a.get("/healthz")).status == 200 and (await b.get("/healthz")).status == 200
    finally:
        server.close()
