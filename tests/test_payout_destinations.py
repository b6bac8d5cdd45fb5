"""Payout destinations and payout providers: bank details sealed with Fernet (rotation included) and shown
masked, checked (IBAN check digits, US routing numbers), required before a payout with a minimum amount,
copied onto each payout so a later change does not redirect it; manual approval with the bank reference; a
paid payout that comes back returns its amount once. The books stay balanced throughout."""

import orjson
import pydantic
import pytest
from cryptography.fernet import Fernet

from livehub import keys, mail
from livehub.app import create_app
from livehub.settings import Settings
from livehub.shop import payout_destinations
from tests.helpers import assert_books_balanced, error_of
from tests.test_refunds import done, earnings, world

IBAN = "DE89370400440532013000"
OTHER_IBAN = "GB82WEST12345698765432"
KEY_1, KEY_2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


async def destination_of(client, account) -> dict | None:
    res = await client.get("/api/me/payout-destination", headers=account.headers)
    assert res.status == 200, await res.text()
    return (await res.json())["destination"]


async def put(client, account, **body):
    return await client.put("/api/me/payout-destination", json=body, headers=account.headers)


async def with_earnings(client, db, make):
    """test_refunds' world (a seller with a German IBAN as destination, a buyer, an admin) after one
    delivered order: 900 cents available to the seller."""
    w = await world(client, db, make)
    order = await w.order()
    await done(client, w.seller, order["id"], "ship")
    await done(client, w.buyer, order["id"], "deliver")
    assert (await earnings(client, w.seller))["available_cents"] == 900
    return w


async def ask(client, account, cents: int):
    return await client.post("/api/seller/payouts", json={"amount_cents": cents}, headers=account.headers)


async def decision_view(client, admin, payout_id: str) -> dict:
    res = await client.get(f"/api/admin/payouts/{payout_id}", headers=admin.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def test_a_destination_is_stored_sealed_and_shown_masked(client, make, db):
    user = await make.two_factor(await make.user())
    assert await destination_of(client, user) is None
    res = await put(client, user, holder_name="Ada Lovelace", country="de", iban="de89 3704 0044 0532 0130 00")
    assert res.status == 200, await res.text()
    shown = (await res.json())["destination"]
    assert {k: shown[k] for k in ("holder_name", "country", "kind", "last4", "connect_account_id")} == {
        "holder_name": "Ada Lovelace",
        "country": "DE",
        "kind": "iban",
        "last4": "3000",
        "connect_account_id": None,
    }
    assert await destination_of(client, user) == shown
    # The database holds no more than the last four: the whole row, as text, has neither the number nor
    # any longer piece of it.
    row = await db.fetchval("SELECT row_to_json(d)::text FROM payout_destinations d WHERE user_id = $1", user.id)
    assert IBAN not in row and IBAN[-8:] not in row and "0532" not in row
    sealed = await db.fetchval("SELECT sealed FROM payout_destinations WHERE user_id = $1", user.id)
    assert sealed.startswith("fernet:")

    # Elsewhere: account and routing number (a US one must pass the ABA check).
    res = await put(
        client, user, holder_name="Ada", country="US", account_number="000123456789", routing_number="011000015"
    )
    assert (await res.json())["destination"]["kind"] == "account"
    assert (await destination_of(client, user))["last4"] == "6789"
    row = await db.fetchval("SELECT row_to_json(d)::text FROM payout_destinations d WHERE user_id = $1", user.id)
    assert "123456789" not in row and "011000015" not in row

    res = await client.delete("/api/me/payout-destination", headers=user.headers)
    assert res.status == 204
    assert await destination_of(client, user) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"country": "DE", "iban": "DE89370400440532013001"}, "iban"),  # one digit off: the check digits fail
        ({"country": "DE", "iban": "DE8937040044"}, "iban"),
        ({"country": "FR", "iban": IBAN}, "iban"),  # a German IBAN for a French bank
        ({"country": "DE", "account_number": "12345678", "routing_number": "37040044"}, "iban"),
        ({"country": "US", "iban": IBAN}, "iban"),
        ({"country": "US", "account_number": "000123456789", "routing_number": "011000016"}, "routing_number"),
        ({"country": "CA", "account_number": "1234567"}, "routing_number"),
        ({"country": "ZZ", "iban": IBAN}, "country"),
    ],
)
async def test_bank_details_are_checked(client, make, body, field):
    user = await make.two_factor(await make.user())
    err = await error_of(await put(client, user, holder_name="Ada", **body), 422, "validation_error")
    assert err["details"]["field"] == field, err


