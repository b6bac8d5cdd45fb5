"""Streams against a real PostgreSQL: scheduling, the live/ended state machine, browsing, stats after
real in-stream purchases, flash sales, pins and moderation (REST where there is a route, the domain
functions the live rooms call otherwise)."""

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from livehub.jsonx import loads
from livehub.shop import streams
from storage.db import encode_json
from tests.helpers import error_of

HOLD_S = 3600


def U(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


async def product(make, seller, *, price: int = 1000, stock: int = 10, variants: int = 1) -> dict:
    return await make.product(
        seller, variants=[{"sku": sku(), "price_cents": price, "stock": stock} for _ in range(variants)]
    )


async def create(client, account, products: list[dict], **extra):
    body = {"title": "Friday drop", "products": products, **extra}
    return await client.post("/api/streams", json=body, headers=account.headers)


async def new_stream(client, seller, products: list[dict], **extra) -> dict:
    res = await create(client, seller, products, **extra)
    assert res.status == 201, await res.text()
    return (await res.json())["stream"]


async def action(client, account, stream_id, verb: str):
    return await client.post(f"/api/streams/{stream_id}/{verb}", headers=account.headers)


async def live_stream(client, seller, products: list[dict], **extra) -> dict:
    stream = await new_stream(client, seller, products, **extra)
    res = await action(client, seller, stream["id"], "start")
    assert res.status == 200, await res.text()
    return (await res.json())["stream"]


async def refused(sqlstate: str, call) -> asyncpg.PostgresError:
    with pytest.raises(asyncpg.PostgresError) as info:
        await call
    assert info.value.sqlstate == sqlstate, info.value
    return info.value


async def fund(db, account, cents: int = 100_000) -> None:
    await db.execute("SELECT top_up($1, $2, 'test')", U(account.id), cents)


async def buy(db, variant_id, stream_id, buyers, *, quantity: int = 1, prefix: str = "r") -> list[str]:
    reqs = [{"request_id": f"{prefix}{i}", "buyer_id": str(b.id), "quantity": quantity} for i, b in enumerate(buyers)]
    out = await db.fetchval(
        "SELECT buy_batch($1, $2, $3::text::jsonb, 0, $4)::text",
        U(variant_id),
        U(stream_id),
        encode_json(reqs),
        HOLD_S,
    )
    return loads(out)["results"]


# -- creating ------------------------------------------------------------------------------------------


async def test_create_stream_features_own_products_in_order(client, make, db):
    seller = await make.seller(shop_name="Night Shop")
    mod = await make.user()
    first = await product(make, seller, price=1000, stock=7, variants=2)
    second = await product(make, seller, price=500)
    when = "2030-01-02T03:04:05+02:00"

    res = await create(
        client,
        seller,
        [
            {"product_id": second["id"], "per_buyer_limit": 2},
            {"product_id": first["id"], "live_price_cents": 800},
        ],
        scheduled_at=when,
        moderators=[mod.id, seller.id],
    )

    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    assert stream["status"] == "scheduled" and stream["title"] == "Friday drop"
    assert stream["seller"] == {"id": seller.seller["id"], "shop_name": "Night Shop"}
    assert stream["host_id"] == seller.id and stream["viewers"] == 0
    assert datetime.fromisoformat(stream["scheduled_at"]) == datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert stream["started_at"] is None and stream["ended_at"] is None and stream["pinned_product_id"] is None
    shown = stream["products"]
    assert [(p["id"], p["position"]) for p in shown] == [(second["id"], 0), (first["id"], 1)]
    assert (shown[0]["per_buyer_limit"], shown[0]["live_price_cents"]) == (2, None)
    assert (shown[1]["per_buyer_limit"], shown[1]["live_price_cents"]) == (None, 800)
    # The stream's price: its live price where set, else the list price.
    assert [(v["price_cents"], v["available"]) for v in shown[1]["variants"]] == [(800, 7), (800, 7)]
    assert [v["price_cents"] for v in shown[0]["variants"]] == [500]
    assert {v["id"] for v in shown[1]["variants"]} == {v["id"] for v in first["variants"]}
    # The host is not made a moderator of their own stream.
    assert await streams.role_in_stream(db, U(stream["id"]), U(mod.id)) == "moderator"
    assert await db.fetchval("SELECT count(*) FROM stream_moderators") == 1


async def test_create_refuses_what_is_not_the_sellers_to_show(client, make, db):
    seller = await make.seller()
    other = await make.seller()
    viewer = await make.user()
    pending = await make.seller(approved=False)
    own = await product(make, seller)
    foreign = await product(make, other)
    archived = await product(make, seller)
    res = await client.delete(f"/api/products/{archived['id']}", headers=seller.headers)
    assert res.status == 200

    await error_of(await create(client, viewer, [{"product_id": own["id"]}]), 403, "forbidden")
    await error_of(await create(client, pending, [{"product_id": own["id"]}]), 403, "forbidden")
    err = await error_of(await create(client, seller, [{"product_id": foreign["id"]}]), 422, "validation_error")
    assert err["details"] == {"product_id": foreign["id"]}
    err = await error_of(
        await create(client, seller, [{"product_id": own["id"]}, {"product_id": own["id"]}]), 422, "validation_error"
    )
    assert err["details"] == {"product_id": own["id"]}
    await error_of(await create(client, seller, [{"product_id": archived["id"]}]), 422, "validation_error")
    missing = str(uuid.uuid4())
    err = await error_of(await create(client, seller, [{"product_id": missing}]), 404, "not_found")
    assert err["details"] == {"product_id": missing}
    await error_of(
        await create(client, seller, [{"product_id": own["id"]}], moderators=[str(uuid.uuid4())]), 404, "not_found"
    )
    await error_of(
        await create(client, seller, [{"product_id": own["id"], "live_price_cents": -1}]), 422, "validation_error"
    )
    await error_of(
        await create(client, seller, [{"product_id": own["id"]}], scheduled_at="2030-01-01T00:00:00"),
        422,
        "validation_error",
    )
    # A refusal writes nothing, not even the stream row.
    assert await db.fetchval("SELECT count(*) FROM streams") == 0
    assert await db.fetchval("SELECT count(*) FROM stream_products") == 0


# -- the state machine ---------------------------------------------------------------------------------


async def test_start_and_end(client, make, db):
    seller = await make.seller()
    stranger = await make.user()
    admin = await make.admin()
    item = await product(make, seller)
    stream = await new_stream(client, seller, [{"product_id": item["id"]}])
    sid = stream["id"]

    await error_of(await action(client, stranger, sid, "start"), 403, "forbidden")
    await error_of(await action(client, admin, sid, "start"), 403, "forbidden")
    await error_of(await action(client, seller, sid, "end"), 409, "conflict")
    await error_of(await action(client, seller, str(uuid.uuid4()), "start"), 404, "not_found")
    assert (await client.post(f"/api/streams/{sid}/start")).status == 401

    res = await action(client, seller, sid, "start")
    assert res.status == 200, await res.text()
    live = (await res.json())["stream"]
    assert live["status"] == "live" and live["started_at"] is not None and live["ended_at"] is None
    assert await db.fetchval("SELECT started_at IS NOT NULL FROM streams WHERE id = $1", U(sid))
    await error_of(await action(client, seller, sid, "start"), 409, "conflict")
    await error_of(await action(client, stranger, sid, "end"), 403, "forbidden")

    res = await action(client, seller, sid, "end")
    assert res.status == 200, await res.text()
    ended = (await res.json())["stream"]
    assert ended["status"] == "ended" and ended["ended_at"] is not None
    await error_of(await action(client, seller, sid, "end"), 409, "conflict")
    await error_of(await action(client, seller, sid, "start"), 409, "conflict")

    # An admin may end anyone's live stream.
    other = await live_stream(client, seller, [{"product_id": item["id"]}])
    res = await action(client, admin, other["id"], "end")
    assert res.status == 200 and (await res.json())["stream"]["status"] == "ended"


async def test_one_live_stream_per_seller(client, make, db):
    seller = await make.seller()
    other_seller = await make.seller()
    item = await product(make, seller)
    first = await new_stream(client, seller, [{"product_id": item["id"]}])
    second = await new_stream(client, seller, [{"product_id": item["id"]}])
    elsewhere = await live_stream(client, other_seller, [])

    assert (await action(client, seller, first["id"], "start")).status == 200
    err = await error_of(await action(client, seller, second["id"], "start"), 409, "conflict")
    assert err["details"] == {"stream_id": first["id"]}
    assert await db.fetchval("SELECT status FROM streams WHERE id = $1", U(second["id"])) == "scheduled"
    assert elsewhere["status"] == "live"  # another shop's live stream is no obstacle

    assert (await action(client, seller, first["id"], "end")).status == 200
    assert (await action(client, seller, second["id"], "start")).status == 200
    # The database holds the rule too, whatever path a row takes.
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("UPDATE streams SET status = 'live' WHERE id = $1", U(first["id"]))


# -- browsing ------------------------------------------------------------------------------------------


async def test_list_orders_filters_and_pages(client, make, db):
    sellers = [await make.seller() for _ in range(4)]
    now = datetime.now(UTC)
    live = []
    for n, seller in enumerate(sellers[:3]):
        stream = await live_stream(client, seller, [])
        await db.execute(
            "UPDATE streams SET started_at = $2 WHERE id = $1", U(stream["id"]), now - timedelta(minutes=10 - n)
        )
        live.append(stream["id"])
    live.reverse()  # newest started first
    later = await new_stream(client, sellers[3], [], scheduled_at=(now + timedelta(days=2)).isoformat())
    sooner = await new_stream(client, sellers[3], [], scheduled_at=(now + timedelta(days=1)).isoformat())
    unscheduled = await new_stream(client, sellers[3], [])
    ended = await live_stream(client, sellers[3], [])
    assert (await action(client, sellers[3], ended["id"], "end")).status == 200

    async def page(query: str) -> dict:
        res = await client.get(f"/api/streams?{query}")
        assert res.status == 200, await res.text()
        return await res.json()

    first = await page("status=live&limit=2")
    assert [s["id"] for s in first["items"]] == live[:2]
    assert all(s["status"] == "live" and s["viewers"] == 0 for s in first["items"])
    assert first["next_cursor"] == live[1]
    rest = await page(f"status=live&limit=2&cursor={first['next_cursor']}")
    assert [s["id"] for s in rest["items"]] == live[2:] and rest["next_cursor"] is None

    scheduled = await page("status=scheduled")
    assert [s["id"] for s in scheduled["items"]] == [sooner["id"], later["id"], unscheduled["id"]]
    everything = await page("limit=100")
    assert [s["id"] for s in everything["items"]] == [*live, sooner["id"], later["id"], unscheduled["id"], ended["id"]]
    # Paging one at a time walks the same order.
    walked, cursor = [], None
    while True:
        one = await page("limit=1" + (f"&cursor={cursor}" if cursor else ""))
        walked += [s["id"] for s in one["items"]]
        if (cursor := one["next_cursor"]) is None:
            break
    assert walked == [s["id"] for s in everything["items"]]
    mine = await page(f"seller={sellers[3].seller['id']}")
    assert {s["id"] for s in mine["items"]} == {sooner["id"], later["id"], unscheduled["id"], ended["id"]}

    await error_of(await client.get("/api/streams?cursor=nope"), 422, "validation_error")
    await error_of(await client.get("/api/streams?status=paused"), 422, "validation_error")


async def test_detail_shows_the_running_flash_sale(client, make, db):
    seller = await make.seller()
    item = await product(make, seller, price=1000, stock=10)
    stream = await live_stream(client, seller, [{"product_id": item["id"], "live_price_cents": 900}])

    res = await client.get(f"/api/streams/{stream['id']}")
    assert res.status == 200, await res.text()
    shown = (await res.json())["stream"]
    assert shown["flash_sale"] is None and shown["viewers"] == 0 and shown["status"] == "live"
    assert shown["products"][0]["variants"][0]["price_cents"] == 900

    sale = await streams.start_flash_sale(
        db,
        U(stream["id"]),
        U(seller.id),
        variant_id=U(item["variants"][0]["id"]),
        price_cents=300,
        quantity=4,
        duration_s=60,
        per_buyer_limit=1,
    )
    shown = (await (await client.get(f"/api/streams/{stream['id']}")).json())["stream"]
    assert shown["flash_sale"]["id"] == sale["id"]
    assert {k: shown["flash_sale"][k] for k in ("price_cents", "quantity", "remaining", "ended")} == {
        "price_cents": 300,
        "quantity": 4,
        "remaining": 4,
        "ended": False,
    }
    await error_of(await client.get(f"/api/streams/{uuid.uuid4()}"), 404, "not_found")
    await error_of(await client.get("/api/streams/not-a-uuid"), 404, "not_found")


# -- stats ---------------------------------------------------------------------------------------------


async def test_stats_count_purchases_presence_and_chat(client, make, db):
    seller = await make.seller()
    admin = await make.admin()
    stranger = await make.user()
    buyers = [await make.user() for _ in range(4)]
    for b in buyers:
        await fund(db, b)
    a = await product(make, seller, price=1000, stock=10)
    b = await product(make, seller, price=1000, stock=10)
    stream = await live_stream(
        client, seller, [{"product_id": a["id"], "live_price_cents": 700}, {"product_id": b["id"]}]
    )
    sid = U(stream["id"])

    assert [r["status"] for r in await buy(db, a["variants"][0]["id"], sid, buyers[:3])] == ["ok"] * 3
    assert [r["status"] for r in await buy(db, b["variants"][0]["id"], sid, buyers[3:], quantity=2)] == ["ok"]
    cancelled = await db.fetchval(
        "SELECT o.id FROM orders o JOIN order_items oi ON oi.order_id = o.id WHERE oi.product_id = $1 LIMIT 1",
        U(a["id"]),
    )
    await db.execute("SELECT cancel_order($1, $2, true, 'changed my mind')", cancelled, U(admin.id))
    b_order = await db.fetchval("SELECT order_id FROM order_items WHERE product_id = $1", U(b["id"]))
    await db.execute("SELECT refund_order($1, $2, true, 300, 'scratched')", b_order, U(admin.id))

    await streams.record_presence(
        db, sid, viewers=5, viewer_keys=["u1", "u2"], clicks={U(a["id"]): 2}, reactions={"heart": 3}
    )
    await streams.record_presence(
        db,
        sid,
        viewers=3,
        viewer_keys=["u2", "u3", "u3"],
        clicks={U(a["id"]): 1, U(b["id"]): 4, uuid.uuid4(): 9},
        reactions={"heart": 2, "fire": 1},
    )
    await db.execute(
        """INSERT INTO chat_messages (stream_id, "offset", user_id, text, deleted_at)
           VALUES ($1, 1, $2, 'hi', NULL), ($1, 2, $2, 'buy!', NULL), ($1, 3, $2, 'spam', now())""",
        sid,
        U(buyers[0].id),
    )

    res = await client.get(f"/api/streams/{sid}/stats", headers=seller.headers)
    assert res.status == 200, await res.text()
    stats = await res.json()
    assert {k: stats[k] for k in ("stream_id", "status", "peak_viewers", "unique_viewers", "chat_messages")} == {
        "stream_id": str(sid),
        "status": "live",
        "peak_viewers": 5,
        "unique_viewers": 3,
        "chat_messages": 2,
    }
    assert stats["reactions"] == {"heart": 5, "fire": 1}
    assert stats["orders"] == 3  # the cancelled one does not count
    assert stats["revenue_cents"] == 2 * 700 + (2000 - 300)
    assert stats["products"] == [
        {"product_id": a["id"], "title": a["title"], "clicks": 3, "orders": 2, "units": 2, "revenue_cents": 1400},
        {"product_id": b["id"], "title": b["title"], "clicks": 4, "orders": 1, "units": 2, "revenue_cents": 1700},
    ]

    assert (await client.get(f"/api/streams/{sid}/stats", headers=admin.headers)).status == 200
    await error_of(await client.get(f"/api/streams/{sid}/stats", headers=stranger.headers), 403, "forbidden")
    await error_of(await client.get(f"/api/streams/{uuid.uuid4()}/stats", headers=seller.headers), 404, "not_found")
    # A report for a stream that does not exist is dropped, not an error in the room.
    await streams.record_presence(db, uuid.uuid4(), viewers=1, viewer_keys=["x"], clicks={}, reactions={"a": 1})


# -- flash sales and pins ------------------------------------------------------------------------------


@pytest.fixture
async def live(client, make, db):
    """A live stream featuring one product (stock 10, list 1000, live 700), its host, a moderator, a viewer."""
    seller = await make.seller()
    mod = await make.user()
    viewer = await make.user()
    item = await product(make, seller, price=1000, stock=10)
    stream = await live_stream(
        client, seller, [{"product_id": item["id"], "live_price_cents": 700}], moderators=[mod.id]
    )
    return {
        "stream": U(stream["id"]),
        "host": seller,
        "mod": mod,
        "viewer": viewer,
        "product": U(item["id"]),
        "variant": U(item["variants"][0]["id"]),
    }


async def test_flash_sale_rules(client, make, db, live):
    sid, host, mod = live["stream"], U(live["host"].id), U(live["mod"].id)
    args = {"variant_id": live["variant"], "price_cents": 300, "duration_s": 60, "per_buyer_limit": 2}

    await refused("LH403", streams.start_flash_sale(db, sid, U(live["viewer"].id), quantity=5, **args))
    await refused("LHOOS", streams.start_flash_sale(db, sid, host, quantity=11, **args))
    await refused("LH422", streams.start_flash_sale(db, sid, host, quantity=5, **{**args, "duration_s": 4}))
    await refused("LH422", streams.start_flash_sale(db, sid, host, quantity=5, **{**args, "duration_s": 3601}))
    await refused("LH422", streams.start_flash_sale(db, sid, host, quantity=0, **args))
    await refused("LH422", streams.start_flash_sale(db, sid, host, quantity=5, **{**args, "price_cents": -1}))
    other = await product(make, live["host"])
    unfeatured = {**args, "variant_id": U(other["variants"][0]["id"])}
    await refused("LH404", streams.start_flash_sale(db, sid, host, quantity=5, **unfeatured))

    sale = await streams.start_flash_sale(db, sid, mod, quantity=10, **args)
    assert {k: sale[k] for k in ("variant_id", "product_id", "price_cents", "quantity", "remaining")} == {
        "variant_id": str(live["variant"]),
        "product_id": str(live["product"]),
        "price_cents": 300,
        "quantity": 10,
        "remaining": 10,
    }
    assert sale["per_buyer_limit"] == 2 and sale["ended"] is False and sale["ended_reason"] is None
    starts, ends = datetime.fromisoformat(sale["starts_at"]), datetime.fromisoformat(sale["ends_at"])
    assert ends - starts == timedelta(seconds=60)
    assert await db.fetchval("SELECT per_buyer_limit FROM flash_sales WHERE id = $1", U(sale["id"])) == 2
    await refused("LH409", streams.start_flash_sale(db, sid, host, quantity=1, **args))
    assert (await streams.room_snapshot(db, sid))["flash_sale"] == sale

    ended = await streams.end_flash_sale(db, U(sale["id"]), "time")
    assert ended["ended"] is True and ended["remaining"] == 0 and ended["ended_reason"] == "time"
    assert await streams.end_flash_sale(db, U(sale["id"]), "host") is None
    assert await db.fetchval("SELECT ended_reason FROM flash_sales WHERE id = $1", U(sale["id"])) == "time"
    await refused("LH422", streams.end_flash_sale(db, U(sale["id"]), "bored"))
    assert (await streams.room_snapshot(db, sid))["flash_sale"] is None

    # The next one may start; the host ends it; ending again finds nothing running.
    second = await streams.start_flash_sale(db, sid, host, quantity=1, **args)
    await refused("LH403", streams.end_flash_sale_by_host(db, sid, U(live["viewer"].id)))
    by_host = await streams.end_flash_sale_by_host(db, sid, host)
    assert by_host["id"] == second["id"] and by_host["ended_reason"] == "host"
    assert await streams.end_flash_sale_by_host(db, sid, host) is None

    # One past its end whose timer never fired does not block the next; it ended on time.
    stale = await streams.start_flash_sale(db, sid, host, quantity=1, **args)
    await db.execute("UPDATE flash_sales SET ends_at = now() - interval '1 second' WHERE id = $1", U(stale["id"]))
    third = await streams.start_flash_sale(db, sid, host, quantity=2, **args)
    assert await db.fetchval("SELECT ended_reason FROM flash_sales WHERE id = $1", U(stale["id"])) == "time"

    # Ending the stream ends the running sale.
    res = await action(client, live["host"], sid, "end")
    assert res.status == 200
    assert await db.fetchval("SELECT ended_reason FROM flash_sales WHERE id = $1", U(third["id"])) == "stream_ended"
    await refused("LH409", streams.start_flash_sale(db, sid, host, quantity=1, **args))


async def test_a_flash_sale_is_below_the_price_in_the_stream(client, make, db, live):
    """Viewers see a flash price struck through against the stream's price: one not below it would be a
    fake discount. The stream's live price (700 here) is the one it must beat, not the list price (1000)."""
    sid, host = live["stream"], U(live["host"].id)
    args = {"variant_id": live["variant"], "quantity": 1, "duration_s": 60, "per_buyer_limit": None}
    for price in (701, 700, 1000, 5000):
        refusal = await refused("LH422", streams.start_flash_sale(db, sid, host, price_cents=price, **args))
        assert "below" in refusal.args[0]
        details = loads(refusal.detail)
        assert details["price_cents"] == 700
        assert details["errors"][0]["loc"] == ["price_cents"]
    assert await db.fetchval("SELECT count(*) FROM flash_sales WHERE stream_id = $1", sid) == 0
    sale = await streams.start_flash_sale(db, sid, host, price_cents=699, **args)
    assert sale["price_cents"] == 699

    # Without a live price, the list price is the one to beat.
    seller = await make.seller()
    item = await product(make, seller, price=1000, stock=5)
    other = U((await live_stream(client, seller, [{"product_id": item["id"]}]))["id"])
    plain = {**args, "variant_id": U(item["variants"][0]["id"])}
    await refused("LH422", streams.start_flash_sale(db, other, U(seller.id), price_cents=1000, **plain))
    assert (await streams.start_flash_sale(db, other, U(seller.id), price_cents=999, **plain))["price_cents"] == 999


async def test_a_sold_out_flash_sale_ends_as_sold_out(client, make, db, live):
    sid = live["stream"]
    sale = await streams.start_flash_sale(
        db,
        sid,
        U(live["host"].id),
        variant_id=live["variant"],
        price_cents=300,
        quantity=2,
        duration_s=60,
        per_buyer_limit=None,
    )
    buyers = [await make.user() for _ in range(3)]
    for b in buyers:
        await fund(db, b)
    assert [r["status"] for r in await buy(db, live["variant"], sid, buyers)] == ["ok", "ok", "sold_out"]
    row = await db.fetchrow("SELECT ended_at, ended_reason FROM flash_sales WHERE id = $1", U(sale["id"]))
    assert row["ended_at"] is not None and row["ended_reason"] == "sold_out"
    assert await streams.end_flash_sale(db, U(sale["id"]), "time") is None


async def test_pin_product(client, make, db, live):
    sid, host = live["stream"], U(live["host"].id)
    await refused("LH403", streams.pin_product(db, sid, U(live["viewer"].id), live["product"]))
    await refused("LH404", streams.pin_product(db, sid, host, uuid.uuid4()))

    pinned = await streams.pin_product(db, sid, U(live["mod"].id), live["product"])
    assert pinned["id"] == str(live["product"]) and pinned["variants"][0]["price_cents"] == 700
    assert (await streams.get_stream(db, sid))["pinned_product_id"] == str(live["product"])
    assert await streams.pin_product(db, sid, host, None) is None
    assert (await streams.get_stream(db, sid))["pinned_product_id"] is None

    await streams.pin_product(db, sid, host, live["product"])
    assert (await action(client, live["host"], sid, "end")).status == 200
    assert (await streams.get_stream(db, sid))["pinned_product_id"] is None
    await refused("LH409", streams.pin_product(db, sid, host, live["product"]))


# -- moderation ----------------------------------------------------------------------------------------


async def test_roles_and_moderators(client, make, db, live):
    sid = live["stream"]
    host, mod, viewer = live["host"], live["mod"], live["viewer"]
    admin = await make.admin()
    newcomer = await make.user()

    assert await streams.role_in_stream(db, sid, U(host.id)) == "host"
    assert await streams.role_in_stream(db, sid, U(mod.id)) == "moderator"
    assert await streams.role_in_stream(db, sid, U(admin.id)) == "moderator"
    assert await streams.role_in_stream(db, sid, U(viewer.id)) == "viewer"
    assert await streams.role_in_stream(db, sid, None) == "viewer"
    await refused("LH404", streams.role_in_stream(db, uuid.uuid4(), U(viewer.id)))

    path = f"/api/streams/{sid}/moderators"
    await error_of(await client.post(path, json={"user_id": newcomer.id}, headers=mod.headers), 403, "forbidden")
    await error_of(await client.post(path, json={"user_id": str(uuid.uuid4())}, headers=host.headers), 404)
    await error_of(await client.post(path, json={"user_id": host.id}, headers=host.headers), 422)
    res = await client.post(path, json={"user_id": newcomer.id}, headers=host.headers)
    assert res.status == 204, await res.text()
    assert await streams.role_in_stream(db, sid, U(newcomer.id)) == "moderator"
    snapshot = await streams.room_snapshot(db, sid)
    assert sorted(snapshot["moderators"]) == sorted([mod.id, newcomer.id])

    res = await client.delete(f"{path}/{newcomer.id}", headers=mod.headers)
    await error_of(res, 403, "forbidden")
    res = await client.delete(f"{path}/{newcomer.id}", headers=host.headers)
    assert res.status == 204
    assert await streams.role_in_stream(db, sid, U(newcomer.id)) == "viewer"


async def test_ban_timeout_slow_mode_and_blocked_words(client, make, db, live):
    sid = live["stream"]
    host, mod, viewer = U(live["host"].id), U(live["mod"].id), U(live["viewer"].id)
    other_viewer = U((await make.user()).id)
    admin = U((await make.admin()).id)
    # Another stream of the same shop: a ban covers it too.
    sibling = await new_stream(client, live["host"], [])

    await refused("LH403", streams.ban_user(db, sid, other_viewer, viewer, None))
    for protected in (host, mod, admin):
        await refused("LH403", streams.ban_user(db, sid, mod, protected, None))
    await refused("LH404", streams.ban_user(db, sid, mod, uuid.uuid4(), None))
    await streams.ban_user(db, sid, mod, viewer, "spam")
    assert await streams.is_banned(db, sid, viewer)
    assert await streams.is_banned(db, U(sibling["id"]), viewer)
    assert not await streams.is_banned(db, sid, other_viewer)
    assert tuple(await db.fetchrow("SELECT banned_by, reason FROM seller_bans")) == (mod, "spam")
    await streams.unban_user(db, sid, host, viewer)
    assert not await streams.is_banned(db, U(sibling["id"]), viewer)

    await refused("LH422", streams.timeout_user(db, sid, mod, viewer, 0))
    await refused("LH422", streams.timeout_user(db, sid, mod, viewer, 86401))
    await refused("LH403", streams.timeout_user(db, sid, mod, host, 60))
    before = await db.fetchval("SELECT now()")
    until = await streams.timeout_user(db, sid, mod, viewer, 60)
    after = await db.fetchval("SELECT now()")
    assert before + timedelta(seconds=60) <= until <= after + timedelta(seconds=60)
    later = await streams.timeout_user(db, sid, host, viewer, 600)
    assert later > until
    await db.execute(
        "INSERT INTO stream_timeouts (stream_id, user_id, until) VALUES ($1, $2, now() - interval '1 minute')",
        sid,
        other_viewer,
    )
    timeouts = (await streams.room_snapshot(db, sid))["timeouts"]
    assert list(timeouts) == [str(viewer)]
    assert datetime.fromisoformat(timeouts[str(viewer)]) == later

    await refused("LH403", streams.set_slow_mode(db, sid, viewer, 5))
    await refused("LH422", streams.set_slow_mode(db, sid, host, 3601))
    await refused("LH422", streams.set_slow_mode(db, sid, host, -1))
    await streams.set_slow_mode(db, sid, mod, 30)
    assert (await streams.room_snapshot(db, sid))["slow_mode_s"] == 30

    words = await streams.set_blocked_words(db, sid, mod, [" Spam ", "SPAM", "scam\t", "", "   ", "Free Money"])
    assert words == ["free money", "scam", "spam"]
    assert (await streams.room_snapshot(db, sid))["blocked_words"] == words
    await refused("LH422", streams.set_blocked_words(db, sid, mod, ["x" * 51]))
    await refused("LH422", streams.set_blocked_words(db, sid, mod, [f"w{i}" for i in range(201)]))
    await refused("LH403", streams.set_blocked_words(db, sid, viewer, ["nope"]))
    assert len(await streams.set_blocked_words(db, sid, mod, [f"W{i} " for i in range(200)])) == 200
    assert await streams.set_blocked_words(db, sid, mod, []) == []
