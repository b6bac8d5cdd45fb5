"""Issue 17: a bidder cannot lead in more than their balance across auctions.

Two shops each run an auction at once, in their own live stream; one bidder whose wallet covers one lead
but not both bids in both over real websockets. The leader's maximum plus the most shipping can come to is
held out of the wallet (storage/functions/auctions.sql, bid_batch; docs/PROTOCOL.md "Auctions"), so the
second lead is `insufficient_funds` until the first hold goes back; bids in both at the same moment never
hold more than the wallet had. At the end each auction has one winner, who paid, and the books balance.
"""

import asyncio
import time
import uuid

import aiohttp
import orjson
import pytest
from test_auctions import bid, hold_of, start

from conftest import settings_for
from helpers import assert_books_balanced, balance, top_up
from live_helpers import WAIT_S, Viewer, live_show
from livehub import keys
from livehub.app import create_app

FEE_BPS = 1000  # settings_for's platform fee
WALLET = 3000  # covers one lead of 20.00, not two
SHIPPING = 500  # the second shop's flat rate: held on top of a bid there


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20, "db_pool_max": 10, **backplane})
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


async def two_shows(client, make):
    """Two shops, each live with one product (the second shipping at a flat rate), and their hosts' sockets."""
    first, second = await live_show(make, products=1, stock=5), await live_show(make, products=1, stock=5)
    res = await client.put(
        "/api/seller/shipping", json={"flat_rate_cents": SHIPPING, "countries": []}, headers=second.seller.headers
    )
    assert res.status == 200, await res.text()
    hosts = [await Viewer.connect(client, show.id, show.seller) for show in (first, second)]
    return (first, second), hosts


async def led_by(db, user) -> dict[str, int]:
    """The running auctions `user` leads, with what each holds for them."""
    rows = await db.fetch(
        "SELECT id, leader_hold_cents FROM auctions WHERE leader_id = $1 AND ended_at IS NULL", uuid.UUID(user.id)
    )
    return {str(r["id"]): r["leader_hold_cents"] for r in rows}


async def assert_within_balance(client, db, user, total: int) -> dict[str, int]:
    """Nothing created or lost: wallet plus hold is what was topped up, the hold is exactly what the auctions
    the user leads hold, and no lead is beyond it."""
    leads, held, wallet = await led_by(db, user), await hold_of(db, user.id), await balance(client, user)
    assert wallet >= 0 and held == sum(leads.values()) and wallet + held == total, (wallet, held, leads)
    return leads


async def close_at_end(client, auction_id: str) -> dict:
    """What every node's timer does at the end: three at once through the app's pool, exactly one ends it."""
    pool = client.app[keys.POOL]
    ends_at = await pool.fetchval("SELECT ends_at FROM auctions WHERE id = $1", uuid.UUID(auction_id))
    closed = await asyncio.gather(
        *(
            pool.fetchval("SELECT close_auction($1, $2, 0, $3)::text", uuid.UUID(auction_id), FEE_BPS, ends_at)
            for _ in range(3)
        )
    )
    ended = [orjson.loads(x) for x in closed if x is not None]
    assert len(ended) == 1 and ended[0]["ended"], closed
    return ended[0]


async def assert_one_winner_who_paid(db, ended: dict, winner, price: int, shipping: int) -> None:
    assert ended["winner"]["id"] == winner.id and ended["current_cents"] == price, ended
    aid = uuid.UUID(ended["id"])
    orders = await db.fetch(
        "SELECT * FROM orders WHERE stream_id = (SELECT stream_id FROM auctions WHERE id = $1)", aid
    )
    assert [(str(o["id"]), str(o["buyer_id"])) for o in orders] == [(ended["order_id"], winner.id)]
    assert (orders[0]["total_cents"], orders[0]["shipping_cents"]) == (price + shipping, shipping)
    paid = await db.fetchval(
        """SELECT -sum(e.amount_cents) FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
            WHERE e.order_id = $1 AND e.type = 'purchase' AND a.kind = 'wallet' AND a.user_id = $2""",
        orders[0]["id"],
        uuid.UUID(winner.id),
    )
    assert paid == price + shipping


