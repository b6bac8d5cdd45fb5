"""Card top-ups through Stripe (a real localstripe server, tests/stripe_server.py): the wallet is credited
exactly what Stripe captured, exactly once, whatever the webhooks do; refunds and disputes take money back,
and what the wallet no longer holds is owed and blocks buying until a top-up settles it.

Which events come from where: payment_intent.succeeded is sent (signed) by localstripe itself when a test
pays; replays, out-of-order events, charge.refunded (localstripe sends none) and disputes (localstripe has
none) are signed here with the webhook secret, as Stripe signs them. Whatever the event says, the app asks
localstripe for the intent and its charge.
"""

import asyncio
import uuid
from datetime import timedelta

import pydantic
import pytest
from stripe_server import event_of, signed_event
from test_jobs import until

from helpers import assert_books_balanced, balance, error_of
from livehub import cli, jobs, keys
from livehub.app import create_app
from livehub.settings import Settings
from livehub.shop import card_payments

WEBHOOK = "/api/payments/stripe/webhook"


@pytest.fixture
async def client(aiohttp_client, stripe_settings, db):
    return await aiohttp_client(create_app(stripe_settings))


@pytest.fixture
async def webhooks_to(client, stripe_server):
    """localstripe's webhooks go to this test's node."""
    await stripe_server.register_webhook(str(client.make_url(WEBHOOK)))


@pytest.fixture
async def no_webhooks(stripe_server):
    """localstripe sends nothing (a webhook endpoint that takes no event type): the lost-webhook case."""
    await stripe_server.register_webhook("http://127.0.0.1:9/unused", events=["none.of.these"])


async def start_top_up(client, account, cents: int, **headers) -> dict:
    res = await client.post("/api/wallet/top-up", json={"amount_cents": cents}, headers={**account.headers, **headers})
    body = await res.json()
    assert res.status == 200, body
    assert body["status"] == "requires_payment" and body["amount_cents"] == cents, body
    assert body["client_secret"] and body["publishable_key"] == "pk_test_livehub"
    return body


async def intent_of(db, payment_id) -> str:
    return await db.fetchval("SELECT intent_id FROM card_payments WHERE id = $1", uuid.UUID(str(payment_id)))


