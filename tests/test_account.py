"""Your own account: the profile (display name, phone), a password change that signs every other session
out, and the list of sessions (devices) to sign out one by one or all but this one. Through the REST API
against a real PostgreSQL."""

import uuid

from tests.helpers import error_of

NEW_PASSWORD = "a brand new passphrase 42"


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json() if status != 204 else {}


async def sign_in(client, account, user_agent: str, password: str | None = None) -> str:
    """Another session of `account`, opened from a device that says `user_agent`: its token."""
    body = {"email": account.user["email"], "password": password or account.password}
    res = await client.post("/api/auth/login", json=body, headers={"User-Agent": user_agent})
    token = (await ok(res))["token"]
    client.session.cookie_jar.clear()  # each device is its own client: tokens are sent explicitly
    return token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def me(client, token: str):
    return await client.get("/api/me", headers=bearer(token))


async def sessions(client, token: str) -> list[dict]:
    return (await ok(await client.get("/api/me/sessions", headers=bearer(token))))["sessions"]


async def test_the_profile_changes_what_is_given(client, make, db):
    user = await make.user()
    other = await make.user(phone="+1 555 010 0200")

    res = await client.patch("/api/me", json={"display_name": "  Ann Smith "}, headers=user.headers)
    changed = (await ok(res))["user"]
    assert (changed["display_name"], changed["email"], changed["phone"]) == ("Ann Smith", user.user["email"], None)
    res = await client.patch("/api/me", json={"phone": "+44 20 7946 0000"}, headers=user.headers)
    changed = (await ok(res))["user"]
    assert (changed["display_name"], changed["phone"]) == ("Ann Smith", "+442079460000")  # the name kept
    seen = (await ok(await me(client, user.token)))["user"]
    assert (seen["display_name"], seen["phone"]) == ("Ann Smith", "+442079460000")
    # Nothing given changes nothing; a phone of null removes it.
    assert (await ok(await client.patch("/api/me", json={}, headers=user.headers)))["user"] == seen
    cleared = (await ok(await client.patch("/api/me", json={"phone": None}, headers=user.headers)))["user"]
    assert (cleared["display_name"], cleared["phone"]) == ("Ann Smith", None)

    # Another account's phone is refused by its field.
    error = await error_of(
        await client.patch("/api/me", json={"phone": other.user["phone"]}, headers=user.headers), 409, "conflict"
    )
    assert error["details"]["field"] == "phone"
    for bad in (
        {"display_name": ""},
        {"display_name": None},
        {"display_name": "x" * 201},
        {"display_name": "two\nlines"},
        {"phone": "call me"},
        {"email": "new@example.test"},
        {"roles": ["admin"]},
    ):
        await error_of(await client.patch("/api/me", json=bad, headers=user.headers), 422, "validation_error")
    await error_of(await client.patch("/api/me", json={"display_name": "X"}), 401, "unauthorized")
    assert (await ok(await me(client, user.token)))["user"] == cleared
    assert await db.fetchval("SELECT roles FROM users WHERE id = $1", uuid.UUID(user.id)) == ["viewer"]


