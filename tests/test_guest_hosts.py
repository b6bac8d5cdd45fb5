"""Guest hosts: a seller's show hosted by another user for a commission (storage/functions/hosts.sql).

The invitation's rules, accept and decline, no start before the host accepted, the host running the room
(pin, flash sale, moderation, publishing) while the seller keeps the catalog, the commission reaching the
host's earnings and the host's payout request, with the books balanced."""

import uuid

import aiohttp
import pytest

from helpers import assert_books_balanced, error_of, top_up
from live_helpers import Viewer
from livehub import keys
from livehub.app import create_app
from smtp_server import body_html, body_text

PRICE = 1000
FLASH_PRICE = 600
BPS = 1500  # the host's 15%
# Accepting names the commission the invitation showed.
AT_BPS = {"host_commission_bps": BPS}


@pytest.fixture
async def client(backplane, aiohttp_client, settings, db):
    # From the test's settings (smtp_server, when a test asks for it first, points them at its server).
    settings = settings.model_copy(update={"tick_ms": 20, **backplane})
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


async def shop_with_product(make, stock: int = 20):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": f"G{make._next()}", "price_cents": PRICE, "stock": stock}])
    return seller, product


async def create(client, seller, product, **extra):
    body = {"title": "Guest night", "products": [{"product_id": product["id"]}], **extra}
    return await client.post("/api/streams", json=body, headers=seller.headers)


async def hosted_stream(client, seller, product, host, bps: int = BPS) -> dict:
    res = await create(client, seller, product, host_id=host.id, host_commission_bps=bps)
    assert res.status == 201, await res.text()
    return (await res.json())["stream"]


async def post(client, account, path: str, **kw):
    return await client.post(path, headers=account.headers, **kw)


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json() if status != 204 else {}


async def test_invitation_rules(client, make, db):
    seller, product = await shop_with_product(make)
    host = await make.user()
    # Commission bounds: 0 to 5,000 basis points.
    for bps in (-1, 5001):
        await error_of(await create(client, seller, product, host_id=host.id, host_commission_bps=bps), 422)
    # The host must exist, and be someone else than the shop's own user.
    await error_of(await create(client, seller, product, host_id=str(uuid.uuid4()), host_commission_bps=100), 404)
    error = await error_of(await create(client, seller, product, host_id=seller.id, host_commission_bps=100), 422)
    assert error["details"]["errors"][0]["loc"] == ["host_id"]
    # A commission needs a host.
    await error_of(await create(client, seller, product, host_commission_bps=100), 422)
    assert await db.fetchval("SELECT count(*) FROM streams WHERE seller_id = $1", uuid.UUID(seller.seller["id"])) == 0

    # Without a host the shop hosts its own show, as before.
    own = (await ok(await create(client, seller, product), 201))["stream"]
    assert own["host_id"] == seller.id and own["host_status"] == "accepted"

    stream = await hosted_stream(client, seller, product, host)
    assert stream["host_id"] == host.id and stream["host_status"] == "invited"
    sql = "SELECT host_commission_bps, host_status FROM streams WHERE id = $1"
    row = await db.fetchrow(sql, uuid.UUID(stream["id"]))
    assert (row["host_commission_bps"], row["host_status"]) == (BPS, "invited")
    # The host is told, stored in their inbox (and emailed by the job queue).
    notice = await db.fetchrow("SELECT kind, payload FROM notifications WHERE user_id = $1", uuid.UUID(host.id))
    assert notice["kind"] == "host_invited"
    assert notice["payload"]["stream_id"] == stream["id"] and notice["payload"]["host_commission_bps"] == BPS

    # The host sees the invitation, with the commission; nobody else does.
    hosting = (await ok(await client.get("/api/me/hosting", headers=host.headers)))["items"]
    assert [(i["stream"]["id"], i["host_status"], i["host_commission_bps"]) for i in hosting] == [
        (stream["id"], "invited", BPS)
    ]
    assert (await ok(await client.get("/api/me/hosting", headers=seller.headers)))["items"] == []

    # Only the shop changes the invitation; a change is a new invitation (notified again).
    stranger = await make.user()
    body = {"host_id": host.id, "host_commission_bps": 2000}
    await error_of(await post(client, stranger, f"/api/streams/{stream['id']}/host", json=body), 403)
    other_seller, _ = await shop_with_product(make)
    await error_of(await post(client, other_seller, f"/api/streams/{stream['id']}/host", json=body), 403)
    changed = (await ok(await post(client, seller, f"/api/streams/{stream['id']}/host", json=body)))["invitation"]
    assert (changed["host_status"], changed["host_commission_bps"], changed["host"]["id"]) == ("invited", 2000, host.id)
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", uuid.UUID(host.id)) == 2
    # The same invitation again is no new one.
    await ok(await post(client, seller, f"/api/streams/{stream['id']}/host", json=body))
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", uuid.UUID(host.id)) == 2

    # The seller may name their own user a moderator of a show a guest hosts (not the guest: they host it).
    res = await create(client, seller, product, host_id=host.id, host_commission_bps=0, moderators=[seller.id, host.id])
    moderated = (await ok(res, 201))["stream"]
    names = await db.fetch("SELECT user_id FROM stream_moderators WHERE stream_id = $1", uuid.UUID(moderated["id"]))
    assert [str(r["user_id"]) for r in names] == [seller.id]

    # Cancelled: the shop hosts it again, with no commission; the former host has nothing to answer.
    taken = (await ok(await client.delete(f"/api/streams/{stream['id']}/host", headers=seller.headers)))["invitation"]
    assert (taken["host"]["id"], taken["host_status"], taken["host_commission_bps"]) == (seller.id, "accepted", 0)
    await error_of(await post(client, host, f"/api/streams/{stream['id']}/host/accept", json=AT_BPS), 404)
    hosting = (await ok(await client.get("/api/me/hosting", headers=host.headers)))["items"]
    assert [i["stream"]["id"] for i in hosting] == [moderated["id"]]