async def test_the_second_lead_waits_for_the_first_hold_to_go_back(client, make, db):
    (first, second), hosts = await two_shows(client, make)
    carol, dave = await make.user(), await make.user()
    await top_up(client, carol, WALLET)
    await top_up(client, dave, 100_000)
    c1, c2, d1 = [await Viewer.connect(client, s.id, p) for s, p in ((first, carol), (second, carol), (first, dave))]
    one, two = (
        await start(hosts[0], first.variant(), duration_s=120),
        await start(hosts[1], second.variant(), duration_s=120),
    )
    for viewer, auction in ((c1, one), (c2, two), (d1, one)):
        await viewer.wait_for(lambda v, i=auction["id"]: [e for e in v.of_type("auction") if e["auction"]["id"] == i])

    # Carol leads the first with a maximum of 20.00: held, 10.00 left in her wallet.
    assert (await bid(c1, one["id"], max_cents=2000))["status"] == "leading"
    assert await assert_within_balance(client, db, carol, WALLET) == {one["id"]: 2000}
    # 10.00 in the second would fit her wallet, but its shipping (5.00) is held too: refused, nothing moves.
    reply = await bid(c2, two["id"], amount_cents=1000)
    assert (reply["status"], reply["current_cents"]) == ("insufficient_funds", 1000)
    assert await db.fetchval("SELECT leader_id FROM auctions WHERE id = $1", uuid.UUID(two["id"])) is None
    assert await assert_within_balance(client, db, carol, WALLET) == {one["id"]: 2000}  # the first hold stays

    # Dave outbids her in the first: her hold goes back, and the same bid in the second now leads.
    reply = await bid(d1, one["id"], max_cents=4000)
    assert (reply["status"], reply["current_cents"]) == ("leading", 2100)
    assert await assert_within_balance(client, db, carol, WALLET) == {}
    reply = await bid(c2, two["id"], amount_cents=1000)
    assert (reply["status"], reply["current_cents"]) == ("leading", 1000)
    assert await assert_within_balance(client, db, carol, WALLET) == {two["id"]: 1000 + SHIPPING}
    # Back in the first, 41.00 over dave's 40.00 is beyond the 15.00 she has left: refused.
    reply = await bid(c1, one["id"], amount_cents=4100)
    assert (reply["status"], reply["current_cents"]) == ("insufficient_funds", 2100)
    await assert_books_balanced(db)

    # The end: each auction has one winner, who paid from the hold.
    await assert_one_winner_who_paid(db, await close_at_end(client, one["id"]), dave, 2100, 0)
    await assert_one_winner_who_paid(db, await close_at_end(client, two["id"]), carol, 1000, SHIPPING)
    assert (await balance(client, carol), await hold_of(db, carol.id)) == (WALLET - 1000 - SHIPPING, 0)
    assert (await balance(client, dave), await hold_of(db, dave.id)) == (100_000 - 2100, 0)
    await assert_books_balanced(db)
    for viewer in (*hosts, c1, c2, d1):
        await viewer.close()


async def raced(client, db, user, *bids: tuple[Viewer, str, dict]) -> list[dict]:
    """The bids, sent at once (asyncio.gather) from the user's sockets in two rooms, and made to meet in the
    database: the test holds the user's wallet row until both transactions wait for it, so each has started
    (its auction locked) before either has decided. Then the wallet goes, and the answers come."""
    pool = client.app[keys.POOL]
    async with db.transaction():
        await db.execute("SELECT 1 FROM accounts WHERE user_id = $1 AND kind = 'wallet' FOR UPDATE", uuid.UUID(user.id))
        sent = asyncio.gather(*(bid(viewer, aid, **amount) for viewer, aid, amount in bids))
        deadline = time.monotonic() + WAIT_S
        while (
            waiting := await pool.fetchval(
                """SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                    AND wait_event_type = 'Lock' AND query LIKE '%bid_batch%'"""
            )
        ) < len(bids):
            assert time.monotonic() < deadline and not sent.done(), f"{waiting} bid transactions waiting"
            await asyncio.sleep(0.01)
    return await sent