async def test_without_keys_bank_details_are_refused(aiohttp_client, settings, make):
    make.client = client = await aiohttp_client(create_app(settings.model_copy(update={"payout_keys": []})))
    user = await make.two_factor(await make.user())
    err = await error_of(await put(client, user, holder_name="Ada", country="DE", iban=IBAN), 503, "unavailable")
    assert "LIVEHUB_PAYOUT_KEYS" in err["message"]


def test_stripe_connect_payouts_need_the_stripe_keys(settings):
    with pytest.raises(pydantic.ValidationError, match="STRIPE_SECRET_KEY, LIVEHUB_STRIPE_CONNECT_WEBHOOK_SECRET"):
        Settings(**{**settings.model_dump(), "payouts": "stripe-connect"})


def test_the_embedded_database_keeps_a_key_of_its_own(tmp_path):
    key = payout_destinations.embedded_key(tmp_path)
    assert payout_destinations.embedded_key(tmp_path) == key
    assert (tmp_path / "payout-keys").stat().st_mode & 0o777 == 0o600
    box = payout_destinations.payout_box([key])
    assert box.open(box.seal("secret")) == "secret"


async def test_key_rotation_old_keys_open_new_writes_use_the_first(aiohttp_client, settings, make, db):
    app_with = lambda keys: create_app(settings.model_copy(update={"payout_keys": keys}))  # noqa: E731
    make.client = client = await aiohttp_client(app_with([KEY_1]))
    w = await with_earnings(client, db, make)  # its seller's destination sealed under KEY_1
    payout = (await (await ask(client, w.seller, 300)).json())["payout"]
    sealed = await db.fetchval("SELECT sealed FROM payout_destinations WHERE user_id = $1", w.seller.id)
    old_fingerprint = sealed.split(":")[1]

    # KEY_2 first, KEY_1 still listed: the node reseals everything under KEY_2 as it starts, and what
    # KEY_1 sealed before opens.
    make.client = client = await aiohttp_client(app_with([KEY_2, KEY_1]))
    resealed = await db.fetchval("SELECT sealed FROM payout_destinations WHERE user_id = $1", w.seller.id)
    payout_copy = await db.fetchval("SELECT destination_sealed FROM payouts WHERE id = $1", payout["id"])
    assert resealed.split(":")[1] == payout_copy.split(":")[1] != old_fingerprint
    assert (await decision_view(client, w.admin, payout["id"]))["destination"]["number"] == IBAN
    # A new destination is sealed under the first key too.
    other = await make.two_factor(await make.user())
    await make.payout_destination(other, iban=OTHER_IBAN, country="GB")
    new = await db.fetchval("SELECT sealed FROM payout_destinations WHERE user_id = $1", other.id)
    assert new.split(":")[1] == resealed.split(":")[1]
    assert Fernet(KEY_2).decrypt(new.split(":", 2)[2].encode())

    # KEY_1 gone: everything still opens under KEY_2 alone.
    make.client = client = await aiohttp_client(app_with([KEY_2]))
    assert (await decision_view(client, w.admin, payout["id"]))["destination"]["number"] == IBAN
    # Only a key that sealed nothing: resealing (what a node does as it starts) refuses rather than lose
    # the bank details.
    stranger = payout_destinations.payout_box([Fernet.generate_key().decode()])
    with pytest.raises(RuntimeError, match="LIVEHUB_PAYOUT_KEYS"):
        await payout_destinations.reseal_all(stranger, client.app[keys.POOL])


async def test_a_payout_needs_a_destination_and_the_minimum(aiohttp_client, settings, make, db):
    make.client = client = await aiohttp_client(create_app(settings.model_copy(update={"min_payout_cents": 500})))
    w = await with_earnings(client, db, make)
    await client.delete("/api/me/payout-destination", headers=w.seller.headers)
    err = await error_of(await ask(client, w.seller, 600), 409, "conflict")
    assert err["details"] == {"payout_destination_required": True}
    await make.payout_destination(w.seller)
    err = await error_of(await ask(client, w.seller, 499), 422, "validation_error")
    assert err["details"] == {"min_payout_cents": 500}
    await error_of(await ask(client, w.seller, 901), 409, "insufficient_funds")
    assert (await ask(client, w.seller, 500)).status == 201
    assert (await earnings(client, w.seller))["available_cents"] == 400
    await assert_books_balanced(db)