async def test_accept_decline_and_no_start_before_accepting(client, make, db):
    seller, product = await shop_with_product(make)
    host, stranger = await make.user(), await make.user()
    stream = await hosted_stream(client, seller, product, host)
    sid = stream["id"]

    # Not accepted yet: the host's start is a conflict that says why; the seller is not the host.
    error = await error_of(await post(client, host, f"/api/streams/{sid}/start"), 409, "conflict")
    assert error["details"] == {"host_status": "invited"}
    await error_of(await post(client, seller, f"/api/streams/{sid}/start"), 403)
    # Only the invited host answers.
    await error_of(await post(client, stranger, f"/api/streams/{sid}/host/accept", json=AT_BPS), 404)
    await error_of(await post(client, seller, f"/api/streams/{sid}/host/accept", json=AT_BPS), 404)

    declined = (await ok(await post(client, host, f"/api/streams/{sid}/host/decline")))["invitation"]
    assert declined["host_status"] == "declined"
    answers = "SELECT payload FROM notifications WHERE user_id = $1 AND kind = 'host_answered' ORDER BY created_at"
    told = [r["payload"] for r in await db.fetch(answers, uuid.UUID(seller.id))]
    assert [(t["stream_id"], t["accepted"], t["host"]["id"]) for t in told] == [(sid, False, host.id)]
    error = await error_of(await post(client, host, f"/api/streams/{sid}/start"), 409, "conflict")
    assert error["details"] == {"host_status": "declined"}
    await error_of(await post(client, host, f"/api/streams/{sid}/host/accept", json=AT_BPS), 404)
    assert (await ok(await client.get("/api/me/hosting", headers=host.headers)))["items"] == []

    # Invited again, at a lower commission than the host saw before: accepting the old terms is refused with
    # the new ones, and nothing is accepted.
    await ok(
        await post(client, seller, f"/api/streams/{sid}/host", json={"host_id": host.id, "host_commission_bps": 100})
    )
    error = await error_of(await post(client, host, f"/api/streams/{sid}/host/accept", json=AT_BPS), 409, "conflict")
    assert error["details"] == {"host_commission_bps": 100}
    assert await db.fetchval("SELECT host_status FROM streams WHERE id = $1", uuid.UUID(sid)) == "invited"
    # Invited again at the first terms, accepted: the host starts the show.
    body = {"host_id": host.id, "host_commission_bps": BPS}
    await ok(await post(client, seller, f"/api/streams/{sid}/host", json=body))
    accepted = (await ok(await post(client, host, f"/api/streams/{sid}/host/accept", json=AT_BPS)))["invitation"]
    assert accepted["host_status"] == "accepted" and accepted["stream"]["host_status"] == "accepted"
    # The shop is told each answer once (accepting again changes nothing).
    await ok(await post(client, host, f"/api/streams/{sid}/host/accept", json=AT_BPS))
    told = [r["payload"]["accepted"] for r in await db.fetch(answers, uuid.UUID(seller.id))]
    assert told == [False, True]
    live = (await ok(await post(client, host, f"/api/streams/{sid}/start")))["stream"]
    assert live["status"] == "live"
    # Live: the host is settled, and there is nothing left to answer.
    await error_of(await post(client, seller, f"/api/streams/{sid}/host", json=body), 409, "conflict")
    await error_of(await client.delete(f"/api/streams/{sid}/host", headers=seller.headers), 409, "conflict")
    await error_of(await post(client, host, f"/api/streams/{sid}/host/decline"), 409, "conflict")
    # The shop may end its hosted show (as an admin may), and sees its numbers.
    await ok(await client.get(f"/api/streams/{sid}/stats", headers=seller.headers))
    await error_of(await client.get(f"/api/streams/{sid}/stats", headers=stranger.headers), 403)
    ended = (await ok(await post(client, seller, f"/api/streams/{sid}/end")))["stream"]
    assert ended["status"] == "ended"