async def payment_status(client, account, payment_id) -> dict:
    res = await client.get(f"/api/payments/{payment_id}", headers=account.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def deliver(client, event: dict):
    body, headers = signed_event(event)
    res = await client.post(WEBHOOK, data=body, headers=headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def paid_top_up(client, db, stripe_server, account, cents: int) -> str:
    """A card top-up the user paid; returns the intent (credited or not, depending on webhooks)."""
    started = await start_top_up(client, account, cents)
    intent = await intent_of(db, started["payment_id"])
    await stripe_server.pay(intent)
    return intent


async def test_a_top_up_is_credited_once_from_localstripe_s_webhook_despite_replays(
    client, make, db, stripe_server, webhooks_to
):
    buyer = await make.user()
    started = await start_top_up(client, buyer, 2_500, **{"Idempotency-Key": "card-1"})
    # The route's Idempotency-Key: a retry gets the same payment, not a second intent.
    again = await start_top_up(client, buyer, 2_500, **{"Idempotency-Key": "card-1"})
    assert again["payment_id"] == started["payment_id"]
    assert await db.fetchval("SELECT count(*) FROM card_payments") == 1
    assert (await payment_status(client, buyer, started["payment_id"]))["status"] == "pending"
    assert await balance(client, buyer) == 0

    intent = await intent_of(db, started["payment_id"])
    await stripe_server.pay(intent)
    await until(lambda: _credited(db, intent), timeout_s=20, what="the webhook's credit")
    assert await balance(client, buyer) == 2_500

    # The same success, delivered again (as Stripe retries) and with a forged amount in its body: the
    # amount credited is Stripe's (asked again), and it is credited once.
    pi = await stripe_server.call("GET", f"/v1/payment_intents/{intent}")
    for _ in range(3):
        assert (await deliver(client, event_of("payment_intent.succeeded", pi | {"amount_received": 99_999})))[
            "result"
        ] == "applied"
    assert await balance(client, buyer) == 2_500
    status = await payment_status(client, buyer, started["payment_id"])
    assert status["status"] == "succeeded" and status["received_cents"] == 2_500
    deposits = await db.fetchval(
        "SELECT count(*) FROM ledger_entries e JOIN accounts a ON a.id = e.account_id "
        "WHERE a.user_id = $1 AND e.type = 'deposit'",
        uuid.UUID(buyer.id),
    )
    assert deposits == 1
    await assert_books_balanced(db)


async def _credited(db, intent: str) -> bool:
    return await db.fetchval("SELECT status = 'succeeded' FROM card_payments WHERE intent_id = $1", intent)


async def test_events_out_of_order_change_nothing_wrong(client, make, db, stripe_server, no_webhooks):
    buyer = await make.user()
    intent = await paid_top_up(client, db, stripe_server, buyer, 3_000)
    pi = await stripe_server.call("GET", f"/v1/payment_intents/{intent}")
    # A failure and a 'processing' arriving late (after the success at Stripe): Stripe says succeeded.
    await deliver(client, event_of("payment_intent.payment_failed", pi | {"status": "requires_payment_method"}))
    await deliver(client, event_of("payment_intent.processing", pi | {"status": "processing"}))
    assert await balance(client, buyer) == 3_000
    await deliver(client, event_of("payment_intent.succeeded", pi))
    await deliver(client, event_of("payment_intent.payment_failed", pi | {"status": "requires_payment_method"}))
    assert await balance(client, buyer) == 3_000

    # A refund whose event comes before the success was ever seen: credited, then the refund taken back.
    other = await make.user()
    intent = await paid_top_up(client, db, stripe_server, other, 4_000)
    refund = await stripe_server.refund(intent, 1_500)
    charge = await stripe_server.call("GET", f"/v1/charges/{refund['charge']}")
    assert (await deliver(client, event_of("charge.refunded", charge)))["result"] == "applied"
    assert await balance(client, other) == 2_500
    # The refund's event again, and the success's late: nothing more.
    await deliver(client, event_of("charge.refunded", charge))
    pi = await stripe_server.call("GET", f"/v1/payment_intents/{intent}")
    await deliver(client, event_of("payment_intent.succeeded", pi))
    assert await balance(client, other) == 2_500
    # A second partial refund takes back only its own amount.
    await stripe_server.refund(intent, 500)
    await deliver(client, event_of("charge.refunded", charge))
    assert await balance(client, other) == 2_000
    row = await db.fetchrow("SELECT received_cents, refunded_cents FROM card_payments WHERE intent_id = $1", intent)
    assert dict(row) == {"received_cents": 4_000, "refunded_cents": 2_000}
    await assert_books_balanced(db)


async def test_a_bad_or_missing_signature_is_400_and_changes_nothing(client, make, db, stripe_server, no_webhooks):
    buyer = await make.user()
    intent = await paid_top_up(client, db, stripe_server, buyer, 1_000)
    pi = await stripe_server.call("GET", f"/v1/payment_intents/{intent}")
    body, headers = signed_event(event_of("payment_intent.succeeded", pi), secret="whsec_someone_else")
    await error_of(await client.post(WEBHOOK, data=body, headers=headers), 400, "bad_signature")
    await error_of(await client.post(WEBHOOK, data=body), 400, "bad_signature")
    # Signed right, but the body changed after signing.
    body, headers = signed_event(event_of("payment_intent.succeeded", pi))
    await error_of(await client.post(WEBHOOK, data=body.replace(b"1000", b"9000"), headers=headers), 400)
    assert await balance(client, buyer) == 0
    assert await db.fetchval("SELECT status FROM card_payments WHERE intent_id = $1", intent) == "pending"


async def test_unknown_events_and_intents_that_are_not_ours_are_ignored(client, make, db, stripe_server):
    assert (await deliver(client, event_of("customer.created", {"id": "cus_1", "object": "customer"})))[
        "result"
    ] == "ignored"
    stranger = await stripe_server.call(
        "POST", "/v1/payment_intents", {"amount": "700", "currency": "usd", "payment_method_types[]": "card"}
    )
    assert (await deliver(client, event_of("payment_intent.succeeded", stranger)))["result"] == "not_ours"
    books = await db.fetchval("SELECT check_books()")
    assert books["money_in_cents"] == 0


async def opened_ago(db, intent: str, ago: timedelta) -> None:
    """The payment of this intent as if opened `ago` earlier than it was."""
    await db.execute(
        "UPDATE card_payments SET created_at = created_at - $2::interval WHERE intent_id = $1", intent, ago
    )


async def test_a_lost_webhook_is_healed_by_reconciliation(client, make, db, stripe_server, no_webhooks):
    buyer = await make.user()
    intent = await paid_top_up(client, db, stripe_server, buyer, 1_800)
    settings = client.app[keys.SETTINGS]
    cards = client.app[keys.CARDS]
    # Too recent: its webhook may still be on its way.
    assert await card_payments.reconcile(client.app[keys.POOL], cards, settings) == 0
    await opened_ago(db, intent, timedelta(minutes=2))
    assert await card_payments.reconcile(client.app[keys.POOL], cards, settings) == 1
    assert await balance(client, buyer) == 1_800
    assert await card_payments.reconcile(client.app[keys.POOL], cards, settings) == 0
    assert await balance(client, buyer) == 1_800

    # The node's schedule runs the same (each minute by default, on one node).
    intent = await paid_top_up(client, db, stripe_server, buyer, 700)
    await opened_ago(db, intent, timedelta(minutes=2))
    await jobs.SCHEDULES["reconcile_card_payments"].handler(client.app[keys.JOBS].context())
    assert await balance(client, buyer) == 2_500
    await assert_books_balanced(db)


async def test_reconciliation_reaches_a_paid_payment_behind_more_unpaid_ones_than_a_run_takes(
    client, make, db, stripe_server, no_webhooks
):
    buyer = await make.user()
    settings = client.app[keys.SETTINGS]
    cards = client.app[keys.CARDS]
    pool = client.app[keys.POOL]
    # Five payments nobody paid (younger than the abandon age: they stay pending), all older than the one
    # paid whose webhook was lost; a run takes three.
    for n in range(5):
        started = await start_top_up(client, buyer, 100)
        await opened_ago(db, await intent_of(db, started["payment_id"]), timedelta(minutes=10 - n))
    paid = await paid_top_up(client, db, stripe_server, buyer, 900)
    await opened_ago(db, paid, timedelta(minutes=2))

    assert await card_payments.reconcile(pool, cards, settings, limit=3) == 0
    assert await card_payments.reconcile(pool, cards, settings, limit=3) == 1
    assert await _credited(db, paid)
    assert await balance(client, buyer) == 900
    # Every pending payment was asked about once, none twice.
    checked = await db.fetchval("SELECT count(*) FROM card_payments WHERE checked_at IS NOT NULL")
    assert checked == 6
    assert await db.fetchval("SELECT count(*) FROM card_payments WHERE status = 'pending'") == 5
    await assert_books_balanced(db)


async def test_a_payment_left_unpaid_past_the_abandon_age_is_canceled_at_stripe_and_here(
    client, make, db, stripe_server, no_webhooks
):
    buyer = await make.user()
    settings = client.app[keys.SETTINGS]
    settings.card_payment_abandon_s = 3600
    abandoned = await start_top_up(client, buyer, 1_200)
    abandoned_intent = await intent_of(db, abandoned["payment_id"])
    await opened_ago(db, abandoned_intent, timedelta(hours=2))
    # Unpaid but young enough that the buyer may still pay it.
    waiting = await start_top_up(client, buyer, 1_300)
    waiting_intent = await intent_of(db, waiting["payment_id"])
    await opened_ago(db, waiting_intent, timedelta(minutes=5))
    # Paid as long ago, its webhook lost: credited, never canceled.
    paid = await paid_top_up(client, db, stripe_server, buyer, 1_400)
    await opened_ago(db, paid, timedelta(hours=2))

    assert await card_payments.reconcile(client.app[keys.POOL], client.app[keys.CARDS], settings) == 2
    pi = await stripe_server.call("GET", f"/v1/payment_intents/{abandoned_intent}")
    assert pi["status"] == "canceled"
    assert (await payment_status(client, buyer, abandoned["payment_id"]))["status"] == "canceled"
    waiting_pi = await stripe_server.call("GET", f"/v1/payment_intents/{waiting_intent}")
    assert waiting_pi["status"] == "requires_payment_method"
    assert (await payment_status(client, buyer, waiting["payment_id"]))["status"] == "pending"
    assert await _credited(db, paid)
    assert await balance(client, buyer) == 1_400

    # A forged success for the canceled intent: the app asks Stripe, which says canceled.
    await deliver(client, event_of("payment_intent.succeeded", pi | {"status": "succeeded", "amount_received": 1_200}))
    assert (await payment_status(client, buyer, abandoned["payment_id"]))["status"] == "canceled"
    assert await balance(client, buyer) == 1_400
    await assert_books_balanced(db)


async def test_a_database_error_on_one_payment_does_not_stop_the_others(client, make, db, stripe_server, no_webhooks):
    buyer = await make.user()
    failing = await paid_top_up(client, db, stripe_server, buyer, 600)
    await opened_ago(db, failing, timedelta(minutes=3))
    other = await paid_top_up(client, db, stripe_server, buyer, 800)
    await opened_ago(db, other, timedelta(minutes=2))
    # The first payment's settling fails as a deadlock would (SQLSTATE 40P01), whichever node tried it.
    await db.execute(
        """
        CREATE FUNCTION public.test_deadlock_card_payment() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'deadlock detected (test)' USING ERRCODE = '40P01';
        END $$
        """
    )
    await db.execute(
        f"CREATE TRIGGER test_deadlock BEFORE UPDATE ON card_payments FOR EACH ROW "
        f"WHEN (OLD.intent_id = '{failing}' AND NEW.updated_at IS DISTINCT FROM OLD.updated_at) "
        f"EXECUTE FUNCTION public.test_deadlock_card_payment()"
    )
    pool, cards, settings = client.app[keys.POOL], client.app[keys.CARDS], client.app[keys.SETTINGS]
    try:
        assert await card_payments.reconcile(pool, cards, settings) == 1
    finally:
        await db.execute("DROP TRIGGER test_deadlock ON card_payments")
        await db.execute("DROP FUNCTION public.test_deadlock_card_payment()")
    assert await _credited(db, other) and not await _credited(db, failing)
    assert await balance(client, buyer) == 800
    # The next run settles it.
    assert await card_payments.reconcile(pool, cards, settings) == 1
    assert await balance(client, buyer) == 1_400
    await assert_books_balanced(db)


async def test_refund_and_dispute_after_spending_are_owed_block_buying_and_a_top_up_settles(
    client, make, db, stripe_server, no_webhooks
):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "CARD-1", "price_cents": 2_000, "stock": 10}])
    variant = product["variants"][0]["id"]
    buyer = await make.user()
    intent = await paid_top_up(client, db, stripe_server, buyer, 5_000)
    await card_payments.sync_intent(client.app[keys.POOL], client.app[keys.CARDS], intent)
    assert await balance(client, buyer) == 5_000
    res = await client.post("/api/orders", json={"items": [{"variant_id": variant}]}, headers=buyer.headers)
    assert res.status == 201, await res.text()
    spent = 5_000 - await balance(client, buyer)
    assert spent >= 2_000

    # Refunded in full after most of it was spent: the rest of the wallet goes, the remainder is owed.
    await stripe_server.refund(intent)
    charge = (await stripe_server.call("GET", f"/v1/payment_intents/{intent}"))["latest_charge"]
    charge = await stripe_server.call("GET", f"/v1/charges/{charge if isinstance(charge, str) else charge['id']}")
    await deliver(client, event_of("charge.refunded", charge))
    assert await balance(client, buyer) == 0
    assert (await payment_status(client, buyer, (await _payment_id(db, intent))))["owed_cents"] == spent

    error = await error_of(
        await client.post("/api/orders", json={"items": [{"variant_id": variant}]}, headers=buyer.headers),
        402,
        "payment_owed",
    )
    assert error["details"] == {"owed_cents": spent}
    admin = await make.admin()
    res = await client.get("/api/admin/owed", headers=admin.headers)
    assert (await res.json())["items"] == [{"user_id": buyer.id, "email": buyer.user["email"], "owed_cents": spent}]
    books = await db.fetchval("SELECT check_books()")
    assert books["balanced"] and books["owed_cents"] == spent, books

    # A dispute on another payment, spent too: owed grows by the disputed amount, once per dispute.
    intent2 = await paid_top_up(client, db, stripe_server, buyer, 1_000)
    await card_payments.sync_intent(client.app[keys.POOL], client.app[keys.CARDS], intent2)
    # The top-up paid what was owed first (all of it went there: more was owed).
    assert await balance(client, buyer) == 0
    pi2 = await stripe_server.call("GET", f"/v1/payment_intents/{intent2}")
    charge2 = pi2["latest_charge"] if isinstance(pi2["latest_charge"], str) else pi2["latest_charge"]["id"]
    dispute = {"id": "dp_test_1", "object": "dispute", "amount": 1_000, "charge": charge2, "status": "needs_response"}
    for _ in range(2):
        await deliver(client, event_of("charge.dispute.created", dispute))
    books = await db.fetchval("SELECT check_books()")
    assert books["balanced"] and books["owed_cents"] == spent - 1_000 + 1_000, books
    owed = books["owed_cents"]

    # Settled by the next top-up: the owed part first, the rest to the wallet; buying works again.
    intent3 = await paid_top_up(client, db, stripe_server, buyer, owed + 3_000)
    await card_payments.sync_intent(client.app[keys.POOL], client.app[keys.CARDS], intent3)
    assert await balance(client, buyer) == 3_000
    res = await client.post("/api/orders", json={"items": [{"variant_id": variant}]}, headers=buyer.headers)
    assert res.status == 201, await res.text()
    books = await db.fetchval("SELECT check_books()")
    assert books["balanced"] and books["owed_cents"] == 0, books


