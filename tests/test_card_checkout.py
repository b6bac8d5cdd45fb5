"""Paying the difference by card at checkout, against a real localstripe (tests/stripe_server.py): the
order is placed once, in the transaction that credits the card money, whether the webhook arrives (again
and again) or the reconciliation finds the payment; a retried checkout request gets the same payment, then
the order; an order that cannot be placed any more leaves the money in the wallet and tells the buyer.
"""

import uuid
from datetime import timedelta

import aiohttp
import test_card_payments
from stripe_server import PUBLISHABLE_KEY, event_of, signed_event
from test_jobs import until

from helpers import assert_books_balanced, balance, error_of
from livehub import keys
from livehub.shop import card_payments

# test_card_payments.py's node paying by card, with localstripe's webhooks sent to it, or lost.
client = test_card_payments.client
webhooks_to = test_card_payments.webhooks_to
no_webhooks = test_card_payments.no_webhooks
WEBHOOK = test_card_payments.WEBHOOK


async def credit(db, account, cents: int) -> None:
    """Money in the wallet from elsewhere (an admin's credit): the wallet covers part of the order."""
    await db.execute("SELECT adjust_wallet($1, $2, 'credit', $1)", uuid.UUID(account.id), cents)


async def buy_now(client, buyer, variant_id, *, key: str | None = None, by_card: bool = True):
    headers = {**buyer.headers, **({"Idempotency-Key": key} if key else {})}
    body = {"items": [{"variant_id": variant_id, "quantity": 1}], "pay_difference_by_card": by_card}
    return await client.post("/api/orders", json=body, headers=headers)


async def card_token(stripe_server, number: str = "4242424242424242") -> str:
    """A card token as Stripe.js's createToken makes one: with the publishable key only."""
    data = {
        "card[number]": number,
        "card[exp_month]": "12",
        "card[exp_year]": "2030",
        "card[cvc]": "123",
        "key": PUBLISHABLE_KEY,
    }
    async with aiohttp.ClientSession() as session, session.post(f"{stripe_server.url}/v1/tokens", data=data) as res:
        body = await res.json()
        assert res.status == 200, body
        return body["id"]


async def pay_by_card(client, stripe_server, buyer, payment_id) -> dict:
    """What the page does: Stripe.js tokenizes the card, the node confirms the payment with it."""
    res = await client.post(
        f"/api/payments/{payment_id}/card", json={"token": await card_token(stripe_server)}, headers=buyer.headers
    )
    body = await res.json()
    assert res.status == 200, body
    return body


