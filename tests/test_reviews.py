"""Product reviews: only a buyer whose order of the product was delivered writes one, once per product and
order; anyone lists them; the seller answers each once; an admin hides one, which takes it out of the list
and the rating. A product's `rating` (list, detail, stream products) sums up its listed reviews. Through
the REST API against a real PostgreSQL."""

import uuid

from tests.helpers import error_of, top_up

TRACKING = {"carrier": "Parcel Co", "tracking_number": "PC123456789"}


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def goods(make, seller, *, variants: int = 1) -> dict:
    specs = [{"sku": f"SKU-{uuid.uuid4().hex[:10]}", "price_cents": 1000, "stock": 20} for _ in range(variants)]
    return await make.product(seller, variants=specs)


async def bought(client, buyer, seller, variant_ids: list[str], *, deliver: bool = True) -> dict:
    body = {"items": [{"variant_id": v} for v in variant_ids]}
    order = (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]
    if deliver:
        url = f"/api/orders/{order['id']}"
        await ok(await client.post(f"{url}/ship", json=TRACKING, headers=seller.headers))
        order = (await ok(await client.post(f"{url}/deliver", headers=buyer.headers)))["order"]
    return order


async def buyer_of(client, make, seller, product: dict, **kwargs) -> tuple:
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    return buyer, await bought(client, buyer, seller, [product["variants"][0]["id"]], **kwargs)


async def review(client, account, product_id: str, order_id: str, rating: int = 5, text: str = "lovely"):
    body = {"order_id": order_id, "rating": rating, "text": text}
    return await client.post(f"/api/products/{product_id}/reviews", json=body, headers=account.headers)


async def listed(client, product_id: str, query: str = "") -> dict:
    return await ok(await client.get(f"/api/products/{product_id}/reviews{query}"))


async def rating(client, product_id: str) -> dict:
    return (await ok(await client.get(f"/api/products/{product_id}")))["product"]["rating"]


async def test_a_buyer_reviews_a_delivered_product_once(client, make, db):
    seller = await make.seller()
    product = await goods(make, seller)
    buyer, order = await buyer_of(client, make, seller, product)
    assert await rating(client, product["id"]) == {"average": None, "count": 0}

    written = (await ok(await review(client, buyer, product["id"], order["id"], 4, "Fits well.\nGood seller."), 201))[
        "review"
    ]
    assert (written["rating"], written["text"], written["product_id"]) == (4, "Fits well.\nGood seller.", product["id"])
    assert written["author"] == {"id": buyer.id, "display_name": buyer.user["display_name"]}
    assert (written["reply"], written["hidden_at"]) == (None, None)
    page = await listed(client, product["id"])
    assert [r["id"] for r in page["items"]] == [written["id"]] and page["next_cursor"] is None

    # Once per product and order, naming the review there is.
    error = await error_of(await review(client, buyer, product["id"], order["id"], 1), 409, "conflict")
    assert error["details"]["review_id"] == written["id"]
    assert await rating(client, product["id"]) == {"average": 4.0, "count": 1}


async def test_who_may_review(client, make, db):
    seller = await make.seller()
    product, other_product = await goods(make, seller), await goods(make, seller)
    buyer, order = await buyer_of(client, make, seller, product)
    _, undelivered = await buyer_of(client, make, seller, product, deliver=False)
    waiting_buyer = await make.user()
    await top_up(client, waiting_buyer, 10_000)
    paid = await bought(client, waiting_buyer, seller, [product["variants"][0]["id"]], deliver=False)
    stranger = await make.user()

    # Not delivered yet, someone else's order, a product not in the order, an order that does not exist.
    await error_of(await review(client, waiting_buyer, product["id"], paid["id"]), 403, "forbidden")
    await error_of(await review(client, stranger, product["id"], order["id"]), 403, "forbidden")
    await error_of(await review(client, buyer, product["id"], undelivered["id"]), 403, "forbidden")
    await error_of(await review(client, buyer, other_product["id"], order["id"]), 403, "forbidden")
    await error_of(await review(client, buyer, product["id"], str(uuid.uuid4())), 403, "forbidden")
    await error_of(await review(client, seller, product["id"], order["id"]), 403, "forbidden")
    await error_of(await review(client, buyer, str(uuid.uuid4()), order["id"]), 404, "not_found")
    await error_of(await review(client, buyer, "not-a-uuid", order["id"]), 404, "not_found")
    res = await client.post(f"/api/products/{product['id']}/reviews", json={"order_id": order["id"], "rating": 5})
    await error_of(res, 401, "unauthorized")
    for bad in (
        {"order_id": order["id"], "rating": 0},
        {"order_id": order["id"], "rating": 6},
        {"order_id": order["id"], "rating": "5 stars"},
        {"order_id": order["id"]},
        {"order_id": "nope", "rating": 5},
        {"order_id": order["id"], "rating": 5, "text": "x" * 2001},
        {"order_id": order["id"], "rating": 5, "text": "bell\x07"},
    ):
        res = await client.post(f"/api/products/{product['id']}/reviews", json=bad, headers=buyer.headers)
        await error_of(res, 422, "validation_error")
    assert await db.fetchval("SELECT count(*) FROM reviews") == 0

    # Delivered, then it may; the text may be left out.
    res = await client.post(
        f"/api/products/{product['id']}/reviews", json={"order_id": order["id"], "rating": 3}, headers=buyer.headers
    )
    assert (await ok(res, 201))["review"]["text"] == ""