async def test_the_host_runs_the_room_and_the_seller_keeps_the_catalog(client, make, db):
    seller, product = await shop_with_product(make)
    host, fan = await make.user(), await make.user()
    stream = await hosted_stream(client, seller, product, host)
    sid = stream["id"]
    variant = product["variants"][0]["id"]

    # Invited, not accepted: in the room the guest is nobody's host.
    early = await Viewer.connect(client, sid, host)
    assert early.welcome["you"]["role"] == "viewer"
    await ok(await post(client, host, f"/api/streams/{sid}/host/accept", json=AT_BPS))
    await ok(await post(client, host, f"/api/streams/{sid}/start"))
    # The open connection's role follows the accepted invitation, on the stream's change.
    await early.wait_for(lambda v: [e for e in v.of_type("stream_status") if e["stream"]["status"] == "live"])
    pinned = await early.request("pin", product_id=product["id"])
    assert pinned["type"] != "error", pinned
    await early.close()

    room_host = await Viewer.connect(client, sid, host)
    room_seller = await Viewer.connect(client, sid, seller)
    viewer = await Viewer.connect(client, sid, fan)
    assert room_host.welcome["you"]["role"] == "host"
    # The shop's own user does not run a hosted room (unless the host names it a moderator).
    assert room_seller.welcome["you"]["role"] == "viewer"
    refused = await room_seller.request("pin", product_id=product["id"])
    assert refused["type"] == "error" and refused["code"] == "forbidden"

    sale = await room_host.request("flash_sale", variant_id=variant, price_cents=FLASH_PRICE, quantity=3, duration_s=60)
    assert sale["type"] != "error", sale
    await viewer.wait_for(lambda v: v.of_type("flash_sale"))
    timeout = await room_host.request("moderate", action="timeout", user_id=fan.id, seconds=60)
    assert timeout["type"] != "error", timeout
    # The host names the seller a moderator: then the seller may moderate too.
    await ok(await post(client, host, f"/api/streams/{sid}/moderators", json={"user_id": seller.id}), 204)
    await room_seller.wait_for(lambda v: v.of_type("moderation"))
    ended = await room_seller.request("end_flash_sale")
    assert ended["type"] != "error", ended

    # The seller keeps the catalog; the host cannot edit the shop's products.
    res = await client.patch(f"/api/products/{product['id']}", json={"title": "Renamed"}, headers=host.headers)
    assert res.status in (403, 404), await res.text()
    res = await client.patch(f"/api/products/{product['id']}", json={"title": "Renamed"}, headers=seller.headers)
    assert res.status == 200, await res.text()

    # Video: the host publishes, the seller does not (the media routes' check, whatever the backend).
    media = await ok(await client.get(f"/api/streams/{sid}/media", headers=host.headers))
    seller_media = await ok(await client.get(f"/api/streams/{sid}/media", headers=seller.headers))
    assert (media["can_publish"], seller_media["can_publish"]) == (True, False)
    res = await post(client, seller, f"/api/streams/{sid}/publish", json={"type": "offer", "sdp": "v=0"})
    assert res.status in (403, 503), await res.text()
    if res.status == 403:
        assert (await res.json())["error"]["code"] == "forbidden"
    for v in (room_host, room_seller, viewer):
        await v.close()


