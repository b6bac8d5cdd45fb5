"""Replays against a real PostgreSQL (docs/REPLAYS.md): the replay API and its timeline, the lists of replays,
practice (unlisted) shows, discarding, retention and the LiveKit backend's template.

A replay's row is inserted here directly, as the recorder writes it (livehub/shop/recordings.py; its real
recording is tested in tests/test_recording*.py). The timeline's events are inserted with chosen times, so the
offsets asserted are exactly the seconds between an event and the recording's start; the real pin path is
driven too and compared with what it stored.
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from conftest import Factory
from livehub import jobs, keys
from livehub.app import create_app
from livehub.mediastore import STORE
from livehub.shop import replays, streams
from tests.helpers import error_of
from tests.live_helpers import Viewer, live_show


def U(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def product(make, seller, *, prices=(1000,)) -> dict:
    return await make.product(
        seller,
        variants=[{"sku": f"SKU-{uuid.uuid4().hex[:10]}", "price_cents": p, "stock": 10} for p in prices],
    )


async def new_stream(client, seller, products: list[dict], **extra) -> dict:
    body = {"title": "Friday drop", "products": products, **extra}
    res = await client.post("/api/streams", json=body, headers=seller.headers)
    assert res.status == 201, await res.text()
    return (await res.json())["stream"]


async def start(client, seller, stream_id) -> dict:
    res = await client.post(f"/api/streams/{stream_id}/start", headers=seller.headers)
    assert res.status == 200, await res.text()
    return (await res.json())["stream"]


async def end(client, seller, stream_id) -> dict:
    res = await client.post(f"/api/streams/{stream_id}/end", headers=seller.headers)
    assert res.status == 200, await res.text()
    return (await res.json())["stream"]


async def ended_show(client, make, **extra) -> tuple[dict, object, list[dict]]:
    seller = await make.seller()
    items = [await product(make, seller, prices=(1500, 900)), await product(make, seller)]
    stream = await new_stream(client, seller, [{"product_id": p["id"]} for p in items], **extra)
    await start(client, seller, stream["id"])
    return await end(client, seller, stream["id"]), seller, items


async def insert_replay(db, stream_id, *, started_at: datetime, key: str | None = None, created_at=None) -> str:
    key = key or f"replays/{stream_id}/{uuid.uuid4().hex}.webm"
    await db.execute(
        """INSERT INTO stream_replays (stream_id, media_key, content_type, duration_s, size_bytes, started_at,
                                       created_at)
           VALUES ($1, $2, 'video/webm', 61.5, 1234, $3, coalesce($4, now()))""",
        U(stream_id),
        key,
        started_at,
        created_at,
    )
    return key


async def timeline(client, stream_id, **query) -> list[dict]:
    """Every event, page after page (the pages' size from `query`)."""
    items, cursor = [], None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        res = await client.get(f"/api/streams/{stream_id}/replay/timeline", params=params)
        assert res.status == 200, await res.text()
        page = await res.json()
        items += page["items"]
        if (cursor := page["next_cursor"]) is None:
            return items


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- the stream's new fields and practice shows --------------------------------------------------------


async def test_a_stream_says_whether_it_is_unlisted_and_recorded(client, make):
    seller = await make.seller()
    item = await product(make, seller)
    plain = await new_stream(client, seller, [{"product_id": item["id"]}])
    assert plain["unlisted"] is False and plain["record"] is True
    practice = await new_stream(client, seller, [{"product_id": item["id"]}], unlisted=True, record=False)
    assert practice["unlisted"] is True and practice["record"] is False
    res = await client.get(f"/api/streams/{practice['id']}")
    assert res.status == 200
    got = (await res.json())["stream"]
    assert got["unlisted"] is True and got["record"] is False


async def test_unlisted_streams_are_left_out_of_lists_but_watchable_by_their_link(client, make):
    seller = await make.seller()
    item = await product(make, seller)
    listed = await new_stream(client, seller, [{"product_id": item["id"]}])
    practice = await new_stream(client, seller, [{"product_id": item["id"]}], unlisted=True)
    await start(client, seller, practice["id"])
    stranger = await make.user()

    async def ids(query: str, headers=None) -> set[str]:
        res = await client.get(f"/api/streams{query}", headers=headers or {})
        assert res.status == 200, await res.text()
        return {s["id"] for s in (await res.json())["items"]}

    sid = seller.seller["id"]
    for query in ("", "?status=live", f"?seller={sid}", f"?seller={sid}&status=live"):
        assert practice["id"] not in await ids(query), query
        assert practice["id"] not in await ids(query, stranger.headers), query
    assert listed["id"] in await ids("")
    # The shop's own list, when it asks for it (the studio), has it, marked; its storefront, seen as everyone
    # sees it, does not; nobody else gets it by asking.
    own = f"?seller={sid}&include_unlisted=true"
    assert await ids(own, seller.headers) == {listed["id"], practice["id"]}
    assert await ids(f"?seller={sid}", seller.headers) == {listed["id"]}
    assert practice["id"] not in await ids(own, stranger.headers)
    assert practice["id"] not in await ids(own)
    # An admin finds practice shows when asking, of one shop or of all; not without asking.
    admin = await make.admin()
    assert await ids(own, admin.headers) == {listed["id"], practice["id"]}
    assert practice["id"] in await ids("?include_unlisted=true", admin.headers)
    assert practice["id"] in await ids("?include_unlisted=true&status=live", admin.headers)
    assert practice["id"] not in await ids("", admin.headers)
    assert practice["id"] not in await ids("?include_unlisted=true", stranger.headers)
    # Anyone with the link watches.
    res = await client.get(f"/api/streams/{practice['id']}")
    assert res.status == 200
    assert (await res.json())["stream"]["status"] == "live"
    res = await client.get(f"/api/streams/{practice['id']}/media")
    assert res.status == 200, await res.text()


async def test_followers_are_not_told_of_an_unlisted_show_but_who_asked_for_a_reminder_is(client, make, db):
    seller = await make.seller()
    item = await product(make, seller)
    fan, follower = await make.user(), await make.user()
    for who in (fan, follower):
        res = await client.post(f"/api/sellers/{seller.seller['id']}/follow", headers=who.headers)
        assert res.status == 200, await res.text()
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    async def kinds_told(stream_id, who=fan) -> list[str]:
        rows = await db.fetch(
            "SELECT kind FROM notifications WHERE user_id = $1 AND payload->>'stream_id' = $2 ORDER BY kind",
            U(who.id),
            stream_id,
        )
        return [r["kind"] for r in rows]

    for unlisted in (False, True):
        stream = await new_stream(client, seller, [{"product_id": item["id"]}], scheduled_at=soon, unlisted=unlisted)
        # Someone with the link asks to be reminded; the sweep reaches it (it is due within the lead time).
        res = await client.post(f"/api/streams/{stream['id']}/remind", headers=fan.headers)
        assert res.status == 200, await res.text()
        await db.fetchval("SELECT send_due_reminders(now())")
        await start(client, seller, stream["id"])
        told = await kinds_told(stream["id"])
        if unlisted:
            # A practice show: the follower who did not ask hears nothing; the one who asked (with the link)
            # gets the reminder and the show going live, never the followers' show_scheduled.
            assert told == ["show_reminder", "stream_live"], told
            assert await kinds_told(stream["id"], follower) == []
        else:
            assert told == ["show_reminder", "show_scheduled", "stream_live"], told
            assert await kinds_told(stream["id"], follower) == ["show_scheduled", "stream_live"]
        await end(client, seller, stream["id"])


async def test_pins_and_the_end_of_a_show_are_kept_in_the_pin_history(client, make, db):
    seller = await make.seller()
    a, b = await product(make, seller), await product(make, seller)
    stream = await new_stream(client, seller, [{"product_id": a["id"]}, {"product_id": b["id"]}])
    sid, actor = U(stream["id"]), U(seller.id)
    await start(client, seller, sid)
    await streams.pin_product(db, sid, actor, U(a["id"]))
    await streams.pin_product(db, sid, actor, U(b["id"]))
    await streams.pin_product(db, sid, actor, None)
    await streams.pin_product(db, sid, actor, U(a["id"]))
    ended = await end(client, seller, sid)
    rows = await db.fetch("SELECT product_id, at FROM stream_pins WHERE stream_id = $1 ORDER BY id", sid)
    assert [r["product_id"] and str(r["product_id"]) for r in rows] == [a["id"], b["id"], None, a["id"], None]
    # The unpin at the end is at the stream's end.
    assert rows[-1]["at"] == at(ended["ended_at"])


# -- the replay ------------------------------------------------------------------------------------------


async def test_no_replay_until_one_is_recorded_then_its_fields(client, make, db):
    stream, seller, items = await ended_show(client, make)
    sid = stream["id"]
    res = await client.get(f"/api/streams/{sid}/replay")
    await error_of(res, 404, "not_found")
    res = await client.get(f"/api/streams/{sid}/replay/timeline")
    await error_of(res, 404, "not_found")

    started = at(stream["started_at"]) + timedelta(seconds=1)
    await insert_replay(db, sid, started_at=started)
    res = await client.get(f"/api/streams/{sid}/replay")
    assert res.status == 200, await res.text()
    replay = await res.json()
    assert set(replay) == {
        "stream_id",
        "title",
        "seller",
        "unlisted",
        "video_url",
        "content_type",
        "duration_s",
        "started_at",
        "timeline_url",
        "products",
    }
    assert replay["stream_id"] == sid and replay["title"] == "Friday drop" and replay["unlisted"] is False
    assert replay["seller"] == {"id": seller.seller["id"], "shop_name": seller.seller["shop_name"]}
    assert replay["video_url"] == f"/api/streams/{sid}/replay/video"
    assert replay["timeline_url"] == f"/api/streams/{sid}/replay/timeline"
    assert replay["content_type"] == "video/webm" and replay["duration_s"] == 61.5
    assert at(replay["started_at"]) == started
    assert [p["id"] for p in replay["products"]] == [p["id"] for p in items]
    assert [p["position"] for p in replay["products"]] == [0, 1]
    assert replay["products"][0]["price_cents"] == 900  # the cheapest variant's
    assert replay["products"][0]["image_url"] is None


async def test_the_line_up_is_at_regular_prices_after_live_and_flash_prices(client, make, db):
    seller = await make.seller()
    item = await product(make, seller, prices=(2000,))
    stream = await new_stream(client, seller, [{"product_id": item["id"], "live_price_cents": 1500}])
    sid = U(stream["id"])
    await start(client, seller, sid)
    await streams.start_flash_sale(
        db,
        sid,
        U(seller.id),
        variant_id=U(item["variants"][0]["id"]),
        price_cents=500,
        quantity=2,
        duration_s=60,
        per_buyer_limit=None,
    )
    # While the show runs the stream's prices are the live and flash ones...
    live = await (await client.get(f"/api/streams/{sid}")).json()
    assert live["stream"]["products"][0]["variants"][0]["price_cents"] == 1500
    assert live["stream"]["flash_sale"]["price_cents"] == 500
    await end(client, seller, sid)
    await insert_replay(db, sid, started_at=datetime.now(UTC))
    # ...the replay sells at the catalog's.
    replay = await (await client.get(f"/api/streams/{sid}/replay")).json()
    assert replay["products"][0]["price_cents"] == 2000


async def test_an_unlisted_shows_replay_is_reached_by_its_link_and_never_listed(client, make, db):
    listed, seller, _ = await ended_show(client, make)
    item = await product(make, seller)
    practice = await new_stream(client, seller, [{"product_id": item["id"]}], unlisted=True)
    await start(client, seller, practice["id"])
    await end(client, seller, practice["id"])
    now = datetime.now(UTC)
    await insert_replay(db, listed["id"], started_at=now - timedelta(hours=1))
    await insert_replay(db, practice["id"], started_at=now)
    res = await client.get(f"/api/streams/{practice['id']}/replay")
    assert res.status == 200
    assert (await res.json())["unlisted"] is True
    for query in ("", f"?seller_id={seller.seller['id']}"):
        res = await client.get(f"/api/replays{query}")
        assert res.status == 200, await res.text()
        assert [r["stream_id"] for r in (await res.json())["items"]] == [listed["id"]]


async def test_a_suspended_shops_replays_are_hidden_with_its_catalog(client, make, db):
    stream, seller, _ = await ended_show(client, make)
    other, _, _ = await ended_show(client, make)
    sid, shop = stream["id"], seller.seller["id"]
    now = datetime.now(UTC)
    await insert_replay(db, sid, started_at=now)
    await insert_replay(db, other["id"], started_at=now)
    assert (await client.get(f"/api/streams/{sid}/replay")).status == 200

    await db.execute("SELECT set_seller_status($1, 'suspended', NULL)", U(shop))
    await error_of(await client.get(f"/api/streams/{sid}/replay"), 404, "not_found")
    await error_of(await client.get(f"/api/streams/{sid}/replay/timeline"), 404, "not_found")
    for query in ("", f"?seller_id={shop}"):
        res = await client.get(f"/api/replays{query}")
        assert res.status == 200, await res.text()
        assert sid not in [r["stream_id"] for r in (await res.json())["items"]]
    assert [r["stream_id"] for r in (await (await client.get("/api/replays")).json())["items"]] == [other["id"]]
    # Nor is its line-up offered (the catalog hides a suspended shop's products).
    assert await db.fetchval("SELECT replay_products_json($1)", U(sid)) == []

    await db.execute("SELECT set_seller_status($1, 'approved', NULL)", U(shop))
    assert (await client.get(f"/api/streams/{sid}/replay")).status == 200


async def test_replay_lists_are_newest_first_per_shop_and_paged(client, make, db):
    shows = [await ended_show(client, make) for _ in range(3)]
    base = datetime.now(UTC) - timedelta(days=1)
    for i, (stream, _, _) in enumerate(shows):
        # Newest first is by when the replay was made (the show's end), the later show's here.
        made = base + timedelta(minutes=i, seconds=30)
        await insert_replay(db, stream["id"], started_at=base + timedelta(minutes=i), created_at=made)
    newest_first = [s["id"] for s, _, _ in reversed(shows)]

    seen, cursor = [], None
    while True:
        res = await client.get("/api/replays", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert res.status == 200, await res.text()
        page = await res.json()
        seen += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert [r["stream_id"] for r in seen] == newest_first
    first = seen[0]
    assert first["replay_url"] == f"/replay/{first['stream_id']}" and first["duration_s"] == 61.5
    assert first["title"] == "Friday drop" and set(first["seller"]) == {"id", "shop_name"}

    stream, seller, _ = shows[1]
    res = await client.get("/api/replays", params={"seller_id": seller.seller["id"]})
    assert [r["stream_id"] for r in (await res.json())["items"]] == [stream["id"]]


# -- the timeline ----------------------------------------------------------------------------------------


async def test_timeline_offsets_are_when_the_events_happened(client, make, db):
    stream, seller, items = await ended_show(client, make)
    sid = U(stream["id"])
    a, b = items
    talker, troll, other = await make.user(), await make.user(), await make.user()
    t0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    await insert_replay(db, sid, started_at=t0)

    async def chat(user, text, seconds, *, deleted=False):
        await db.execute(
            """INSERT INTO chat_messages (stream_id, "offset", user_id, text, created_at, deleted_at)
               VALUES ($1, 0, $2, $3, $4::timestamptz, CASE WHEN $5 THEN $4::timestamptz END)""",
            sid,
            U(user.id),
            text,
            t0 + timedelta(seconds=seconds),
            deleted,
        )

    async def pin(product_id, seconds):
        await db.execute(
            "INSERT INTO stream_pins (stream_id, product_id, at) VALUES ($1, $2, $3)",
            sid,
            product_id and U(product_id),
            t0 + timedelta(seconds=seconds),
        )

    await pin(a["id"], -3)  # before the recording began: at offset 0
    await chat(talker, "hello", 5.25)
    await chat(other, "oops", 7, deleted=True)
    await chat(troll, "buy my stuff instead", 9)
    await pin(b["id"], 12.5)
    variant = U(a["variants"][0]["id"])
    sale = await db.fetchval(
        """INSERT INTO flash_sales (stream_id, variant_id, price_cents, quantity, sold, starts_at, ends_at, ended_at,
                                    ended_reason)
           VALUES ($1, $2, 400, 5, 2, $3::timestamptz, $3::timestamptz + interval '60 seconds',
                   $3::timestamptz + interval '10 seconds', 'sold_out')
           RETURNING id""",
        sid,
        variant,
        t0 + timedelta(seconds=20),
    )
    giveaway = await db.fetchval(
        """INSERT INTO giveaways (stream_id, variant_id, eligibility, seed, seed_hash, starts_at, ends_at)
           VALUES ($1, $2, 'everyone', sha256('seed'), 'x', $3::timestamptz, $3::timestamptz + interval '1 minute')
           RETURNING id""",
        sid,
        variant,
        t0 + timedelta(seconds=40),
    )
    await db.execute(
        "UPDATE giveaways SET ended_at = $2, ended_reason = 'time', prize_status = 'no_entries' WHERE id = $1",
        giveaway,
        t0 + timedelta(seconds=45),
    )
    auction = await db.fetchval(
        """INSERT INTO auctions (stream_id, variant_id, mode, start_cents, extend_s, starts_at, ends_at, current_cents,
                                  ended_at, ended_reason, winner_id)
           VALUES ($1, $2, 'standard', 100, 10, $3::timestamptz, $3::timestamptz + interval '30 seconds', 1234,
                   $3::timestamptz + interval '30 seconds', 'time', $4)
           RETURNING id""",
        sid,
        variant,
        t0 + timedelta(seconds=60),
        U(talker.id),
    )
    await pin(None, 50)
    # The shop bans the troll: their chat goes from the replay too.
    await db.execute(
        "INSERT INTO seller_bans (seller_id, user_id) VALUES ($1, $2)", U(seller.seller["id"]), U(troll.id)
    )

    events = await timeline(client, sid)
    assert [(e["kind"], e["offset_s"]) for e in events] == [
        ("pin", 0),
        ("chat", 5.25),
        ("pin", 12.5),
        ("flash_sale_started", 20),
        ("flash_sale_ended", 30),
        ("giveaway_started", 40),
        ("giveaway_ended", 45),
        ("pin", 50),
        ("auction_started", 60),
        ("auction_ended", 90),
    ]
    pin_a, said, pin_b, started, ended, given, drawn, unpin, bidding, sold = events
    assert pin_a["product_id"] == a["id"] and pin_b["product_id"] == b["id"] and unpin["product_id"] is None
    assert at(pin_a["at"]) == t0 - timedelta(seconds=3)
    assert said["text"] == "hello" and said["user"] == {"id": talker.id, "name": talker.user["display_name"]}
    assert started["sale_id"] == ended["sale_id"] == str(sale)
    assert started["product_id"] == a["id"] and started["variant_id"] == str(variant)
    assert started["price_cents"] == 400 and started["quantity"] == 5
    assert ended["reason"] == "sold_out" and ended["sold"] == 2
    assert given["giveaway_id"] == drawn["giveaway_id"] == str(giveaway) and given["product_id"] == a["id"]
    assert drawn["winner"] is None
    assert bidding["auction_id"] == sold["auction_id"] == str(auction) and bidding["start_cents"] == 100
    assert sold["winning_bid_cents"] == 1234 and sold["reason"] == "time" and sold["product_id"] == a["id"]
    assert sold["winner"] == {"id": talker.id, "name": talker.user["display_name"]}
    assert len({e["id"] for e in events}) == len(events)

    # Unbanned, the troll's message is back.
    await db.execute("DELETE FROM seller_bans WHERE user_id = $1", U(troll.id))
    assert [e["offset_s"] for e in await timeline(client, sid) if e["kind"] == "chat"] == [5.25, 9]


async def test_a_real_pin_is_at_its_offset(client, make, db):
    seller = await make.seller()
    item = await product(make, seller)
    stream = await new_stream(client, seller, [{"product_id": item["id"]}])
    sid = U(stream["id"])
    live = await start(client, seller, sid)
    await streams.pin_product(db, sid, U(seller.id), U(item["id"]))
    pinned_at = await db.fetchval("SELECT max(at) FROM stream_pins WHERE stream_id = $1", sid)
    ended = await end(client, seller, sid)
    started = at(live["started_at"])
    await insert_replay(db, sid, started_at=started)
    pin, unpin = await timeline(client, sid)
    assert at(pin["at"]) == pinned_at
    assert pin["offset_s"] == round((pinned_at - started).total_seconds(), 3)
    assert unpin["offset_s"] == round((at(ended["ended_at"]) - started).total_seconds(), 3)


async def test_real_chat_pin_and_flash_sale_are_at_their_offsets(client, make, db):
    """Chat over the real websocket, a pin and a flash sale through the room's real paths: each event's offset
    falls inside the wall-clock window around the action that made it, minus the replay's started_at."""
    show = await live_show(make)
    sid = show.id
    fan = await make.user()
    host = await Viewer.connect(client, sid, show.seller)
    viewer = await Viewer.connect(client, sid, fan)
    windows: dict[str, tuple[datetime, datetime]] = {}

    async def timed(kind: str, frame: str, **fields) -> None:
        before = datetime.now(UTC)
        reply = await (viewer if kind == "chat" else host).request(frame, **fields)
        windows[kind] = (before, datetime.now(UTC))
        assert reply["type"] == "ack", reply

    await timed("chat", "chat", text="is it true to size?")
    await timed("pin", "pin", product_id=show.products[0]["id"])
    await timed(
        "flash_sale_started", "flash_sale", variant_id=show.variant(), price_cents=400, quantity=5, duration_s=60
    )
    await timed("flash_sale_ended", "end_flash_sale")
    await viewer.close()
    await host.close()
    await end(client, show.seller, sid)
    # The room archives chat in background batches.
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while not await db.fetchval("SELECT count(*) FROM chat_messages WHERE stream_id = $1", U(sid)):
        assert datetime.now(UTC) < deadline, "the chat was never archived"
        await asyncio.sleep(0.05)

    started = windows["chat"][0] - timedelta(seconds=7, milliseconds=250)
    await insert_replay(db, sid, started_at=started)
    events = await timeline(client, sid)
    # end_stream's unpin is a pin event too: the host's is the one with a product.
    made = {e["kind"]: e for e in events if e["kind"] != "pin" or e["product_id"] is not None}
    assert set(made) == set(windows), events
    for kind, (before, after) in windows.items():
        low, high = (before - started).total_seconds(), (after - started).total_seconds()
        # offset_s has milliseconds: half a millisecond of rounding either way.
        assert low - 0.0005 <= made[kind]["offset_s"] <= high + 0.0005, (kind, low, made[kind], high)


async def test_timeline_pages_continue_exactly_after_their_cursor(client, make, db):
    stream, _, _ = await ended_show(client, make)
    sid = U(stream["id"])
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    await insert_replay(db, sid, started_at=t0)
    users = [await make.user() for _ in range(2)]
    # Eleven messages, several at the same instant: the order is (at, id), and no page loses or repeats one.
    for i in range(11):
        await db.execute(
            'INSERT INTO chat_messages (stream_id, "offset", user_id, text, created_at) VALUES ($1, $2, $3, $4, $5)',
            sid,
            i,
            U(users[i % 2].id),
            f"m{i}",
            t0 + timedelta(seconds=i // 3),
        )
    # Pins at the same instants as messages: a cursor on a pin ('pin:' sorts after 'chat:') or on a message
    # continues with the right event of the other kind.
    for i in range(3):
        await db.execute(
            "INSERT INTO stream_pins (stream_id, product_id, at) VALUES ($1, NULL, $2)", sid, t0 + timedelta(seconds=i)
        )
    whole = await timeline(client, sid, limit=500)
    assert len(whole) == 14
    for size in (1, 2, 4):
        assert await timeline(client, sid, limit=size) == whole
    assert [(e["at"], e["kind"]) for e in whole] == sorted((e["at"], e["kind"]) for e in whole)
    assert [e["offset_s"] for e in whole] == sorted(e["offset_s"] for e in whole)
    # A chat cursor whose id is not a message's uuid is refused, not a 500.
    bad = replays.encode_cursor(whole[0]["at"].replace("Z", "+00:00"), "chat:abc")
    res = await client.get(f"/api/streams/{sid}/replay/timeline", params={"cursor": bad})
    await error_of(res, 422)


async def test_a_timeline_page_reads_only_its_own_chat_rows(client, make, db):
    # A long show's page must not read the show's whole chat (it did, making a show's pages cost its length
    # squared): counted by PostgreSQL's per-transaction table statistics.
    stream, _, _ = await ended_show(client, make)
    sid = U(stream["id"])
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    await insert_replay(db, sid, started_at=t0)
    user = await make.user()
    await db.execute(
        """INSERT INTO chat_messages (stream_id, "offset", user_id, text, created_at)
           SELECT $1, g, $2, 'm' || g, $3::timestamptz + g * interval '100 ms' FROM generate_series(1, 5000) g""",
        sid,
        U(user.id),
        t0,
    )
    await db.execute("ANALYZE chat_messages")  # as autovacuum does once a table has grown
    after = t0 + timedelta(minutes=4)
    async with db.transaction():
        await db.fetch("SELECT replay_timeline($1, $2, $3, $4, 20)", sid, t0, after, "auction_started:0")
        read = await db.fetchval(
            """SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables
                WHERE relname = 'chat_messages' """
        )
    assert read <= 100, read


async def test_bad_timeline_and_list_input_is_refused_not_a_500(client, make, db):
    stream, _, _ = await ended_show(client, make)
    sid = stream["id"]
    await insert_replay(db, sid, started_at=datetime.now(UTC))
    url = f"/api/streams/{sid}/replay/timeline"
    for params in ({"limit": 0}, {"limit": 501}, {"limit": "x"}, {"cursor": "not a cursor"}, {"cursor": "bm9wZQ"}):
        res = await client.get(url, params=params)
        await error_of(res, 422)
    # ["not a time", "chat:x"] and a cursor of the replay list, both well formed base64.
    for cursor in ("WyJub3QgYSB0aW1lIiwiY2hhdDp4Il0", "WyIyMDI2LTAzLTAxVDEyOjAwOjAwKzAwOjAwIiwieCJd"):
        await error_of(await client.get("/api/replays", params={"cursor": cursor}), 422)
    await error_of(await client.get(url, params={"cursor": "WyJub3QgYSB0aW1lIiwiY2hhdDp4Il0"}), 422)
    # Well-formed cursors holding what no list gives: a time without a zone, one at the calendar's edge, an
    # id with a NUL (which PostgreSQL's text cannot hold), an id of another shape, a key too short.
    for key in (
        ["2026-03-01T12:00:00", "chat:1"],
        ["0001-01-01T00:00:00+14:00", "chat:1"],
        ["9999-12-31T23:59:59-14:00", "chat:1"],
        ["2026-03-01T12:00:00+00:00", "chat:\u0000"],
        ["2026-03-01T12:00:00+00:00", "x" * 1000],
        ["2026-03-01T12:00:00+00:00"],
    ):
        cursor = replays.encode_cursor(*key)
        await error_of(await client.get(url, params={"cursor": cursor}), 422)
        await error_of(await client.get("/api/replays", params={"cursor": cursor}), 422)
    missing = f"/api/streams/{uuid.uuid4()}/replay"
    for path in ("/api/streams/nope/replay", "/api/streams/nope/replay/timeline", missing, f"{missing}/timeline"):
        await error_of(await client.get(path), 404, "not_found")
    await error_of(await client.get("/api/replays", params={"seller_id": "nope"}), 422)
    await error_of(await client.get("/api/replays", params={"limit": 101}), 422)


# -- discarding ------------------------------------------------------------------------------------------


async def test_discarding_a_replay_deletes_its_file_and_is_for_the_host_shop_or_admin(client, make, db):
    stream, seller, _ = await ended_show(client, make)
    sid = stream["id"]
    store = client.app[STORE]
    stranger, admin = await make.user(), await make.admin()

    res = await client.delete(f"/api/streams/{sid}/replay", headers=seller.headers)
    await error_of(res, 404, "not_found")
    key = await insert_replay(db, sid, started_at=datetime.now(UTC))
    await store.put(key, b"webm bytes", "video/webm")

    await error_of(await client.delete(f"/api/streams/{sid}/replay"), 401)
    await error_of(await client.delete(f"/api/streams/{sid}/replay", headers=stranger.headers), 403, "forbidden")
    assert await store.get(key) == b"webm bytes"
    res = await client.delete(f"/api/streams/{sid}/replay", headers=seller.headers)
    assert res.status == 204, await res.text()
    assert await store.get(key) is None
    await error_of(await client.get(f"/api/streams/{sid}/replay"), 404, "not_found")
    await error_of(await client.delete(f"/api/streams/{sid}/replay", headers=seller.headers), 404, "not_found")
    # The discard sticks apart from the host's choice to record: `record` stays true, and a row saved after it
    # (a recorder finishing late) is not offered.
    stored = await db.fetchrow("SELECT record, replay_discarded_at FROM streams WHERE id = $1", U(sid))
    assert stored["record"] is True and stored["replay_discarded_at"] is not None
    await insert_replay(db, sid, started_at=datetime.now(UTC))
    await error_of(await client.get(f"/api/streams/{sid}/replay"), 404, "not_found")
    assert sid not in [r["stream_id"] for r in (await (await client.get("/api/replays")).json())["items"]]

    # An admin may too (and a file already gone is no error).
    other, _, _ = await ended_show(client, make)
    await insert_replay(db, other["id"], started_at=datetime.now(UTC))
    res = await client.delete(f"/api/streams/{other['id']}/replay", headers=admin.headers)
    assert res.status == 204, await res.text()
    await error_of(await client.delete(f"/api/streams/{uuid.uuid4()}/replay", headers=admin.headers), 404)
    await error_of(await client.delete("/api/streams/nope/replay", headers=admin.headers), 404)


async def test_a_guest_host_and_the_shop_may_each_discard_a_guest_hosted_shows_replay(client, make, db):
    guest = await make.user()
    for who in ("host", "shop"):
        stream, seller, _ = await ended_show(client, make)
        # The show was hosted by the guest (as an accepted invitation leaves it, livehub/shop/hosts.py).
        await db.execute(
            "UPDATE streams SET host_id = $2, host_status = 'accepted' WHERE id = $1", U(stream["id"]), U(guest.id)
        )
        await insert_replay(db, stream["id"], started_at=datetime.now(UTC))
        res = await client.delete(
            f"/api/streams/{stream['id']}/replay", headers=(guest if who == "host" else seller).headers
        )
        assert res.status == 204, (who, await res.text())


# -- retention -------------------------------------------------------------------------------------------


async def test_retention_deletes_only_replays_older_than_the_setting(client, make, db):
    settings = client.app[keys.SETTINGS]
    store = client.app[STORE]
    days = settings.replay_retention_days
    now = datetime.now(UTC)
    old, _, _ = await ended_show(client, make)
    gone, _, _ = await ended_show(client, make)
    recent, _, _ = await ended_show(client, make)
    old_key = await insert_replay(db, old["id"], started_at=now, created_at=now - timedelta(days=days, hours=1))
    # Older still, and its file already missing: deleted all the same.
    await insert_replay(db, gone["id"], started_at=now, created_at=now - timedelta(days=days + 5))
    recent_key = await insert_replay(db, recent["id"], started_at=now, created_at=now - timedelta(days=days - 1))
    for key in (old_key, recent_key):
        await store.put(key, b"video", "video/webm")

    # A run takes a bounded batch, oldest first.
    assert await replays.delete_expired(db, store, days=days, batch=1) == 1
    assert {str(r["stream_id"]) for r in await db.fetch("SELECT stream_id FROM stream_replays")} == {
        old["id"],
        recent["id"],
    }
    await jobs.expire_replays(jobs.Context(client.app[keys.POOL], settings, None, None))

    assert {str(r["stream_id"]) for r in await db.fetch("SELECT stream_id FROM stream_replays")} == {recent["id"]}
    assert await store.get(old_key) is None
    assert await store.get(recent_key) == b"video"
    assert "expire_replays" in jobs.SCHEDULES


async def test_retention_goes_on_past_a_file_the_store_fails_to_delete(client, make, db, caplog):
    settings = client.app[keys.SETTINGS]
    store = client.app[STORE]
    days = settings.replay_retention_days
    now = datetime.now(UTC)
    shows = [(await ended_show(client, make))[0] for _ in range(3)]
    keys_ = []
    for i, show in enumerate(shows):
        key = await insert_replay(db, show["id"], started_at=now, created_at=now - timedelta(days=days + 3 - i))
        keys_.append(key)
    await store.put(keys_[1], b"video", "video/webm")
    await store.put(keys_[2], b"video", "video/webm")
    # The oldest's file cannot be unlinked: a directory stands at its path (a real OS error, even for root).
    store.path(keys_[0]).mkdir(parents=True)

    assert await replays.delete_expired(db, store, days=days, batch=10) == 2
    left = {str(r["stream_id"]) for r in await db.fetch("SELECT stream_id FROM stream_replays")}
    assert left == {shows[0]["id"]}
    assert await store.get(keys_[1]) is None and await store.get(keys_[2]) is None
    assert "could not be deleted" in caplog.text
    # The failing one is still offered, and kept for the next run.
    assert (await client.get(f"/api/streams/{shows[0]['id']}/replay")).status == 200


# -- the LiveKit backend ---------------------------------------------------------------------------------


async def test_with_livekit_a_recorded_show_plays_from_the_url_template(aiohttp_client, settings, db):
    template = "https://cdn.example.test/egress/{room}.mp4?s={stream_id}"
    livekit = {"media_backend": "livekit", "livekit_api_key": "devkey", "livekit_api_secret": "s" * 32}
    client = await aiohttp_client(create_app(settings.model_copy(update={**livekit, "replay_url_template": template})))
    make = Factory(client, db)
    stream, seller, _ = await ended_show(client, make)
    sid = stream["id"]
    res = await client.get(f"/api/streams/{sid}/replay")
    assert res.status == 200, await res.text()
    replay = await res.json()
    assert replay["video_url"] == f"https://cdn.example.test/egress/stream-{sid}.mp4?s={sid}"
    assert replay["content_type"] == "video/mp4" and replay["duration_s"] is None
    assert replay["started_at"] == stream["started_at"]
    assert (await client.get(f"/api/streams/{sid}/replay/timeline")).status == 200
    listed = await (await client.get("/api/replays")).json()
    assert [r["stream_id"] for r in listed["items"]] == [sid]

    # Opted out, or not yet ended: none.
    opted_out, _, _ = await ended_show(client, make, record=False)
    await error_of(await client.get(f"/api/streams/{opted_out['id']}/replay"), 404, "not_found")
    item = await product(make, seller)
    live = await new_stream(client, seller, [{"product_id": item["id"]}])
    await start(client, seller, live["id"])
    await error_of(await client.get(f"/api/streams/{live['id']}/replay"), 404, "not_found")

    # Discarded, it stays gone (hidden: the Egress file is LiveKit's), and the stream still says it was
    # recorded; the backend the studio asks about to say so is LiveKit.
    res = await client.delete(f"/api/streams/{sid}/replay", headers=seller.headers)
    assert res.status == 204, await res.text()
    await error_of(await client.get(f"/api/streams/{sid}/replay"), 404, "not_found")
    await error_of(await client.get(f"/api/streams/{sid}/replay/timeline"), 404, "not_found")
    await error_of(await client.delete(f"/api/streams/{sid}/replay", headers=seller.headers), 404, "not_found")
    assert sid not in [r["stream_id"] for r in (await (await client.get("/api/replays")).json())["items"]]
    assert (await (await client.get(f"/api/streams/{sid}")).json())["stream"]["record"] is True
    assert (await (await client.get(f"/api/streams/{sid}/media")).json())["backend"] == "livekit"

    # Retention hides an old one the same way, `record` untouched.
    old, _, _ = await ended_show(client, make)
    await db.execute("UPDATE streams SET ended_at = now() - interval '400 days' WHERE id = $1", U(old["id"]))
    assert await replays.expire_template_replays(db, days=90, batch=10) == 1
    await error_of(await client.get(f"/api/streams/{old['id']}/replay"), 404, "not_found")
    stored = await db.fetchrow("SELECT record, replay_discarded_at FROM streams WHERE id = $1", U(old["id"]))
    assert stored["record"] is True and stored["replay_discarded_at"] is not None
    assert await replays.expire_template_replays(db, days=90, batch=10) == 0


async def test_with_livekit_and_no_template_there_is_no_replay(aiohttp_client, settings, db):
    livekit = {"media_backend": "livekit", "livekit_api_key": "devkey", "livekit_api_secret": "s" * 32}
    client = await aiohttp_client(create_app(settings.model_copy(update=livekit)))
    stream, _, _ = await ended_show(client, Factory(client, db))
    await error_of(await client.get(f"/api/streams/{stream['id']}/replay"), 404, "not_found")
