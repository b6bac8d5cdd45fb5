"""Addresses, sellers' shipping profiles, shipping in checkout and its quote, in the ledger, the books check
and refunds, shipping with tracking, digital orders delivered at once, and who may mark an order
delivered: through the REST API against a real PostgreSQL."""

import uuid

from tests.helpers import assert_books_balanced, balance, error_of, top_up

PRICE = 1000  # the platform keeps 10% of the items (platform_fee_bps defaults to 1000)
FUNDS = 50_000
TRACKING = {"carrier": "Parcel Co", "tracking_number": "PC123456789"}
FRANCE = {"name": "Ann Buyer", "line1": "2 rue de la Paix", "city": "Paris", "postal_code": "75002", "country": "FR"}


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json() if status != 204 else {}


async def set_shipping(client, seller, **profile) -> dict:
    body = {"flat_rate_cents": 0, "countries": [], **profile}
    return await ok(await client.put("/api/seller/shipping", json=body, headers=seller.headers))


async def product(make, seller, *, price: int = PRICE, stock: int = 20, digital: bool = False) -> str:
    variant = {"sku": f"SKU-{uuid.uuid4().hex[:10]}", "price_cents": price}
    variant |= {"digital": True} if digital else {"stock": stock}
    return (await make.product(seller, variants=[variant]))["variants"][0]["id"]


async def order(client, buyer, variant_id, quantity: int = 1, **body):
    payload = {"items": [{"variant_id": variant_id, "quantity": quantity}], **body}
    return await client.post("/api/orders", json=payload, headers=buyer.headers)


async def placed(client, buyer, variant_id, quantity: int = 1, **body) -> dict:
    return (await ok(await order(client, buyer, variant_id, quantity, **body), 201))["order"]


async def addresses(client, account) -> list[dict]:
    return (await ok(await client.get("/api/me/addresses", headers=account.headers)))["items"]


async def earnings(client, seller) -> dict:
    return await ok(await client.get("/api/seller/earnings", headers=seller.headers))


async def books(client, admin) -> dict:
    return await ok(await client.get("/api/admin/books", headers=admin.headers))


async def order_count(db) -> int:
    return await db.fetchval("SELECT count(*) FROM orders")


# -- addresses ------------------------------------------------------------------------------------------


async def test_an_address_book_keeps_exactly_one_default(client, make, db):
    user = await make.user(address=False)
    assert await addresses(client, user) == []

    first = await make.address(user, name="First")
    assert first["is_default"] is True  # the first one becomes the default
    second = await make.address(user, name="Second")
    assert second["is_default"] is False
    third = await make.address(user, name="Third", is_default=True)
    assert third["is_default"] is True
    listed = await addresses(client, user)
    assert [(a["name"], a["is_default"]) for a in listed] == [("Third", True), ("First", False), ("Second", False)]

    res = await client.patch(f"/api/me/addresses/{second['id']}", json={"is_default": True}, headers=user.headers)
    assert (await ok(res))["address"]["is_default"] is True
    assert [a["name"] for a in await addresses(client, user) if a["is_default"]] == ["Second"]
    # The default is moved by naming another, not by taking it away.
    res = await client.patch(f"/api/me/addresses/{second['id']}", json={"is_default": False}, headers=user.headers)
    await error_of(res, 409, "conflict")

    # Deleting the default hands it to the most recently added of the others.
    await ok(await client.delete(f"/api/me/addresses/{second['id']}", headers=user.headers), 204)
    assert [(a["name"], a["is_default"]) for a in await addresses(client, user)] == [
        ("Third", True),
        ("First", False),
    ]
    await ok(await client.delete(f"/api/me/addresses/{third['id']}", headers=user.headers), 204)
    assert [(a["name"], a["is_default"]) for a in await addresses(client, user)] == [("First", True)]
    await ok(await client.delete(f"/api/me/addresses/{first['id']}", headers=user.headers), 204)
    assert await addresses(client, user) == []
    assert (await make.address(user))["is_default"] is True

    # Someone else's address is nobody's to them.
    mine = (await addresses(client, user))[0]
    other = await make.user()
    res = await client.patch(f"/api/me/addresses/{mine['id']}", json={"city": "Elsewhere"}, headers=other.headers)
    await error_of(res, 404, "not_found")
    await error_of(await client.delete(f"/api/me/addresses/{mine['id']}", headers=other.headers), 404, "not_found")
    await error_of(await client.delete("/api/me/addresses/not-a-uuid", headers=user.headers), 404, "not_found")
    await error_of(await client.get("/api/me/addresses"), 401, "unauthorized")
    assert (
        await db.fetchval("SELECT count(*) FROM addresses WHERE is_default GROUP BY user_id HAVING count(*) > 1")
        is None
    )