async def test_a_payout_pays_the_destination_it_was_asked_for(client, make, db):
    w = await with_earnings(client, db, make)  # destination: IBAN
    payout = (await (await ask(client, w.seller, 400)).json())["payout"]
    assert payout["destination"]["last4"] == "3000"
    # Changed, then removed: the payout still goes to the IBAN it was asked for.
    await make.payout_destination(w.seller, country="GB", iban=OTHER_IBAN)
    await client.delete("/api/me/payout-destination", headers=w.seller.headers)
    view = await decision_view(client, w.admin, payout["id"])
    assert view["destination"]["number"] == IBAN and view["payout"]["destination"]["last4"] == "3000"
    res = await client.post(f"/api/admin/payouts/{payout['id']}/approve", json={}, headers=w.admin.headers)
    assert res.status == 200, await res.text()
    paid = (await res.json())["payout"]
    assert (paid["status"], paid["provider"], paid["destination"]["country"]) == ("paid", "instant-dev", "DE")
    # The seller's list shows it masked, never the number.
    listed = await (await client.get("/api/seller/payouts", headers=w.seller.headers)).text()
    assert IBAN not in listed and '"last4":"3000"' in listed
    await assert_books_balanced(db)


async def test_manual_payouts_need_the_bank_reference_and_the_view_is_audited(aiohttp_client, settings, make, db):
    make.client = client = await aiohttp_client(create_app(settings.model_copy(update={"payouts": "manual"})))
    w = await with_earnings(client, db, make)
    payout = (await (await ask(client, w.seller, 900)).json())["payout"]
    # Only admins see the full destination, and each look is in the audit log.
    await error_of(await client.get(f"/api/admin/payouts/{payout['id']}", headers=w.seller.headers), 403)
    view = await decision_view(client, w.admin, payout["id"])
    assert view["destination"] == {
        "holder_name": w.seller.user["display_name"],
        "country": "DE",
        "kind": "iban",
        "number": IBAN,
        "routing_number": None,
        "connect_account_id": None,
    }
    approve = f"/api/admin/payouts/{payout['id']}/approve"
    err = await error_of(await client.post(approve, json={}, headers=w.admin.headers), 422, "validation_error")
    assert err["details"] == {"field": "reference"}
    assert (await earnings(client, w.seller))["payouts_requested_cents"] == 900  # nothing happened
    res = await client.post(approve, json={"reference": "BANK-2026-0042"}, headers=w.admin.headers)
    assert res.status == 200, await res.text()
    paid = (await res.json())["payout"]
    assert (paid["status"], paid["provider_reference"], paid["provider"]) == ("paid", "BANK-2026-0042", "manual")
    memo = await db.fetchval(
        "SELECT memo FROM ledger_entries WHERE payout_id = $1 AND amount_cents > 0 ORDER BY id DESC LIMIT 1",
        payout["id"],
    )
    assert memo == "BANK-2026-0042"
    actions = await db.fetch(
        "SELECT action, actor_id::text, details FROM audit_log WHERE target_id = $1 ORDER BY id", payout["id"]
    )
    assert [(a["action"], a["actor_id"]) for a in actions] == [
        ("payout.view_destination", w.admin.id),
        ("payout.approve", w.admin.id),
    ]
    assert actions[1]["details"]["reference"] == "BANK-2026-0042"
    assert IBAN not in orjson.dumps([dict(a) for a in actions]).decode()
    await assert_books_balanced(db)


