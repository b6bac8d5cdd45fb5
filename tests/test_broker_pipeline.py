"""The Redis broker's publish pipeline (livehub/broker/redis_pipeline.py), against a real Redis: concurrent
publishes share round trips, in order; a full pipeline is busy, not unavailable; a lost reply is sent again
without doubling anything; Redis restarting in the middle of a burst leaves no gap and no duplicate."""

import asyncio
import time
from collections import defaultdict

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from test_broker import Inbox, redis_nodes, room, until

from livehub.broker import BrokerBusy, BrokerUnavailable
from redis_server import RedisServer, redis_executable, redis_url  # noqa: F401


async def test_concurrent_publishes_go_out_in_fewer_round_trips_in_order(redis_url):  # noqa: F811
    async with redis_nodes(redis_url) as (a, b):
        rooms = [room() for _ in range(5)]
        inboxes = {r: Inbox() for r in rooms}
        for r in rooms:
            await a.broker.subscribe(r, inboxes[r])
        async with Redis.from_url(redis_url) as client:
            calls_before = (await client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
        sent = await asyncio.gather(*(b.broker.publish(rooms[i % 5], {"type": "chat", "n": i}) for i in range(1000)))
        pipeline = b.broker.pipeline
        assert pipeline.published == 1000
        # Everything after the first batch was queued while a batch was out: a handful of round trips.
        assert pipeline.batches <= 1000 / 10, (pipeline.batches, pipeline.largest_batch)
        assert pipeline.largest_batch > 1
        async with Redis.from_url(redis_url) as client:
            calls = (await client.info("commandstats"))["cmdstat_evalsha"]["calls"] - calls_before
        assert calls >= 1000  # one script run per publish (others may share this Redis), none lost
        for r in rooms:
            mine = [e for e in sent if e["n"] % 5 == rooms.index(r)]
            assert sorted(e["offset"] for e in mine) == list(range(1, 201))
            # Queued order is offset order: publish i of a room was queued before publish i + 5.
            assert [e["n"] for e in sorted(mine, key=lambda e: e["offset"])] == [e["n"] for e in mine]
            await until(lambda r=r: len(inboxes[r]) >= 200, what=f"200 events in {r}")
            assert inboxes[r] == sorted(mine, key=lambda e: e["offset"])


async def test_publishes_one_after_another_keep_their_order(redis_url):  # noqa: F811
    async with redis_nodes(redis_url, count=1) as (node,):
        r, inbox = room(), Inbox()
        await node.broker.subscribe(r, inbox)
        sent = [await node.broker.publish(r, {"type": "chat", "n": i}) for i in range(20)]
        assert [e["offset"] for e in sent] == list(range(1, 21))
        await until(lambda: len(inbox) >= 20, what="20 events")
        assert inbox == sent
        assert node.broker.pipeline.batches == 20  # nothing to gather: one round trip each


async def test_a_held_pool_does_not_hold_up_publishes(redis_url):  # noqa: F811
    # The pipeline writes on a connection of its own: the shared pool, all in use, does not matter.
    async with redis_nodes(redis_url, count=1, max_connections=2, timeout_s=0.2, busy_timeout_s=0.6) as (node,):
        pool = node.broker.link.client.connection_pool
        held = await pool.get_connection()  # with the pub/sub connection, the whole pool
        try:
            started = time.monotonic()
            event = await node.broker.publish(room(), {"type": "chat"})
            assert event["offset"] == 1
            assert time.monotonic() - started < 0.6
        finally:
            await pool.release(held)


class Stall:
    """Wraps the pipeline's round trip so that batches wait until `release()`: Redis answering slower
    than the node publishes, without taking Redis away."""

    def __init__(self, pipeline):
        self.pipeline, self.original = pipeline, pipeline._round_trip
        self.gate = asyncio.Event()
        self.entered = 0
        pipeline._round_trip = self

    async def __call__(self, batch):
        self.entered += 1
        await self.gate.wait()
        return await self.original(batch)

    def release(self) -> None:
        self.gate.set()


async def test_a_full_pipeline_waits_then_reports_busy_not_unavailable(redis_url):  # noqa: F811
    options = {"timeout_s": 0.3, "busy_timeout_s": 0.6, "publish_queue_max": 5}
    async with redis_nodes(redis_url, count=1, **options) as (node,):
        r, inbox = room(), Inbox()
        await node.broker.subscribe(r, inbox)
        stall = Stall(node.broker.pipeline)
        waiting = [asyncio.create_task(node.broker.publish(r, {"type": "chat", "n": 0}))]
        await until(lambda: stall.entered == 1, what="a batch out")
        waiting += [asyncio.create_task(node.broker.publish(r, {"type": "chat", "n": i})) for i in range(1, 6)]
        await until(lambda: node.broker.pipeline.waiting == 5, what="a full queue")
        started = time.monotonic()
        with pytest.raises(BrokerBusy, match="no place within 0.6 s") as raised:
            await node.broker.publish(r, {"type": "chat", "n": "late"})
        assert not isinstance(raised.value, BrokerUnavailable)
        assert raised.value.code == "rate_limited"
        assert 0.6 <= time.monotonic() - started < 2
        # A place that comes free within the bound is taken: this one waits, then goes out.
        later = asyncio.create_task(node.broker.publish(r, {"type": "chat", "n": 6}))
        await asyncio.sleep(0.1)
        stall.release()
        sent = [*await asyncio.gather(*waiting), await later]
        assert [e["offset"] for e in sent] == list(range(1, 8))
        await until(lambda: len(inbox) >= 7, what="seven events")
        assert inbox == sent


async def test_a_lost_reply_is_sent_again_and_nothing_is_doubled(redis_url):  # noqa: F811
    async with redis_nodes(redis_url, count=1) as (node,):
        r, inbox = room(), Inbox()
        await node.broker.subscribe(r, inbox)
        pipeline = node.broker.pipeline
        original, lost = pipeline._round_trip, []

        async def reply_lost_once(batch):
            replies = await original(batch)  # Redis ran every script of the batch...
            if not lost:
                lost.append(len(batch))
                raise RedisConnectionError("connection lost before the replies were read")  # ...unheard
            return replies

        pipeline._round_trip = reply_lost_once
        sent = await asyncio.gather(*(node.broker.publish(r, {"type": "chat", "n": i}) for i in range(50)))
        assert lost and pipeline.retries == 1
        assert sorted(e["offset"] for e in sent) == list(range(1, 51))
        await until(lambda: len(inbox) >= 50, what="50 events")
        await asyncio.sleep(0.1)
        assert inbox == sorted(sent, key=lambda e: e["offset"])  # each once
        in_order = sorted(sent, key=lambda e: e["offset"])
        assert await node.broker.history(r, 40, sent[0]["epoch"]) == in_order[40:]
        async with Redis.from_url(redis_url) as client:
            assert int(await client.get(node.broker.link.key(r, "offset"))) == 50


async def test_a_reply_slower_than_the_timeout_is_asked_for_again_and_nothing_is_doubled(redis_url):  # noqa: F811
    async with redis_nodes(redis_url, count=1, timeout_s=0.3) as (node,):
        r, inbox = room(), Inbox()
        await node.broker.subscribe(r, inbox)
        pipeline = node.broker.pipeline
        original, late = pipeline._round_trip, []

        async def reply_too_late_once(batch):
            replies = await original(batch)
            if not late:
                late.append(len(batch))
                await asyncio.sleep(0.3)  # the whole retry window spent waiting for the replies
                raise RedisTimeoutError("Timeout reading from socket")
            return replies

        pipeline._round_trip = reply_too_late_once
        sent = await asyncio.gather(*(node.broker.publish(r, {"type": "chat", "n": i}) for i in range(5)))
        assert late and pipeline.retries == 1
        assert sorted(e["offset"] for e in sent) == [1, 2, 3, 4, 5]
        await until(lambda: len(inbox) >= 5, what="five events")
        await asyncio.sleep(0.1)
        assert inbox == sorted(sent, key=lambda e: e["offset"])


async def test_redis_away_fails_a_publish_within_the_timeout_and_then_recovers(redis_url):  # noqa: F811
    if redis_executable() is None:
        pytest.skip("no redis-server to stop")
    with RedisServer() as server:
        async with redis_nodes(server.url, count=1, timeout_s=0.5) as (node,):
            r = room()
            assert (await node.broker.publish(r, {"type": "chat"}))["offset"] == 1
            server.stop()
            started = time.monotonic()
            results = await asyncio.gather(
                *(node.broker.publish(r, {"type": "chat"}) for _ in range(100)), return_exceptions=True
            )
            assert all(isinstance(x, BrokerUnavailable) for x in results), results
            assert time.monotonic() - started < 1.5, "queued publishes fail together, not one timeout each"
            server.start()
            assert (await node.broker.publish(r, {"type": "chat"}))["offset"] == 1  # a new epoch


async def test_redis_restarting_mid_burst_leaves_no_gap_and_no_duplicate():
    if redis_executable() is None:
        pytest.skip("no redis-server to restart")
    with RedisServer() as server:
        # A history window larger than the burst, so that a subscriber catching up after the restart gets
        # all of the new epoch rather than a reset to the window.
        async with redis_nodes(server.url, timeout_s=0.5, history_size=1000) as (a, b):
            rooms = [room() for _ in range(4)]
            inboxes = {r: Inbox() for r in rooms}
            for r in rooms:
                await a.broker.subscribe(r, inboxes[r])
            sent: dict[str, list[dict]] = defaultdict(list)  # per room, what each publish returned
            unavailable = 0

            async def writer(r: str, w: int) -> None:
                # One after another, from both nodes; an unavailable publish is retried with its publish id,
                # as a client retrying its message would.
                nonlocal unavailable
                for i in range(60):
                    publish_id = f"{w}-{i}"
                    while True:
                        try:
                            node = a if w % 2 else b
                            event = await node.broker.publish(
                                r, {"type": "chat", "id": publish_id}, publish_id=publish_id
                            )
                            break
                        except BrokerUnavailable:
                            unavailable += 1
                            await asyncio.sleep(0.05)
                    sent[r].append(event)
                    await asyncio.sleep(0.005)

            burst = asyncio.gather(*(writer(r, w) for r in rooms for w in range(3)))
            await asyncio.sleep(0.3)
            server.stop()
            await asyncio.sleep(0.5)
            server.start()  # same port, no data: a new epoch in every room
            await asyncio.wait_for(burst, 60)
            assert unavailable > 0, "the restart did not land in the burst"
            for r in rooms:
                inbox = inboxes[r]
                assert len(sent[r]) == 3 * 60
                await until(lambda r=r: all(e in inboxes[r] for e in sent[r]), timeout=10, what="every event")
                # What the subscriber got, split at the resets: gap-free within each epoch, no publish twice
                # within an epoch, and every publish's returned event exactly once.
                assert [e["type"] for e in inbox].count("reset") == 1
                by_epoch: dict[str, list[dict]] = defaultdict(list)
                for e in inbox:
                    if e["type"] != "reset":
                        by_epoch[e["epoch"]].append(e)
                assert len(by_epoch) == 2
                for events in by_epoch.values():
                    offsets = [e["offset"] for e in events]
                    assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), f"a gap in {r}"
                    assert len({e["id"] for e in events}) == len(events), f"a duplicate in {r}"
                assert all(inbox.count(e) == 1 for e in sent[r])
                # The new epoch starts at 1 and holds each publish made in it once.
                last_epoch = inbox[-1]["epoch"]
                assert by_epoch[last_epoch][0]["offset"] == 1
                assert sorted(by_epoch[last_epoch], key=lambda e: e["offset"]) == by_epoch[last_epoch]


async def test_scripts_flushed_from_redis_are_loaded_again_without_doubling():
    if redis_executable() is None:
        pytest.skip("no redis-server of our own to flush")
    with RedisServer() as server:
        async with redis_nodes(server.url, count=1) as (node,):
            r, inbox = room(), Inbox()
            await node.broker.subscribe(r, inbox)
            first = await node.broker.publish(r, {"type": "chat", "n": 1})
            async with Redis.from_url(server.url) as client:
                await client.script_flush()
            sent = await asyncio.gather(*(node.broker.publish(r, {"type": "chat", "n": n}) for n in range(2, 12)))
            assert sorted(e["offset"] for e in sent) == list(range(2, 12))
            await until(lambda: len(inbox) >= 11, what="eleven events")
            assert inbox == [first, *sorted(sent, key=lambda e: e["offset"])]