async def payment(client, buyer, payment_id) -> dict:
    res = await client.get(f"/api/payments/{payment_id}", headers=buyer.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def orders_of(db, buyer) -> int:
    return await db.fetchval("SELECT count(*) FROM orders WHERE buyer_id = $1", uuid.UUID(buyer.id))


async def settled(client, buyer, payment_id) -> bool:
    return (await payment(client, buyer, payment_id))["outcome"] is not None


async def shop_item(make, *, price: int = 1_000, stock: int = 10) -> str:
    seller = await make.seller()
    product = await make.product(
        seller, variants=[{"sku": f"CC-{uuid.uuid4().hex[:8]}", "price_cents": price, "stock": stock}]
    )
    return product["variants"][0]["id"]


async def test_buy_now_pays_the_difference_and_the_order_is_placed_once(client, make, db, stripe_server, webhooks_to):
    variant = await shop_item(make, price=1_000)
    buyer = await make.user()
    await credit(db, buyer, 300)

    # Without asking for it, a short wallet is the usual 409.
    await error_of(await buy_now(client, buyer, variant, by_card=False), 409, "insufficient_funds")

    res = await buy_now(client, buyer, variant, key="buy-1")
    started = await res.json()
    assert res.status == 202, started
    assert started["status"] == "requires_payment" and started["publishable_key"] == PUBLISHABLE_KEY
    assert started["amount_cents"] == started["total_cents"] - 300 and started["balance_cents"] == 300
    assert started["stripe_js_url"] == stripe_server.url + "/js.stripe.com/v3/"
    # Retried with the same key while pending: the same payment, no second one.
    again = await buy_now(client, buyer, variant, key="buy-1")
    assert again.status == 202 and (await again.json())["payment_id"] == started["payment_id"]
    assert await db.fetchval("SELECT count(*) FROM card_payments WHERE user_id = $1", uuid.UUID(buyer.id)) == 1
    assert await orders_of(db, buyer) == 0 and await balance(client, buyer) == 300

    confirmed = await pay_by_card(client, stripe_server, buyer, started["payment_id"])
    assert confirmed["status"] in ("succeeded", "processing"), confirmed
    await until(lambda: settled(client, buyer, started["payment_id"]), timeout_s=20, what="the webhook's order")
    done = await payment(client, buyer, started["payment_id"])
    assert (done["purpose"], done["status"], done["outcome"]) == ("order", "succeeded", "ordered"), done
    assert len(done["order_ids"]) == 1
    assert await orders_of(db, buyer) == 1
    assert await balance(client, buyer) == 0  # the card paid exactly the difference

    # The success delivered again (Stripe retries): still one order, one credit.
    intent = await db.fetchval("SELECT intent_id FROM card_payments WHERE id = $1", uuid.UUID(started["payment_id"]))
    pi = await stripe_server.call("GET", f"/v1/payment_intents/{intent}")
    for _ in range(2):
        body, headers = signed_event(event_of("payment_intent.succeeded", pi))
        assert (await client.post(WEBHOOK, data=body, headers=headers)).status == 200
    assert await orders_of(db, buyer) == 1 and await balance(client, buyer) == 0
    deposits = await db.fetchval(
        "SELECT count(*) FROM ledger_entries e JOIN accounts a ON a.id = e.account_id "
        "WHERE a.user_id = $1 AND e.type = 'deposit'",
        uuid.UUID(buyer.id),
    )
    assert deposits == 1

    # The same request retried after success answers with the order, as a wallet-paid one would.
    after = await buy_now(client, buyer, variant, key="buy-1")
    placed = await after.json()
    assert after.status == 201, placed
    assert placed["order"]["id"] == done["order_ids"][0] and placed["order"]["buyer_id"] == buyer.id
    assert await orders_of(db, buyer) == 1
    await assert_books_balanced(db)


async def test_cart_checkout_pays_the_difference_and_empties_what_it_bought(
    client, make, db, stripe_server, webhooks_to
):
    first, second = await shop_item(make, price=700), await shop_item(make, price=900)
    buyer = await make.user()
    for variant in (first, second):
        res = await client.post("/api/cart/items", json={"variant_id": variant, "quantity": 1}, headers=buyer.headers)
        assert res.status in (200, 201), await res.text()
    res = await client.post(
        "/api/cart/checkout", json={"pay_difference_by_card": True}, headers={**buyer.headers, "Idempotency-Key": "c1"}
    )
    started = await res.json()
    assert res.status == 202, started
    assert started["amount_cents"] == started["total_cents"] and started["balance_cents"] == 0

    await pay_by_card(client, stripe_server, buyer, started["payment_id"])
    await until(lambda: settled(client, buyer, started["payment_id"]), timeout_s=20, what="the webhook's order")
    done = await payment(client, buyer, started["payment_id"])
    assert done["outcome"] == "ordered" and len(done["order_ids"]) == 2, done  # one order per seller
    assert await db.fetchval("SELECT count(*) FROM cart_items WHERE user_id = $1", uuid.UUID(buyer.id)) == 0
    assert await balance(client, buyer) == 0
    await assert_books_balanced(db)


async def test_stock_running_out_meanwhile_leaves_the_money_in_the_wallet_and_tells_the_buyer(
    client, make, db, stripe_server, webhooks_to
):
    variant = await shop_item(make, price=1_500, stock=1)
    buyer, rival = await make.user(), await make.user()
    res = await buy_now(client, buyer, variant, key="last-one")
    started = await res.json()
    assert res.status == 202, started
    # Someone else buys the last one with their wallet before the card payment is made.
    await credit(db, rival, 5_000)
    assert (await buy_now(client, rival, variant, by_card=False)).status == 201

    await pay_by_card(client, stripe_server, buyer, started["payment_id"])
    await until(lambda: settled(client, buyer, started["payment_id"]), timeout_s=20, what="the webhook's outcome")
    done = await payment(client, buyer, started["payment_id"])
    assert (done["status"], done["outcome"], done["outcome_code"]) == ("succeeded", "not_ordered", "out_of_stock")
    assert done["order_ids"] is None and "stock" in done["outcome_message"]
    assert await orders_of(db, buyer) == 0
    assert await balance(client, buyer) == started["amount_cents"]
    notices = await db.fetch(
        "SELECT payload FROM notifications WHERE user_id = $1 AND kind = 'card_order_failed'", uuid.UUID(buyer.id)
    )
    assert len(notices) == 1 and notices[0]["payload"]["amount_cents"] == started["amount_cents"]
    # A replayed success places nothing and notifies no more.
    intent = await db.fetchval("SELECT intent_id FROM card_payments WHERE id = $1", uuid.UUID(started["payment_id"]))
    body, headers = signed_event(event_of("payment_intent.succeeded", {"id": intent, "object": "payment_intent"}))
    assert (await client.post(WEBHOOK, data=body, headers=headers)).status == 200
    assert (
        await db.fetchval(
            "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'card_order_failed'", uuid.UUID(buyer.id)
        )
        == 1
    )
    assert await balance(client, buyer) == started["amount_cents"]
    await assert_books_balanced(db)


async def test_a_lost_webhook_s_order_is_placed_by_the_reconciliation(client, make, db, stripe_server, no_webhooks):
    variant = await shop_item(make, price=2_000)
    buyer = await make.user()
    await credit(db, buyer, 1_000)
    started = await (await buy_now(client, buyer, variant, key="lost")).json()
    await pay_by_card(client, stripe_server, buyer, started["payment_id"])
    assert (await payment(client, buyer, started["payment_id"]))["status"] == "pending"

    await db.execute(
        "UPDATE card_payments SET created_at = created_at - $2::interval WHERE id = $1",
        uuid.UUID(started["payment_id"]),
        timedelta(minutes=2),
    )
    settings, cards, pool = client.app[keys.SETTINGS], client.app[keys.CARDS], client.app[keys.POOL]
    assert await card_payments.reconcile(pool, cards, settings) >= 1
    done = await payment(client, buyer, started["payment_id"])
    assert done["outcome"] == "ordered", done
    assert await orders_of(db, buyer) == 1 and await balance(client, buyer) == 0
    await card_payments.reconcile(pool, cards, settings)
    assert await orders_of(db, buyer) == 1
    await assert_books_balanced(db)


async def test_a_declined_card_or_a_stranger_s_payment_is_refused(client, make, db, stripe_server, no_webhooks):
    variant = await shop_item(make)
    buyer, stranger = await make.user(), await make.user()
    started = await (await buy_now(client, buyer, variant)).json()
    declined = await card_token(stripe_server, "4000000000000341")  # declined when charged
    res = await client.post(
        f"/api/payments/{started['payment_id']}/card", json={"token": declined}, headers=buyer.headers
    )
    await error_of(res, 409, "conflict")
    token = await card_token(stripe_server)
    res = await client.post(
        f"/api/payments/{started['payment_id']}/card", json={"token": token}, headers=stranger.headers
    )
    await error_of(res, 404, "not_found")
    res = await client.post(f"/api/payments/{started['payment_id']}/card", json={"token": "x"}, headers=buyer.headers)
    await error_of(res, 422, "validation_error")
    assert await orders_of(db, buyer) == 0


async def test_pages_may_load_stripe_js_from_the_configured_origin(client, stripe_server):
    res = await client.get("/wallet")
    csp = res.headers["Content-Security-Policy"]
    assert f"script-src 'self' {stripe_server.url};" in csp, csp
    assert f"connect-src 'self' {stripe_server.url};" in csp and f"frame-src {stripe_server.url} " in csp, csp
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