async def test_address_fields_are_checked(client, make, db):
    user = await make.user(address=False)
    saved = await make.address(user, country="fr", line2="  ", phone="+33 1 23 45 67 89")
    assert (saved["country"], saved["line2"], saved["phone"]) == ("FR", None, "+33123456789")

    for bad in ({"country": "ZZ"}, {"country": "FRA"}, {"country": None}, {"postal_code": "75<002>"}):
        body = {**FRANCE, **bad}
        res = await client.post("/api/me/addresses", json=body, headers=user.headers)
        error = await error_of(res, 422, "validation_error")
        assert error["details"]["errors"][0]["loc"][0] == next(iter(bad)), error
    body = {key: value for key, value in FRANCE.items() if key != "name"}
    await error_of(await client.post("/api/me/addresses", json=body, headers=user.headers), 422, "validation_error")

    # PATCH: a required field cannot be nulled, an optional one can be cleared.
    url = f"/api/me/addresses/{saved['id']}"
    await error_of(await client.patch(url, json={"city": None}, headers=user.headers), 422, "validation_error")
    await error_of(await client.patch(url, json={"country": "XX"}, headers=user.headers), 422, "validation_error")
    changed = (await ok(await client.patch(url, json={"phone": None, "country": "de"}, headers=user.headers)))[
        "address"
    ]
    assert (changed["phone"], changed["country"], changed["city"]) == (None, "DE", saved["city"])

    for _ in range(19):
        await make.address(user)
    res = await client.post("/api/me/addresses", json=FRANCE, headers=user.headers)
    await error_of(res, 409, "conflict")
    assert len(await addresses(client, user)) == 20


# -- sellers' shipping ----------------------------------------------------------------------------------


async def test_a_seller_sets_its_shipping_profile(client, make, db):
    seller = await make.seller()
    res = await client.get("/api/seller/shipping", headers=seller.headers)
    assert await ok(res) == {"flat_rate_cents": 0, "free_over_cents": None, "countries": []}  # free, everywhere

    profile = await set_shipping(
        client, seller, flat_rate_cents=495, free_over_cents=5000, countries=["us", "FR", "US"]
    )
    assert profile == {"flat_rate_cents": 495, "free_over_cents": 5000, "countries": ["FR", "US"]}
    assert await ok(await client.get("/api/seller/shipping", headers=seller.headers)) == profile

    buyer = await make.user()
    body = {"flat_rate_cents": 100, "countries": []}
    await error_of(await client.put("/api/seller/shipping", json=body, headers=buyer.headers), 403, "forbidden")
    for bad in ({"flat_rate_cents": -1}, {"countries": ["ZZ"]}, {"free_over_cents": "10"}, {"countries": None}):
        res = await client.put("/api/seller/shipping", json={**body, **bad}, headers=seller.headers)
        await error_of(res, 422, "validation_error")
    assert await ok(await client.get("/api/seller/shipping", headers=seller.headers)) == profile


# -- shipping in checkout, the quote and the ledger -----------------------------------------------------


async def test_each_sellers_order_carries_its_shipping_which_the_seller_earns(client, make, db):
    admin = await make.admin()
    a, b = await make.seller(), await make.seller()
    await set_shipping(client, a, flat_rate_cents=500, free_over_cents=3000, countries=["US"])
    va, vb = await product(make, a), await product(make, b, price=700)
    buyer = await make.user()  # a default address in the US
    await top_up(client, buyer, FUNDS)
    for variant, quantity in ((va, 2), (vb, 1)):
        body = {"variant_id": variant, "quantity": quantity}
        await ok(await client.post("/api/cart/items", json=body, headers=buyer.headers))

    # The quote before confirming: per seller (one order each) the items, the shipping and the total.
    quote = await ok(await client.get("/api/cart", headers=buyer.headers))
    assert quote["address"]["country"] == "US" and quote["address"]["is_default"] is True
    assert quote["address_required"] is False
    by_seller = {s["seller_id"]: s for s in quote["sellers"]}
    assert {k: by_seller[a.seller["id"]][k] for k in ("subtotal_cents", "shipping_cents", "total_cents")} == {
        "subtotal_cents": 2000,
        "shipping_cents": 500,
        "total_cents": 2500,
    }
    assert by_seller[a.seller["id"]]["ships_to_address"] is True
    assert (by_seller[b.seller["id"]]["shipping_cents"], by_seller[b.seller["id"]]["total_cents"]) == (0, 700)
    assert (quote["subtotal_cents"], quote["shipping_cents"], quote["total_cents"]) == (2700, 500, 3200)

    res = await client.post("/api/cart/checkout", json={}, headers=buyer.headers)
    orders = {o["seller_id"]: o for o in (await ok(res, 201))["orders"]}
    assert (orders[a.seller["id"]]["total_cents"], orders[a.seller["id"]]["shipping_cents"]) == (2500, 500)
    assert (orders[b.seller["id"]]["total_cents"], orders[b.seller["id"]]["shipping_cents"]) == (700, 0)
    assert all(o["address"]["country"] == "US" and o["tracking"] is None for o in orders.values())
    assert await balance(client, buyer) == FUNDS - quote["total_cents"]  # what the quote said

    # The seller earns the shipping whole; the platform's fee is on the items only.
    assert (await earnings(client, a))["pending_cents"] == 2000 - 200 + 500
    assert (await earnings(client, b))["pending_cents"] == 700 - 70
    figures = await books(client, admin)
    assert figures["balanced"] is True and figures["mismatched_orders"] == 0, figures
    assert (figures["platform_cents"], figures["shipping_cents"]) == (270, 500)

    # From the free-shipping threshold on, the order ships free.
    big = await placed(client, buyer, va, 3)
    assert (big["total_cents"], big["shipping_cents"]) == (3000, 0)
    await assert_books_balanced(db)


