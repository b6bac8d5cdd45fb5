"""Who counts in a room's figures, against floods from one client: clicks once per person and product per
window, viewers once per person (a user, or one anonymous client: address plus the page's client id),
and a cap on anonymous sockets per address (closed with 4029), high by default for carrier-grade NAT."""

import asyncio
import time

import aiohttp
import pytest

from conftest import settings_for
from live_helpers import Viewer, live_show
from livehub.app import create_app
from livehub.settings import Settings

WAIT_S = 10.0


def app_settings(database_url, backplane, **extra):
    return settings_for(database_url).model_copy(
        update={"tick_ms": 20, "presence_interval_s": 0.1, "trusted_proxy_count": 1, **backplane, **extra}
    )


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    return await aiohttp_client(
        create_app(app_settings(database_url, backplane)), connector=aiohttp.TCPConnector(limit=0)
    )


def at(address: str) -> dict:
    """Headers of a client at that address (the app trusts one proxy in these tests)."""
    return {"X-Forwarded-For": address}


async def connect(client, show, *, address="198.51.100.7", account=None, **query) -> Viewer:
    headers = {**(account.headers if account else {}), **at(address)}
    params = {k: str(v) for k, v in query.items()}
    viewer = Viewer(await client.ws_connect(f"/ws/streams/{show.id}", headers=headers, params=params))
    await viewer.wait_for(lambda v: v.welcome is not None or v.close_code is not None)
    return viewer


async def stats(client, show) -> dict:
    res = await client.get(f"/api/streams/{show.id}/stats", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def clicks_of(client, show, product_id: str) -> int:
    products = {p["product_id"]: p for p in (await stats(client, show))["products"]}
    return products[product_id]["clicks"]


async def until(check, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
    return value


def last_count(viewer: Viewer) -> int | None:
    counts = viewer.of_type("viewers")
    return counts[-1]["count"] if counts else None


async def test_a_flood_of_clicks_counts_once_per_person_and_product(client, make):
    show = await live_show(make, products=2)
    product, other = show.products[0]["id"], show.products[1]["id"]
    anon = await connect(client, show, client_id="browser-one")
    same_browser = await connect(client, show, client_id="browser-one")
    another_browser = await connect(client, show, client_id="browser-two")
    fan = await connect(client, show, account=await make.user())
    for _ in range(500):
        await anon.send(type="click", product_id=product)
    for socket in (same_browser, another_browser, fan):
        for _ in range(20):
            await socket.send(type="click", product_id=product)
    await fan.send(type="click", product_id=other)
    # Frames of one socket are handled in order: once this is answered, every click before it was seen.
    for socket in (anon, same_browser, another_browser, fan):
        assert (await socket.request("ping"))["type"] == "pong"

    await until(lambda: _clicks_are(client, show, {product: 3, other: 1}))
    for socket in (anon, same_browser, another_browser, fan):
        await socket.close()


async def _clicks_are(client, show, expected: dict) -> bool:
    return all([await clicks_of(client, show, p) == n for p, n in expected.items()])


async def test_a_click_counts_again_after_the_window(aiohttp_client, database_url, db):
    from conftest import Factory

    client = await aiohttp_client(create_app(app_settings(database_url, {"redis_url": None}, click_window_s=1.0)))
    show = await live_show(Factory(client, db))
    product = show.products[0]["id"]
    viewer = await connect(client, show)
    await viewer.request("click", product_id=product)
    await until(lambda: _clicks_are(client, show, {product: 1}))

    async def counted_again() -> bool:
        await viewer.request("click", product_id=product)
        return await clicks_of(client, show, product) >= 2

    await until(counted_again)
    assert await clicks_of(client, show, product) == 2
    await viewer.close()


async def test_viewers_are_counted_by_person_not_by_socket(client, make):
    show = await live_show(make)
    fan = await make.user()
    flood = [await connect(client, show) for _ in range(30)]  # one script, one address, no client id
    tabs = [await connect(client, show, account=fan) for _ in range(3)]
    browsers = [await connect(client, show, client_id=f"browser-{i}") for i in range(2)]
    elsewhere = await connect(client, show, address="203.0.113.9")
    # The flood is one viewer, the fan's tabs one, two browsers two, and the other address one.
    await elsewhere.wait_for(lambda v: last_count(v) == 5)
    res = await client.get(f"/api/streams/{show.id}")
    assert (await res.json())["stream"]["viewers"] == 5
    for socket in flood:
        await socket.close()
    await elsewhere.wait_for(lambda v: last_count(v) == 4)

    s = await until(lambda: _stats_with_unique(client, show, 5))
    assert s["peak_viewers"] == 5
    for socket in (*tabs, *browsers, elsewhere):
        await socket.close()


async def _stats_with_unique(client, show, n: int) -> dict | None:
    s = await stats(client, show)
    return s if s["unique_viewers"] == n else None


async def test_anonymous_sockets_per_address_are_capped_with_4029(backplane, aiohttp_client, database_url, db):
    from conftest import Factory

    settings = app_settings(database_url, backplane, anonymous_sockets_per_address=3)
    client = await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))
    make = Factory(client, db)
    show = await live_show(make)
    first = [await connect(client, show, client_id=f"c{i}") for i in range(3)]
    assert all(v.welcome is not None for v in first)
    refused = await connect(client, show, client_id="c3")
    assert refused.welcome is None and refused.close_code == 4029
    # Another address, and signed-in viewers at the same address, still get in.
    other = await connect(client, show, address="203.0.113.9")
    user = await connect(client, show, account=await make.user())
    assert other.welcome is not None and user.welcome is not None
    # A socket that closes frees its place.
    await first[0].close()

    async def admitted():
        viewer = await connect(client, show)
        if viewer.welcome is None:
            return None
        return viewer

    again = await until(admitted)
    for socket in (*first[1:], other, user, again):
        await socket.close()


def test_by_default_ten_thousand_anonymous_sockets_from_one_address_are_allowed():
    # Carrier-grade NAT puts thousands of phones behind one address.
    assert Settings().anonymous_sockets_per_address >= 10_000