async def _payment_id(db, intent: str):
    return await db.fetchval("SELECT id FROM card_payments WHERE intent_id = $1", intent)


async def test_two_nodes_getting_the_same_event_at_once_credit_once(
    aiohttp_client, client, stripe_settings, make, db, stripe_server, no_webhooks
):
    other_node = await aiohttp_client(create_app(stripe_settings))
    buyer = await make.user()
    intent = await paid_top_up(client, db, stripe_server, buyer, 6_000)
    pi = await stripe_server.call("GET", f"/v1/payment_intents/{intent}")
    body, headers = signed_event(event_of("payment_intent.succeeded", pi, "evt_same"))
    replies = await asyncio.gather(
        *(node.post(WEBHOOK, data=body, headers=headers) for node in (client, other_node) for _ in range(4))
    )
    assert [r.status for r in replies] == [200] * 8
    assert await balance(client, buyer) == 6_000
    await assert_books_balanced(db)


async def test_top_up_limits_are_refused(client, make, db, stripe_settings):
    buyer = await make.user()
    res = await client.post("/api/wallet/top-up", json={"amount_cents": 49}, headers=buyer.headers)
    await error_of(res, 422, "validation_error")
    res = await client.post("/api/wallet/top-up", json={"amount_cents": 1_000_001}, headers=buyer.headers)
    await error_of(res, 422, "validation_error")
    stripe_settings.card_daily_top_up_cents = 10_000
    await start_top_up(client, buyer, 6_000)
    await start_top_up(client, buyer, 4_000)
    error = await error_of(
        await client.post("/api/wallet/top-up", json={"amount_cents": 50}, headers=buyer.headers), 409, "top_up_limit"
    )
    assert error["details"] == {"limit_cents": 10_000, "used_cents": 10_000}
    # Another user has a limit of their own.
    await start_top_up(client, await make.user(), 10_000)
    assert await db.fetchval("SELECT count(*) FROM card_payments") == 3