async def test_a_physical_order_needs_an_address_the_seller_ships_to(client, make, db):
    seller = await make.seller()
    await set_shipping(client, seller, flat_rate_cents=400, countries=["FR"])
    physical = await product(make, seller)
    buyer = await make.user(address=False)
    await top_up(client, buyer, FUNDS)

    # No address at all: refused before anything is written (today's orders went out with address null).
    error = await error_of(await order(client, buyer, physical), 422, "validation_error")
    assert error["details"]["reason"] == "address_required", error
    assert error["details"]["errors"][0]["loc"] == ["address_id"]
    res = await client.get("/api/cart", headers=buyer.headers)
    assert (await ok(res))["address"] is None
    assert await order_count(db) == 0 and await balance(client, buyer) == FUNDS

    # A country the seller does not ship to: a clear 422 naming it.
    await make.address(buyer, country="US")
    error = await error_of(await order(client, buyer, physical), 422, "validation_error")
    assert error["details"]["reason"] == "not_shipped" and error["details"]["country"] == "US", error
    assert error["details"]["seller_id"] == seller.seller["id"] and "US" in error["message"]
    await ok(await client.post("/api/cart/items", json={"variant_id": physical}, headers=buyer.headers))
    quote = await ok(await client.get("/api/cart", headers=buyer.headers))
    assert quote["sellers"][0]["ships_to_address"] is False
    assert (quote["sellers"][0]["shipping_cents"], quote["total_cents"]) == (None, None)
    assert await order_count(db) == 0

    # A saved address named with address_id, the quote for it, and one given inline.
    france = await make.address(buyer, **FRANCE)
    quote = await ok(await client.get(f"/api/cart?address_id={france['id']}", headers=buyer.headers))
    assert (quote["address"]["id"], quote["shipping_cents"], quote["total_cents"]) == (france["id"], 400, 1400)
    bought = await placed(client, buyer, physical, address_id=france["id"])
    assert (bought["address"]["city"], bought["shipping_cents"], bought["total_cents"]) == ("Paris", 400, 1400)
    inline = await placed(client, buyer, physical, address={**FRANCE, "city": "Lyon"})
    assert inline["address"]["city"] == "Lyon" and "id" not in inline["address"]

    # Someone else's address, both ways at once, and an address of no country are refused.
    stranger = await make.user()
    theirs = (await addresses(client, stranger))[0]
    await error_of(await order(client, buyer, physical, address_id=theirs["id"]), 404, "not_found")
    res = await client.get(f"/api/cart?address_id={theirs['id']}", headers=buyer.headers)
    await error_of(res, 404, "not_found")
    res = await order(client, buyer, physical, address_id=france["id"], address=FRANCE)
    await error_of(res, 422, "validation_error")
    res = await order(client, buyer, physical, address={k: v for k, v in FRANCE.items() if k != "country"})
    await error_of(res, 422, "validation_error")
    assert await order_count(db) == 2

    # Digital goods never ship: no address needed, no shipping charged.
    nobody = await make.user(address=False)
    await top_up(client, nobody, FUNDS)
    code = await product(make, seller, price=300, digital=True)
    res = await client.post(
        f"/api/variants/{code}/units", data=b"CODE-1\n", headers={"Content-Type": "text/csv", **seller.headers}
    )
    await ok(res)
    digital = await placed(client, nobody, code)
    assert (digital["shipping_cents"], digital["total_cents"], digital["address"]) == (0, 300, None)
    await assert_books_balanced(db)


