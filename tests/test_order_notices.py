"""Notifications of what happens to your orders and money, against a real SMTP server (aiosmtpd) and real
websockets: each is stored in the transaction of its cause, pushed on /ws/me, and emailed unless turned
off; in-stream buys queue one job per batch; wallet and earnings balances are pushed; a purchase that
rolls back queues nothing."""

import asyncio
import secrets
import time
import uuid

import aiohttp

from conftest import Factory, settings_for
from live_helpers import Viewer, live_show
from livehub import jobs, keys
from livehub.app import create_app
from livehub.jsonx import loads
from smtp_server import body_html, body_text
from tests.helpers import import_codes, top_up

WAIT_S = 20.0
PUBLIC = "http://127.0.0.1:8080"  # LIVEHUB_PUBLIC_URL's default: the links in the emails


def U(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


class MeSocket:
    """A signed-in user's /ws/me socket, keeping every frame it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.frames: list[dict] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, client, account) -> "MeSocket":
        me = cls(await client.ws_connect("/ws/me", headers=account.headers))
        await me.wait_for(lambda f: f["type"] == "welcome")
        return me

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            self.frames.append(loads(msg.data))
            self._changed.set()

    async def wait_for(self, predicate, timeout: float = WAIT_S) -> dict:
        """The first frame for which predicate(frame) holds, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not (found := [f for f in self.frames if predicate(f)]):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; frames: {self.frames[-5:]}"
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass
        return found[0]

    async def notification(self, kind: str) -> dict:
        frame = await self.wait_for(lambda f: f["type"] == "notification" and f["notification"]["kind"] == kind)
        return frame["notification"]

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def stored(db, user_id, kind: str) -> list[dict]:
    rows = await db.fetch(
        "SELECT payload FROM notifications WHERE user_id = $1 AND kind = $2 ORDER BY created_at", U(user_id), kind
    )
    return [r["payload"] for r in rows]


async def buy(client, buyer, variant_id, quantity: int = 1) -> dict:
    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": variant_id, "quantity": quantity}]}, headers=buyer.headers
    )
    assert res.status == 201, await res.text()
    return (await res.json())["order"]


async def post_ok(client, path: str, account, body: dict | None = None) -> dict:
    res = await client.post(path, json=body if body is not None else {}, headers=account.headers)
    assert res.status in (200, 201), await res.text()
    return await res.json()


async def wallet_balance(client, account) -> int:
    res = await client.get("/api/wallet", headers=account.headers)
    assert res.status == 200, await res.text()
    return (await res.json())["balance_cents"]


# -- order placed -----------------------------------------------------------------------------------------


async def test_checkout_confirmation_lists_the_codes_stored_pushed_and_emailed(smtp_server, client, make, db):
    seller = await make.seller(shop_name="Key Shop")
    buyer = await make.user()
    product = await make.product(
        seller, title="Game key", variants=[{"sku": "KEY-1", "price_cents": 1500, "stock": 0, "digital": True}]
    )
    vid = product["variants"][0]["id"]
    await import_codes(client, seller, vid, ["AAAA-1111", "BBBB-2222", "CCCC-3333"])
    await top_up(client, buyer, 5000)
    me = await MeSocket.open(client, buyer)
    try:
        order = await buy(client, buyer, vid, 2)
        codes = order["items"][0]["codes"]
        assert len(codes) == 2

        # Stored in the purchase's transaction: there the moment the order is.
        (payload,) = await stored(db, buyer.id, "order_placed")
        assert payload["order_id"] == order["id"] and payload["number"] == order["number"]
        assert payload["total_cents"] == 3000 and payload["shop_name"] == "Key Shop"
        assert payload["items"] == [
            {"title": "Game key", "sku": "KEY-1", "quantity": 2, "unit_price_cents": 1500, "codes": sorted(codes)}
        ]

        pushed = await me.notification("order_placed")
        assert pushed["payload"]["order_id"] == order["id"] and pushed["read_at"] is None
        wallet = await me.wait_for(lambda f: f["type"] == "wallet" and f["reason"] == "purchase")
        assert wallet == {"type": "wallet", "balance_cents": 2000, "reason": "purchase"}

        mail = await smtp_server.wait_for(buyer.user["email"], subject=order["number"])
        text, html = body_text(mail), body_html(mail)
        for code in codes:
            assert code in text and code in html
        assert f"{PUBLIC}/orders/{order['id']}" in text and f"{PUBLIC}/orders/{order['id']}" in html
        assert "Key Shop" in str(mail["Subject"])
    finally:
        await me.close()


