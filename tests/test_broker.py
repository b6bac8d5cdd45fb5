"""The backplane's contracts, one suite per interface (Broker, Presence, Counters, Notifier), each run
against the in-process parts and the Redis ones (two nodes on one Redis); then the Redis parts' behaviour
when Redis restarts, messages are lost, or the connection pool is busy.

`node` and `peer` are backplanes (`.broker`, `.presence`, `.counters`, `.notifier`). For Redis they are
two nodes on the same Redis under a prefix of the test's own; for the in-process backplane they are the
same object, so "a publish on the peer reaches the node" means the same node.
"""

import asyncio
import contextlib
import secrets
import time

import pytest
from redis.asyncio import Redis

from livehub.broker import Backplane, BrokerUnavailable, Position, local_backplane, redis_backplane
from redis_server import RedisServer, redis_executable, redis_url  # noqa: F401

HISTORY = 10


async def until(condition, *, timeout: float = 5.0, what: str = "the condition") -> None:
    """Poll until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


class Inbox(list):
    """A room handler that keeps what it receives."""

    def __call__(self, event: dict) -> None:
        self.append(event)

    def offsets(self) -> list[int]:
        return [e["offset"] for e in self if e.get("type") != "reset" and "offset" in e]


@contextlib.asynccontextmanager
async def redis_prefix(url: str):
    """A fresh key prefix; every key under it is deleted afterwards."""
    prefix = f"livehub-test-{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        with contextlib.suppress(OSError):  # the restart test's server is gone by now
            async with Redis.from_url(url) as client:
                if keys := [key async for key in client.scan_iter(match=f"{prefix}:*")]:
                    await client.delete(*keys)


@contextlib.asynccontextmanager
async def redis_node(url: str, prefix: str, **options):
    """A started Redis backplane (one node); closed afterwards, leaving no task behind."""
    node = redis_backplane(url, prefix=prefix, **{"history_size": HISTORY, **options})
    await node.start()
    try:
        yield node
    finally:
        await node.close()
        assert [t for t in asyncio.all_tasks() if t.get_name().endswith(node.broker.node_id)] == []


@contextlib.asynccontextmanager
async def redis_nodes(url: str, count: int = 2, **options):
    """`count` nodes on one Redis, sharing a fresh prefix."""
    async with redis_prefix(url) as prefix, contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(redis_node(url, prefix, **options)) for _ in range(count)]


@pytest.fixture(params=["local", "redis"])
async def pair(request) -> tuple[Backplane, Backplane]:
    """Two nodes of one backplane: in process, the same node twice; on Redis, two nodes."""
    if request.param == "local":
        node = local_backplane(history_size=HISTORY)
        await node.start()
        yield node, node
        await node.close()
        return
    async with redis_nodes(request.getfixturevalue("redis_url")) as (node, peer):
        yield node, peer


@pytest.fixture
def node(pair) -> Backplane:
    return pair[0]


@pytest.fixture
def peer(pair) -> Backplane:
    """Another node of the same backplane (in process, the same one)."""
    return pair[1]


@pytest.fixture
async def nodes(redis_url):  # noqa: F811
    async with redis_nodes(redis_url) as nodes:
        yield nodes


def room() -> str:
    return f"room-{secrets.token_hex(4)}"


# Broker: the room's event stream, for both backplanes.


async def test_offsets_start_at_one_gap_free_and_the_same_on_every_node(node, peer):
    r, here, there = room(), Inbox(), Inbox()
    await node.broker.subscribe(r, here)
    if peer is not node:
        await peer.broker.subscribe(r, there)
    sent = [await (peer if i % 2 else node).broker.publish(r, {"type": "chat", "n": i}) for i in range(5)]
    assert [e["offset"] for e in sent] == [1, 2, 3, 4, 5]
    assert len({e["epoch"] for e in sent}) == 1 and sent[0]["epoch"]
    await until(lambda: len(here) >= 5, what="five events")
    assert here == sent
    if peer is not node:
        await until(lambda: len(there) >= 5, what="five events on the other node")
        assert there == sent


async def test_order_holds_over_many_concurrent_publishes(node, peer):
    r, here, there = room(), Inbox(), Inbox()
    await node.broker.subscribe(r, here)
    if peer is not node:
        await peer.broker.subscribe(r, there)
    sent = await asyncio.gather(
        *((peer if i % 2 else node).broker.publish(r, {"type": "chat", "n": i}) for i in range(500))
    )
    assert sorted(e["offset"] for e in sent) == list(range(1, 501))
    await until(lambda: len(here) >= 500, what="500 events")
    assert here == sorted(sent, key=lambda e: e["offset"])
    if peer is not node:
        await until(lambda: len(there) >= 500, what="500 events on the other node")
        assert there == here


async def test_a_publish_retried_with_its_publish_id_gives_the_first_event_and_delivers_it_once(node, peer):
    r, inbox = room(), Inbox()
    await node.broker.subscribe(r, inbox)
    first = await peer.broker.publish(r, {"type": "chat", "n": 1}, publish_id="chat-1")
    # A retry (the reply was lost, say) from either node: the first event, nothing appended or delivered.
    assert await peer.broker.publish(r, {"type": "chat", "n": 1}, publish_id="chat-1") == first
    assert await node.broker.publish(r, {"type": "chat", "n": 1}, publish_id="chat-1") == first
    other = await node.broker.publish(r, {"type": "chat", "n": 2}, publish_id="chat-2")
    assert other["offset"] == first["offset"] + 1 == 2
    # The id is per room: the same id elsewhere is another event.
    assert (await node.broker.publish(room(), {"type": "chat"}, publish_id="chat-1"))["offset"] == 1
    await until(lambda: len(inbox) >= 2, what="two events")
    await asyncio.sleep(0.05)  # room for a wrongly repeated delivery to show up
    assert inbox == [first, other]
    assert await peer.broker.history(r, 0, first["epoch"]) == [first, other]


async def test_history_serves_exactly_the_events_after_since_within_the_window(node, peer):
    r = room()
    sent = [await peer.broker.publish(r, {"type": "chat", "n": i}) for i in range(15)]
    epoch = sent[0]["epoch"]
    assert await node.broker.history(r, 5, epoch) == sent[5:]  # the window: the last 10, offsets 6..15
    assert await node.broker.history(r, 12, epoch) == sent[12:]
    assert await node.broker.history(r, 15, epoch) == []
    assert await node.broker.history(r, 4, epoch) is None  # offset 5 is no longer kept
    assert await node.broker.history(r, 16, epoch) is None  # from the future
    assert await node.broker.history(r, 10, "another-epoch") is None


async def test_subscribe_returns_the_kept_history_and_position_then_only_later_events(node, peer):
    r, inbox = room(), Inbox()
    before = [await peer.broker.publish(r, {"type": "chat", "n": i}) for i in range(3)]
    sub = await node.broker.subscribe(r, inbox)
    assert sub.history == before
    assert sub.position == Position(3, before[0]["epoch"])
    assert sub.reactions == {}
    after = await peer.broker.publish(r, {"type": "chat", "n": 3})
    await until(lambda: len(inbox) >= 1, what="the later event")
    assert inbox == [after]


async def test_subscribing_during_a_flood_misses_and_repeats_nothing(node, peer):
    r, inbox = room(), Inbox()
    published = []

    async def flood():
        for i in range(200):
            published.append(await peer.broker.publish(r, {"type": "chat", "n": i}))
            await asyncio.sleep(0.001)  # let subscribe() run in the middle of it

    task = asyncio.create_task(flood())
    await until(lambda: len(published) >= 20, what="the flood to start")
    sub = await node.broker.subscribe(r, inbox)
    await task
    assert 20 <= sub.position.offset < 200, "subscribed after the flood ended: the test proves nothing"
    assert [e["offset"] for e in sub.history] == list(range(sub.position.offset - HISTORY + 1, sub.position.offset + 1))
    await until(lambda: len(inbox) >= 200 - sub.position.offset, what="the rest of the flood")
    assert inbox == published[sub.position.offset :]


async def test_state_events_arrive_in_order_with_durable_ones(node, peer):
    r, inbox = room(), Inbox()
    await node.broker.subscribe(r, inbox)
    await peer.broker.publish(r, {"type": "chat", "n": 1})
    await peer.broker.publish_state(r, {"type": "pinned", "product": "a"})
    await peer.broker.publish(r, {"type": "chat", "n": 2})
    await peer.broker.publish_state(r, {"type": "pinned", "product": "b"})
    await until(lambda: len(inbox) >= 4, what="four events")
    assert [(e["type"], e.get("offset")) for e in inbox] == [
        ("chat", 1),
        ("pinned", None),
        ("chat", 2),
        ("pinned", None),
    ]
    assert inbox[3] == {"type": "pinned", "product": "b"}


async def test_an_unsubscribed_node_receives_nothing(node, peer):
    left, witness = Inbox(), Inbox()
    r, other = room(), room()
    await node.broker.subscribe(r, left)
    await node.broker.subscribe(other, witness)
    await node.broker.unsubscribe(r)
    await peer.broker.publish(r, {"type": "chat"})
    await peer.broker.publish_state(r, {"type": "pinned"})
    await peer.counters.add_reactions(r, {"heart": 1})
    # Published last on the same node and connection: once it arrives, anything for `r` would have too.
    await peer.broker.publish(other, {"type": "chat"})
    await until(lambda: len(witness) >= 1, what="the witness event")
    assert left == []


# Presence: viewers over all nodes, for both backplanes.


async def test_viewers_add_up_over_nodes_and_a_node_withdraws_its_count(node, peer):
    r = room()
    two_nodes = peer is not node
    assert await node.presence.set_viewers(r, 3) == 3
    total = await peer.presence.set_viewers(r, 4)
    assert total == (7 if two_nodes else 4)
    assert await node.presence.viewers(r) == total
    await peer.presence.withdraw(r)
    assert await node.presence.viewers(r) == (3 if two_nodes else 0)


async def test_a_closing_node_withdraws_every_count(node, peer):
    r, other = room(), room()
    await node.presence.set_viewers(r, 2)
    await node.presence.set_viewers(other, 5)
    await node.presence.close()
    assert await peer.presence.viewers(r) == 0
    assert await peer.presence.viewers(other) == 0


# Counters: reaction totals riding on the room's stream, for both backplanes.


async def test_reactions_are_summed_and_sent_as_totals(node, peer):
    r, inbox = room(), Inbox()
    await node.broker.subscribe(r, inbox)
    await node.counters.add_reactions(r, {"heart": 2})
    await peer.counters.add_reactions(r, {"heart": 1, "fire": 4})
    await until(lambda: len(inbox) >= 2, what="two reaction totals")
    assert inbox == [
        {"type": "reactions", "counts": {"heart": 2}},
        {"type": "reactions", "counts": {"heart": 3, "fire": 4}},
    ]
    await node.broker.unsubscribe(r)
    assert (await node.broker.subscribe(r, Inbox())).reactions == {"heart": 3, "fire": 4}


async def test_reaction_totals_arrive_in_order_with_the_rooms_events(node, peer):
    r, inbox = room(), Inbox()
    await node.broker.subscribe(r, inbox)
    await peer.broker.publish(r, {"type": "chat", "n": 1})
    await peer.counters.add_reactions(r, {"heart": 1})
    await peer.broker.publish(r, {"type": "chat", "n": 2})
    await node.counters.add_reactions(r, {"heart": 1})
    await peer.broker.publish_state(r, {"type": "pinned"})
    await until(lambda: len(inbox) >= 5, what="five events")
    assert [(e["type"], e.get("offset"), e.get("counts")) for e in inbox] == [
        ("chat", 1, None),
        ("reactions", None, {"heart": 1}),
        ("chat", 2, None),
        ("reactions", None, {"heart": 2}),
        ("pinned", None, None),
    ]


# Notifier: notices to users wherever they are, for both backplanes.


async def test_notify_reaches_on_notice_handlers(node, peer):
    got = []
    node.notifier.on_notice(lambda users, payload: got.append((users, payload)))
    await peer.notifier.notify(["u1", "u2"], {"type": "order_paid", "order": "o1"})
    await until(lambda: got, what="the notice")
    assert got == [(["u1", "u2"], {"type": "order_paid", "order": "o1"})]


# Redis only: presence, lost messages, a restart.


async def test_a_node_that_stops_reporting_drops_out_of_the_viewer_count(redis_url):  # noqa: F811
    r = room()
    async with redis_nodes(redis_url, presence_ttl_s=0.3) as (a, b):
        await a.presence.set_viewers(r, 3)
        assert await b.presence.set_viewers(r, 4) == 7
        # b goes quiet; a keeps reporting and soon counts alone.
        deadline = time.monotonic() + 5
        while (total := await a.presence.set_viewers(r, 3)) != 3:
            assert time.monotonic() < deadline, f"b's count never expired (total {total})"
            await asyncio.sleep(0.05)


_LOSE = """
local offset = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], offset .. '-0', 'e', ARGV[1])
return offset
"""


async def lose(url: str, node: Backplane, room: str, count: int) -> None:
    """Append `count` events to the room as publish would, but announce none of them: lost messages."""
    keys = [node.broker.link.key(room, name) for name in ("offset", "history")]
    async with Redis.from_url(url) as client:
        for i in range(count):
            await client.eval(_LOSE, 2, *keys, f'{{"type": "chat", "lost": {i}}}')


async def test_a_lost_message_is_filled_in_from_history_in_order(nodes, redis_url):  # noqa: F811
    a, b = nodes
    r, inbox = room(), Inbox()
    await a.broker.subscribe(r, inbox)
    first = await b.broker.publish(r, {"type": "chat", "n": 1})
    await until(lambda: len(inbox) >= 1, what="the first event")
    await lose(redis_url, b, r, 1)
    last = await b.broker.publish(r, {"type": "chat", "n": 3})
    await until(lambda: len(inbox) >= 3, what="three events")
    assert inbox == [first, {"type": "chat", "lost": 0, "offset": 2, "epoch": first["epoch"]}, last]


async def test_losing_more_than_the_window_sends_reset_then_what_is_kept(nodes, redis_url):  # noqa: F811
    a, b = nodes
    r, inbox = room(), Inbox()
    await a.broker.subscribe(r, inbox)
    first = await b.broker.publish(r, {"type": "chat"})
    await until(lambda: len(inbox) >= 1, what="the first event")
    await lose(redis_url, b, r, 15)  # offsets 2..16
    last = await b.broker.publish(r, {"type": "chat", "n": 17})
    await until(lambda: inbox[-1] == last, what="the last event")
    # The window is offsets 8..17: 2..7 are gone, so a reset at 7, then 8..17 once each.
    assert inbox[1] == {"type": "reset", "offset": 7, "epoch": first["epoch"]}
    assert [e["offset"] for e in inbox[2:]] == list(range(8, 18))


async def test_events_published_while_the_subscription_is_cut_arrive_after_it_is_back(nodes, redis_url):  # noqa: F811
    a, b = nodes
    r, inbox = room(), Inbox()
    await a.broker.subscribe(r, inbox)
    first = await b.broker.publish(r, {"type": "chat", "n": 1})
    await until(lambda: len(inbox) >= 1, what="the first event")
    async with Redis.from_url(redis_url) as client:
        clients = await client.client_list()
        ids = [c["id"] for c in clients if c["name"] == f"livehub:{a.broker.node_id}" and "P" in c["flags"]]
        assert len(ids) == 1, clients
        # a reconnects after at least 50 ms (backoff); these publishes land well inside that gap.
        await client.client_kill_filter(_id=ids[0])
    missed = [await b.broker.publish(r, {"type": "chat", "n": n}) for n in (2, 3, 4)]
    await until(lambda: len(inbox) >= 4, what="the missed events")
    later = await b.broker.publish(r, {"type": "chat", "n": 5})
    await until(lambda: len(inbox) >= 5, what="the next event")
    assert inbox == [first, *missed, later]


@pytest.mark.parametrize("publish_batch_max", [0, 256], ids=["per-publish", "pipeline"])
async def test_a_burst_waits_for_a_busy_pool_instead_of_reporting_redis_away(redis_url, publish_batch_max):  # noqa: F811
    # Every connection of a small pool is in use (held here, as a burst of commands would hold them) for
    # twice the node's Redis timeout, while Redis answers all along; then 200 publishes share what the pool
    # has (per publish), or go out on the publish pipeline's own connection. Busy is not away: every publish
    # must succeed, with gap-free offsets, delivered in order.
    timeout_s, r, inbox = 0.5, room(), Inbox()
    options = {"max_connections": 3, "timeout_s": timeout_s, "publish_batch_max": publish_batch_max}
    async with redis_nodes(redis_url, count=1, **options) as (node,):
        await node.broker.subscribe(r, inbox)  # the pub/sub connection is one of the three
        pool = node.broker.link.client.connection_pool
        held = [await pool.get_connection() for _ in range(2)]
        burst = asyncio.gather(*(node.broker.publish(r, {"type": "chat", "n": i}) for i in range(200)))
        try:
            await asyncio.sleep(2 * timeout_s)
            async with Redis.from_url(redis_url) as other:
                assert await other.ping()  # Redis was answering all along
        finally:
            for conn in held:
                await pool.release(conn)
        sent = await burst
        assert sorted(e["offset"] for e in sent) == list(range(1, 201))
        await until(lambda: len(inbox) >= 200, what="200 events")
        assert inbox == sorted(sent, key=lambda e: e["offset"])


async def test_a_publish_that_gets_no_connection_within_the_bound_is_unavailable(redis_url):  # noqa: F811
    # Without the publish pipeline (the baseline path), a publish needs a pooled connection of its own.
    # With it, see tests/test_broker_pipeline.py: a held pool does not stop publishes, and a full
    # pipeline is reported as busy.
    options = {"max_connections": 2, "timeout_s": 0.2, "busy_timeout_s": 0.6, "publish_batch_max": 0}
    async with redis_nodes(redis_url, count=1, **options) as (node,):
        pool = node.broker.link.client.connection_pool
        held = await pool.get_connection()  # with the pub/sub connection, the whole pool
        try:
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable, match="no free Redis connection within 0.6 s"):
                await node.broker.publish(room(), {"type": "chat"})
            assert 0.6 <= time.monotonic() - started < 2, "the busy bound, not the Redis timeout, ends the wait"
        finally:
            await pool.release(held)


async def test_a_node_survives_a_redis_restart_and_resets_to_the_new_epoch():
    if redis_executable() is None:
        pytest.skip("no redis-server to restart")
    with RedisServer() as server:
        async with redis_nodes(server.url) as (a, b):
            r, inbox = room(), Inbox()
            await a.broker.subscribe(r, inbox)
            before = await b.broker.publish(r, {"type": "chat", "n": 1})
            await until(lambda: len(inbox) >= 1, what="the first event")

            server.stop()
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                await a.broker.publish(r, {"type": "chat", "n": 2})
            assert time.monotonic() - started < 2.5, "publish hung while Redis was away"
            await a.broker.publish_state(r, {"type": "pinned"})  # never raises; reaches this node
            await until(lambda: inbox[-1] == {"type": "pinned"}, what="the local state event")
            assert await a.presence.set_viewers(r, 2) >= 2
            await a.notifier.notify(["u1"], {"type": "x"})  # never raises

            server.start()  # same port, no data: a new epoch
            deadline = time.monotonic() + 10
            while True:
                try:
                    after = await b.broker.publish(r, {"type": "chat", "n": 3})
                    break
                except BrokerUnavailable:
                    assert time.monotonic() < deadline, "publish never worked again"
                    await asyncio.sleep(0.05)
            await until(lambda: after in inbox, timeout=10, what="a to resubscribe")
            assert after["epoch"] != before["epoch"]
            assert inbox == [before, {"type": "pinned"}, {"type": "reset", "offset": 0, "epoch": after["epoch"]}, after]