async def test_the_order_keeps_a_copy_of_its_address(client, make, db):
    seller = await make.seller()
    variant = await product(make, seller)
    buyer = await make.user()
    await top_up(client, buyer, FUNDS)
    address = (await addresses(client, buyer))[0]
    bought = await placed(client, buyer, variant)
    assert bought["address"] == {k: v for k, v in address.items() if k not in ("id", "is_default")}

    url = f"/api/me/addresses/{address['id']}"
    await ok(await client.patch(url, json={"city": "Shelbyville", "line1": "9 Other Road"}, headers=buyer.headers))
    await ok(await client.delete(url, headers=buyer.headers), 204)
    res = await client.get(f"/api/orders/{bought['id']}", headers=buyer.headers)
    assert (await ok(res))["order"]["address"] == bought["address"]


# -- refunds --------------------------------------------------------------------------------------------


async def test_refunds_cover_shipping(client, make, db):
    admin = await make.admin()
    seller = await make.seller()
    await set_shipping(client, seller, flat_rate_cents=500)
    variant = await product(make, seller)
    buyer = await make.user()
    await top_up(client, buyer, FUNDS)

    # 1000 of items and 500 of shipping: the seller's 1400 (items less the 100 fee, plus shipping).
    sold = await placed(client, buyer, variant)
    assert (sold["total_cents"], sold["shipping_cents"]) == (1500, 500)
    assert (await earnings(client, seller))["pending_cents"] == 1400
    # A partial refund is an amount of the total, shipping included, taken back in proportion to the shares.
    body = {"amount_cents": 300, "reason": "scratched"}
    res = await client.post(f"/api/orders/{sold['id']}/refund", json=body, headers=seller.headers)
    assert (await ok(res))["order"]["status"] == "partially_refunded"
    assert (await earnings(client, seller))["pending_cents"] == 1400 - 300 * 1400 // 1500
    # The rest: everything the buyer paid comes back, the shipping too.
    res = await client.post(f"/api/orders/{sold['id']}/refund", json={"reason": "lost"}, headers=seller.headers)
    refunded = (await ok(res))["order"]
    assert (refunded["status"], refunded["refunded_cents"]) == ("refunded", 1500)
    assert await balance(client, buyer) == FUNDS
    assert (await earnings(client, seller))["pending_cents"] == 0

    # A cancellation before shipping returns the shipping too.
    cancelled = await placed(client, buyer, variant)
    res = await client.post(f"/api/orders/{cancelled['id']}/cancel", json={}, headers=buyer.headers)
    assert (await ok(res))["order"]["refunded_cents"] == 1500
    assert await balance(client, buyer) == FUNDS
    figures = await books(client, admin)
    assert figures["balanced"] is True and figures["platform_cents"] == 0, figures
    assert figures["shipping_cents"] == 1000  # charged on both orders; the refunds are in refunded_cents


async def test_the_books_check_catches_an_order_that_disagrees_with_its_ledger(client, make, db):
    admin = await make.admin()
    seller = await make.seller()
    await set_shipping(client, seller, flat_rate_cents=500)
    buyer = await make.user()
    await top_up(client, buyer, FUNDS)
    sold = await placed(client, buyer, await product(make, seller))
    assert (await books(client, admin))["balanced"] is True

    # As a bug would: the order forgets its shipping, which its buyer paid and its seller earned.
    await db.execute(
        "UPDATE orders SET shipping_cents = 0, total_cents = total_cents - 500 WHERE id = $1", uuid.UUID(sold["id"])
    )
    figures = await books(client, admin)
    assert figures["balanced"] is False and figures["mismatched_orders"] == 1, figures
    assert figures["mismatched_accounts"] == 0 and figures["unbalanced_transactions"] == 0


# -- shipping, delivery ---------------------------------------------------------------------------------