def test_stripe_without_its_keys_refuses_to_start(monkeypatch, capsys):
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "LIVEHUB_PAYMENTS", "LIVEHUB_PAYMENT_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(pydantic.ValidationError, match="STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET"):
        Settings(payment_provider="stripe", stripe_publishable_key="pk_test_x")
    assert Settings().payment_provider == "instant-dev"
    # The node's command says what is missing and stops, without echoing the values it was given.
    monkeypatch.setenv("LIVEHUB_PAYMENTS", "stripe")
    monkeypatch.setenv("STRIPE_PUBLISHABLE_KEY", "pk_test_do_not_print")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "LIVEHUB_PAYMENTS=stripe needs STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET set" in err
    assert "pk_test_do_not_print" not in err


def test_the_provider_setting_has_its_old_name_too(monkeypatch):
    monkeypatch.setenv("LIVEHUB_PAYMENT_PROVIDER", "instant-dev")
    assert Settings().payment_provider == "instant-dev"
    monkeypatch.delenv("LIVEHUB_PAYMENT_PROVIDER")
    for name, value in {
        "LIVEHUB_PAYMENTS": "stripe",
        "STRIPE_SECRET_KEY": "sk_test_1",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_1",
        "STRIPE_WEBHOOK_SECRET": "whsec_1",
    }.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.payment_provider, settings.stripe_secret_key) == ("stripe", "sk_test_1")
