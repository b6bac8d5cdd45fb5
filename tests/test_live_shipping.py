"""Shipping in in-stream buys over real websockets: the buyer's default address is used, or the `buy`
frame's address_id, at the seller's flat rate (free from its threshold on); a buyer without an address the
seller ships to is answered `address_required`, charged nothing and takes no stock."""

import uuid

import pytest

from conftest import settings_for
from helpers import assert_books_balanced, balance, top_up
from live_helpers import Viewer, live_show
from livehub.app import create_app

PRICE = 1000
RATE = 300
FUNDS = 20_000


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20, **backplane})
    return await aiohttp_client(create_app(settings))


async def funded(client, make, **kw):
    buyer = await make.user(**kw)
    await top_up(client, buyer, FUNDS)
    return buyer


async def order_of(db, order_id: str):
    return await db.fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(order_id))


async def test_in_stream_buys_ship_to_the_default_address_or_the_one_named(client, make, db):
    show = await live_show(make, products=1, stock=10, price=PRICE)
    body = {"flat_rate_cents": RATE, "free_over_cents": 5 * PRICE, "countries": ["US", "FR"]}
    res = await client.put("/api/seller/shipping", json=body, headers=show.seller.headers)
    assert res.status == 200, await res.text()
    variant = show.variant()

    # The default address (the factory's, in the US) at the flat rate.
    shopper = await funded(client, make)
    viewer = await Viewer.connect(client, show.id, shopper)
    bought = await viewer.request("buy", variant_id=variant)
    assert bought["status"] == "ok", bought
    order = await order_of(db, bought["order_id"])
    assert (order["total_cents"], order["shipping_cents"], order["address"]["country"]) == (PRICE + RATE, RATE, "US")
    assert await balance(client, shopper) == FUNDS - PRICE - RATE

    # Another saved address, named in the frame; from the free-shipping threshold on, no shipping.
    paris = await make.address(shopper, name="Ann", line1="2 rue de la Paix", city="Paris", country="FR")
    bought = await viewer.request("buy", variant_id=variant, quantity=5, address_id=paris["id"])
    assert bought["status"] == "ok", bought
    order = await order_of(db, bought["order_id"])
    assert (order["total_cents"], order["shipping_cents"], order["address"]["city"]) == (5 * PRICE, 0, "Paris")
    await viewer.close()
    await assert_books_balanced(db)


async def test_a_buyer_without_an_address_is_asked_for_one_and_charged_nothing(client, make, db):
    show = await live_show(make, products=1, stock=1, price=PRICE)
    body = {"flat_rate_cents": RATE, "countries": ["US"]}
    res = await client.put("/api/seller/shipping", json=body, headers=show.seller.headers)
    assert res.status == 200, await res.text()
    variant = show.variant()

    newcomer = await funded(client, make, address=False)
    viewer = await Viewer.connect(client, show.id, newcomer)
    reply = await viewer.request("buy", variant_id=variant)
    assert reply["status"] == "address_required" and "address" in reply["message"], reply
    assert reply.get("order_id") is None

    # A saved address the seller does not ship to: asked again, the country named.
    await make.address(newcomer, country="DE", city="Berlin")
    reply = await viewer.request("buy", variant_id=variant)
    assert reply["status"] == "address_required" and "DE" in reply["message"], reply
    # Someone else's address id is no address of theirs.
    stranger = (await (await client.get("/api/me/addresses", headers=(await make.user()).headers)).json())["items"]
    reply = await viewer.request("buy", variant_id=variant, address_id=stranger[0]["id"])
    assert reply["status"] == "address_required", reply
    assert await balance(client, newcomer) == FUNDS
    assert await db.fetchval("SELECT count(*) FROM orders") == 0
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(variant)) == 1

    # With an address the seller ships to, the same buyer buys the unit nobody took.
    home = await make.address(newcomer, city="Springfield", country="US")
    reply = await viewer.request("buy", variant_id=variant, address_id=home["id"])
    assert reply["status"] == "ok", reply
    assert await balance(client, newcomer) == FUNDS - PRICE - RATE
    await viewer.close()
    await assert_books_balanced(db)


async def test_a_malformed_address_id_is_refused_before_it_reaches_a_batch(client, make, db):
    show = await live_show(make, products=1, stock=5, price=PRICE)
    viewer = await Viewer.connect(client, show.id, await funded(client, make))
    reply = await viewer.request("buy", variant_id=show.variant(), address_id="home")
    assert reply["type"] == "error" and reply["code"] == "validation_error", reply
    await viewer.close()
