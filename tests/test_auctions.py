"""Auctions over real websockets, and their storage function against a model of eBay-style proxy bidding."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import settings_for
from helpers import assert_books_balanced, balance, top_up
from live_helpers import Viewer, live_show
from livehub import keys
from livehub.app import create_app

PRICE = 5000
FEE_BPS = 1000  # settings_for's platform fee (checked below)


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20, "db_pool_max": 10, **backplane})
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


async def bidders(client, make, db, n: int, cents: int = 100_000) -> list:
    people = [await make.user() for _ in range(n)]
    await asyncio.gather(*(top_up(client, p, cents) for p in people))
    return people


async def start(host: Viewer, variant: str, **frame) -> dict:
    frame = {"start_cents": 1000, "increment_cents": 100, "duration_s": 60, "mode": "standard", **frame}
    reply = await host.request("auction", variant_id=variant, **frame)
    assert reply["type"] == "ack", reply
    # The event this start published (the host may have seen earlier auctions' events).
    return await host.wait_for(
        lambda v: next((e["auction"] for e in v.of_type("auction") if e["offset"] == reply["offset"]), None)
    )


async def bid(viewer: Viewer, auction_id: str, **amount) -> dict:
    reply = await viewer.request("bid", auction_id=auction_id, **amount)
    assert reply["type"] == "bid_result", reply
    return reply


async def hold_of(db, user_id) -> int:
    return await db.fetchval(
        "SELECT coalesce((SELECT balance_cents FROM accounts WHERE user_id = $1 AND kind = 'hold'), 0)",
        uuid.UUID(user_id),
    )


async def close_now(db, auction_id: str, now: datetime | None = None) -> dict | None:
    raw = await db.fetchval(
        "SELECT close_auction($1, $2, 0, $3)::text", uuid.UUID(auction_id), FEE_BPS, now or datetime.now(UTC)
    )
    return orjson.loads(raw) if raw else None


async def test_bids_proxies_holds_and_the_winners_order(client, make, db):
    show = await live_show(make, products=1, stock=3, price=PRICE)
    variant = show.variant()
    host = await Viewer.connect(client, show.id, show.seller)
    alice, bob, carol = await bidders(client, make, db, 3)
    a, b, c = [await Viewer.connect(client, show.id, p) for p in (alice, bob, carol)]
    auction = await start(host, variant)
    aid = auction["id"]
    assert auction["current_cents"] == 1000 and auction["leader"] is None and auction["mode"] == "standard"
    assert auction["min_bid_cents"] == 1000
    await asyncio.gather(*(v.wait_for(lambda v: v.of_type("auction")) for v in (a, b, c)))

    # Too low, then a plain bid at the start, then a proxy maximum above it.
    assert (await bid(a, aid, amount_cents=999))["status"] == "too_low"
    assert (await bid(a, aid, amount_cents=1000)) | {"request_id": None} == {
        "type": "bid_result",
        "request_id": None,
        "status": "leading",
        "current_cents": 1000,
    }
    assert await hold_of(db, alice.id) == 1000  # the seller ships free: the hold is the bid
    assert (await bid(b, aid, max_cents=3000))["status"] == "leading"
    # Bob leads at alice's 1000 + 100; alice's hold went back, bob holds his maximum.
    assert (await hold_of(db, alice.id), await hold_of(db, bob.id)) == (0, 3000)
    reply = await bid(c, aid, amount_cents=2000)  # below bob's hidden maximum: outbid, price 2100
    assert (reply["status"], reply["current_cents"]) == ("outbid", 2100)
    reply = await bid(c, aid, max_cents=3000)  # a tie: the earlier maximum wins, at it
    assert (reply["status"], reply["current_cents"]) == ("outbid", 3000)
    reply = await bid(c, aid, max_cents=5000)  # above: carol leads at 3000 + 100
    assert (reply["status"], reply["current_cents"]) == ("leading", 3100)
    assert (await hold_of(db, bob.id), await hold_of(db, carol.id)) == (0, 5000)
    assert await balance(client, carol) == 100_000 - 5000
    res = await client.get("/api/wallet", headers=carol.headers)
    assert (await res.json())["held_cents"] == 5000
    # Funds: a maximum beyond the wallet is refused, and never moves the price.
    reply = await bid(a, aid, max_cents=200_000)
    assert (reply["status"], reply["current_cents"]) == ("insufficient_funds", 3100)
    # A retried request id is answered with where the bidder stands now, and not bid again.
    again = await bid(b, aid, amount_cents=3000, request_id=(reply_id := "bob-1"))
    assert (again["status"], again["current_cents"]) == ("too_low", 3100)
    await b.send(type="bid", auction_id=aid, amount_cents=3000, request_id=reply_id)
    answers = await b.wait_for(lambda v: (r := [f for f in v.frames if f.get("request_id") == reply_id])[1:] and r)
    retried = answers[1]
    assert (retried["status"], retried["current_cents"]) == ("outbid", 3100)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM auction_bids WHERE auction_id = $1 AND request_id = $2", uuid.UUID(aid), reply_id
        )
        == 1
    )
    # The seller (the host here) cannot bid on its own lot.
    assert (await bid(host, aid, amount_cents=10_000))["status"] == "not_allowed"
    # The maximum is never shown: not in the event, not in the welcome.
    last = (await a.wait_for(lambda v: [e for e in v.of_type("auction") if e["auction"]["current_cents"] == 3100]))[-1]
    assert "5000" not in orjson.dumps(last).decode()
    late = await Viewer.connect(client, show.id, alice)
    assert late.welcome["state"]["auction"]["current_cents"] == 3100
    assert late.welcome["state"]["auction"]["leader"]["id"] == carol.id
    assert "leader_max_cents" not in late.welcome["state"]["auction"]

    # Closing before the end does nothing; at the end, exactly once, carol buys at 3100.
    assert await close_now(db, aid) is None
    ends_at = datetime.fromisoformat(last["auction"]["ends_at"])
    # Three nodes' timers at once (the app's pool: concurrent transactions).
    pool = client.app[keys.POOL]
    closed = await asyncio.gather(*(close_now(pool, aid, ends_at) for _ in range(3)))
    ended = [x for x in closed if x is not None]
    assert len(ended) == 1 and ended[0]["ended"] and ended[0]["winner"]["id"] == carol.id, closed
    order_id = ended[0]["order_id"]
    order = await db.fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(order_id))
    assert (order["buyer_id"], order["total_cents"], order["shipping_cents"]) == (uuid.UUID(carol.id), 3100, 0)
    assert order["address"]["country"] == "US"
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(variant)) == 2
    earned = await db.fetchval(
        "SELECT amount_cents FROM earnings WHERE order_id = $1 AND role = 'seller'", uuid.UUID(order_id)
    )
    assert earned == 3100 - 3100 * FEE_BPS // 10_000
    assert await hold_of(db, carol.id) == 0 and await balance(client, carol) == 100_000 - 3100
    assert (
        await db.fetchval(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'auction_won'", uuid.UUID(carol.id)
        )
        == 1
    )
    await assert_books_balanced(db)
    # A bid after the end: ended.
    assert (await bid(a, aid, amount_cents=10_000))["status"] == "ended"
    for v in (host, a, b, c, late):
        await v.close()


async def test_the_room_closes_it_at_its_end_and_tells_everyone(client, make, db):
    show = await live_show(make, products=1, stock=1, price=PRICE)
    host = await Viewer.connect(client, show.id, show.seller)
    (alice,) = await bidders(client, make, db, 1)
    a = await Viewer.connect(client, show.id, alice)
    auction = await start(host, show.variant(), duration_s=5, mode="sudden_death")
    assert (await bid(a, auction["id"], amount_cents=1500))["status"] == "leading"
    # Sudden death: a bid in the last seconds does not move the end.
    ended = await a.wait_for(lambda v: [e for e in v.of_type("auction") if e["auction"]["ended"]], timeout=30)
    assert ended[-1]["auction"]["winner"]["id"] == alice.id
    assert ended[-1]["auction"]["ends_at"] == auction["ends_at"]
    assert ended[-1]["auction"]["order_id"]
    assert await balance(client, alice) == 100_000 - 1500
    await assert_books_balanced(db)
    await host.close()
    await a.close()


async def test_anti_snipe_extends_in_standard_mode_and_not_in_sudden_death(client, make, db):
    show = await live_show(make, products=1, stock=5, price=PRICE)
    host = await Viewer.connect(client, show.id, show.seller)
    (alice,) = await bidders(client, make, db, 1)
    for mode, extends in (("standard", True), ("sudden_death", False)):
        auction = await start(host, show.variant(), duration_s=60, mode=mode, extend_s=10)
        ends_at = datetime.fromisoformat(auction["ends_at"])
        # A bid decided 5 s before the end (the function takes the time it decides at).
        at = ends_at - timedelta(seconds=5)
        out = orjson.loads(
            await db.fetchval(
                "SELECT bid_batch($1, $2, $3)::text",
                uuid.UUID(auction["id"]),
                [{"bidder_id": alice.id, "amount_cents": 1000, "request_id": "snipe"}],
                at,
            )
        )
        assert out["results"][0]["status"] == "leading"
        new_end = datetime.fromisoformat(out["auction"]["ends_at"])
        assert new_end == (at + timedelta(seconds=10) if extends else ends_at), (mode, out)
        # A bid decided 20 s before the end does not extend in either mode.
        assert await close_now(db, auction["id"], new_end) is not None
        await host.wait_for(lambda v, i=auction["id"]: [e for e in v.of_type("auction") if e["auction"]["id"] == i])
    await assert_books_balanced(db)
    await host.close()


async def test_one_auction_or_flash_sale_at_a_time_and_who_may_start(client, make, db):
    show = await live_show(make, products=2, stock=5, price=PRICE)
    host = await Viewer.connect(client, show.id, show.seller)
    (alice,) = await bidders(client, make, db, 1)
    a = await Viewer.connect(client, show.id, alice)
    reply = await a.request("auction", variant_id=show.variant(), start_cents=100, duration_s=30)
    assert (reply["type"], reply["code"]) == ("error", "forbidden")
    reply = await host.request("auction", variant_id=show.variant(), start_cents=100, duration_s=700)
    assert (reply["type"], reply["code"]) == ("error", "validation_error")
    auction = await start(host, show.variant())
    reply = await host.request("auction", variant_id=show.variant(1), start_cents=100, duration_s=30)
    assert (reply["type"], reply["code"]) == ("error", "conflict")
    reply = await host.request("flash_sale", variant_id=show.variant(1), price_cents=100, quantity=1, duration_s=30)
    assert (reply["type"], reply["code"]) == ("error", "conflict")
    assert await close_now(db, auction["id"], datetime.fromisoformat(auction["ends_at"])) is not None
    sale = await host.request("flash_sale", variant_id=show.variant(1), price_cents=100, quantity=1, duration_s=30)
    assert sale["type"] == "ack"
    reply = await host.request("auction", variant_id=show.variant(), start_cents=100, duration_s=30)
    assert (reply["type"], reply["code"]) == ("error", "conflict")
    await host.close()
    await a.close()


async def test_banned_and_timed_out_users_cannot_bid(client, make, db):
    show = await live_show(make, products=1, stock=5, price=PRICE)
    host = await Viewer.connect(client, show.id, show.seller)
    alice, bob, carol = await bidders(client, make, db, 3)
    a, b = [await Viewer.connect(client, show.id, p) for p in (alice, bob)]
    auction = await start(host, show.variant())
    await a.wait_for(lambda v: v.of_type("auction"))
    assert (await host.request("moderate", action="timeout", user_id=bob.id, seconds=60))["type"] == "ack"
    assert (await bid(b, auction["id"], amount_cents=1000))["status"] == "not_allowed"
    # A ban closes the socket; bids by other ways are decided by the database, which knows the ban.
    assert (await host.request("moderate", action="ban", user_id=alice.id))["type"] == "ack"
    out = orjson.loads(
        await db.fetchval(
            "SELECT bid_batch($1, $2)::text",
            uuid.UUID(auction["id"]),
            [{"bidder_id": alice.id, "amount_cents": 1000}, {"bidder_id": carol.id, "amount_cents": 1000}],
        )
    )
    assert [r["status"] for r in out["results"]] == ["not_allowed", "leading"]
    await host.close()


async def test_moderators_and_admins_cannot_bid_in_the_show_they_run(client, make, db):
    show = await live_show(make, products=1, stock=5, price=PRICE)
    host = await Viewer.connect(client, show.id, show.seller)
    mod, admin, dave = await bidders(client, make, db, 3)
    await db.execute(
        "INSERT INTO stream_moderators (stream_id, user_id) VALUES ($1, $2)", uuid.UUID(show.id), uuid.UUID(mod.id)
    )
    await db.execute("UPDATE users SET roles = '{viewer,admin}' WHERE id = $1", uuid.UUID(admin.id))
    auction = await start(host, show.variant())
    out = orjson.loads(
        await db.fetchval(
            "SELECT bid_batch($1, $2)::text",
            uuid.UUID(auction["id"]),
            [{"bidder_id": who.id, "amount_cents": 1000} for who in (mod, admin, dave)],
        )
    )
    assert [r["status"] for r in out["results"]] == ["not_allowed", "not_allowed", "leading"]
    await host.close()


# -- the proxy rules against a model ----------------------------------------------------------------


def model(start: int, inc: int, bids: list[tuple[int, str, int]]) -> tuple[list[str], int, int | None]:
    """eBay-style rules in plain Python: bids (bidder, 'amount' | 'max', value) in order -> statuses,
    the price, the leader."""
    leader, leader_max, price = None, None, start
    statuses = []
    for bidder, kind, value in bids:
        least = start if leader is None else price + inc
        if value < least or (bidder == leader and value <= leader_max):
            statuses.append("too_low")
        elif bidder == leader:
            leader_max = value
            statuses.append("leading")
        elif leader is None:
            leader, leader_max, price = bidder, value, (value if kind == "amount" else start)
            statuses.append("leading")
        elif value > leader_max:
            price = value if kind == "amount" else min(value, leader_max + inc)
            leader, leader_max = bidder, value
            statuses.append("leading")
        else:
            price = max(price, min(leader_max, value + inc))
            statuses.append("outbid")
    return statuses, price, leader


BIDS = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(["amount", "max"]), st.integers(900, 4000)), min_size=1, max_size=25
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bids=BIDS, batch=st.integers(1, 6))
async def test_proxy_bidding_matches_the_model(db, bids, batch, auction_setup):
    auction_id, users = await auction_setup()
    decided = []
    for i in range(0, len(bids), batch):
        chunk = bids[i : i + batch]
        out = orjson.loads(
            await db.fetchval(
                "SELECT bid_batch($1, $2)::text",
                auction_id,
                [{"bidder_id": str(users[u]), f"{kind}_cents": value} for u, kind, value in chunk],
            )
        )
        decided += [r["status"] for r in out["results"]]
    statuses, price, leader = model(1000, 100, [(str(users[u]), k, v) for u, k, v in bids])
    row = await db.fetchrow(
        "SELECT current_cents, leader_id, leader_hold_cents FROM auctions WHERE id = $1", auction_id
    )
    assert decided == statuses
    assert row["current_cents"] == price and (str(row["leader_id"]) if row["leader_id"] else None) == leader
    holds = await db.fetch(
        "SELECT user_id, balance_cents FROM accounts WHERE kind = 'hold' AND user_id = ANY ($1) AND balance_cents > 0",
        users,
    )
    assert [(str(h["user_id"]), h["balance_cents"]) for h in holds] == (
        [(leader, row["leader_hold_cents"])] if leader else []
    )
    await assert_books_balanced(db)


@pytest.fixture
async def auction_setup(client, make, db):
    """A factory: a new live stream with an auction (start 10.00, increment 1.00) and four funded bidders
    with addresses, made once per hypothesis example."""
    show = await live_show(make, products=1, stock=5, price=PRICE)
    users = [uuid.UUID(p.id) for p in await bidders(client, make, db, 4, cents=10_000)]

    async def setup():
        await db.execute(
            """UPDATE auctions SET ended_at = now(), ended_reason = 'stream_ended'
                WHERE stream_id = $1 AND ended_at IS NULL""",
            uuid.UUID(show.id),
        )
        # Holds of earlier examples go back (their auctions were ended by hand above).
        await db.execute(
            """SELECT post(nextval('ledger_txn_seq'), a.id, -a.balance_cents, 'bid_release', NULL, NULL, NULL, 'test'),
                      post(currval('ledger_txn_seq'), account_of(a.user_id, 'wallet'), a.balance_cents, 'bid_release',
                           NULL, NULL, NULL, 'test')
                 FROM accounts a WHERE a.kind = 'hold' AND a.user_id = ANY ($1) AND a.balance_cents > 0""",
            users,
        )
        raw = await db.fetchval(
            "SELECT start_auction($1, $2, $3, 1000, 100, 600, 'standard', 10)::text",
            uuid.UUID(show.id),
            uuid.UUID(show.seller.id),
            uuid.UUID(show.variant()),
        )
        return uuid.UUID(orjson.loads(raw)["id"]), users

    return setup


async def test_a_guest_hosts_commission_and_shipping_on_the_winners_order(client, make, db):
    """Decided by the storage functions directly (the room's part is above): the shop ships at a flat rate, and
    the stream's host is another user earning a commission."""
    show = await live_show(make, products=1, stock=2, price=PRICE)
    res = await client.put(
        "/api/seller/shipping", json={"flat_rate_cents": 700, "countries": []}, headers=show.seller.headers
    )
    assert res.status == 200, await res.text()
    alice, bob = await bidders(client, make, db, 2, cents=20_000)
    host = await make.user()
    raw = await db.fetchval(
        "SELECT start_auction($1, $2, $3, 1000, NULL, 60, 'standard', 10)::text",
        uuid.UUID(show.id),
        uuid.UUID(show.seller.id),
        uuid.UUID(show.variant()),
    )
    auction = orjson.loads(raw)
    assert auction["increment_cents"] == 50  # the ladder at 10.00
    await db.execute(
        "UPDATE streams SET host_id = $2, host_commission_bps = 2000 WHERE id = $1",
        uuid.UUID(show.id),
        uuid.UUID(host.id),
    )

    async def bids(*items) -> list[str]:
        out = orjson.loads(await db.fetchval("SELECT bid_batch($1, $2)::text", uuid.UUID(auction["id"]), list(items)))
        return [r["status"] for r in out["results"]]

    # The host cannot bid; alice's hold is her maximum plus the flat rate; bob outbids her and hers goes back.
    assert await bids({"bidder_id": host.id, "amount_cents": 1000}) == ["not_allowed"]
    assert await bids({"bidder_id": alice.id, "max_cents": 1500}) == ["leading"]
    assert await hold_of(db, alice.id) == 1500 + 700
    assert await bids({"bidder_id": bob.id, "max_cents": 19_400}) == ["insufficient_funds"]  # + 700 > 20,000
    assert await bids({"bidder_id": bob.id, "max_cents": 4000}) == ["leading"]
    assert (await hold_of(db, alice.id), await hold_of(db, bob.id)) == (0, 4000 + 700)
    assert await balance(client, alice) == 20_000
    ended = await close_now(db, auction["id"], datetime.fromisoformat(auction["ends_at"]))
    assert ended["winner"]["id"] == bob.id and ended["current_cents"] == 1550  # alice's 1500 + 50
    order = await db.fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(ended["order_id"]))
    assert (order["total_cents"], order["shipping_cents"], order["host_id"]) == (1550 + 700, 700, uuid.UUID(host.id))
    shares = dict(
        await db.fetch("SELECT role, amount_cents FROM earnings WHERE order_id = $1", uuid.UUID(ended["order_id"]))
    )
    fee = 1550 * FEE_BPS // 10_000
    assert shares == {"host": 1550 * 2000 // 10_000, "seller": 1550 + 700 - fee - 1550 * 2000 // 10_000}
    assert await balance(client, bob) == 20_000 - 1550 - 700 and await hold_of(db, bob.id) == 0
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(show.variant())) == 1
    await assert_books_balanced(db)