async def test_a_sale_pays_the_host_commission_and_the_host_asks_for_a_payout(client, make, db):
    seller, product = await shop_with_product(make)
    host, buyer, admin = await make.user(), await make.user(), await make.admin()
    await top_up(client, buyer, 10_000)
    stream = await hosted_stream(client, seller, product, host)
    sid = stream["id"]
    await ok(await post(client, host, f"/api/streams/{sid}/host/accept", json=AT_BPS))
    await ok(await post(client, host, f"/api/streams/{sid}/start"))

    viewer = await Viewer.connect(client, sid, buyer)
    bought = await viewer.request("buy", variant_id=product["variants"][0]["id"], request_id="b1")
    assert bought["status"] == "ok", bought
    await viewer.close()

    fee = PRICE * client.app[keys.SETTINGS].platform_fee_bps // 10_000
    order = await db.fetchrow(
        "SELECT id, host_id, host_commission_cents, fee_cents FROM orders WHERE id = $1", uuid.UUID(bought["order_id"])
    )
    commission = PRICE * BPS // 10_000
    assert (str(order["host_id"]), order["host_commission_cents"]) == (host.id, commission)
    assert order["fee_cents"] == fee

    # The host, who has no shop, sees the commission as their earnings (pending until released).
    summary = await ok(await client.get("/api/seller/earnings", headers=host.headers))
    assert (summary["pending_cents"], summary["available_cents"]) == (commission, 0)
    assert [(e["role"], e["amount_cents"]) for e in summary["recent"]] == [("host", commission)]
    seller_summary = await ok(await client.get("/api/seller/earnings", headers=seller.headers))
    assert seller_summary["pending_cents"] == PRICE - order["fee_cents"] - commission
    await assert_books_balanced(db)

    # Released (the hold passed, or the buyer confirmed delivery): the host asks for a payout, which needs
    # two-factor sign-in as a seller's does.
    await db.execute("SELECT release_earnings($1)", order["id"])
    res = await post(client, host, "/api/seller/payouts", json={"amount_cents": commission})
    await error_of(res, 403)
    await make.two_factor(host)
    await make.payout_destination(host)  # and where it goes
    await error_of(await post(client, host, "/api/seller/payouts", json={"amount_cents": commission + 1}), 409)
    payout = (await ok(await post(client, host, "/api/seller/payouts", json={"amount_cents": commission}), 201))[
        "payout"
    ]
    assert (payout["user_id"], payout["amount_cents"], payout["status"]) == (host.id, commission, "requested")
    summary = await ok(await client.get("/api/seller/earnings", headers=host.headers))
    assert (summary["available_cents"], summary["payouts_requested_cents"]) == (0, commission)
    res = await client.post(f"/api/admin/payouts/{payout['id']}/approve", json={}, headers=admin.headers)
    assert res.status == 200, await res.text()
    await assert_books_balanced(db)


async def test_the_invited_host_is_emailed(smtp_server, client, make, settings):
    seller = await make.seller(shop_name="Lamp Corner")
    product = await make.product(seller, variants=[{"sku": f"M{make._next()}", "price_cents": PRICE, "stock": 5}])
    host = await make.user()
    stream = await hosted_stream(client, seller, product, host, bps=1250)
    msg = await smtp_server.wait_for(host.user["email"], subject="invites you to host")
    assert msg["Subject"] == "Lamp Corner invites you to host a show: Guest night"
    assert "12.50%" in body_text(msg) and "12.50%" in body_html(msg)
    link = f"{settings.public_url}/studio#hosting"
    assert link in body_text(msg) and f'href="{link}"' in body_html(msg)
    assert stream["id"]  # (the notification's payload names it: test_invitation_rules)
