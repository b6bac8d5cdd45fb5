"""Two-factor sign-in through the REST API: turning it on and off, signing in with a TOTP code or a recovery
code, replays refused, wrong codes limited like wrong passwords, secrets sealed in the database, and what
needs it: admins, payouts, and a fresh code for each admin money action."""

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from cryptography.fernet import Fernet

from helpers import error_of, top_up
from livehub import keys
from livehub.app import create_app
from livehub.twofactor import SecretBox

KEY_1, KEY_2, KEY_3 = (Fernet.generate_key().decode() for _ in range(3))


async def login(client, account, code: str | None = None, password: str | None = None, **kw):
    body = {"email": account.user["email"], "password": password or account.password}
    if code is not None:
        body["code"] = code
    return await client.post("/api/auth/login", json=body, **kw)


async def status(client, account) -> dict:
    res = await client.get("/api/me/two-factor", headers=account.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def ok(res, expected: int = 200) -> dict:
    assert res.status == expected, await res.text()
    return await res.json() if expected != 204 else {}


def bearer(account) -> dict:
    """Just the session: no X-Two-Factor-Code."""
    return {"Authorization": f"Bearer {account.token}"}


def other_code(totp: pyotp.TOTP) -> str:
    """A code that is none of the three the server accepts now."""
    accepted = {totp.at(time.time() + d) for d in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in accepted)


async def test_turning_it_on_takes_the_password_and_a_first_code(client, make, db):
    user = await make.user()
    assert await status(client, user) == {"enabled": False, "enabled_at": None, "recovery_codes_left": 0}
    res = await client.post("/api/me/two-factor/setup", json={"password": "not it"}, headers=user.headers)
    assert "password" in (await error_of(res, 403, "forbidden"))["message"]

    setup = await ok(
        await client.post("/api/me/two-factor/setup", json={"password": user.password}, headers=user.headers)
    )
    uri = urlsplit(setup["otpauth_uri"])
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    assert parse_qs(uri.query)["secret"] == [setup["secret"]] and parse_qs(uri.query)["issuer"] == ["LiveHub"]
    assert user.user["email"] in uri.path.replace("%40", "@")
    matrix = setup["qr_matrix"]
    assert len(matrix) >= 21 and all(len(row) == len(matrix) and set(row) <= {"0", "1"} for row in matrix)
    assert matrix[0].startswith("1111111")  # a finder pattern's edge, top left
    # Not on until a code from the app confirms the secret.
    assert (await status(client, user))["enabled"] is False
    assert (await login(client, user)).status == 200

    totp = pyotp.TOTP(setup["secret"])
    res = await client.post("/api/me/two-factor/enable", json={"code": other_code(totp)}, headers=user.headers)
    err = await error_of(res, 422, "validation_error")
    assert err["details"]["errors"][0]["loc"] == ["code"]
    codes = (await ok(await client.post("/api/me/two-factor/enable", json={"code": totp.now()}, headers=user.headers)))[
        "recovery_codes"
    ]
    assert len(codes) == 10 and len(set(codes)) == 10
    state = await status(client, user)
    assert state["enabled"] is True and state["enabled_at"] and state["recovery_codes_left"] == 10
    # One app at a time: setting up another needs turning this one off first.
    res = await client.post("/api/me/two-factor/setup", json={"password": user.password}, headers=user.headers)
    await error_of(res, 409, "conflict")
    res = await client.post("/api/me/two-factor/enable", json={"code": totp.now()}, headers=user.headers)
    await error_of(res, 409, "conflict")
    # Recovery codes are stored hashed.
    stored = await db.fetch("SELECT code_hash FROM recovery_codes")
    assert len(stored) == 10 and all(c.replace("-", "").encode() not in r["code_hash"] for r in stored for c in codes)


async def test_signing_in_asks_for_a_code_and_accepts_each_once(client, make, db):
    user = await make.two_factor(await make.user())
    res = await login(client, user)
    err = await error_of(res, 401, "unauthorized")
    assert err["details"] == {"two_factor_required": True}
    assert "livehub_session" not in res.cookies
    # A wrong password says nothing about a second factor: it looks like any other wrong password.
    wrong = await error_of(await login(client, user, password="not the password"), 401, "unauthorized")
    unknown = await error_of(
        await client.post("/api/auth/login", json={"email": "nobody@example.test", "password": "x"}), 401
    )
    same = ("code", "message", "details")  # each response has a request id of its own
    assert [wrong[k] for k in same] == [unknown[k] for k in same] and wrong["details"] == {}
    assert (await error_of(await login(client, user, other_code(user.totp)), 401))["details"] == {
        "two_factor_required": True
    }

    code = await user.sign_in_code()
    res = await login(client, user, code)
    assert res.status == 200, await res.text()
    assert res.cookies["livehub_session"].value == (await res.json())["token"]
    # The same code again is a replay, refused even though it is still current.
    assert (await error_of(await login(client, user, code), 401))["details"] == {"two_factor_required": True}


async def test_a_recovery_code_signs_in_once(client, make, db):
    user = await make.two_factor(await make.user())
    first, second = user.recovery_codes[:2]
    assert (await login(client, user, first.upper().replace("-", " "))).status == 200
    await error_of(await login(client, user, first), 401, "unauthorized")
    assert (await login(client, user, second)).status == 200
    assert (await status(client, user))["recovery_codes_left"] == 8


async def test_wrong_codes_count_as_failed_sign_ins(aiohttp_client, settings, make, db):
    client = await aiohttp_client(create_app(settings.model_copy(update={"login_max_failures_per_pair": 3})))
    make.client = client
    user = await make.two_factor(await make.user())
    for _ in range(3):
        await error_of(await login(client, user, other_code(user.totp)), 401, "unauthorized")
    # The pair is at its limit: the right code does not get tried.
    res = await login(client, user, await user.sign_in_code())
    await error_of(res, 429, "rate_limited")
    assert int(res.headers["Retry-After"]) > 0


async def test_turning_it_off_and_new_recovery_codes_take_a_code(client, make, db):
    user = await make.two_factor(await make.user())
    for path in ("/api/me/two-factor/disable", "/api/me/two-factor/recovery-codes"):
        res = await client.post(path, json={"code": other_code(user.totp)}, headers=user.headers)
        assert (await error_of(res, 403, "forbidden"))["details"] == {"two_factor_code_required": True}
    res = await client.post(
        "/api/me/two-factor/recovery-codes", json={"code": await user.sign_in_code()}, headers=user.headers
    )
    fresh = (await ok(res))["recovery_codes"]
    assert len(fresh) == 10 and not set(fresh) & set(user.recovery_codes)
    # The old codes stop working; the new ones work.
    await error_of(await login(client, user, user.recovery_codes[0]), 401, "unauthorized")
    res = await client.post("/api/me/two-factor/disable", json={"code": fresh[0]}, headers=user.headers)
    assert res.status == 204
    assert await status(client, user) == {"enabled": False, "enabled_at": None, "recovery_codes_left": 0}
    assert (await login(client, user)).status == 200
    assert await db.fetchval("SELECT count(*) FROM two_factor") == 0
    for path in ("/api/me/two-factor/disable", "/api/me/two-factor/recovery-codes"):
        res = await client.post(path, json={"code": "123456"}, headers=bearer(user))
        await error_of(res, 409, "conflict")


async def test_secrets_are_sealed_under_the_first_key_and_rotated(aiohttp_client, settings, make, db):
    make.client = await aiohttp_client(create_app(settings.model_copy(update={"two_factor_keys": [KEY_1]})))
    user = await make.two_factor(await make.user())
    secret = user.totp.secret
    stored = await db.fetchval("SELECT secret FROM two_factor")
    assert stored.startswith("fernet:") and secret not in stored

    # A new key first: the next start seals every secret under it, and codes keep working.
    rotated = await aiohttp_client(create_app(settings.model_copy(update={"two_factor_keys": [KEY_2, KEY_1]})))
    resealed = await db.fetchval("SELECT secret FROM two_factor")
    assert resealed.startswith("fernet:") and resealed.split(":")[1] != stored.split(":")[1]
    assert (await login(rotated, user, await user.sign_in_code())).status == 200
    only_new = await aiohttp_client(create_app(settings.model_copy(update={"two_factor_keys": [KEY_2]})))
    checks = only_new.app[keys.TWO_FACTOR]
    assert await checks.check_current(only_new.app[keys.POOL], uuid.UUID(user.id), user.totp.now())
    # Without the key that sealed them, a node refuses to start (this is its first step) rather than leave
    # everyone with two-factor sign-in unable to sign in.
    with pytest.raises(RuntimeError, match="LIVEHUB_TWO_FACTOR_KEYS"):
        await SecretBox([KEY_3]).reseal_all(only_new.app[keys.POOL])
    with pytest.raises(RuntimeError, match="LIVEHUB_TWO_FACTOR_KEYS"):
        await SecretBox([]).reseal_all(only_new.app[keys.POOL])


async def test_without_a_key_secrets_are_stored_as_they_are_and_sealed_once_one_is_set(
    aiohttp_client, settings, make, db
):
    user = await make.two_factor(await make.user())
    assert await db.fetchval("SELECT secret FROM two_factor") == f"plain:{user.totp.secret}"
    keyed = await aiohttp_client(create_app(settings.model_copy(update={"two_factor_keys": [KEY_1]})))
    assert user.totp.secret not in await db.fetchval("SELECT secret FROM two_factor")
    assert (await login(keyed, user, await user.sign_in_code())).status == 200


async def test_admins_act_as_admins_only_with_two_factor_on(client, make, db):
    admin = await make.user()
    await db.execute("UPDATE users SET roles = '{viewer,admin}' WHERE id = $1", uuid.UUID(admin.id))
    err = await error_of(await client.get("/api/admin/books", headers=admin.headers), 403, "forbidden")
    assert err["details"] == {"two_factor_setup_required": True}
    assert "two-factor" in err["message"]
    await make.two_factor(admin)
    assert (await client.get("/api/admin/books", headers=admin.headers)).status == 200
    # Through the session cookie as well (a browser).
    client.session.cookie_jar.update_cookies({"livehub_session": admin.token})
    assert (await client.get("/api/admin/books")).status == 200


async def test_admin_money_actions_need_a_fresh_code_each_time(client, make, db):
    admin, user = await make.admin(), await make.user()
    adjust = f"/api/admin/wallets/{user.id}/adjust"
    body = {"amount_cents": 250, "reason": "goodwill"}
    err = await error_of(await client.post(adjust, json=body, headers=bearer(admin)), 403, "forbidden")
    assert err["details"] == {"two_factor_code_required": True}
    wrong = {**bearer(admin), "X-Two-Factor-Code": other_code(admin.totp)}
    await error_of(await client.post(adjust, json=body, headers=wrong), 403, "forbidden")
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'wallet.adjust'") == 0
    fresh = {**bearer(admin), "X-Two-Factor-Code": admin.totp.now()}
    assert (await ok(await client.post(adjust, json=body, headers=fresh)))["balance_cents"] == 250
    # Within its 30 seconds the same code covers the next action too: it proves the app, it signs nobody in.
    assert (await client.post(adjust, json=body, headers=fresh)).status == 200

    seller = await make.seller(two_factor=True)
    buyer = await make.user()
    await top_up(client, buyer, 5000)
    product = await make.product(seller, variants=[{"sku": "P-1", "price_cents": 1000, "stock": 5}])
    order = await ok(
        await client.post(
            "/api/orders",
            json={"items": [{"variant_id": product["variants"][0]["id"], "quantity": 1}]},
            headers=buyer.headers,
        ),
        201,
    )
    oid = order["order"]["id"]
    tracking = {"carrier": "Parcel Co", "tracking_number": "PC1"}
    await ok(await client.post(f"/api/orders/{oid}/ship", json=tracking, headers=seller.headers))
    await ok(await client.post(f"/api/orders/{oid}/deliver", headers=buyer.headers))
    payouts = []
    for _ in range(2):
        res = await client.post("/api/seller/payouts", json={"amount_cents": 100}, headers=seller.headers)
        payouts.append((await ok(res, 201))["payout"]["id"])
    for path, json in (
        (f"/api/admin/payouts/{payouts[0]}/approve", {}),
        (f"/api/admin/payouts/{payouts[1]}/reject", {"reason": "check ID"}),
    ):
        await error_of(await client.post(path, json=json, headers=bearer(admin)), 403, "forbidden")
        await error_of(await client.post(path, json=json, headers=wrong), 403, "forbidden")
        assert (await client.post(path, json=json, headers=admin.headers)).status == 200


async def test_wrong_step_up_codes_are_limited(aiohttp_client, settings, make, db):
    make.client = client = await aiohttp_client(
        create_app(settings.model_copy(update={"login_max_failures_per_pair": 3}))
    )
    admin, user = await make.admin(), await make.user()
    adjust = f"/api/admin/wallets/{user.id}/adjust"
    body = {"amount_cents": 1, "reason": "test"}
    wrong = {**bearer(admin), "X-Two-Factor-Code": other_code(admin.totp)}
    for _ in range(3):
        await error_of(await client.post(adjust, json=body, headers=wrong), 403, "forbidden")
    await error_of(await client.post(adjust, json=body, headers=admin.headers), 429, "rate_limited")


async def test_payouts_need_two_factor_on(client, make, db):
    seller = await make.seller()
    res = await client.post("/api/seller/payouts", json={"amount_cents": 1}, headers=seller.headers)
    err = await error_of(res, 403, "forbidden")
    assert err["details"] == {"two_factor_setup_required": True} and "two-factor" in err["message"]
    await make.two_factor(seller)
    await make.payout_destination(seller)
    # Past the check: nothing to pay out yet.
    res = await client.post("/api/seller/payouts", json={"amount_cents": 1}, headers=seller.headers)
    await error_of(res, 409, "insufficient_funds")


async def test_the_spec_documents_sign_in_answers_and_the_code_header(client):
    spec = await (await client.get("/api/openapi.json")).json()
    login = spec["paths"]["/api/auth/login"]["post"]
    assert "two_factor_required" in login["responses"]["401"]["description"]
    assert "403" in login["responses"]
    for path in (
        "/api/admin/wallets/{user_id}/adjust",
        "/api/admin/payouts/{id}/approve",
        "/api/admin/payouts/{id}/reject",
    ):
        params = {p["name"]: p for p in spec["paths"][path]["post"]["parameters"]}
        assert params["X-Two-Factor-Code"]["in"] == "header" and params["X-Two-Factor-Code"]["required"]
    for path in ("/api/me/two-factor/setup", "/api/me/two-factor/enable", "/api/me/two-factor/disable"):
        assert spec["paths"][path]["post"]["security"]