async def test_a_password_change_signs_every_other_session_out(client, make, db):
    user = await make.user()
    phone = await sign_in(client, user, "phone-browser/1")
    laptop = await sign_in(client, user, "laptop-browser/2")
    someone_else = await make.user()

    body = {"current_password": "not my password", "new_password": NEW_PASSWORD}
    await error_of(await client.post("/api/me/password", json=body, headers=user.headers), 403, "forbidden")
    body = {"current_password": user.password, "new_password": user.password}
    error = await error_of(await client.post("/api/me/password", json=body, headers=user.headers), 422)
    assert error["details"]["errors"][0]["loc"] == ["new_password"]
    body = {"current_password": user.password, "new_password": "password"}
    await error_of(await client.post("/api/me/password", json=body, headers=user.headers), 422, "validation_error")
    body = {"current_password": user.password, "new_password": "short"}
    await error_of(await client.post("/api/me/password", json=body, headers=user.headers), 422, "validation_error")
    await error_of(await client.post("/api/me/password", json={}, headers=user.headers), 422, "validation_error")
    for token in (phone, laptop):  # nothing refused ended anything
        assert (await me(client, token)).status == 200

    body = {"current_password": user.password, "new_password": NEW_PASSWORD}
    assert await ok(await client.post("/api/me/password", json=body, headers=user.headers)) == {"ended_sessions": 2}
    for token in (phone, laptop):
        await error_of(await me(client, token), 401, "unauthorized")
    assert (await me(client, user.token)).status == 200  # this session stays
    assert (await me(client, someone_else.token)).status == 200  # other accounts' sessions are theirs
    # The new password signs in, the old one no longer does.
    await sign_in(client, user, "tablet/3", password=NEW_PASSWORD)
    res = await client.post("/api/auth/login", json={"email": user.user["email"], "password": user.password})
    await error_of(res, 401, "unauthorized")
    client.session.cookie_jar.clear()
    actions = await db.fetch("SELECT details FROM audit_log WHERE action = 'password.change'")
    assert [a["details"]["ended_sessions"] for a in actions] == [2]


async def test_sessions_list_this_one_first_and_end_one_or_all_others(client, make, db):
    user = await make.user()
    phone = await sign_in(client, user, "phone-browser/1")
    laptop = await sign_in(client, user, "laptop-browser/2")
    other = await make.user()
    await sign_in(client, other, "elsewhere/9")

    listed = await sessions(client, laptop)
    assert len(listed) == 3  # registering opened one too
    # Named by a public id: neither the token nor its hash leaves the server.
    keys = {"id", "current", "created_at", "last_seen_at", "expires_at", "user_agent", "address"}
    assert all(set(s) == keys for s in listed), listed
    assert listed[0]["current"] is True and listed[0]["user_agent"] == "laptop-browser/2"
    assert [s["current"] for s in listed[1:]] == [False, False]
    assert {s["user_agent"] for s in listed[1:]} >= {"phone-browser/1"}
    assert all(s["address"] == "127.0.0.1" and s["last_seen_at"] and s["expires_at"] for s in listed)
    assert (await sessions(client, phone))[0]["user_agent"] == "phone-browser/1"

    # End one (the phone): its token no longer works, the others do.
    phone_id = next(s["id"] for s in listed if s["user_agent"] == "phone-browser/1")
    await error_of(await client.delete(f"/api/me/sessions/{phone_id}", headers=other.headers), 404, "not_found")
    await ok(await client.delete(f"/api/me/sessions/{phone_id}", headers=bearer(laptop)), 204)
    await error_of(await me(client, phone), 401, "unauthorized")
    await error_of(await client.delete(f"/api/me/sessions/{phone_id}", headers=bearer(laptop)), 404, "not_found")
    await error_of(await client.delete(f"/api/me/sessions/{uuid.uuid4()}", headers=bearer(laptop)), 404)
    await error_of(await client.delete("/api/me/sessions/not-a-uuid", headers=bearer(laptop)), 404, "not_found")
    assert phone_id not in {s["id"] for s in await sessions(client, laptop)}

    # End every other one: only the laptop's is left; another account's sessions are untouched.
    assert await ok(await client.delete("/api/me/sessions", headers=bearer(laptop))) == {"ended_sessions": 1}
    await error_of(await me(client, user.token), 401, "unauthorized")
    assert [s["user_agent"] for s in await sessions(client, laptop)] == ["laptop-browser/2"]
    assert await ok(await client.delete("/api/me/sessions", headers=bearer(laptop))) == {"ended_sessions": 0}
    assert len(await sessions(client, other.token)) == 2

    # Ending its own session signs this device out.
    own = (await sessions(client, laptop))[0]["id"]
    await ok(await client.delete(f"/api/me/sessions/{own}", headers=bearer(laptop)), 204)
    await error_of(await client.get("/api/me/sessions", headers=bearer(laptop)), 401, "unauthorized")
    await error_of(await client.get("/api/me/sessions"), 401, "unauthorized")
