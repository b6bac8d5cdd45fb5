"""One bad input must never hurt anyone else: text PostgreSQL cannot store is refused where it enters, and
batch writers (purchases, the chat archive) isolate an item that fails on its own."""

import asyncio
import uuid
from datetime import UTC, datetime

import aiohttp
import pytest

from conftest import settings_for
from helpers import assert_books_balanced, error_of, top_up
from live_helpers import Viewer, live_show
from livehub import keys
from livehub.app import create_app
from livehub.live.chatlog import ChatLog
from livehub.live.checkout import Checkout

PRICE = 1000


@pytest.fixture
async def client(aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20})
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


async def test_frames_with_unstorable_text_are_refused_at_the_edge(client, make):
    show = await live_show(make, products=1, price=PRICE)
    buyer = await make.user()
    await top_up(client, buyer, PRICE)
    viewer = await Viewer.connect(client, show.id, buyer)

    refused = await viewer.request("chat", text="hello\u0000world", request_id="c1")
    assert refused["type"] == "error" and refused["code"] == "validation_error", refused
    assert refused["details"]["loc"] == ["text"]
    await viewer.send(type="buy", variant_id=show.variant(), request_id="evil\u0000")
    error = await viewer.wait_for(
        lambda v: next((f for f in v.frames if f.get("details", {}).get("loc") == ["request_id"]), None)
    )
    assert error["code"] == "validation_error" and "request_id" not in error  # its own id is not echoed
    await viewer.send(type="moderate", action="block_words", words=["ok", "bad\u0000"], request_id="m1")
    # The connection goes on, and a clean buy goes through.
    assert (await viewer.request("buy", variant_id=show.variant()))["status"] == "ok"
    assert not viewer.of_type("chat")


async def test_rest_refuses_unstorable_text_in_bodies_and_queries(client, make):
    seller = await make.seller()
    body = {"title": "Nul\u0000title", "variants": [{"sku": "N1", "price_cents": 100, "stock": 1}]}
    res = await client.post("/api/products", json=body, headers=seller.headers)
    err = await error_of(res, 422, "validation_error")
    assert err["details"]["loc"] == ["body", "title"]
    err = await error_of(await client.get("/api/products", params={"q": "a\u0000b"}), 422, "validation_error")
    assert err["details"]["loc"] == ["query", "q"]
    # Path segments are ids: one that is not a UUID names nothing (404), whatever it holds.
    await error_of(await client.get("/api/products/%00"), 404, "not_found")


async def test_rest_bodies_are_strictly_typed_as_frames_are(client, make):
    seller = await make.seller()
    product = await make.product(seller)
    buyer = await make.user()
    await top_up(client, buyer, 5000)
    variant = product["variants"][0]["id"]
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": variant, "quantity": "2"}]}, headers=buyer.headers
    )
    assert (await error_of(res, 422, "validation_error"))["details"]["errors"][0]["loc"][-1] == "quantity"
    bad_price = {"title": "T", "variants": [{"sku": "B1", "price_cents": False, "stock": 1}]}
    await error_of(await client.post("/api/products", json=bad_price, headers=seller.headers), 422, "validation_error")
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": variant, "quantity": 2}]}, headers=buyer.headers
    )
    assert res.status == 201, await res.text()


async def test_a_poisoned_buy_fails_alone_and_the_rest_of_its_batch_is_sold(client, make, db):
    """The edge refuses such a request id; this is the batch's own defence, for whatever else one buy
    could carry that the database refuses: the other buyers of the same instant still get their orders."""
    show = await live_show(make, products=1, stock=10, price=PRICE)
    buyers = [await make.user() for _ in range(6)]
    for b in buyers:
        await top_up(client, b, PRICE)
    app = client.server.app
    settled = []
    checkout = Checkout(
        app[keys.POOL],
        app[keys.SETTINGS].model_copy(update={"buy_window_ms": 50}),
        uuid.UUID(show.id),
        uuid.UUID(show.variant()),
        lambda variant, result: settled.append(result),
        app[keys.TASKS],
    )
    request_ids = [f"r{i}" for i in range(6)]
    request_ids[2] = "poison\u0000"
    replies = await asyncio.gather(
        *(checkout.buy(uuid.UUID(b.id), 1, rid, None) for b, rid in zip(buyers, request_ids, strict=True))
    )
    statuses = [r["status"] for r in replies]
    assert statuses == ["ok", "ok", "error", "ok", "ok", "ok"], replies
    assert await db.fetchval("SELECT count(*) FROM orders WHERE stream_id = $1", uuid.UUID(show.id)) == 5
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(show.variant())) == 5
    # The room hears of settled batches at most once per stock_update_ms, the last one always.
    async with asyncio.timeout(5):
        while not settled or settled[-1]["available"] != 5:
            await asyncio.sleep(0.01)
    assert settled and settled[-1]["available"] == 5
    await assert_books_balanced(db)


async def test_a_chat_message_the_database_refuses_is_set_aside_and_the_rest_archived(client, make, db):
    show = await live_show(make, products=1)
    author = await make.user()
    chatlog = ChatLog(client.server.app[keys.POOL], max_buffered=100)
    ids = [uuid.uuid4() for _ in range(5)]
    for offset, message_id in enumerate(ids, start=1):
        text = "poison\u0000" if offset == 3 else f"message {offset}"
        message = {"id": str(message_id), "offset": offset, "user": {"id": author.id}, "text": text}
        chatlog.add(uuid.UUID(show.id), {**message, "at": datetime.now(UTC).isoformat()})
    await chatlog.flush()
    stored = await db.fetch('SELECT id FROM chat_messages WHERE stream_id = $1 ORDER BY "offset"', uuid.UUID(show.id))
    assert [r["id"] for r in stored] == ids[:2] + ids[3:]
    assert chatlog.set_aside == 1 and chatlog.dropped == 0
    # Set aside, not retried: a later message is written at once, nothing waits behind the bad one.
    later = uuid.uuid4()
    message = {"id": str(later), "offset": 6, "user": {"id": author.id}, "text": "later"}
    chatlog.add(uuid.UUID(show.id), {**message, "at": datetime.now(UTC).isoformat()})
    await chatlog.flush()
    assert await db.fetchval("SELECT count(*) FROM chat_messages WHERE id = $1", later) == 1
    assert chatlog.set_aside == 1
