"""Email verification and password reset against a real SMTP server (docs/MESSAGES.md, "Accounts"): the
links' tokens work once, expire, and are stored only hashed; resend is rate limited; unverified accounts
buy but cannot apply to sell; a reset asks nothing of the email's owner and tells nothing about who has an account."""

import asyncio
import hashlib
import re
import time
from uuid import UUID

from smtp_server import body_html, body_text
from tests.helpers import error_of, top_up

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new staple"
LINK = re.compile(r"(https?://[^\s\"<>]+/(verify-email|reset-password)\?token=([A-Za-z0-9_-]+))")


def link_of(msg) -> tuple[str, str, str]:
    """(link, page, token) of the one link with a token in the email, the same in its text and HTML bodies."""
    found = {m[0] for m in LINK.findall(body_text(msg))}
    assert len(found) == 1, body_text(msg)
    assert found == {m[0] for m in LINK.findall(body_html(msg))}, body_html(msg)
    return LINK.search(body_text(msg)).groups()


async def register(client, email: str) -> dict:
    body = {"email": email, "password": PASSWORD, "display_name": "Mia Mail"}
    res = await client.post("/api/auth/register", json=body)
    assert res.status == 201, await res.text()
    client.session.cookie_jar.clear()
    return await res.json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def me(client, token: str) -> dict:
    res = await client.get("/api/me", headers=bearer(token))
    assert res.status == 200, await res.text()
    return (await res.json())["user"]


async def login(client, email: str, password: str):
    res = await client.post("/api/auth/login", json={"email": email, "password": password})
    client.session.cookie_jar.clear()
    return res


async def jobs_queued(db) -> int:
    """account_email jobs ever queued (pgqueuer's log keeps a 'queued' row per job)."""
    return await db.fetchval(
        "SELECT count(*) FROM pgqueuer_log WHERE entrypoint = 'account_email' AND status = 'queued'"
    )


async def requests_counted(db, key_prefix: str) -> int:
    """Requests the rate limits counted under keys starting with `key_prefix` ('reset email', ...)."""
    return await db.fetchval("SELECT count(*) FROM account_email_requests WHERE key LIKE $1", f"{key_prefix}%")


async def forget_recent_requests(db) -> None:
    """As if a day had passed for the rate limits (the controllable clock is the rows' time)."""
    await db.execute("UPDATE account_email_requests SET requested_at = requested_at - interval '1 day 1 minute'")


# -- verification -----------------------------------------------------------------------------------


async def test_registering_mails_a_link_that_verifies_once(smtp_server, client, db):
    data = await register(client, "mia@example.test")
    assert data["user"]["email_verified"] is False
    assert (await me(client, data["token"]))["email_verified"] is False

    msg = await smtp_server.wait_for("mia@example.test")
    assert "Verify your email" in str(msg["Subject"])
    link, page, token = link_of(msg)
    assert page == "verify-email" and link.startswith("http://127.0.0.1:8080/verify-email?token=")
    # Only the token's SHA-256 is stored, never the token itself.
    stored = await db.fetch("SELECT token_hash, purpose, expires_at - created_at AS ttl FROM account_tokens")
    assert [(r["token_hash"], r["purpose"]) for r in stored] == [
        (hashlib.sha256(token.encode()).digest(), "verify_email")
    ]
    assert stored[0]["ttl"].total_seconds() == 48 * 3600
    assert await db.fetchval("SELECT count(*) FROM account_tokens WHERE token_hash = $1", token.encode()) == 0

    res = await client.post("/api/auth/verify-email", json={"token": token})  # no sign-in needed
    assert res.status == 204, await res.text()
    assert (await me(client, data["token"]))["email_verified"] is True

    err = await error_of(await client.post("/api/auth/verify-email", json={"token": token}), 422, "invalid_token")
    assert err["details"] == {"reason": "used"}
    for bad in ("nope", token[:-1] + ("A" if token[-1] != "A" else "B"), "x" * 256):
        err = await error_of(await client.post("/api/auth/verify-email", json={"token": bad}), 422, "invalid_token")
        assert err["details"] == {"reason": "unknown"}


async def test_an_expired_verification_link_is_refused(smtp_server, client, db):
    data = await register(client, "late@example.test")
    _, _, token = link_of(await smtp_server.wait_for("late@example.test"))
    await db.execute("UPDATE account_tokens SET expires_at = now() - interval '1 second'")
    err = await error_of(await client.post("/api/auth/verify-email", json={"token": token}), 422, "invalid_token")
    assert err["details"] == {"reason": "expired"}
    assert (await me(client, data["token"]))["email_verified"] is False