async def test_an_order_of_two_products_reviews_each(client, make, db):
    seller = await make.seller()
    first, second = await goods(make, seller), await goods(make, seller)
    buyer = await make.user()
    await top_up(client, buyer, 10_000)
    order = await bought(client, buyer, seller, [first["variants"][0]["id"], second["variants"][0]["id"]])
    await ok(await review(client, buyer, first["id"], order["id"], 5), 201)
    await ok(await review(client, buyer, second["id"], order["id"], 2), 201)
    assert await rating(client, first["id"]) == {"average": 5.0, "count": 1}
    assert await rating(client, second["id"]) == {"average": 2.0, "count": 1}


async def test_ratings_in_product_json_and_stream_products_and_admin_hide(client, make, db):
    admin = await make.admin()
    seller = await make.seller()
    product = await goods(make, seller)
    written = []
    for stars in (5, 4, 4):
        buyer, order = await buyer_of(client, make, seller, product)
        written.append((await ok(await review(client, buyer, product["id"], order["id"], stars), 201))["review"])

    expected = {"average": 4.33, "count": 3}
    assert await rating(client, product["id"]) == expected
    in_list = (await ok(await client.get("/api/products")))["items"]
    assert next(p for p in in_list if p["id"] == product["id"])["rating"] == expected
    body = {"title": "Show", "products": [{"product_id": product["id"]}]}
    stream = (await ok(await client.post("/api/streams", json=body, headers=seller.headers), 201))["stream"]
    shown = (await ok(await client.get(f"/api/streams/{stream['id']}")))["stream"]
    assert shown["products"][0]["rating"] == expected

    # Newest first, in pages.
    first = await listed(client, product["id"], "?limit=2")
    assert [r["id"] for r in first["items"]] == [written[2]["id"], written[1]["id"]]
    rest = await listed(client, product["id"], f"?limit=2&cursor={first['next_cursor']}")
    assert [r["id"] for r in rest["items"]] == [written[0]["id"]] and rest["next_cursor"] is None
    await error_of(await client.get(f"/api/products/{product['id']}/reviews?limit=0"), 422, "validation_error")
    await error_of(await client.get(f"/api/products/{product['id']}/reviews?cursor=x"), 422, "validation_error")
    await error_of(await client.get(f"/api/products/{uuid.uuid4()}/reviews"), 404, "not_found")

    # An admin hides the 5: out of the list and the rating, everywhere.
    url = f"/api/admin/reviews/{written[0]['id']}/hide"
    await error_of(await client.post(url, json={"reason": "spam"}, headers=seller.headers), 403, "forbidden")
    await error_of(await client.post(url, json={}, headers=admin.headers), 422, "validation_error")
    hidden = (await ok(await client.post(url, json={"reason": "spam"}, headers=admin.headers)))["review"]
    assert hidden["hidden_at"] is not None
    await error_of(await client.post(url, json={"reason": "spam"}, headers=admin.headers), 409, "conflict")
    hide_missing = f"/api/admin/reviews/{uuid.uuid4()}/hide"
    await error_of(await client.post(hide_missing, json={"reason": "x"}, headers=admin.headers), 404, "not_found")
    assert [r["id"] for r in (await listed(client, product["id"]))["items"]] == [written[2]["id"], written[1]["id"]]
    assert await rating(client, product["id"]) == {"average": 4.0, "count": 2}
    shown = (await ok(await client.get(f"/api/streams/{stream['id']}")))["stream"]
    assert shown["products"][0]["rating"] == {"average": 4.0, "count": 2}
    audit = await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'review.hide'")
    assert audit == 1


async def test_the_seller_answers_a_review_once(client, make, db):
    seller, other_seller = await make.seller(), await make.seller()
    product = await goods(make, seller)
    buyer, order = await buyer_of(client, make, seller, product)
    written = (await ok(await review(client, buyer, product["id"], order["id"], 2, "late"), 201))["review"]
    url = f"/api/products/{product['id']}/reviews/{written['id']}/reply"

    await error_of(await client.post(url, json={"text": "sorry"}, headers=other_seller.headers), 403, "forbidden")
    await error_of(await client.post(url, json={"text": "sorry"}, headers=buyer.headers), 403, "forbidden")
    await error_of(await client.post(url, json={"text": " "}, headers=seller.headers), 422, "validation_error")
    wrong_review = f"/api/products/{product['id']}/reviews/{uuid.uuid4()}/reply"
    await error_of(await client.post(wrong_review, json={"text": "hm"}, headers=seller.headers), 404, "not_found")
    other_product = await goods(make, seller)
    elsewhere = f"/api/products/{other_product['id']}/reviews/{written['id']}/reply"
    await error_of(await client.post(elsewhere, json={"text": "hm"}, headers=seller.headers), 404, "not_found")

    answered = (await ok(await client.post(url, json={"text": "Sorry, the courier..."}, headers=seller.headers)))[
        "review"
    ]
    assert answered["reply"]["text"] == "Sorry, the courier..." and answered["reply"]["at"] is not None
    await error_of(await client.post(url, json={"text": "again"}, headers=seller.headers), 409, "conflict")
    assert (await listed(client, product["id"]))["items"][0]["reply"]["text"] == "Sorry, the courier..."