async def test_an_order_ships_with_tracking_the_buyer_then_sees(client, make, db):
    seller = await make.seller()
    buyer = await make.user()
    await top_up(client, buyer, FUNDS)
    sold = await placed(client, buyer, await product(make, seller))
    url = f"/api/orders/{sold['id']}"
    before = (await ok(await client.get(url, headers=buyer.headers)))["order"]
    assert (before["tracking"], before["shipped_at"]) == (None, None)

    await error_of(await client.post(f"{url}/ship", headers=seller.headers), 422, "validation_error")
    for bad in (
        {"carrier": "Parcel Co"},
        {**TRACKING, "tracking_number": " "},
        {**TRACKING, "tracking_url": "javascript:alert(1)"},
        {**TRACKING, "tracking_url": "ftp://track.example/1"},
        {**TRACKING, "tracking_url": "https://"},
    ):
        res = await client.post(f"{url}/ship", json=bad, headers=seller.headers)
        await error_of(res, 422, "validation_error")
    await error_of(await client.post(f"{url}/ship", json=TRACKING, headers=buyer.headers), 403, "forbidden")
    assert (await ok(await client.get(url, headers=buyer.headers)))["order"]["status"] == "paid"

    tracking = {**TRACKING, "tracking_url": "https://track.example/PC123456789"}
    shipped = (await ok(await client.post(f"{url}/ship", json=tracking, headers=seller.headers)))["order"]
    assert shipped["status"] == "shipped" and shipped["tracking"] == tracking
    seen = (await ok(await client.get(url, headers=buyer.headers)))["order"]
    assert seen["tracking"] == tracking and seen["shipped_at"] is not None
    listed = (await ok(await client.get("/api/orders", headers=buyer.headers)))["items"]
    assert listed[0]["tracking"] == tracking
    await error_of(await client.post(f"{url}/ship", json=TRACKING, headers=seller.headers), 409, "conflict")


async def test_digital_orders_are_delivered_at_once_and_their_earnings_follow_the_hold(client, make, db):
    seller = await make.seller()
    code = await product(make, seller, price=800, digital=True)
    res = await client.post(
        f"/api/variants/{code}/units", data=b"KEY-1\nKEY-2\n", headers={"Content-Type": "text/csv", **seller.headers}
    )
    await ok(res)
    buyer = await make.user()
    await top_up(client, buyer, FUNDS)

    sold = await placed(client, buyer, code)
    assert sold["status"] == "delivered" and sold["delivered_at"] is not None and sold["shipped_at"] is None
    assert [(e["from"], e["to"]) for e in sold["events"]] == [(None, "paid"), ("paid", "delivered")]
    assert len(sold["items"][0]["codes"]) == 1
    # Nothing to ship or deliver any more; the earnings wait for the hold.
    url = f"/api/orders/{sold['id']}"
    await error_of(await client.post(f"{url}/ship", json=TRACKING, headers=seller.headers), 409, "conflict")
    await error_of(await client.post(f"{url}/deliver", headers=buyer.headers), 409, "conflict")
    assert await db.fetchval("SELECT release_earnings()") == 0
    assert ((await earnings(client, seller))["pending_cents"], (await earnings(client, seller))["available_cents"]) == (
        720,
        0,
    )
    await db.execute("UPDATE earnings SET available_after = now() WHERE order_id = $1", uuid.UUID(sold["id"]))
    assert await db.fetchval("SELECT release_earnings()") == 1
    assert (await earnings(client, seller))["available_cents"] == 720
    await assert_books_balanced(db)


async def test_the_seller_may_mark_delivered_but_only_the_buyer_releases_the_earnings(client, make, db):
    seller = await make.seller()
    variant = await product(make, seller)
    buyer = await make.user()
    await top_up(client, buyer, FUNDS)
    first, second = await placed(client, buyer, variant), await placed(client, buyer, variant)
    for sold in (first, second):
        await ok(await client.post(f"/api/orders/{sold['id']}/ship", json=TRACKING, headers=seller.headers))

    # The seller's word moves the order on, but its earnings keep their hold.
    res = await client.post(f"/api/orders/{first['id']}/deliver", headers=seller.headers)
    marked = (await ok(res))["order"]
    assert marked["status"] == "delivered" and marked["events"][-1]["actor_id"] == seller.id
    assert ((await earnings(client, seller))["pending_cents"], (await earnings(client, seller))["available_cents"]) == (
        1800,
        0,
    )
    assert await db.fetchval("SELECT release_earnings()") == 0  # a delivered order is not released early
    await error_of(await client.post(f"/api/orders/{first['id']}/deliver", headers=buyer.headers), 409, "conflict")

    # The buyer's confirmation releases them at once.
    await ok(await client.post(f"/api/orders/{second['id']}/deliver", headers=buyer.headers))
    assert ((await earnings(client, seller))["pending_cents"], (await earnings(client, seller))["available_cents"]) == (
        900,
        900,
    )
    stranger = await make.user()
    await error_of(await client.post(f"/api/orders/{first['id']}/deliver", headers=stranger.headers), 404, "not_found")
    await assert_books_balanced(db)