async def test_a_reconnecting_viewer_recovers_the_auction_and_the_stream_ending_releases_the_hold(client, make, db):
    show = await live_show(make, products=1, stock=2, price=PRICE)
    host = await Viewer.connect(client, show.id, show.seller)
    (alice,) = await bidders(client, make, db, 1)
    a = await Viewer.connect(client, show.id, alice)
    auction = await start(host, show.variant())
    since = (await a.wait_for(lambda v: v.of_type("auction")))[-1]["offset"]
    await a.close()
    await bid(host, auction["id"], amount_cents=5000)  # refused (own lot): changes nothing
    other = await Viewer.connect(client, show.id, await make.user())
    b = await Viewer.connect(client, show.id, (bob := (await bidders(client, make, db, 1))[0]))
    assert (await bid(b, auction["id"], amount_cents=1200))["status"] == "leading"
    back = await Viewer.connect(client, show.id, alice, since=since, epoch=a.welcome["epoch"])
    assert back.welcome["recovered"] is True
    seen = await back.wait_for(lambda v: [e for e in v.of_type("auction") if e["auction"]["current_cents"] == 1200])
    assert seen[-1]["auction"]["leader"]["id"] == bob.id
    assert back.welcome["state"]["auction"]["id"] == auction["id"]
    assert await hold_of(db, bob.id) == 1200
    res = await client.post(f"/api/streams/{show.id}/end", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    row = await db.fetchrow("SELECT ended_reason, order_id FROM auctions WHERE id = $1", uuid.UUID(auction["id"]))
    assert (row["ended_reason"], row["order_id"]) == ("stream_ended", None)
    # The room tells its viewers the auction ended with the stream.
    ended = await back.wait_for(lambda v: [e for e in v.of_type("auction") if e["auction"]["ended"]])
    assert (ended[-1]["auction"]["ended_reason"], ended[-1]["auction"]["winner"]) == ("stream_ended", None)
    assert await hold_of(db, bob.id) == 0 and await balance(client, bob) == 100_000
    await assert_books_balanced(db)
    for v in (host, other, b, back):
        await v.close()


async def test_an_auction_whose_stock_sold_out_meanwhile_ends_without_a_sale(client, make, db):
    show = await live_show(make, products=1, stock=1, price=PRICE)
    (alice,) = await bidders(client, make, db, 1)
    auction = orjson.loads(
        await db.fetchval(
            "SELECT start_auction($1, $2, $3, 1000, 100, 30, 'sudden_death', 10)::text",
            uuid.UUID(show.id),
            uuid.UUID(show.seller.id),
            uuid.UUID(show.variant()),
        )
    )
    out = orjson.loads(
        await db.fetchval(
            "SELECT bid_batch($1, $2)::text", uuid.UUID(auction["id"]), [{"bidder_id": alice.id, "max_cents": 2000}]
        )
    )
    assert out["results"][0]["status"] == "leading" and await hold_of(db, alice.id) == 2000
    await db.execute("UPDATE variants SET stock = 0 WHERE id = $1", uuid.UUID(show.variant()))  # sold elsewhere
    ended = await close_now(db, auction["id"], datetime.fromisoformat(auction["ends_at"]))
    assert (ended["ended_reason"], ended["order_id"]) == ("out_of_stock", None)
    assert await hold_of(db, alice.id) == 0 and await balance(client, alice) == 100_000
    await assert_books_balanced(db)


async def test_bids_are_rate_limited_per_bidder(backplane, aiohttp_client, database_url, db, make):
    settings = settings_for(database_url).model_copy(update={"tick_ms": 20, "bids_per_s": 0.5, **backplane})
    client = await aiohttp_client(create_app(settings))
    make.client = client
    show = await live_show(make, products=1, stock=2, price=PRICE)
    host = await Viewer.connect(client, show.id, show.seller)
    alice, bob = await bidders(client, make, db, 2)
    a, b = [await Viewer.connect(client, show.id, p) for p in (alice, bob)]
    auction = await start(host, show.variant())
    await a.wait_for(lambda v: v.of_type("auction"))
    assert (await bid(a, auction["id"], amount_cents=1000))["status"] == "leading"  # the burst: one bid
    reply = await a.request("bid", auction_id=auction["id"], amount_cents=2000)
    assert (reply["type"], reply["code"]) == ("error", "rate_limited")
    # Another bidder has a budget of their own.
    await b.wait_for(lambda v: v.of_type("auction"))
    assert (await bid(b, auction["id"], amount_cents=1100))["status"] == "leading"
    for v in (host, a, b):
        await v.close()
