"""Giveaways over real websockets: a verifiable draw, who may enter, exactly one prize order."""

import asyncio
import hashlib
import uuid

import aiohttp
import pytest
from test_live_nodes import two_nodes

from conftest import settings_for
from helpers import assert_books_balanced, import_codes, top_up
from live_helpers import Viewer, live_show
from livehub import keys
from livehub.app import create_app
from livehub.shop import giveaways
from redis_server import redis_url  # noqa: F401


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20, "db_pool_max": 10, **backplane})
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


def recompute(seed_hex: str, user_ids: list[str]) -> str:
    """docs/PROTOCOL.md's check, written out here again."""
    seed = bytes.fromhex(seed_hex)
    ids = sorted(user_ids)
    digest = hashlib.sha256(seed + "\n".join(ids).encode()).digest()
    return ids[int.from_bytes(digest, "big") % len(ids)]


def ended(viewer: Viewer) -> dict | None:
    return next((e["giveaway"] for e in viewer.of_type("giveaway") if e["giveaway"]["ended"]), None)


async def start(host: Viewer, variant: str, **fields) -> dict:
    reply = await host.request("giveaway", variant_id=variant, duration_s=fields.pop("duration_s", 600), **fields)
    assert reply["type"] == "ack", reply
    return await host.wait_for(lambda v: next((e["giveaway"] for e in v.of_type("giveaway")), None))


