"""Notifications of what happens to your orders and money, against a real SMTP server (aiosmtpd) and real
websockets: each is stored in the transaction of its cause, pushed on /ws/me, and emailed unless turned
off; in-stream buys queue one job per batch; wallet and earnings balances are pushed; a purchase that
rolls back queues nothing."""

import asyncio
import time
import uuid

import aiohttp

from live_helpers import Viewer, live_show
from livehub.jsonx import loads
from smtp_server import body_html, body_text
from tests.helpers import top_up

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


async def import_codes(client, seller, variant_id, codes: list[str]) -> None:
    res = await client.post(
        f"/api/variants/{variant_id}/units",
        data="\n".join(codes).encode(),
        headers={"Content-Type": "text/csv", **seller.headers},
    )
    assert res.status == 200, await res.text()


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