async def test_a_failed_payout_returns_its_money_once(client, make, db):
    w = await with_earnings(client, db, make)
    payout = (await (await ask(client, w.seller, 700)).json())["payout"]
    fail = f"/api/admin/payouts/{payout['id']}/fail"
    # Only a paid payout can come back.
    await error_of(await client.post(fail, json={"reason": "bounced"}, headers=w.admin.headers), 409, "conflict")
    res = await client.post(f"/api/admin/payouts/{payout['id']}/approve", json={}, headers=w.admin.headers)
    assert res.status == 200, await res.text()
    assert (await earnings(client, w.seller))["available_cents"] == 200
    for _ in range(2):  # the second time (a replayed failure) changes nothing
        res = await client.post(fail, json={"reason": "account closed"}, headers=w.admin.headers)
        assert res.status == 200, await res.text()
        failed = (await res.json())["payout"]
        assert (failed["status"], failed["reason"]) == ("failed", "account closed") and failed["failed_at"]
        assert (await earnings(client, w.seller))["available_cents"] == 900
        assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE payout_id = $1", payout["id"]) == 6
        await assert_books_balanced(db)
    await error_of(await client.post(fail, json={"reason": "x"}, headers=w.seller.headers), 403, "forbidden")
    # The seller is told once, in words that say it came back (not "refused").
    told = await db.fetch(
        """SELECT payload FROM notifications
            WHERE user_id = $1::text::uuid AND kind = 'payout_decided' ORDER BY created_at""",
        w.seller.id,
    )
    assert [t["payload"]["status"] for t in told] == ["paid", "failed"]
    context = {"payload": told[1]["payload"], "user": {"name": "Ada"}, "public_url": "https://shop.example"}
    context |= {"site_name": "LiveHub"}
    email = mail.render("payout_decided", context)
    assert email.subject == "Your payout of $7.00 came back" and "account closed" in email.text
    # The money is the seller's to ask for again.
    assert (await ask(client, w.seller, 900)).status == 201
    await assert_books_balanced(db)


async def test_a_reversed_stripe_transfer_fails_its_payout_once(aiohttp_client, settings, make, db):
    """Stripe Connect: the Transfer itself needs a Stripe with Connect (localstripe has none), so the payout
    is recorded as sent by decide_payout, as the node does once Stripe answers; the webhook is the real path."""
    from stripe_server import WEBHOOK_SECRET, signed_event

    connect = {
        "payouts": "stripe-connect",
        "stripe_secret_key": "sk_x",
        "stripe_connect_webhook_secret": WEBHOOK_SECRET,
    }
    make.client = client = await aiohttp_client(create_app(settings.model_copy(update=connect)))
    w = await with_earnings(client, db, make)
    await make.payout_destination(w.seller, connect_account_id="acct_1Seller")
    payout = (await (await ask(client, w.seller, 900)).json())["payout"]
    assert payout["destination"]["connect_account_id"] == "acct_1Seller"
    await db.fetchval(
        "SELECT status FROM decide_payout($1::text::uuid, $2::text::uuid, true, 'tr_1Paid', NULL, 'stripe-connect')",
        payout["id"],
        w.admin.id,
    )
    webhook = "/api/payouts/stripe/webhook"
    event = {"id": "evt_1", "type": "transfer.reversed", "data": {"object": {"id": "tr_1Paid", "amount": 900}}}

    body, headers = signed_event(event, secret="whsec_wrong")
    await error_of(await client.post(webhook, data=body, headers=headers), 400, "bad_signature")
    partial = {**event, "data": {"object": {"id": "tr_1Paid", "amount": 900, "amount_reversed": 100}}}
    body, headers = signed_event(partial)
    assert (await (await client.post(webhook, data=body, headers=headers)).json())["result"] == "ignored"
    assert (await earnings(client, w.seller))["available_cents"] == 0

    full = {**event, "data": {"object": {"id": "tr_1Paid", "amount": 900, "amount_reversed": 900}}}
    for _ in range(2):  # Stripe delivers an event at least once
        body, headers = signed_event(full)
        res = await client.post(webhook, data=body, headers=headers)
        assert (await res.json()) == {"received": True, "result": "applied"}
        assert (await earnings(client, w.seller))["available_cents"] == 900
        await assert_books_balanced(db)
    status = await db.fetchval("SELECT status FROM payouts WHERE id = $1::text::uuid", payout["id"])
    assert status == "failed"
    body, headers = signed_event({**full, "data": {"object": {"id": "tr_other", "amount": 5, "amount_reversed": 5}}})
    assert (await (await client.post(webhook, data=body, headers=headers)).json())["result"] == "not_ours"


