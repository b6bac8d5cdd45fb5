"""Without card payments (instant-dev), asking to pay the difference by card changes nothing but the error:
a short wallet is refused and nothing is opened."""

from helpers import error_of


async def test_pay_difference_without_card_payments_is_a_conflict(client, make, db):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "DEV-DIFF", "price_cents": 1_000, "stock": 2}])
    buyer = await make.user()
    wallet = await (await client.get("/api/wallet", headers=buyer.headers)).json()
    assert wallet["pays_by_card"] is False
    body = {"items": [{"variant_id": product["variants"][0]["id"]}], "pay_difference_by_card": True}
    error = await error_of(await client.post("/api/orders", json=body, headers=buyer.headers), 409, "conflict")
    assert "not enabled" in error["message"] and error["details"]["total_cents"] >= 1_000
    assert await db.fetchval("SELECT count(*) FROM card_payments") == 0