async def test_in_stream_buy_is_confirmed_with_its_codes_by_the_batch_job(smtp_server, client, make, db):
    show = await live_show(make, products=1, stock=5)
    key = await make.product(
        show.seller, title="Live key", variants=[{"sku": "LIVE-KEY", "price_cents": 700, "stock": 0, "digital": True}]
    )
    await db.execute("INSERT INTO stream_products (stream_id, product_id) VALUES ($1, $2)", U(show.id), U(key["id"]))
    vid = key["variants"][0]["id"]
    await import_codes(client, show.seller, vid, ["LIVE-0001", "LIVE-0002", "LIVE-0003"])
    buyer = await make.user()
    await top_up(client, buyer, 2000)
    viewer = await Viewer.connect(client, show.id, buyer)
    me = await MeSocket.open(client, buyer)
    try:
        reply = await viewer.request("buy", variant_id=vid, quantity=1)
        assert reply["type"] == "purchase" and reply["status"] == "ok", reply
        code = await db.fetchval("SELECT code FROM digital_units WHERE order_id = $1", U(reply["order_id"]))

        pushed = await me.notification("order_placed")
        assert pushed["payload"]["order_id"] == reply["order_id"]
        assert pushed["payload"]["items"][0]["codes"] == [code]
        assert pushed["payload"]["stream_id"] == show.id
        # The wallet push reaches the stream socket too.
        wallet = await viewer.wait_for(
            lambda v: next((f for f in v.frames if f["type"] == "wallet" and f["reason"] == "purchase"), None)
        )
        assert wallet == {"type": "wallet", "balance_cents": 1300, "reason": "purchase"}
        mail = await smtp_server.wait_for(buyer.user["email"], subject=reply["order_number"])
        assert code in body_text(mail) and code in body_html(mail)
        assert len(await stored(db, buyer.id, "order_placed")) == 1
    finally:
        await me.close()
        await viewer.close()


async def test_buy_batch_queues_one_job_for_the_whole_batch_and_writes_no_notification(client, make, db):
    show = await live_show(make, products=1, stock=10)
    buyers = [await make.user() for _ in range(3)]
    for b in buyers:
        await top_up(client, b, 5000)
    requests = [{"request_id": f"r{i}", "buyer_id": b.id, "quantity": 1} for i, b in enumerate(buyers)]
    batch = db.transaction()  # rolled back at the end: the queue's worker never sees it
    await batch.start()
    try:
        before = await db.fetchval("SELECT count(*) FROM notifications")
        result = await db.fetchval("SELECT buy_batch($1, $2, $3, 1000, 3600)", U(show.variant()), U(show.id), requests)
        assert [r["status"] for r in result["results"]] == ["ok"] * 3
        order_ids = [r["order_id"] for r in result["results"]]
        # Nothing written per buyer on the purchase's path: one job names every order of the batch.
        assert await db.fetchval("SELECT count(*) FROM notifications") == before
        queued = await db.fetch(
            "SELECT convert_from(payload, 'UTF8')::jsonb AS p FROM pgqueuer WHERE entrypoint = 'orders_placed'"
        )
        assert len(queued) == 1 and sorted(queued[0]["p"]["order_ids"]) == sorted(order_ids)
        # Its handler's function, run twice (a retry), tells each buyer once, with a delivery job each.
        for _ in range(2):
            await db.execute("SELECT notify_orders_placed($1::uuid[])", [U(i) for i in order_ids])
        for b in buyers:
            (payload,) = await stored(db, b.id, "order_placed")
            assert payload["order_id"] in order_ids and payload["stream_id"] == show.id
    finally:
        await batch.rollback()