async def test_bids_in_both_at_once_never_hold_more_than_the_wallet(client, make, db):
    (first, second), hosts = await two_shows(client, make)
    carol, dave = await make.user(), await make.user()
    await top_up(client, carol, WALLET)
    await top_up(client, dave, 100_000)
    shows = (first, second)
    mine = [await Viewer.connect(client, s.id, carol) for s in shows]
    daves = [await Viewer.connect(client, s.id, dave) for s in shows]
    auctions = [await start(host, show.variant(), duration_s=120) for host, show in zip(hosts, shows, strict=True)]
    ids = [a["id"] for a in auctions]
    for viewer, aid in zip(mine + daves, ids + ids, strict=True):
        await viewer.wait_for(lambda v, i=aid: [e for e in v.of_type("auction") if e["auction"]["id"] == i])
    shipping = {ids[0]: 0, ids[1]: SHIPPING}
    # Her hold account exists, as it does for anyone who has bid before: otherwise the first bid's creating
    # it would queue the other behind it, and the two would never meet at her wallet.
    await db.execute("SELECT account_of($1, 'hold')", uuid.UUID(carol.id))

    # Each alone fits (15.00, or 15.00 + 5.00 of shipping, out of 30.00); both do not: exactly one leads.
    results = await raced(
        client, db, carol, *((viewer, aid, {"max_cents": 1500}) for viewer, aid in zip(mine, ids, strict=True))
    )
    assert sorted(r["status"] for r in results) == ["insufficient_funds", "leading"], results
    (led,) = [aid for aid, r in zip(ids, results, strict=True) if r["status"] == "leading"]
    assert await assert_within_balance(client, db, carol, WALLET) == {led: 1500 + shipping[led]}
    other = next(aid for aid in ids if aid != led)
    left = WALLET - 1500 - shipping[led]

    # Raising her maximum where she leads (the wallet covers the 1.00 more) against a first bid in the other
    # of all the wallet has left (the start price, plus its shipping): each fits, both would hold more than
    # she has. One is refused.
    first_bid = left - shipping[other]
    assert first_bid == 1000 and 1600 + shipping[led] + first_bid + shipping[other] > WALLET
    at = dict(zip(ids, mine, strict=True))
    results = await raced(
        client,
        db,
        carol,
        (at[led], led, {"max_cents": 1600}),
        (at[other], other, {"amount_cents": first_bid}),
    )
    assert sorted(r["status"] for r in results) == ["insufficient_funds", "leading"], results
    leads = await assert_within_balance(client, db, carol, WALLET)
    assert leads in ({led: 1600 + shipping[led]}, {led: 1500 + shipping[led], other: first_bid + shipping[other]})
    await assert_books_balanced(db)

    # Dave takes the other auction (at its start price, or over her first bid if it stood: then its hold goes
    # back), so each has a winner; each winner pays once.
    reply = await bid(daves[ids.index(other)], other, max_cents=10_000)
    dave_pays = 1000 + 100 if other in leads else 1000
    assert (reply["status"], reply["current_cents"]) == ("leading", dave_pays), reply
    leads = await assert_within_balance(client, db, carol, WALLET)
    assert list(leads) == [led]
    for aid in ids:
        ended = await close_at_end(client, aid)
        # Carol's lot had no other bidder: she pays the start price.
        winner, price = (carol, 1000) if aid == led else (dave, dave_pays)
        await assert_one_winner_who_paid(db, ended, winner, price, shipping[aid])
    assert (await balance(client, carol), await hold_of(db, carol.id)) == (WALLET - 1000 - shipping[led], 0)
    await assert_books_balanced(db)
    for viewer in (*hosts, *mine, *daves):
        await viewer.close()
