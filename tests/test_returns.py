"""Returns of delivered orders: the buyer asks within the return window, the order's seller (or an admin)
approves, which refunds through the order's refund (shipping too when the whole order comes back), or
rejects with a reason. Through the REST API against a real PostgreSQL."""

import uuid

from tests.helpers import balance, error_of, top_up

PRICE = 1000  # the platform keeps 10% of the items (platform_fee_bps defaults to 1000)
SHIPPING = 500
FUNDS = 50_000
TRACKING = {"carrier": "Parcel Co", "tracking_number": "PC123456789"}


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def variant(make, seller, *, price: int = PRICE, digital: bool = False) -> str:
    spec = {"sku": f"SKU-{uuid.uuid4().hex[:10]}", "price_cents": price}
    spec |= {"digital": True} if digital else {"stock": 20}
    return (await make.product(seller, variants=[spec]))["variants"][0]["id"]


async def delivered(client, buyer, seller, items: list[tuple[str, int]]) -> dict:
    """An order of `items` ([(variant_id, quantity)]) placed, shipped and confirmed delivered by the buyer."""
    body = {"items": [{"variant_id": v, "quantity": q} for v, q in items]}
    order = (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
    url = f"/api/orders/{order['id']}"
    await ok(await client.post(f"{url}/ship", json=TRACKING, headers=seller.headers))
    return (await ok(await client.post(f"{url}/deliver", headers=buyer.headers)))["order"]


async def ask(client, account, order_id: str, reason: str = "does not fit", items: list | None = None):
    body = {"reason": reason} if items is None else {"reason": reason, "items": items}
    return await client.post(f"/api/orders/{order_id}/return", json=body, headers=account.headers)


async def decide(client, account, order_id: str, verdict: str, body: dict | None = None):
    return await client.post(f"/api/orders/{order_id}/return/{verdict}", json=body, headers=account.headers)


async def books(client, admin) -> dict:
    return await ok(await client.get("/api/admin/books", headers=admin.headers))


async def shop(client, make, *, flat_rate: int = SHIPPING):
    seller = await make.seller()
    body = {"flat_rate_cents": flat_rate, "countries": []}
    await ok(await client.put("/api/seller/shipping", json=body, headers=seller.headers))
    buyer = await make.user()
    await top_up(client, buyer, FUNDS)
    return seller, buyer


async def test_the_whole_order_comes_back_shipping_included(client, make, db):
    admin = await make.admin()
    seller, buyer = await shop(client, make)
    a, b = await variant(make, seller), await variant(make, seller, price=400)
    order = await delivered(client, buyer, seller, [(a, 2), (b, 1)])
    assert order["total_cents"] == 2 * PRICE + 400 + SHIPPING and order["return"] is None
    paid = await balance(client, buyer)

    asked = (await ok(await ask(client, buyer, order["id"], "wrong colour"), 201))["order"]
    ret = asked["return"]
    assert (ret["status"], ret["reason"], ret["decided_at"], ret["decision_reason"]) == (
        "requested",
        "wrong colour",
        None,
        None,
    )
    # Left out, the items are every one of the order's; the estimate is everything paid, shipping too.
    assert sorted((i["variant_id"], i["quantity"]) for i in ret["items"]) == sorted([(a, 2), (b, 1)])
    assert ret["refund_cents"] == order["total_cents"]
    assert asked["status"] == "delivered" and asked["refunded_cents"] == 0
    # The seller sees it on the order too.
    seen = (await ok(await client.get(f"/api/orders/{order['id']}", headers=seller.headers)))["order"]
    assert seen["return"]["id"] == ret["id"]

    approved = (await ok(await decide(client, seller, order["id"], "approve")))["order"]
    assert approved["return"]["status"] == "approved" and approved["return"]["decided_at"] is not None
    assert approved["return"]["refund_cents"] == order["total_cents"]
    assert approved["status"] == "refunded" and approved["refunded_cents"] == order["total_cents"]
    assert approved["events"][-1]["to"] == "refunded" and approved["events"][-1]["reason"] == "return: wrong colour"
    assert await balance(client, buyer) == paid + order["total_cents"]
    # Nothing of it is the seller's any more; the books still add up, shipping included.
    earned = await ok(await client.get("/api/seller/earnings", headers=seller.headers))
    assert earned["pending_cents"] + earned["available_cents"] == 0
    figures = await books(client, admin)
    assert figures["balanced"] is True and figures["mismatched_orders"] == 0, figures

    # Decided: nothing open to decide, and nothing left to send back.
    await error_of(await decide(client, seller, order["id"], "approve"), 409, "conflict")
    await error_of(await ask(client, buyer, order["id"]), 409, "conflict")


async def test_some_items_come_back_for_their_share_then_the_rest_with_shipping(client, make, db):
    admin = await make.admin()
    seller, buyer = await shop(client, make)
    a, b = await variant(make, seller), await variant(make, seller, price=400)
    order = await delivered(client, buyer, seller, [(a, 2), (b, 1)])
    paid = await balance(client, buyer)

    # The same variant named twice is one line.
    items = [{"variant_id": a, "quantity": 1}]
    first = (await ok(await ask(client, buyer, order["id"], items=items), 201))["order"]["return"]
    assert first["items"] == [{"variant_id": a, "quantity": 1}] and first["refund_cents"] == PRICE
    # One open return at a time.
    await error_of(await ask(client, buyer, order["id"], items=[{"variant_id": b, "quantity": 1}]), 409, "conflict")

    done = (await ok(await decide(client, seller, order["id"], "approve")))["order"]
    assert (done["status"], done["refunded_cents"]) == ("partially_refunded", PRICE)
    assert await balance(client, buyer) == paid + PRICE

    # More than is left after the first return is refused, naming what is left.
    error = await error_of(await ask(client, buyer, order["id"], items=[{"variant_id": a, "quantity": 2}]), 422)
    assert error["details"]["returnable"] == 1
    # The rest comes back: everything left, shipping included.
    rest = (await ok(await ask(client, buyer, order["id"]), 201))["order"]["return"]
    assert sorted((i["variant_id"], i["quantity"]) for i in rest["items"]) == sorted([(a, 1), (b, 1)])
    assert rest["refund_cents"] == PRICE + 400 + SHIPPING
    done = (await ok(await decide(client, admin, order["id"], "approve")))["order"]  # an admin decides too
    assert (done["status"], done["refunded_cents"]) == ("refunded", order["total_cents"])
    assert await balance(client, buyer) == paid + order["total_cents"]
    figures = await books(client, admin)
    assert figures["balanced"] is True and figures["mismatched_orders"] == 0, figures


async def test_the_seller_rejects_with_a_reason_and_the_buyer_may_ask_again(client, make, db):
    seller, buyer = await shop(client, make)
    order = await delivered(client, buyer, seller, [(await variant(make, seller), 1)])
    paid = await balance(client, buyer)
    await ok(await ask(client, buyer, order["id"]), 201)

    await error_of(await decide(client, seller, order["id"], "reject"), 422, "validation_error")
    await error_of(await decide(client, seller, order["id"], "reject", {"reason": "  "}), 422, "validation_error")
    rejected = (await ok(await decide(client, seller, order["id"], "reject", {"reason": "worn, not faulty"})))["order"]
    ret = rejected["return"]
    assert (ret["status"], ret["decision_reason"]) == ("rejected", "worn, not faulty")
    assert rejected["status"] == "delivered" and rejected["refunded_cents"] == 0
    assert await balance(client, buyer) == paid
    await error_of(await decide(client, seller, order["id"], "reject", {"reason": "again"}), 409, "conflict")

    # Within the window, a rejected return does not stop another.
    again = (await ok(await ask(client, buyer, order["id"], "still faulty"), 201))["order"]["return"]
    assert again["status"] == "requested" and again["id"] != ret["id"]


async def test_who_may_ask_and_who_may_decide(client, make, db):
    seller, buyer = await shop(client, make)
    order = await delivered(client, buyer, seller, [(await variant(make, seller), 1)])
    stranger, other_seller = await make.user(), await make.seller()

    await error_of(await ask(client, seller, order["id"]), 403, "forbidden")  # only the buyer asks
    await error_of(await ask(client, stranger, order["id"]), 404, "not_found")
    await error_of(await ask(client, buyer, str(uuid.uuid4())), 404, "not_found")
    await error_of(await ask(client, buyer, "not-a-uuid"), 404, "not_found")
    await error_of(await client.post(f"/api/orders/{order['id']}/return", json={"reason": "x"}), 401)
    await ok(await ask(client, buyer, order["id"]), 201)

    # Only the order's seller or an admin decides: not the buyer, not another shop.
    await error_of(await decide(client, buyer, order["id"], "approve"), 403, "forbidden")
    await error_of(await decide(client, buyer, order["id"], "reject", {"reason": "no"}), 403, "forbidden")
    await error_of(await decide(client, other_seller, order["id"], "approve"), 404, "not_found")
    await error_of(await decide(client, other_seller, order["id"], "reject", {"reason": "no"}), 404, "not_found")
    state = (await ok(await client.get(f"/api/orders/{order['id']}", headers=buyer.headers)))["order"]
    assert state["return"]["status"] == "requested" and state["refunded_cents"] == 0


async def test_the_return_window(client, make, db):
    seller, buyer = await shop(client, make)
    v = await variant(make, seller)
    order = await delivered(client, buyer, seller, [(v, 1)])
    oid = uuid.UUID(order["id"])

    # Just inside the window (30 days by default): accepted.
    await db.execute("UPDATE orders SET delivered_at = now() - interval '29 days 23 hours' WHERE id = $1", oid)
    await ok(await ask(client, buyer, order["id"]), 201)
    await ok(await decide(client, seller, order["id"], "reject", {"reason": "no"}))

    # Past it: refused, saying when it closed.
    await db.execute("UPDATE orders SET delivered_at = now() - interval '30 days 1 minute' WHERE id = $1", oid)
    error = await error_of(await ask(client, buyer, order["id"]), 409, "conflict")
    assert "return_window_closed_at" in error["details"], error

    # Not delivered yet (paid, then shipped): nothing to return.
    res = await client.post("/api/orders", json={"items": [{"variant_id": v}]}, headers=buyer.headers)
    pending = (await ok(res, 201))["order"]
    await error_of(await ask(client, buyer, pending["id"]), 409, "conflict")
    await ok(await client.post(f"/api/orders/{pending['id']}/ship", json=TRACKING, headers=seller.headers))
    await error_of(await ask(client, buyer, pending["id"]), 409, "conflict")


async def test_the_window_comes_from_the_settings(aiohttp_client, settings, db):
    from livehub.app import create_app
    from tests.conftest import Factory

    client = await aiohttp_client(create_app(settings.model_copy(update={"return_window_s": 0})))
    make = Factory(client, db)
    seller, buyer = await shop(client, make)
    order = await delivered(client, buyer, seller, [(await variant(make, seller), 1)])
    await error_of(await ask(client, buyer, order["id"]), 409, "conflict")


async def test_digital_codes_are_not_returned(client, make, db):
    seller, buyer = await shop(client, make)
    code = await variant(make, seller, price=800, digital=True)
    res = await client.post(
        f"/api/variants/{code}/units", data=b"KEY-1\nKEY-2\n", headers={"Content-Type": "text/csv", **seller.headers}
    )
    await ok(res)
    body = {"items": [{"variant_id": code}]}
    sold = (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
    assert sold["status"] == "delivered"  # at once
    await error_of(await ask(client, buyer, sold["id"]), 409, "conflict")
    error = await error_of(await ask(client, buyer, sold["id"], items=[{"variant_id": code, "quantity": 1}]), 409)
    assert error["details"]["variant_id"] == code

    # In an order with goods that ship, the goods come back and the code stays.
    goods = await variant(make, seller)
    mixed = await delivered(client, buyer, seller, [(code, 1), (goods, 1)])
    ret = (await ok(await ask(client, buyer, mixed["id"]), 201))["order"]["return"]
    assert ret["items"] == [{"variant_id": goods, "quantity": 1}] and ret["refund_cents"] == PRICE


async def test_a_return_request_is_checked(client, make, db):
    seller, buyer = await shop(client, make)
    v = await variant(make, seller)
    order = await delivered(client, buyer, seller, [(v, 2)])
    for bad in (
        {},
        {"reason": ""},
        {"reason": "x" * 501},
        {"reason": "ok", "items": []},
        {"reason": "ok", "items": [{"variant_id": "nope", "quantity": 1}]},
        {"reason": "ok", "items": [{"variant_id": v, "quantity": 0}]},
        {"reason": "ok", "items": None, "extra": 1},
    ):
        res = await client.post(f"/api/orders/{order['id']}/return", json=bad, headers=buyer.headers)
        await error_of(res, 422, "validation_error")
    # Not an item of this order; more than was bought.
    error = await error_of(await ask(client, buyer, order["id"], items=[{"variant_id": str(uuid.uuid4())}]), 422)
    assert "variant_id" in error["details"]
    await error_of(await ask(client, buyer, order["id"], items=[{"variant_id": v, "quantity": 3}]), 422)
    twice = [{"variant_id": v, "quantity": 1}, {"variant_id": v, "quantity": 2}]
    await error_of(await ask(client, buyer, order["id"], items=twice), 422)
    assert await db.fetchval("SELECT count(*) FROM order_returns") == 0


async def test_an_approval_retried_with_its_key_refunds_once(client, make, db):
    seller, buyer = await shop(client, make)
    order = await delivered(client, buyer, seller, [(await variant(make, seller), 1)])
    await ok(await ask(client, buyer, order["id"]), 201)
    paid = await balance(client, buyer)

    url = f"/api/orders/{order['id']}/return/approve"
    headers = {**seller.headers, "Idempotency-Key": "approve-1"}
    first = await client.post(url, headers=headers)
    body = await ok(first)
    again = await client.post(url, headers=headers)
    assert await ok(again) == body and again.headers["Idempotent-Replayed"] == "true"
    assert await balance(client, buyer) == paid + order["total_cents"]
    assert await db.fetchval("SELECT count(*) FROM order_events WHERE to_status = 'refunded'") == 1
