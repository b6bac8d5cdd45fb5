"""A seller's ban holds on every way into the seller's streams, decided by the storage functions that place
orders: a REST order naming the stream, a websocket buy (even one sent before the kick lands), and
buy_batch's other buyers go on. (Media watch is tests/test_media.py's.)"""

import uuid

import aiohttp
import pytest

from conftest import settings_for
from helpers import assert_books_balanced, balance, error_of, top_up
from live_helpers import Viewer, live_show
from livehub.app import create_app

PRICE = 1000
FLASH_PRICE = 400


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20, **backplane})
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


async def ban(db, show, account) -> None:
    """The seller's ban as stored, without the room event that kicks the user's sockets."""
    await db.execute(
        "INSERT INTO seller_bans (seller_id, user_id) VALUES ($1, $2)", show.seller.seller["id"], account.user["id"]
    )


async def orders_of(db, account) -> int:
    return await db.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1", uuid.UUID(account.id))


async def test_a_banned_user_cannot_order_in_the_stream_over_rest_even_at_the_flash_price(client, make, db):
    show = await live_show(make, products=1, stock=10, price=PRICE)
    banned, fan = await make.user(), await make.user()
    for account in (banned, fan):
        await top_up(client, account, 5000)
    await ban(db, show, banned)
    host = await Viewer.connect(client, show.id, show.seller)
    sale = await host.request(
        "flash_sale", variant_id=show.variant(), price_cents=FLASH_PRICE, quantity=5, duration_s=60
    )
    assert sale["type"] == "ack", sale

    items = [{"variant_id": show.variant(), "quantity": 1}]
    res = await client.post("/api/orders", json={"items": items, "stream_id": show.id}, headers=banned.headers)
    error = await error_of(res, 403, "forbidden")
    assert "banned" in error["message"]
    assert await orders_of(db, banned) == 0 and await balance(client, banned) == 5000

    # Someone not banned buys at the flash price, so the refusal above is the ban's, not the sale's.
    res = await client.post("/api/orders", json={"items": items, "stream_id": show.id}, headers=fan.headers)
    assert res.status == 201, await res.text()
    assert (await res.json())["order"]["total_cents"] == FLASH_PRICE
    # Outside any stream the shop's catalogue is still open to the banned user, at the list price.
    res = await client.post("/api/orders", json={"items": items}, headers=banned.headers)
    assert res.status == 201, await res.text()
    assert (await res.json())["order"]["total_cents"] == PRICE
    await assert_books_balanced(db)
    await host.close()


async def test_a_buy_from_a_viewer_banned_after_connecting_is_refused_before_the_kick(client, make, db):
    show = await live_show(make, products=1, stock=10, price=PRICE)
    buyer = await make.user()
    await top_up(client, buyer, 5000)
    viewer = await Viewer.connect(client, show.id, buyer)
    await ban(db, show, buyer)  # no moderation event: the socket stays open

    reply = await viewer.request("buy", variant_id=show.variant())
    assert reply["type"] == "purchase" and reply["status"] == "banned", reply
    assert viewer.close_code is None
    assert await orders_of(db, buyer) == 0 and await balance(client, buyer) == 5000
    await viewer.close()


async def test_buy_batch_refuses_a_banned_buyer_and_the_others_go_on(client, make, db):
    show = await live_show(make, products=1, stock=10, price=PRICE)
    banned, fan = await make.user(), await make.user()
    for account in (banned, fan):
        await top_up(client, account, 5000)
    await ban(db, show, banned)
    requests = [{"request_id": "b", "buyer_id": banned.id, "quantity": 1}, {"request_id": "f", "buyer_id": fan.id}]
    result = await db.fetchval(
        "SELECT buy_batch($1, $2, $3, 1000, 0)", uuid.UUID(show.variant()), uuid.UUID(show.id), requests
    )
    statuses = [r["status"] for r in result["results"]]
    assert statuses == ["banned", "ok"]
    assert await orders_of(db, banned) == 0 and await orders_of(db, fan) == 1
    await assert_books_balanced(db)
