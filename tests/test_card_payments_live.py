"""Owing money after a card refund blocks every way of buying: live buys, bids, cart checkout; a top-up
(here through instant-dev: every deposit settles what is owed first) lifts it.

The debt is made through the storage functions a Stripe webhook ends in (a card payment credited, then
refunded in full after it was spent); tests/test_card_payments.py drives them through localstripe.
"""

import uuid

from helpers import assert_books_balanced, balance, error_of, top_up
from live_helpers import Viewer, live_show


async def owe(db, user_id: str, cents: int) -> None:
    """A card payment of `cents` credited, spent by an admin debit, then refunded in full: `cents` owed."""
    intent = f"pi_test_{uuid.uuid4().hex}"
    user = uuid.UUID(user_id)
    await db.execute("SELECT open_card_payment($1, $2, $3, 'USD', 'stripe', NULL)", uuid.uuid4(), user, cents)
    await db.execute("UPDATE card_payments SET intent_id = $1 WHERE user_id = $2 AND intent_id IS NULL", intent, user)
    await db.execute("SELECT apply_card_payment($1, 'succeeded', $2, 0)", intent, cents)
    await db.execute("SELECT adjust_wallet($1, $2, 'spent', $1)", user, -cents)
    taken = await db.fetchval("SELECT apply_card_payment($1, 'succeeded', $2, $2)", intent, cents)
    assert taken["taken_back_cents"] == cents and taken["owed_cents"] == cents, taken


async def test_a_user_who_owes_cannot_buy_live_bid_or_check_out_until_a_top_up_settles_it(client, make, db):
    show = await live_show(make, products=2, stock=10, price=1_000)
    host = await Viewer.connect(client, show.id, show.seller)
    buyer = await make.user()
    await owe(db, buyer.id, 700)
    # Money in the wallet from elsewhere (an order refund, say) does not let a debtor buy.
    await db.execute("SELECT adjust_wallet($1, 5000, 'credit', $1)", uuid.UUID(buyer.id))
    viewer = await Viewer.connect(client, show.id, buyer)

    bought = await viewer.request("buy", variant_id=show.variant(), request_id="owed")
    assert bought["status"] == "payment_owed" and "top up" in bought["message"], bought
    reply = await host.request(
        "auction", variant_id=show.variant(1), start_cents=1000, increment_cents=100, duration_s=60, mode="standard"
    )
    assert reply["type"] == "ack", reply
    auction = await viewer.wait_for(lambda v: v.of_type("auction") and v.of_type("auction")[-1]["auction"])
    bid = await viewer.request("bid", auction_id=auction["id"], amount_cents=1000)
    assert (bid["status"], "top up" in bid["message"]) == ("not_allowed", True), bid
    res = await client.post(
        "/api/cart/items", json={"variant_id": show.variant(), "quantity": 1}, headers=buyer.headers
    )
    assert res.status in (200, 201), await res.text()
    error = await error_of(await client.post("/api/cart/checkout", json={}, headers=buyer.headers), 402, "payment_owed")
    assert error["details"] == {"owed_cents": 700}
    await assert_books_balanced(db)

    # A top-up pays the 700 owed first, the rest goes to the wallet; buying works again.
    await top_up(client, buyer, 1_000)
    assert await balance(client, buyer) == 5_000 + 300
    assert await db.fetchval("SELECT owed_by($1)", uuid.UUID(buyer.id)) == 0
    again = await viewer.request("buy", variant_id=show.variant(), request_id="settled")
    assert again["status"] == "ok", again
    books = await db.fetchval("SELECT check_books()")
    assert books["balanced"] and books["owed_cents"] == 0, books