async def test_a_registration_that_fails_queues_no_email(smtp_server, client, db):
    await register(client, "twice@example.test")
    res = await client.post(
        "/api/auth/register", json={"email": "twice@example.test", "password": PASSWORD, "display_name": "Again"}
    )
    await error_of(res, 409, "conflict")
    await smtp_server.wait_for("twice@example.test")
    assert await jobs_queued(db) == 1


async def test_resend_is_rate_limited_and_any_unused_link_verifies(smtp_server, client, db):
    data = await register(client, "resend@example.test")
    first = link_of(await smtp_server.wait_for("resend@example.test"))[2]
    # Registering counted as the first email: one a minute.
    res = await client.post("/api/auth/verify-email/resend", headers=bearer(data["token"]))
    err = await error_of(res, 429, "rate_limited")
    assert 0 < err["details"]["retry_after_s"] <= 60 and res.headers["Retry-After"] == str(
        err["details"]["retry_after_s"]
    )
    await error_of(await client.post("/api/auth/verify-email/resend"), 401, "unauthorized")

    # Four more a day, each a minute after the last (the rows' times moved back a minute stand for the clock).
    for n in range(2, 6):
        await db.execute("UPDATE account_email_requests SET requested_at = requested_at - interval '61 seconds'")
        res = await client.post("/api/auth/verify-email/resend", headers=bearer(data["token"]))
        assert res.status == 202, await res.text()
        await smtp_server.wait_for("resend@example.test", count=n)
    await db.execute("UPDATE account_email_requests SET requested_at = requested_at - interval '61 seconds'")
    res = await client.post("/api/auth/verify-email/resend", headers=bearer(data["token"]))
    err = await error_of(res, 429, "rate_limited")
    assert 23 * 3600 < err["details"]["retry_after_s"] <= 24 * 3600
    await forget_recent_requests(db)
    res = await client.post("/api/auth/verify-email/resend", headers=bearer(data["token"]))
    assert res.status == 202, await res.text()
    last = link_of(await smtp_server.wait_for("resend@example.test", count=6))[2]

    # Each email has its own link; the first one still works, and a later one after it too (already verified).
    assert len({first, last}) == 2
    assert (await client.post("/api/auth/verify-email", json={"token": first})).status == 204
    assert (await client.post("/api/auth/verify-email", json={"token": last})).status == 204
    await forget_recent_requests(db)
    res = await client.post("/api/auth/verify-email/resend", headers=bearer(data["token"]))
    await error_of(res, 409, "conflict")


async def test_an_unverified_account_may_not_apply_to_sell(smtp_server, client, make, db):
    user = await make.user(verified=False)
    assert user.user["email_verified"] is False
    res = await client.post("/api/sellers/apply", json={"shop_name": "Too Soon"}, headers=user.headers)
    err = await error_of(res, 403, "email_unverified")
    assert "verify" in err["message"]
    assert await db.fetchval("SELECT count(*) FROM sellers") == 0

    # It may still buy and browse meanwhile: a wallet top-up works.
    res = await client.post("/api/wallet/top-up", json={"amount_cents": 500}, headers=user.headers)
    assert res.status == 200, await res.text()

    _, _, token = link_of(await smtp_server.wait_for(user.user["email"]))
    assert (await client.post("/api/auth/verify-email", json={"token": token})).status == 204
    res = await client.post("/api/sellers/apply", json={"shop_name": "Now Then"}, headers=user.headers)
    assert res.status == 201, await res.text()


