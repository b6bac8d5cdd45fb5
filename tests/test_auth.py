"""Accounts and sessions through the REST API: register (refusing guessable passwords), sign in and out,
cookies, tokens that cannot be ours. The sign-in limits are tests/test_sign_in_limits.py; two-factor sign-in
tests/test_two_factor.py."""

import asyncio
import hashlib
import uuid

import orjson
import pytest

from livehub.app import create_app
from tests.helpers import error_of, mark_verified

PASSWORD = "correct horse battery"


def body(n: int | str = 1, **extra) -> dict:
    return {"email": f"user{n}@example.test", "password": PASSWORD, "display_name": f"User {n}", **extra}


async def register(client, n: int | str = 1, **extra) -> dict:
    res = await client.post("/api/auth/register", json=body(n, **extra))
    assert res.status == 201, await res.text()
    return await res.json()


async def login(client, email: str, password: str = PASSWORD, **kw):
    return await client.post("/api/auth/login", json={"email": email, "password": password}, **kw)


async def me(client, token: str):
    return await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})


def own_origin(client) -> str:
    return str(client.make_url("/")).rstrip("/")


def cookie_only(client, token: str) -> None:
    """Make the client a browser holding just this session cookie."""
    jar = client.session.cookie_jar
    jar.clear()
    jar.update_cookies({"livehub_session": token})


async def limited_client(aiohttp_client, settings, **update):
    return await aiohttp_client(create_app(settings.model_copy(update=update)))


# -- register ---------------------------------------------------------------------------------------


async def test_register_returns_user_and_token_and_sets_session_cookie(client):
    res = await client.post(
        "/api/auth/register",
        json={"email": "  Alice@Example.TEST ", "password": PASSWORD, "display_name": "Alice"},
    )
    assert res.status == 201, await res.text()
    data = await res.json()
    assert set(data) == {"user", "token"}
    user = data["user"]
    assert user["id"] and user["email"] == "alice@example.test"
    assert user["display_name"] == "Alice"
    assert user["roles"] == ["viewer"]
    assert user["seller_id"] is None
    assert "password" not in user and "password_hash" not in user
    assert isinstance(data["token"], str) and len(data["token"]) >= 40

    morsel = res.cookies["livehub_session"]
    assert morsel.value == data["token"]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert int(morsel["max-age"]) > 0

    res = await me(client, data["token"])
    assert res.status == 200
    assert (await res.json())["user"]["id"] == user["id"]


async def test_duplicate_email_is_a_conflict_regardless_of_case(client, db):
    await register(client, "dup")
    res = await client.post("/api/auth/register", json=body("dup") | {"email": "USERdup@Example.Test"})
    err = await error_of(res, 409, "conflict")
    assert err["details"] == {"field": "email"}
    assert await db.fetchval("SELECT count(*) FROM users") == 1