async def test_changing_the_destination_needs_a_fresh_code_and_is_logged_and_told(client, make, db):
    """A stolen session alone cannot redirect payouts: without two-factor sign-in, or without a current code,
    the destination neither changes nor goes; a change is audit-logged (last four and country, never the
    number) and the user gets a notification (and its email), both in the change's transaction."""
    user = await make.user()
    res = await put(client, user, holder_name="Ada", country="DE", iban=IBAN)
    assert res.status == 403 and (await error_of(res))["details"]["two_factor_setup_required"] is True
    await make.payout_destination(user)  # turns two-factor sign-in on first
    stolen = {"Authorization": f"Bearer {user.token}"}  # the session, without the authenticator app
    body = {"holder_name": "Thief", "country": "GB", "iban": OTHER_IBAN}
    res = await client.put("/api/me/payout-destination", json=body, headers=stolen)
    assert res.status == 403 and (await error_of(res))["details"]["two_factor_code_required"] is True
    res = await client.put("/api/me/payout-destination", json=body, headers={**stolen, "X-Two-Factor-Code": "000000"})
    assert res.status == 403
    res = await client.delete("/api/me/payout-destination", headers=stolen)
    assert res.status == 403
    assert (await destination_of(client, user))["last4"] == "3000"

    res = await put(client, user, holder_name="Ada", country="GB", iban=OTHER_IBAN)
    assert res.status == 200, await res.text()
    assert (await client.delete("/api/me/payout-destination", headers=user.headers)).status == 204
    rows = await db.fetch(
        """SELECT details, address FROM audit_log
            WHERE action = 'payout.destination_change' AND actor_id = $1 ORDER BY at, id""",
        user.id,
    )
    assert [(orjson.loads(r["details"]) if isinstance(r["details"], str) else r["details"]) for r in rows] == [
        {"change": "saved", "last4": "3000", "country": "DE", "kind": "iban"},
        {"change": "saved", "last4": "5432", "country": "GB", "kind": "iban"},
        {"change": "removed", "last4": "5432", "country": "GB", "kind": "iban"},
    ]
    assert all(r["address"] for r in rows)
    told = await db.fetch(
        "SELECT payload FROM notifications WHERE user_id = $1 AND kind = 'payout_destination_changed'", user.id
    )
    assert len(told) == 3
    text = str([dict(r) for r in rows]) + str([r["payload"] for r in told])
    assert OTHER_IBAN not in text and IBAN not in text and "12345698" not in text


async def test_a_payout_needs_a_fresh_code(client, db, make):
    w = await with_earnings(client, db, make)
    stolen = {"Authorization": f"Bearer {w.seller.token}"}
    res = await client.post("/api/seller/payouts", json={"amount_cents": 500}, headers=stolen)
    assert res.status == 403 and (await error_of(res))["details"]["two_factor_code_required"] is True
    assert (await ask(client, w.seller, 500)).status == 201


async def test_a_stripe_transfer_whose_answer_was_lost_cannot_be_rejected(aiohttp_client, settings, make, db):
    """Approving a Stripe Connect payout commits `send_started_at` before calling Stripe. When the call
    fails (here Stripe's address is a closed port; it could as well have sent the Transfer and lost the
    answer), the payout stays requested with the mark, and rejecting it (the amount back to earnings, to be
    asked for and sent again under a new key) is a 409: only approving again, under the same key, settles it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    connect = {
        "payouts": "stripe-connect",
        "stripe_secret_key": "sk_x",
        "stripe_api_base": f"http://127.0.0.1:{closed}",
    }
    make.client = client = await aiohttp_client(create_app(settings.model_copy(update=connect)))
    w = await with_earnings(client, db, make)
    await make.payout_destination(w.seller, connect_account_id="acct_1Seller")
    payout = (await (await ask(client, w.seller, 900)).json())["payout"]
    assert payout["send_started_at"] is None
    approve = f"/api/admin/payouts/{payout['id']}/approve"
    await error_of(await client.post(approve, json={}, headers=w.admin.headers), 503, "unavailable")
    row = await db.fetchrow("SELECT status, send_started_at FROM payouts WHERE id = $1::text::uuid", payout["id"])
    assert row["status"] == "requested" and row["send_started_at"] is not None

    reject = f"/api/admin/payouts/{payout['id']}/reject"
    res = await client.post(reject, json={"reason": "timed out"}, headers=w.admin.headers)
    error = await error_of(res, 409, "conflict")
    assert "approve again" in error["message"] and error["details"]["transfer_may_have_been_sent"] is True
    assert await db.fetchval("SELECT status FROM payouts WHERE id = $1::text::uuid", payout["id"]) == "requested"
    assert (await earnings(client, w.seller))["available_cents"] == 0
    # Approving again keeps the mark (the first send's time) and asks Stripe again.
    await error_of(await client.post(approve, json={}, headers=w.admin.headers), 503, "unavailable")
    again = await db.fetchval("SELECT send_started_at FROM payouts WHERE id = $1::text::uuid", payout["id"])
    assert again == row["send_started_at"]
    await assert_books_balanced(db)
