"""GET /metrics on a real app: the metrics there after real traffic (requests, a room with viewers, chat,
a buy, a job), bounded labels (route templates, the top rooms), who may scrape, the Grafana dashboard's
names, and one scrape summing the processes of `livehub serve --workers 2`."""

import asyncio
import json
import os
import re
import time
import uuid

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_run import Node, data_dir, wait_ready  # noqa: F401

from conftest import ROOT, settings_for
from helpers import top_up
from live_helpers import Viewer, live_show
from livehub.app import create_app

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
REQUESTS = "livehub_http_request_duration_seconds_count"
WAIT_S = 20.0


def families(text: str) -> dict:
    """name -> {labels tuple -> value}, over every sample of every family (histograms' _bucket, _count...)."""
    samples: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


async def scrape(client, **headers) -> dict:
    res = await client.get("/metrics", headers=headers)
    assert res.status == 200, await res.text()
    assert res.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return families(await res.text())


async def scrape_until(client, holds, what: str) -> dict:
    """Scrape until holds(samples) (figures read at scrape time follow presence reports and a short cache)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        samples = await scrape(client)
        if holds(samples):
            return samples
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.2)


async def refused(client, headers: dict) -> None:
    res = await client.get("/metrics", headers=headers)
    assert res.status == 403, await res.text()
    error = (await res.json())["error"]
    assert error["code"] == "forbidden" and "metrics token" in error["message"]


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if want <= set(key))


@pytest.fixture
async def client(aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(
        update={"tick_ms": 20, "presence_interval_s": 0.2, "metrics_top_rooms": 2}
    )
    return await aiohttp_client(create_app(settings))


async def traffic(client, make) -> None:
    """A page of products, a live room with two viewers, a chat message and a buy (whose order confirmation
    is a job) and it settled."""
    assert (await client.get("/api/products")).status == 200
    show = await live_show(make, products=1, stock=5)
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    host = await Viewer.connect(client, show.id, show.seller)
    viewer = await Viewer.connect(client, show.id, buyer)
    assert (await viewer.request("chat", text="is it true to size?"))["type"] == "ack"
    await host.wait_for(lambda v: v.of_type("chat"))
    reply = await viewer.request("buy", variant_id=show.variant(), quantity=1)
    assert reply["status"] == "ok", reply
    return show, host, viewer


async def test_metrics_after_traffic(client, make, db):
    before = await scrape(client)
    show, host, viewer = await traffic(client, make)
    samples = await scrape_until(
        client,
        lambda s: (
            value(s, "livehub_job_runs_total", job="orders_placed")
            > value(before, "livehub_job_runs_total", job="orders_placed")
            and value(s, "livehub_room_viewers", stream=show.id) == 2
        ),
        "the order confirmation job ran and the room's viewers were counted",
    )

    def grew(name: str, **labels: str) -> bool:
        return value(samples, name, **labels) > value(before, name, **labels)

    assert grew(REQUESTS, method="GET", route="/api/products", status="2xx")
    assert grew(REQUESTS, method="POST", route="/api/streams", status="2xx")
    assert value(samples, "livehub_websocket_connections", kind="room") >= 2
    assert value(samples, "livehub_live_rooms") >= 1
    for name in (
        "livehub_tick_duration_seconds_count",
        "livehub_flush_duration_seconds_count",
        "livehub_frames_sent_total",
        "livehub_frame_bytes_sent_total",
        "livehub_buy_batch_size_count",
        "livehub_buy_settle_duration_seconds_count",
        "livehub_db_acquire_duration_seconds_count",
    ):
        assert grew(name), name
    assert value(samples, "livehub_db_pool_connections", state="max") == 10
    assert value(samples, "livehub_db_pool_connections", state="size") >= 1
    for name in (
        "livehub_slow_viewer_closes_total",
        "livehub_chat_archive_queue",
        "livehub_chat_archive_dropped_total",
        "livehub_broker_publish_duration_seconds_count",
        "livehub_broker_reconnects_total",
        "livehub_broker_resets_total",
        "livehub_media_relay_packets_total",
        "livehub_db_pool_connections",
    ):
        assert name in samples, name
    assert {"queued", "picked", "failed"} <= {dict(k)["status"] for k in samples["livehub_jobs"]}
    # The books check runs in the background on the first scrape; the next ones give its answer.
    samples = await scrape_until(client, lambda s: "livehub_books_balanced" in s, "the books were checked")
    assert value(samples, "livehub_books_balanced") == 1
    await viewer.close()
    await host.close()


async def test_every_metric_the_dashboard_names_exists(client, make, db):
    await traffic(client, make)
    samples = await scrape_until(client, lambda s: "livehub_books_balanced" in s, "the books were checked")
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    named = {name for expr in exprs for name in re.findall(r"\blivehub_[a-z0-9_]+", expr)}
    assert len(named) >= 20, named
    missing = sorted(name for name in named if name not in samples)
    assert missing == []


async def test_route_labels_are_templates(client, make, db):
    for _ in range(50):
        res = await client.get(f"/api/products/{uuid.uuid4()}")
        assert res.status == 404 and (await res.json())["error"]["code"] == "not_found"
    await client.get(f"/no/such/page/{uuid.uuid4()}")
    samples = await scrape(client)
    routes = {dict(k)["route"] for k in samples[REQUESTS]}
    assert "/api/products/{id}" in routes and "unmatched" in routes
    assert not [r for r in routes if re.search(r"[0-9a-f]{8}-", r)], routes
    assert value(samples, REQUESTS, route="/api/products/{id}", status="4xx") >= 50


async def test_only_the_top_rooms_are_labelled(client, make, db):
    # metrics_top_rooms is 2: of three rooms with 3, 2 and 1 viewers, the two biggest by id, the third summed.
    shows = [await live_show(make, products=1) for _ in range(3)]
    viewers = []
    for show, n in zip(shows, (3, 2, 1), strict=True):
        # Anonymous viewers count apart by the id their page keeps.
        viewers += [await Viewer.connect(client, show.id, client_id=f"c{i}") for i in range(n)]
    samples = await scrape_until(
        client,
        lambda s: (
            value(s, "livehub_room_viewers", stream=shows[0].id) == 3
            and value(s, "livehub_room_viewers", stream=shows[1].id) == 2
        ),
        "the two biggest rooms are labelled",
    )
    labelled = {dict(k)["stream"] for k in samples["livehub_room_viewers"]}
    assert labelled == {shows[0].id, shows[1].id, "other"}
    assert value(samples, "livehub_room_viewers", stream="other") == 1
    for v in viewers:
        await v.close()


async def test_who_may_scrape(aiohttp_client, database_url, db):
    # Behind one proxy: every request comes from loopback, the client's address is in X-Forwarded-For.
    settings = settings_for(database_url).model_copy(update={"trusted_proxy_count": 1, "metrics_token": "s3cret"})
    client = await aiohttp_client(create_app(settings))
    outside = {"X-Forwarded-For": "203.0.113.9"}
    await refused(client, outside)
    wrong = {**outside, "Authorization": "Bearer s3cre"}
    await refused(client, wrong)
    assert REQUESTS in await scrape(client, **outside, Authorization="Bearer s3cret")
    # A proxy that names its client another way is not trusted for it.
    await refused(client, {"X-Real-IP": "127.0.0.1"})
    # A caller on the proxy's own host.
    assert REQUESTS in await scrape(client, **{"X-Forwarded-For": "127.0.0.1"})

    # Not told of a proxy: a forwarded request is not taken for a local one, however it spells the header.
    settings = settings_for(database_url).model_copy(update={"trusted_proxy_count": 0})
    direct = await aiohttp_client(create_app(settings))
    assert REQUESTS in await scrape(direct)
    for header in ({"X-Forwarded-For": "127.0.0.1"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "127.0.0.1"}):
        await refused(direct, header)
    # No token configured: a bearer token does not open the door.
    await refused(direct, {**outside, "Authorization": "Bearer "})


async def test_one_scrape_sums_the_workers(data_dir, database_url, redis_url, db):  # noqa: F811
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LIVEHUB_REDIS_PREFIX": f"metrics{os.getpid()}"}
    node = Node(data_dir, "--workers", "2", env=env)
    try:
        answered: dict[str, int] = {}
        async with aiohttp.ClientSession() as session:
            # Spawned workers import the whole app before they listen: on a busy machine that takes a while.
            await wait_ready(session, node.url, tries=400)
            # A new connection per request, which the kernel gives to either worker: until both have answered
            # several (the second may still be starting).
            deadline = time.monotonic() + WAIT_S * 3
            while (len(answered) < 2 or min(answered.values()) < 3) and time.monotonic() < deadline:
                async with session.get(node.url + "/healthz", headers={"Connection": "close"}) as res:
                    node_id = (await res.json())["node"]
                    answered[node_id] = answered.get(node_id, 0) + 1
            assert len(answered) == 2, "only one worker answered"
            async with session.get(node.url + "/metrics", headers={"Connection": "close"}) as res:
                assert res.status == 200, await res.text()
                samples = families(await res.text())
        counted = value(samples, REQUESTS, route="/healthz", status="2xx")
        assert counted == sum(answered.values()), (counted, answered)
        assert value(samples, "livehub_db_pool_connections", state="max") == 2 * 20  # each worker's pool
    finally:
        assert node.stop() == 0