async def test_duplicate_phone_is_a_conflict(client, db):
    await register(client, 1, phone="+15551234567")
    res = await client.post("/api/auth/register", json=body(2, phone="+15551234567"))
    err = await error_of(res, 409, "conflict")
    assert err["details"] == {"field": "phone"}
    # Accounts without a phone never collide with each other.
    await register(client, 3)
    await register(client, 4)
    assert await db.fetchval("SELECT count(*) FROM users") == 3


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(body() | {"password": "short7!"}, id="password-too-short"),
        pytest.param(body() | {"password": ""}, id="password-empty"),
        pytest.param(body() | {"password": "x" * 257}, id="password-too-long"),
        pytest.param(body() | {"email": "not-an-email"}, id="email-without-at"),
        pytest.param(body() | {"email": "a@b"}, id="email-without-domain-dot"),
        pytest.param(body() | {"email": "a b@example.test"}, id="email-with-space"),
        pytest.param(body() | {"display_name": "   "}, id="blank-display-name"),
        pytest.param(body() | {"phone": "call me"}, id="bad-phone"),
        pytest.param(body() | {"is_admin": True}, id="unknown-field"),
        pytest.param(body() | {"roles": ["admin"]}, id="unknown-field-roles"),
        pytest.param(body() | {"email": 42}, id="email-not-a-string"),
        pytest.param(body() | {"password": 12345678}, id="password-not-a-string"),
        pytest.param(body() | {"display_name": ["x"]}, id="display-name-a-list"),
        pytest.param({"email": "user1@example.test", "password": PASSWORD}, id="missing-display-name"),
    ],
)
async def test_register_rejects_invalid_input(client, db, payload):
    res = await client.post("/api/auth/register", json=payload)
    await error_of(res, 422, "validation_error")
    assert await db.fetchval("SELECT count(*) FROM users") == 0


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("aaaaaaaa", "repeats"),
        ("password", "common"),
        ("12345678", "common"),
        ("qwertyuiop", "common"),
        ("Password1", "common"),
        ("P@ssw0rd!", "common"),
        ("iloveyou2", "common"),
        ("abcdefghij", "sequences"),
        ("user1@example.test", "your email"),
        ("USER1@example.test", "your email"),
        ("Ada Lovelace-Byron", "your email, phone or name"),
        ("+15550001234", "your email, phone or name"),
    ],
)
async def test_guessable_passwords_and_the_accounts_own_details_are_refused(client, db, password, why):
    payload = body(1, display_name="Ada Lovelace-Byron", phone="+15550001234") | {"password": password}
    err = await error_of(await client.post("/api/auth/register", json=payload), 422, "validation_error")
    assert why in err["message"].lower()
    (problem,) = err["details"]["errors"]
    assert problem["loc"] == ["password"] and problem["msg"] == err["message"]
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_a_long_password_is_judged_by_its_beginning_and_strong_ones_pass(client, db):
    res = await client.post("/api/auth/register", json=body(1) | {"password": "a" * 256})
    await error_of(res, 422, "validation_error")
    for n, password in enumerate(["correct horse battery", "пароль-🔑-secret", "x7#Kq!" + "z" * 250], start=2):
        assert (await client.post("/api/auth/register", json=body(n) | {"password": password})).status == 201


# -- login / logout ---------------------------------------------------------------------------------


async def test_login_by_email_and_by_phone(client):
    data = await register(client, 1, phone="+15550001111")
    user_id = data["user"]["id"]

    res = await login(client, "USER1@example.test")
    assert res.status == 200, await res.text()
    by_email = await res.json()
    assert by_email["user"]["id"] == user_id
    assert by_email["token"] != data["token"]
    assert res.cookies["livehub_session"].value == by_email["token"]

    res = await login(client, "+15550001111")
    assert res.status == 200, await res.text()
    by_phone = await res.json()
    assert by_phone["user"]["id"] == user_id

    for token in (data["token"], by_email["token"], by_phone["token"]):
        res = await me(client, token)
        assert res.status == 200
        assert (await res.json())["user"]["id"] == user_id


async def test_wrong_password_and_unknown_account_look_the_same(client):
    await register(client, 1)
    wrong = await error_of(await login(client, "user1@example.test", "not the password"), 401, "unauthorized")
    unknown = await error_of(await login(client, "nobody@example.test"), 401, "unauthorized")
    assert wrong["message"] == unknown["message"]
    assert wrong["details"] == unknown["details"]


async def test_logout_ends_the_session(client):
    data = await register(client, 1)
    other = await (await login(client, "user1@example.test")).json()
    token = data["token"]
    assert (await me(client, token)).status == 200

    res = await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert res.status == 204
    await error_of(await me(client, token), 401, "unauthorized")
    await error_of(
        await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"}), 401, "unauthorized"
    )
    # Only that session ends; the account's other sessions stay valid.
    assert (await me(client, other["token"])).status == 200


async def test_me_requires_a_valid_session(client):
    client.session.cookie_jar.clear()
    await error_of(await client.get("/api/me"), 401, "unauthorized")
    await error_of(await me(client, "not-a-token"), 401, "unauthorized")
    await error_of(await client.get("/api/me", headers={"Authorization": "Bearer "}), 401, "unauthorized")