async def test_an_unverified_account_buys_and_gets_its_order_but_may_not_sell(smtp_server, client, make, db):
    """Issue 16: unverified users can watch and buy; only selling waits on a verified email."""
    seller = await make.seller(shop_name="Glow Lab")
    product = await make.product(seller)
    variant_id = product["variants"][0]["id"]
    buyer = await make.user(verified=False)  # registered through the API just now, its link unused
    assert (await me(client, buyer.token))["email_verified"] is False

    # Cart and checkout, paid from the wallet, as any buyer.
    await top_up(client, buyer, 2500)
    res = await client.post("/api/cart/items", json={"variant_id": variant_id, "quantity": 2}, headers=buyer.headers)
    assert res.status == 200, await res.text()
    res = await client.post("/api/cart/checkout", json={}, headers=buyer.headers)
    assert res.status == 201, await res.text()
    (order,) = (await res.json())["orders"]
    assert order["status"] == "paid" and order["total_cents"] == 2000

    # The order is theirs: in their list and on its page.
    res = await client.get("/api/orders", headers=buyer.headers)
    assert res.status == 200, await res.text()
    assert [o["id"] for o in (await res.json())["items"]] == [order["id"]]
    res = await client.get(f"/api/orders/{order['id']}", headers=buyer.headers)
    assert res.status == 200, await res.text()
    assert [i["quantity"] for i in (await res.json())["order"]["items"]] == [2]

    # Selling is what waits on the email.
    res = await client.post("/api/sellers/apply", json={"shop_name": "Resale"}, headers=buyer.headers)
    await error_of(res, 403, "email_unverified")
    assert await db.fetchval("SELECT count(*) FROM sellers WHERE user_id = $1", UUID(buyer.id)) == 0
    assert (await me(client, buyer.token))["email_verified"] is False


# -- password reset ---------------------------------------------------------------------------------


async def request_reset(client, email: str):
    res = await client.post("/api/auth/password-reset", json={"email": email})
    assert res.status == 202, await res.text()
    return await res.read()


async def reset_token(smtp_server, email: str, nth: int = 1, timeout_s: float = 20.0) -> str:
    """The token of the `nth` password reset email to `email` (a bounded poll: other emails may come too)."""
    deadline = time.monotonic() + timeout_s
    while True:
        links = [link_of(m) for m in smtp_server.messages(email) if "reset-password?token=" in body_text(m)]
        if len(links) >= nth:
            return links[nth - 1][2]
        assert time.monotonic() < deadline, f"no reset email {nth} to {email}; got {smtp_server.summary()}"
        await asyncio.sleep(0.05)


async def test_reset_for_an_unknown_email_answers_the_same_and_mails_nothing(smtp_server, client, db):
    await register(client, "known@example.test")
    await smtp_server.wait_for("known@example.test")
    unknown = await request_reset(client, "nobody@example.test")
    known = await request_reset(client, "Known@Example.test")
    assert unknown == known == b""
    await reset_token(smtp_server, "known@example.test", 1)
    assert smtp_server.messages("nobody@example.test") == []
    # Both were counted for the limits, only the known one queued a job (with the verification: 2).
    assert await requests_counted(db, "reset email") == 2
    assert await jobs_queued(db) == 2