async def delivered(db, notification_id: str, timeout: float = WAIT_S) -> None:
    """Wait (a bounded poll) until the notification's deliver_notification job has left the queue: done."""
    deadline = time.monotonic() + timeout
    while await db.fetchval(
        """SELECT count(*) FROM pgqueuer WHERE entrypoint = 'deliver_notification'
              AND convert_from(payload, 'UTF8')::jsonb->>'notification_id' = $1""",
        notification_id,
    ):
        assert time.monotonic() < deadline, f"notification {notification_id} still being delivered"
        await asyncio.sleep(0.05)


async def queued_since(db, mark: int) -> list[str]:
    """The jobs queued (their entrypoints) since the queue log's row `mark`."""
    rows = await db.fetch("SELECT entrypoint FROM pgqueuer_log WHERE id > $1 AND status = 'queued' ORDER BY id", mark)
    return [r["entrypoint"] for r in rows]


async def test_a_purchase_that_rolls_back_queues_nothing(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    product = await make.product(seller, variants=[{"sku": "DEAR", "price_cents": 9000, "stock": 5}])
    show = await live_show(make, products=1, stock=5, price=9000)
    await top_up(client, buyer, 100)
    mark = await db.fetchval("SELECT coalesce(max(id), 0) FROM pgqueuer_log")

    res = await client.post(
        "/api/orders", json={"items": [{"variant_id": product["variants"][0]["id"]}]}, headers=buyer.headers
    )
    assert res.status == 409, await res.text()
    assert (await res.json())["error"]["code"] == "insufficient_funds"
    # In a stream, through the batch: the buyer cannot pay, so nothing is written and no job queued.
    result = await db.fetchval(
        "SELECT buy_batch($1, $2, $3, 1000, 3600)",
        U(show.variant()),
        U(show.id),
        [{"request_id": "poor", "buyer_id": buyer.id, "quantity": 1}],
    )
    assert result["results"][0]["status"] == "insufficient_funds"

    assert await queued_since(db, mark) == []
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE user_id = $1", U(buyer.id)) == 0
    assert await db.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1", U(buyer.id)) == 0


# -- after the purchase -----------------------------------------------------------------------------------


class Shop:
    """A seller (two-factor on: it may ask for payouts) selling a physical product, a funded buyer, an admin."""

    @classmethod
    async def open(cls, client, make) -> "Shop":
        self = cls()
        self.client = client
        self.admin = await make.admin()
        self.seller = await make.seller(shop_name="Parcel Shop", two_factor=True)
        self.buyer = await make.user()
        self.product = await make.product(
            self.seller, title="Teapot", variants=[{"sku": "POT-1", "price_cents": 1000, "stock": 10}]
        )
        await top_up(client, self.buyer, 10_000)
        return self

    async def order(self) -> dict:
        return await buy(self.client, self.buyer, self.product["variants"][0]["id"])

    async def act(self, account, order: dict, action: str, body: dict | None = None) -> dict:
        return (await post_ok(self.client, f"/api/orders/{order['id']}/{action}", account, body))["order"]


TRACKING = {
    "carrier": "Parcel Co",
    "tracking_number": "PC123456789",
    "tracking_url": "https://track.example/PC123456789",
}


async def test_shipped_with_tracking_and_delivered(smtp_server, client, make, db):
    shop = await Shop.open(client, make)
    order = await shop.order()
    me = await MeSocket.open(client, shop.buyer)
    try:
        await shop.act(shop.seller, order, "ship", TRACKING)
        (payload,) = await stored(db, shop.buyer.id, "order_shipped")
        assert {k: payload[k] for k in TRACKING} == TRACKING and payload["order_id"] == order["id"]
        assert (await me.notification("order_shipped"))["payload"]["tracking_number"] == "PC123456789"
        mail = await smtp_server.wait_for(shop.buyer.user["email"], subject="shipped")
        text = body_text(mail)
        assert "Parcel Co" in text and "PC123456789" in text and TRACKING["tracking_url"] in text
        assert f"{PUBLIC}/orders/{order['id']}" in text
        assert TRACKING["tracking_url"] in body_html(mail)

        # The seller marking it delivered tells the buyer; the buyer confirming it themself does not.
        await shop.act(shop.seller, order, "deliver")
        assert len(await stored(db, shop.buyer.id, "order_delivered")) == 1
        mail = await smtp_server.wait_for(shop.buyer.user["email"], subject="delivered")
        assert f"{PUBLIC}/orders/{order['id']}" in body_text(mail)
        other = await shop.order()
        await shop.act(shop.seller, other, "ship", TRACKING)
        await shop.act(shop.buyer, other, "deliver")
        assert len(await stored(db, shop.buyer.id, "order_delivered")) == 1
    finally:
        await me.close()


async def test_refund_is_told_and_the_wallet_pushed(smtp_server, client, make, db):
    shop = await Shop.open(client, make)
    order = await shop.order()
    me = await MeSocket.open(client, shop.buyer)
    try:
        await shop.act(shop.seller, order, "refund", {"amount_cents": 400, "reason": "chipped lid"})
        (payload,) = await stored(db, shop.buyer.id, "order_refunded")
        assert payload["amount_cents"] == 400 and payload["reason"] == "chipped lid" and not payload["cancelled"]
        assert (await me.notification("order_refunded"))["payload"]["amount_cents"] == 400
        wallet = await me.wait_for(lambda f: f["type"] == "wallet" and f["reason"] == "refund")
        assert wallet["balance_cents"] == 10_000 - 1000 + 400 == await wallet_balance(client, shop.buyer)
        mail = await smtp_server.wait_for(shop.buyer.user["email"], subject="refunded")
        assert "$4.00" in str(mail["Subject"]) and "chipped lid" in body_text(mail)
    finally:
        await me.close()


async def test_return_decisions_are_told(smtp_server, client, make, db):
    shop = await Shop.open(client, make)
    kept, returned = await shop.order(), await shop.order()
    for order in (kept, returned):
        await shop.act(shop.seller, order, "ship", TRACKING)
        await shop.act(shop.buyer, order, "deliver")
        await post_ok(client, f"/api/orders/{order['id']}/return", shop.buyer, {"reason": "too small"})
    await shop.act(shop.seller, kept, "return/reject", {"reason": "used already"})
    await shop.act(shop.seller, returned, "return/approve")

    decided = {p["order_id"]: p for p in await stored(db, shop.buyer.id, "return_decided")}
    assert decided[kept["id"]]["approved"] is False and decided[kept["id"]]["reason"] == "used already"
    assert decided[returned["id"]]["approved"] is True and decided[returned["id"]]["refund_cents"] == 1000
    email = shop.buyer.user["email"]
    refused = await smtp_server.wait_for(email, subject="refused")
    assert kept["number"] in str(refused["Subject"]) and "used already" in body_text(refused)
    approved = await smtp_server.wait_for(email, subject="approved")
    assert returned["number"] in str(approved["Subject"]) and "$10.00" in body_text(approved)


async def test_payout_decisions_are_told(smtp_server, client, make, db):
    shop = await Shop.open(client, make)
    order = await shop.order()
    await shop.act(shop.seller, order, "ship", TRACKING)
    await shop.act(shop.buyer, order, "deliver")  # earnings available at once: 900
    payouts = []
    for amount in (300, 600):
        res = await client.post("/api/seller/payouts", json={"amount_cents": amount}, headers=shop.seller.headers)
        assert res.status == 201, await res.text()
        payouts.append((await res.json())["payout"])
    me = await MeSocket.open(client, shop.seller)
    try:
        await post_ok(client, f"/api/admin/payouts/{payouts[0]['id']}/reject", shop.admin, {"reason": "check your ID"})
        # The refused 300 is available again: pushed. (A push queued by the delivery before may still arrive
        # first on a busy machine, carrying the balance when its job ran: 0 after the two requests.)
        pushed = await me.wait_for(lambda f: f["type"] == "earnings" and f["available_cents"] == 300)
        assert pushed == {"type": "earnings", "available_cents": 300}
    finally:
        await me.close()
    await post_ok(client, f"/api/admin/payouts/{payouts[1]['id']}/approve", shop.admin)

    decided = {p["payout_id"]: p for p in await stored(db, shop.seller.id, "payout_decided")}
    assert (decided[payouts[0]["id"]]["approved"], decided[payouts[0]["id"]]["reason"]) == (False, "check your ID")
    assert (decided[payouts[1]["id"]]["approved"], decided[payouts[1]["id"]]["amount_cents"]) == (True, 600)
    email = shop.seller.user["email"]
    rejected = await smtp_server.wait_for(email, subject="refused")
    assert "$3.00" in str(rejected["Subject"]) and "check your ID" in body_text(rejected)
    sent = await smtp_server.wait_for(email, subject="sent")
    assert "$6.00" in str(sent["Subject"]) and f"{PUBLIC}/seller#earnings" in body_text(sent)


async def test_seller_applications_decided_are_told(smtp_server, client, make, db):
    admin = await make.admin()
    approved = await make.seller(approved=False, shop_name="Yes Shop")
    refused = await make.seller(approved=False, shop_name="No Shop")
    await post_ok(client, f"/api/admin/sellers/{approved.seller['id']}/approve", admin)
    await post_ok(client, f"/api/admin/sellers/{refused.seller['id']}/suspend", admin)

    assert [p["approved"] for p in await stored(db, approved.id, "seller_application_decided")] == [True]
    assert [p["status"] for p in await stored(db, refused.id, "seller_application_decided")] == ["suspended"]
    yes = await smtp_server.wait_for(approved.user["email"], subject="Yes Shop")
    assert "approved" in str(yes["Subject"]) and f"{PUBLIC}/seller" in body_text(yes)
    no = await smtp_server.wait_for(refused.user["email"], subject="No Shop")
    assert "not approved" in str(no["Subject"])
    # Suspending a shop later, or reinstating it, is no application decided.
    await post_ok(client, f"/api/admin/sellers/{approved.seller['id']}/suspend", admin)
    await post_ok(client, f"/api/admin/sellers/{approved.seller['id']}/approve", admin)
    assert len(await stored(db, approved.id, "seller_application_decided")) == 1


async def test_a_review_reply_is_told_to_the_reviewer(smtp_server, client, make, db):
    shop = await Shop.open(client, make)
    order = await shop.order()
    await shop.act(shop.seller, order, "ship", TRACKING)
    await shop.act(shop.buyer, order, "deliver")
    review = (
        await post_ok(
            client,
            f"/api/products/{shop.product['id']}/reviews",
            shop.buyer,
            {"order_id": order["id"], "rating": 4, "text": "Pours well"},
        )
    )["review"]
    await post_ok(
        client,
        f"/api/products/{shop.product['id']}/reviews/{review['id']}/reply",
        shop.seller,
        {"text": "Thank you, enjoy your tea!"},
    )
    (payload,) = await stored(db, shop.buyer.id, "review_reply")
    assert payload["review_id"] == review["id"] and payload["reply"] == "Thank you, enjoy your tea!"
    mail = await smtp_server.wait_for(shop.buyer.user["email"], subject="answered your review")
    assert "Parcel Shop" in str(mail["Subject"]) and "enjoy your tea" in body_text(mail)
    assert f"{PUBLIC}/products/{shop.product['id']}" in body_text(mail)


async def test_earnings_available_once_per_earner_and_pushed(smtp_server, client, make, db):
    shop = await Shop.open(client, make)
    for _ in range(2):
        await shop.order()
    # Their hold is over (one app only: the push must reach this app's sockets).
    await db.execute("UPDATE earnings SET available_after = now() - interval '1 second'")
    me = await MeSocket.open(client, shop.seller)
    try:
        # One run of the release schedule (each minute on one node), now.
        await jobs.SCHEDULES["release_earnings"].handler(client.server.app[keys.JOBS].context())
        (payload,) = await stored(db, shop.seller.id, "earnings_available")
        assert payload == {"amount_cents": 1800, "orders": 2, "available_cents": 1800}
        assert await me.wait_for(lambda f: f["type"] == "earnings") == {"type": "earnings", "available_cents": 1800}
        assert (await me.notification("earnings_available"))["payload"]["amount_cents"] == 1800
        mail = await smtp_server.wait_for(shop.seller.user["email"], subject="earnings")
        assert "$18.00" in str(mail["Subject"]) and "2 orders" in body_text(mail)
    finally:
        await me.close()


async def test_email_turned_off_for_a_kind_is_still_stored_and_pushed(smtp_server, client, make, db):
    shop = await Shop.open(client, make)
    order = await shop.order()
    res = await client.put(
        "/api/me/notification-settings",
        json={"kinds": [{"kind": "order_shipped", "email": False}]},
        headers=shop.buyer.headers,
    )
    assert res.status == 200, await res.text()
    me = await MeSocket.open(client, shop.buyer)
    try:
        await shop.act(shop.seller, order, "ship", TRACKING)
        shipped = await me.notification("order_shipped")
        assert shipped["payload"]["order_id"] == order["id"]
        await delivered(db, shipped["id"])
        # A later notification that is emailed arrives; the shipped one never did.
        await shop.act(shop.seller, order, "refund", {"amount_cents": 100, "reason": "late"})
        await smtp_server.wait_for(shop.buyer.user["email"], subject="refunded")
        await smtp_server.wait_for(shop.buyer.user["email"], subject=order["number"])  # its confirmation
        assert smtp_server.messages(shop.buyer.user["email"], subject="shipped") == []
        assert len(await stored(db, shop.buyer.id, "order_shipped")) == 1
    finally:
        await me.close()


async def test_a_top_up_pushes_the_wallet(client, make, db):
    buyer = await make.user()
    me = await MeSocket.open(client, buyer)
    try:
        await top_up(client, buyer, 2500)
        assert await me.wait_for(lambda f: f["type"] == "wallet") == {
            "type": "wallet",
            "balance_cents": 2500,
            "reason": "top_up",
        }
    finally:
        await me.close()


async def test_unread_count_for_the_bell(client, make, db):
    shop = await Shop.open(client, make)
    url = "/api/notifications/unread-count"
    assert (await client.get(url)).status == 401
    for _ in range(2):
        await shop.order()
    res = await client.get(url, headers=shop.buyer.headers)
    assert res.status == 200 and await res.json() == {"unread": 2}
    first = await db.fetchval("SELECT id FROM notifications WHERE user_id = $1 LIMIT 1", U(shop.buyer.id))
    await post_ok(client, "/api/notifications/read", shop.buyer, {"ids": [str(first)]})
    assert await (await client.get(url, headers=shop.buyer.headers)).json() == {"unread": 1}
    await post_ok(client, "/api/notifications/read", shop.buyer)
    assert await (await client.get(url, headers=shop.buyer.headers)).json() == {"unread": 0}


async def test_pushes_reach_the_user_on_another_node(aiohttp_client, database_url, redis_url, db):
    """Two nodes on one Redis (and one job queue): whichever node runs the jobs, the notification and the
    wallet push reach the buyer's socket on the other."""
    prefix = f"t{secrets.token_hex(4)}"
    settings = settings_for(database_url).model_copy(update={"redis_url": redis_url, "redis_prefix": prefix})
    a, b = [await aiohttp_client(create_app(settings)) for _ in range(2)]
    make = Factory(a, db)
    seller = await make.seller()
    buyer = await make.user()
    product = await make.product(seller, variants=[{"sku": "FAR-1", "price_cents": 800, "stock": 3}])
    await top_up(a, buyer, 1000)
    me = await MeSocket.open(b, buyer)
    try:
        order = await buy(a, buyer, product["variants"][0]["id"])
        assert (await me.notification("order_placed"))["payload"]["order_id"] == order["id"]
        wallet = await me.wait_for(lambda f: f["type"] == "wallet" and f["reason"] == "purchase")
        assert wallet["balance_cents"] == 200
    finally:
        await me.close()