async def raw_request(client, head: bytes) -> tuple[int, dict]:
    """Send a request as bytes (aiohttp's client would refuse these headers); its status and JSON body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"Host: livehub.test\r\nConnection: close\r\n\r\n")
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), orjson.loads(rest.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff\xfe\xfd",
        b"Authorization: Bearer abc\xc3(def",
        b"Authorization: Bearer \xed\xa0\x80",
        b"Cookie: livehub_session=\xff\xfe",
        b"Cookie: livehub_session=abc\xe9def",
    ],
)
async def test_a_token_that_is_not_utf8_is_unauthorized_not_a_crash(client, header):
    await register(client, 1)
    status, data = await raw_request(client, b"GET /api/me HTTP/1.1\r\n" + header + b"\r\n")
    assert (status, data["error"]["code"]) == (401, "unauthorized")
    status, _ = await raw_request(client, b"POST /api/auth/logout HTTP/1.1\r\n" + header + b"\r\n")
    assert status == 401
    # A route open to anyone takes such a caller as anonymous (no such seller, rather than a crash).
    path = f"/api/sellers/{uuid.uuid4()}".encode()
    status, data = await raw_request(client, b"GET " + path + b" HTTP/1.1\r\n" + header + b"\r\n")
    assert (status, data["error"]["code"]) == (404, "not_found")


async def test_sessions_and_passwords_are_stored_hashed(client, db):
    data = await register(client, 1)
    logged_in = await (await login(client, "user1@example.test")).json()
    rows = await db.fetch("SELECT s::text AS everything, token_hash FROM sessions s")
    assert len(rows) == 2
    hashes = {bytes(r["token_hash"]) for r in rows}
    for token in (data["token"], logged_in["token"]):
        assert hashlib.sha256(token.encode()).digest() in hashes
        for r in rows:
            assert token not in r["everything"]
            assert token.encode().hex() not in r["everything"]
    assert all(len(h) == 32 for h in hashes)

    password_hash = await db.fetchval("SELECT password_hash FROM users")
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash


async def test_expired_session_is_refused(client, db):
    data = await register(client, 1)
    assert (await me(client, data["token"])).status == 200
    await db.execute(
        "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
        hashlib.sha256(data["token"].encode()).digest(),
    )
    await error_of(await me(client, data["token"]), 401, "unauthorized")
    cookie_only(client, data["token"])
    await error_of(await client.get("/api/me"), 401, "unauthorized")


# -- cookie sessions and the Origin check -----------------------------------------------------------


async def test_cookie_alone_authenticates_reads(client):
    data = await register(client, 1)
    await register(client, 2)  # the jar now holds user 2's cookie; replace it with user 1's only
    cookie_only(client, data["token"])
    res = await client.get("/api/me")
    assert res.status == 200
    assert (await res.json())["user"]["id"] == data["user"]["id"]


async def test_cookie_writes_need_our_own_origin(client, db):
    data = await register(client, 1)
    await mark_verified(client, data["user"]["id"])
    cookie_only(client, data["token"])
    apply = {"shop_name": "Cookie Shop"}

    err = await error_of(await client.post("/api/sellers/apply", json=apply), 403, "forbidden")
    assert "origin" in err["message"].lower()
    for origin in ("https://evil.example", "null", own_origin(client) + ".evil.example", own_origin(client) + "/"):
        res = await client.post("/api/sellers/apply", json=apply, headers={"Origin": origin})
        await error_of(res, 403, "forbidden")
    assert await db.fetchval("SELECT count(*) FROM sellers") == 0

    res = await client.post("/api/sellers/apply", json=apply, headers={"Origin": own_origin(client)})
    assert res.status == 201, await res.text()
    assert (await res.json())["seller"]["status"] == "pending"

    # Logging out by cookie is a write too.
    await error_of(await client.post("/api/auth/logout"), 403, "forbidden")
    assert (await client.get("/api/me")).status == 200
    res = await client.post("/api/auth/logout", headers={"Origin": own_origin(client)})
    assert res.status == 204
    await error_of(await me(client, data["token"]), 401, "unauthorized")


async def test_configured_origins_may_write_with_the_cookie(aiohttp_client, settings, db):
    client = await limited_client(aiohttp_client, settings, allowed_origins=["https://shop.example"])
    data = await register(client, 1)
    await mark_verified(client, data["user"]["id"])
    cookie_only(client, data["token"])
    apply = {"shop_name": "Partner Shop"}
    await error_of(
        await client.post("/api/sellers/apply", json=apply, headers={"Origin": "https://other.example"}),
        403,
        "forbidden",
    )
    res = await client.post("/api/sellers/apply", json=apply, headers={"Origin": "https://shop.example"})
    assert res.status == 201, await res.text()


async def test_bearer_writes_need_no_origin(client):
    data = await register(client, 1)
    await mark_verified(client, data["user"]["id"])
    client.session.cookie_jar.clear()
    res = await client.post(
        "/api/sellers/apply", json={"shop_name": "API Shop"}, headers={"Authorization": f"Bearer {data['token']}"}
    )
    assert res.status == 201, await res.text()


async def test_bearer_wins_over_a_cookie(client):
    first = await register(client, 1)
    await mark_verified(client, first["user"]["id"])
    second = await register(client, 2)
    cookie_only(client, second["token"])
    res = await me(client, first["token"])
    assert (await res.json())["user"]["id"] == first["user"]["id"]
    # A bearer write is not subject to the Origin check even when a cookie rides along.
    res = await client.post(
        "/api/sellers/apply", json={"shop_name": "Mixed"}, headers={"Authorization": f"Bearer {first['token']}"}
    )
    assert res.status == 201, await res.text()
    assert (await res.json())["seller"]["user_id"] == first["user"]["id"]


async def test_https_origin_behind_a_trusted_tls_proxy(aiohttp_client, settings, db):
    client = await limited_client(aiohttp_client, settings, trusted_proxy_count=1)
    data = await register(client, 1)
    await mark_verified(client, data["user"]["id"])
    cookie_only(client, data["token"])
    https_origin = own_origin(client).replace("http://", "https://")
    res = await client.post("/api/sellers/apply", json={"shop_name": "Behind TLS"}, headers={"Origin": https_origin})
    await error_of(res, 403, "forbidden")  # without the proxy's word the hop is plain http
    res = await client.post(
        "/api/sellers/apply",
        json={"shop_name": "Behind TLS"},
        headers={"Origin": https_origin, "X-Forwarded-Proto": "https"},
    )
    assert res.status == 201, await res.text()


async def test_forwarded_proto_is_ignored_without_a_trusted_proxy(client, db):
    data = await register(client, 1)
    cookie_only(client, data["token"])
    https_origin = own_origin(client).replace("http://", "https://")
    res = await client.post(
        "/api/sellers/apply",
        json={"shop_name": "Spoofed"},
        headers={"Origin": https_origin, "X-Forwarded-Proto": "https"},
    )
    await error_of(res, 403, "forbidden")


# -- input hygiene ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Eve\u202eevil", "tab\tname", "bell\x07", "two\nlines"])
async def test_names_with_control_or_bidi_characters_are_refused(client, db, name):
    res = await client.post("/api/auth/register", json=body(1, display_name=name))
    err = await error_of(res, 422, "validation_error")
    assert err["details"]["errors"][0]["loc"] == ["display_name"]
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_phone_punctuation_is_ignored(client, db):
    await register(client, 1, phone="+1 (555) 123-4567")
    assert await db.fetchval("SELECT phone FROM users") == "+15551234567"
    res = await client.post("/api/auth/register", json=body(2, phone="+1 555.123.4567"))
    await error_of(res, 409, "conflict")
    assert (await login(client, "+1-555-123-4567")).status == 200


async def test_signing_in_sweeps_expired_sessions(client, db):
    first = await register(client, 1)
    await db.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
    assert (await login(client, "user1@example.test")).status == 200
    hashes = {r["token_hash"] for r in await db.fetch("SELECT token_hash FROM sessions")}
    assert hashlib.sha256(first["token"].encode()).digest() not in hashes and len(hashes) == 1