async def test_reset_sets_a_new_password_and_signs_out_every_session(smtp_server, client, make, db):
    data = await register(client, "forgot@example.test")
    other = await login(client, "forgot@example.test", PASSWORD)
    other_token = (await other.json())["token"]
    await request_reset(client, "forgot@example.test")
    token = await reset_token(smtp_server, "forgot@example.test", 1)
    stored = await db.fetchrow("SELECT * FROM account_tokens WHERE purpose = 'password_reset'")
    assert stored["token_hash"] == hashlib.sha256(token.encode()).digest()
    assert (stored["expires_at"] - stored["created_at"]).total_seconds() == 3600

    # A password registration would refuse leaves the token usable.
    res = await client.post("/api/auth/password-reset/confirm", json={"token": token, "password": "password1"})
    err = await error_of(res, 422, "validation_error")
    assert err["details"]["errors"][0]["loc"] == ["password"]

    res = await client.post("/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})
    assert res.status == 204, await res.text()
    for session in (data["token"], other_token):
        assert (await client.get("/api/me", headers=bearer(session))).status == 401
    await error_of(await login(client, "forgot@example.test", PASSWORD), 401, "unauthorized")
    res = await login(client, "forgot@example.test", NEW_PASSWORD)
    assert res.status == 200, await res.text()
    # The link reached the inbox: the email counts as verified.
    assert (await res.json())["user"]["email_verified"] is True

    res = await client.post("/api/auth/password-reset/confirm", json={"token": token, "password": "yet another one!"})
    err = await error_of(res, 422, "invalid_token")
    assert err["details"] == {"reason": "used"}
    assert (await login(client, "forgot@example.test", NEW_PASSWORD)).status == 200
    audit = await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'password_reset'")
    assert audit == 1


async def test_an_expired_or_replaced_reset_link_is_refused(smtp_server, client, db):
    await register(client, "slow@example.test")
    await request_reset(client, "slow@example.test")
    older = await reset_token(smtp_server, "slow@example.test", 1)
    # A second request within the minute is dropped quietly (still 202).
    await request_reset(client, "slow@example.test")
    await db.execute("UPDATE account_email_requests SET requested_at = requested_at - interval '61 seconds'")
    await request_reset(client, "slow@example.test")
    newer = await reset_token(smtp_server, "slow@example.test", 2)
    assert len(smtp_server.messages("slow@example.test")) == 3  # the verification and two resets

    res = await client.post("/api/auth/password-reset/confirm", json={"token": older, "password": NEW_PASSWORD})
    assert (await error_of(res, 422, "invalid_token"))["details"] == {"reason": "used"}  # the newer one voided it
    await db.execute("UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
    res = await client.post("/api/auth/password-reset/confirm", json={"token": newer, "password": NEW_PASSWORD})
    assert (await error_of(res, 422, "invalid_token"))["details"] == {"reason": "expired"}
    assert (await login(client, "slow@example.test", PASSWORD)).status == 200
    # A verification token is no reset token, nor the other way round.
    res = await client.post("/api/auth/password-reset/confirm", json={"token": "A" * 43, "password": NEW_PASSWORD})
    assert (await error_of(res, 422, "invalid_token"))["details"] == {"reason": "unknown"}


async def test_a_verification_link_does_not_reset_a_password(smtp_server, client):
    await register(client, "mixed@example.test")
    _, _, token = link_of(await smtp_server.wait_for("mixed@example.test"))
    res = await client.post("/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})
    assert (await error_of(res, 422, "invalid_token"))["details"] == {"reason": "unknown"}
    assert (await client.post("/api/auth/verify-email", json={"token": token})).status == 204


async def test_reset_keeps_two_factor_sign_in(smtp_server, client, make):
    user = await make.user(email="guarded@example.test")
    await make.two_factor(user)
    await request_reset(client, "guarded@example.test")
    token = await reset_token(smtp_server, "guarded@example.test", 1)
    res = await client.post("/api/auth/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD})
    assert res.status == 204, await res.text()
    err = await error_of(await login(client, "guarded@example.test", NEW_PASSWORD), 401, "unauthorized")
    assert err["details"] == {"two_factor_required": True}
    res = await client.post(
        "/api/auth/login",
        json={"email": "guarded@example.test", "password": NEW_PASSWORD, "code": await user.sign_in_code()},
    )
    assert res.status == 200, await res.text()


async def test_reset_requests_from_one_address_are_limited_quietly(smtp_server, settings, aiohttp_client, db):
    from livehub.app import create_app

    settings.password_reset_per_address_per_day = 2
    client = await aiohttp_client(create_app(settings))
    await register(client, "a@example.test")
    await register(client, "b@example.test")
    await register(client, "c@example.test")
    for email in ("a@example.test", "b@example.test", "c@example.test"):
        await request_reset(client, email)
    await reset_token(smtp_server, "a@example.test", 1)
    await reset_token(smtp_server, "b@example.test", 1)
    assert await requests_counted(db, "reset address") == 2
    assert await jobs_queued(db) == 5  # three verifications, two resets
    assert len(smtp_server.messages("c@example.test")) == 1


async def test_no_email_for_a_deactivated_account(smtp_server, client, make, db):
    user = await make.user(email="gone@example.test")
    admin = await make.admin()
    res = await client.post(f"/api/admin/users/{user.id}/deactivate", json={"reason": "test"}, headers=admin.headers)
    assert res.status == 200, await res.text()
    await request_reset(client, "gone@example.test")
    assert await requests_counted(db, "reset email") == 1
    user_id = UUID(user.id)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM account_tokens WHERE user_id = $1 AND purpose = 'password_reset'", user_id
        )
        == 0
    )


async def test_one_reset_link_sent_twice_at_once_works_once(smtp_server, client, db):
    await register(client, "race@example.test")
    await request_reset(client, "race@example.test")
    token = await reset_token(smtp_server, "race@example.test")
    body = {"token": token, "password": NEW_PASSWORD}
    answers = await asyncio.gather(*(client.post("/api/auth/password-reset/confirm", json=body) for _ in range(2)))
    assert sorted(res.status for res in answers) == [204, 422]
    loser = next(res for res in answers if res.status == 422)
    assert (await error_of(loser, 422, "invalid_token"))["details"] == {"reason": "used"}