async def test_the_draw_is_reproducible_from_the_revealed_seed_and_the_stored_entries(client, make, db):
    show = await live_show(make, products=1, stock=5)
    variant = show.variant()
    host = await Viewer.connect(client, show.id, show.seller)
    users = [await make.user() for _ in range(7)]
    viewers = [await Viewer.connect(client, show.id, u) for u in users]

    giveaway = await start(host, variant)
    assert giveaway["ended"] is False and giveaway["entries"] == 0 and giveaway["seed"] is None
    assert len(giveaway["seed_hash"]) == 64 and giveaway["eligibility"] == "everyone"
    # A viewer joining now finds it in the welcome, without the seed.
    late = await Viewer.connect(client, show.id, await make.user())
    assert late.welcome["state"]["giveaway"]["id"] == giveaway["id"]
    assert late.welcome["state"]["giveaway"]["seed"] is None

    for v in viewers:
        assert (await v.request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"
    # One entry per user: entering again is answered the same and changes nothing.
    assert (await viewers[0].request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"
    # The shop's own host cannot enter.
    refused = await host.request("enter", giveaway_id=giveaway["id"])
    assert refused["type"] == "error" and refused["code"] == "forbidden" and refused["details"]["reason"] == "staff"
    await late.wait_for(lambda v: any(e["giveaway"]["entries"] == 7 for e in v.of_type("giveaway")))

    res = await client.get(f"/api/giveaways/{giveaway['id']}")
    assert res.status == 200 and (await res.json())["entrants"] is None
    assert (await res.json())["giveaway"]["seed"] is None

    assert (await host.request("end_giveaway"))["type"] == "ack"
    result = await late.wait_for(ended)
    # Anyone can check the draw: the entrants come with the revealed seed once it has ended.
    res = await client.get(f"/api/giveaways/{giveaway['id']}")
    public = await res.json()
    assert public["entrants"] == sorted(u.id for u in users) and public["giveaway"]["seed"] == result["seed"]
    assert recompute(public["giveaway"]["seed"], public["entrants"]) == result["winner"]["id"]
    assert hashlib.sha256(bytes.fromhex(result["seed"])).hexdigest() == giveaway["seed_hash"]
    stored = [
        str(r["user_id"])
        for r in await db.fetch(
            "SELECT user_id FROM giveaway_entries WHERE giveaway_id = $1", uuid.UUID(giveaway["id"])
        )
    ]
    assert sorted(stored) == sorted(u.id for u in users)
    assert (
        result["winner"]["id"]
        == recompute(result["seed"], stored)
        == giveaways.draw(bytes.fromhex(result["seed"]), stored)
    )
    row = await db.fetchrow("SELECT seed, winner_id, order_id FROM giveaways WHERE id = $1", uuid.UUID(giveaway["id"]))
    assert row["seed"].hex() == result["seed"] and str(row["winner_id"]) == result["winner"]["id"]

    # The prize: one zero-price order for the winner, one unit out of stock, the books balanced.
    orders = await db.fetch("SELECT * FROM orders WHERE stream_id = $1", uuid.UUID(show.id))
    assert len(orders) == 1 and str(orders[0]["buyer_id"]) == result["winner"]["id"]
    assert orders[0]["id"] == row["order_id"] and str(row["order_id"]) == result["order_id"]
    assert (orders[0]["total_cents"], orders[0]["shipping_cents"], orders[0]["status"]) == (0, 0, "paid")
    assert orders[0]["address"]["country"] == "US"
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(variant)) == 4
    await assert_books_balanced(db)
    note = await db.fetchrow(
        "SELECT payload FROM notifications WHERE user_id = $1 AND kind = 'giveaway_won'",
        uuid.UUID(result["winner"]["id"]),
    )
    assert note["payload"]["order_id"] == result["order_id"]
    # Entering after the draw is refused; a reconnecting viewer still sees the result.
    too_late = await viewers[1].request("enter", giveaway_id=giveaway["id"])
    assert too_late["type"] == "error" and too_late["code"] == "conflict"
    again = await Viewer.connect(client, show.id, users[2])
    assert again.welcome["state"]["giveaway"]["winner"] == result["winner"]
    assert again.welcome["state"]["giveaway"]["seed"] == result["seed"]


async def test_followers_and_buyers_only_and_banned_or_timed_out_viewers_cannot_enter(client, make, db):
    show = await live_show(make, products=2, stock=5)
    host = await Viewer.connect(client, show.id, show.seller)
    follower, stranger, buyer, banned, timed_out = [await make.user() for _ in range(5)]
    res = await client.post(f"/api/sellers/{show.stream['seller']['id']}/follow", headers=follower.headers)
    assert res.status == 200, await res.text()
    v = {a.id: await Viewer.connect(client, show.id, a) for a in (follower, stranger, buyer, banned, timed_out)}

    giveaway = await start(host, show.variant(0), eligibility="followers")
    no = await v[stranger.id].request("enter", giveaway_id=giveaway["id"])
    assert no["code"] == "forbidden" and no["details"] == {"reason": "not_eligible", "eligibility": "followers"}
    assert (await v[follower.id].request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"
    assert (await host.request("end_giveaway"))["type"] == "ack"
    first = await host.wait_for(ended)
    assert first["winner"]["id"] == follower.id and first["entries"] == 1

    # Buyers: those who bought in this show (the follower's prize does not count).
    host.events.clear()
    giveaway = await start(host, show.variant(1), eligibility="buyers")
    no = await v[follower.id].request("enter", giveaway_id=giveaway["id"])
    assert no["code"] == "forbidden" and no["details"]["reason"] == "not_eligible"
    await top_up(client, buyer, 5000)
    bought = await v[buyer.id].request("buy", variant_id=show.variant(0))
    assert bought["status"] == "ok", bought
    assert (await v[buyer.id].request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"

    # Banned (the shop's ban, checked in the database whatever the socket knows) and timed out.
    seller_id = uuid.UUID(show.stream["seller"]["id"])
    await db.execute(
        "INSERT INTO seller_bans (seller_id, user_id, banned_by) VALUES ($1, $2, $3)",
        seller_id,
        uuid.UUID(banned.id),
        uuid.UUID(show.seller.id),
    )
    await db.execute("UPDATE giveaways SET eligibility = 'everyone' WHERE id = $1", uuid.UUID(giveaway["id"]))
    no = await v[banned.id].request("enter", giveaway_id=giveaway["id"])
    assert no["code"] == "forbidden" and no["details"]["reason"] == "banned", no
    reply = await host.request("moderate", action="timeout", user_id=timed_out.id, seconds=600)
    assert reply["type"] == "ack", reply
    no = await v[timed_out.id].request("enter", giveaway_id=giveaway["id"])
    assert no["code"] == "forbidden" and no["details"]["reason"] == "timed_out", no
    assert (
        await db.fetchval("SELECT count(*) FROM giveaway_entries WHERE giveaway_id = $1", uuid.UUID(giveaway["id"]))
        == 1
    )


async def test_a_digital_prize_issues_its_code_and_no_entries_means_no_winner(client, make, db):
    seller = await make.seller()
    product = await make.product(
        seller, title="Game key", variants=[{"sku": "GV-KEY", "price_cents": 1500, "stock": 0, "digital": True}]
    )
    variant = product["variants"][0]["id"]
    await import_codes(client, seller, variant, ["KEY-ONE", "KEY-TWO"])
    res = await client.post(
        "/api/streams", json={"title": "Keys", "products": [{"product_id": product["id"]}]}, headers=seller.headers
    )
    stream_id = (await res.json())["stream"]["id"]
    assert (await client.post(f"/api/streams/{stream_id}/start", headers=seller.headers)).status == 200
    host = await Viewer.connect(client, stream_id, seller)

    # Nobody enters: it ends without a winner or an order.
    await start(host, variant)
    assert (await host.request("end_giveaway"))["type"] == "ack"
    empty = await host.wait_for(ended)
    assert empty["winner"] is None and empty["order_id"] is None and empty["prize_status"] == "no_entries"
    assert empty["entries"] == 0 and len(empty["seed"]) == 64

    host.events.clear()
    winner = await make.user(address=False)  # a digital prize needs no address
    viewer = await Viewer.connect(client, stream_id, winner)
    giveaway = await start(host, variant)
    assert (await viewer.request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"
    assert (await host.request("end_giveaway"))["type"] == "ack"
    result = await viewer.wait_for(ended)
    assert result["winner"]["id"] == winner.id and result["prize_status"] == "ordered"
    order = await db.fetchrow("SELECT status, total_cents FROM orders WHERE id = $1", uuid.UUID(result["order_id"]))
    assert (order["status"], order["total_cents"]) == ("delivered", 0)
    codes = await db.fetch("SELECT code FROM digital_units WHERE order_id = $1", uuid.UUID(result["order_id"]))
    assert len(codes) == 1 and codes[0]["code"] in ("KEY-ONE", "KEY-TWO")
    await assert_books_balanced(db)


async def test_two_nodes_timers_end_it_once_with_one_prize_order(aiohttp_client, database_url, redis_url, db):  # noqa: F811
    a, b = await two_nodes(aiohttp_client, database_url, redis_url)
    from conftest import Factory

    make = Factory(a, db)
    show = await live_show(make, products=1, stock=3)
    host = await Viewer.connect(a, show.id, show.seller)
    users = [await make.user() for _ in range(6)]
    viewers = [await Viewer.connect(a if i % 2 else b, show.id, u) for i, u in enumerate(users)]
    giveaway = await start(host, show.variant(), duration_s=10)
    await asyncio.gather(*(v.wait_for(lambda v: v.of_type("giveaway")) for v in viewers))
    entered = await asyncio.gather(*(v.request("enter", giveaway_id=giveaway["id"]) for v in viewers))
    assert [e["type"] for e in entered] == ["ack"] * len(viewers), entered
    # Both nodes' timers fire at the end; the database lets one draw (bounded wait on the real end).
    results = await asyncio.gather(*(v.wait_for(ended, timeout=30) for v in viewers))
    assert len({r["winner"]["id"] for r in results}) == 1
    for v in viewers:
        assert len([e for e in v.of_type("giveaway") if e["giveaway"]["ended"]]) == 1
    assert await db.fetchval("SELECT count(*) FROM orders WHERE stream_id = $1", uuid.UUID(show.id)) == 1
    # Ending it again from both nodes' pools at once ends nothing more.
    again = await asyncio.gather(
        *(giveaways.end_giveaway(n.app[keys.POOL], uuid.UUID(giveaway["id"]), "time", 0) for n in (a, b, a, b))
    )
    assert again == [None] * 4

    # A running one ended by both nodes at once (as when their timers fire together): one draw, one order.
    host.events.clear()
    giveaway = await start(host, show.variant(), duration_s=600)
    for v in viewers[:3]:
        assert (await v.request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"
    raced = await asyncio.gather(
        *(giveaways.end_giveaway(n.app[keys.POOL], uuid.UUID(giveaway["id"]), "time", 0) for n in (a, b) * 4)
    )
    assert len([r for r in raced if r is not None]) == 1
    assert await db.fetchval("SELECT count(*) FROM orders WHERE stream_id = $1", uuid.UUID(show.id)) == 2
    assert results[0]["winner"]["id"] == recompute(results[0]["seed"], [u.id for u in users])
    await assert_books_balanced(db)


async def test_a_giveaway_running_when_the_stream_ends_is_drawn_then(client, make, db):
    show = await live_show(make, products=1, stock=2)
    host = await Viewer.connect(client, show.id, show.seller)
    entrant = await make.user()
    viewer = await Viewer.connect(client, show.id, entrant)
    giveaway = await start(host, show.variant(), eligibility="everyone")
    assert (await viewer.request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"
    res = await client.post(f"/api/streams/{show.id}/end", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    result = await viewer.wait_for(ended)
    assert result["ended_reason"] == "stream_ended" and result["winner"]["id"] == entrant.id
    assert result["prize_status"] == "ordered"
    assert await db.fetchval("SELECT count(*) FROM orders WHERE stream_id = $1", uuid.UUID(show.id)) == 1
    await assert_books_balanced(db)


async def test_entries_racing_the_draw_are_either_in_it_or_refused(client, make, db):
    show = await live_show(make, products=1, stock=2)
    host = await Viewer.connect(client, show.id, show.seller)
    users = [await make.user() for _ in range(30)]
    viewers = []
    for chunk in range(0, len(users), 10):
        viewers += await asyncio.gather(*(Viewer.connect(client, show.id, u) for u in users[chunk : chunk + 10]))
    giveaway = await start(host, show.variant())
    await asyncio.gather(*(v.wait_for(lambda v: v.of_type("giveaway")) for v in viewers))

    # Everyone enters (twice) while the host draws: an entry is either acked and in the draw, or refused.
    replies = await asyncio.gather(
        *(v.request("enter", giveaway_id=giveaway["id"]) for v in viewers),
        host.request("end_giveaway"),
        *(v.request("enter", giveaway_id=giveaway["id"]) for v in viewers),
    )
    entries, drawn, again = replies[:30], replies[30], replies[31:]
    assert drawn["type"] == "ack", drawn
    for reply in entries + again:
        assert reply["type"] == "ack" or reply["code"] == "conflict", reply
    acked = {u.id for u, r, r2 in zip(users, entries, again, strict=True) if "ack" in (r["type"], r2["type"])}
    result = await host.wait_for(ended)
    res = await client.get(f"/api/giveaways/{giveaway['id']}")
    entrants = (await res.json())["entrants"]
    assert set(entrants) == acked and result["entries"] == len(acked)
    if acked:
        assert result["winner"]["id"] == recompute(result["seed"], entrants)
    giveaway_id = uuid.UUID(giveaway["id"])
    assert await db.fetchval("SELECT count(*) FROM giveaway_entries WHERE giveaway_id = $1", giveaway_id) == len(acked)
    orders = await db.fetchval("SELECT count(*) FROM orders WHERE stream_id = $1", uuid.UUID(show.id))
    assert orders == (1 if acked else 0)


async def test_a_prize_sold_out_before_the_draw_leaves_a_winner_without_an_order(client, make, db):
    show = await live_show(make, products=1, stock=1)
    host = await Viewer.connect(client, show.id, show.seller)
    entrant, buyer = await make.user(), await make.user()
    viewer = await Viewer.connect(client, show.id, entrant)
    giveaway = await start(host, show.variant())
    assert (await viewer.request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"
    await top_up(client, buyer, 5000)
    shopper = await Viewer.connect(client, show.id, buyer)
    assert (await shopper.request("buy", variant_id=show.variant()))["status"] == "ok"
    assert (await host.request("end_giveaway"))["type"] == "ack"
    result = await viewer.wait_for(ended)
    assert result["winner"]["id"] == entrant.id and result["prize_status"] == "unavailable"
    assert result["order_id"] is None
    winner_orders = await db.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1", uuid.UUID(entrant.id))
    assert winner_orders == 0
    note = await db.fetchrow(
        "SELECT payload FROM notifications WHERE kind = 'giveaway_won' AND user_id = $1", uuid.UUID(entrant.id)
    )
    assert note["payload"]["prize_status"] == "unavailable"
    await assert_books_balanced(db)


async def test_a_draw_that_fails_at_the_end_is_tried_again(client, make, db):
    """The database refusing the draw when the timer fires (here: its function gone for a moment) does not
    leave the giveaway undrawn: the room tries again until it can."""
    show = await live_show(make, products=1, stock=5)
    host = await Viewer.connect(client, show.id, show.seller)
    entrant = await make.user()
    viewer = await Viewer.connect(client, show.id, entrant)
    draw = "end_giveaway(uuid, text, integer)"
    await db.execute(f"ALTER FUNCTION {draw} RENAME TO end_giveaway_away")
    try:
        giveaway = await start(host, show.variant(), duration_s=5)
        assert (await viewer.request("enter", giveaway_id=giveaway["id"]))["type"] == "ack"
        # Past its end, with the timer fired and failed at least once: still not drawn.
        running = "SELECT ended_at IS NULL FROM giveaways WHERE id = $1"
        async with asyncio.timeout(30):
            while await db.fetchval(
                "SELECT now() < ends_at + interval '2 s' FROM giveaways WHERE id = $1", uuid.UUID(giveaway["id"])
            ):
                await asyncio.sleep(0.2)
        assert await db.fetchval(running, uuid.UUID(giveaway["id"]))
    finally:
        await db.execute("ALTER FUNCTION end_giveaway_away(uuid, text, integer) RENAME TO end_giveaway")
    result = await viewer.wait_for(ended)
    assert result["id"] == giveaway["id"] and result["winner"]["id"] == entrant.id
    assert result["prize_status"] == "ordered"
    await host.close()
    await viewer.close()
