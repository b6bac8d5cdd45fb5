"""Sign-in limits through the REST API: failures per (account, address) pair, accounts and addresses under
attack slowed down for addresses that never signed in to the account, never a lockout of the owner
(docs/OPERATIONS.md, "Sign-in limits"). Client addresses come from X-Forwarded-For behind one trusted proxy.
Time passing is simulated by moving recorded failures into the past."""

import asyncio

from helpers import error_of
from livehub import keys
from livehub.app import create_app

PASSWORD = "correct horse battery"
OWNER = "owner@example.test"


def at(address: str) -> dict:
    # Whatever a client puts first, the address our (one trusted) proxy appended is the last one.
    return {"X-Forwarded-For": f"6.6.6.6, {address}"}


async def app_with(aiohttp_client, settings, **limits):
    return await aiohttp_client(create_app(settings.model_copy(update={"trusted_proxy_count": 1, **limits})))


async def register(client, email: str = OWNER, address: str = "198.51.100.1") -> None:
    body = {"email": email, "password": PASSWORD, "display_name": email.split("@")[0]}
    res = await client.post("/api/auth/register", json=body, headers=at(address))
    assert res.status == 201, await res.text()
    client.session.cookie_jar.clear()


async def login(client, address: str, email: str = OWNER, password: str = PASSWORD):
    return await client.post("/api/auth/login", json={"email": email, "password": password}, headers=at(address))


async def signed_in(res) -> None:
    assert res.status == 200, await res.text()
    await res.read()


async def failed(res) -> None:
    await error_of(res, 401, "unauthorized")


async def limited(res) -> int:
    """A 429 with its wait in both the header and the details; returns the wait."""
    err = await error_of(res, 429, "rate_limited")
    wait = int(res.headers["Retry-After"])
    assert wait > 0 and err["details"] == {"retry_after_s": wait}
    return wait


async def time_passes(db, seconds: float) -> None:
    await db.execute("UPDATE login_failures SET failed_at = failed_at - make_interval(secs => $1)", seconds)


async def test_the_owner_signs_in_from_home_while_an_attacker_has_failed_100_times(aiohttp_client, settings, db):
    # Waits too short to matter, so the attacker really gets to fail 100 times.
    client = await app_with(aiohttp_client, settings, login_delay_s=0.001, login_max_delay_s=0.001)
    await register(client, address="192.0.2.10")
    for n in range(20):
        for _ in range(5):
            await failed(await login(client, f"203.0.113.{n}", password="guess"))
            # The 1 ms wait is over before the next try, however fast this machine answers (an attempt less
            # than 1 ms after the last failure would rightly be told to wait).
            await time_passes(db, 0.002)
    assert await db.fetchval("SELECT count(*) FROM login_failures WHERE NOT pending") == 100
    await signed_in(await login(client, "192.0.2.10"))
    # The attacker's addresses are each at their pair's limit, right password or not.
    await limited(await login(client, "203.0.113.7"))


async def test_an_account_under_attack_makes_new_addresses_wait_but_not_the_owners(aiohttp_client, settings, db):
    client = await app_with(aiohttp_client, settings)  # the defaults: slowed after 10 failures, 1 s doubling
    await register(client, address="192.0.2.10")
    for n in range(10):
        await failed(await login(client, f"203.0.113.{n}", password="guess"))
    # An address that never signed in to the account waits, whatever it sends.
    assert await limited(await login(client, "203.0.113.50", password="guess")) == 1
    assert await limited(await login(client, "198.51.100.99")) == 1
    # The owner's own address does not.
    await signed_in(await login(client, "192.0.2.10"))
    # Once the wait is over, a new address gets its try: the owner on a new phone is never locked out.
    await time_passes(db, 1)
    await signed_in(await login(client, "198.51.100.99"))


async def test_five_failures_of_one_pair_limit_only_that_pair(aiohttp_client, settings, db):
    client = await app_with(aiohttp_client, settings)
    await register(client, address="192.0.2.10")
    await register(client, "other@example.test", address="192.0.2.77")
    for _ in range(5):
        await failed(await login(client, "192.0.2.10", password="typo"))
    # Even the right password is refused for the pair until its failures have left the window.
    assert await limited(await login(client, "192.0.2.10")) == settings.login_window_s
    # The same account from elsewhere, and another account from the same address, are not held to it.
    await signed_in(await login(client, "192.0.2.11"))
    await signed_in(await login(client, "192.0.2.10", "other@example.test"))
    await time_passes(db, settings.login_window_s)
    await signed_in(await login(client, "192.0.2.10"))


async def test_email_and_phone_are_one_account(aiohttp_client, settings, db):
    client = await app_with(aiohttp_client, settings)
    body = {"email": OWNER, "password": PASSWORD, "display_name": "Owner", "phone": "+15550001111"}
    assert (await client.post("/api/auth/register", json=body)).status == 201
    for login_id in ("Owner@Example.test", "+1 555 000 1111", OWNER, "+15550001111", "+1-555-000-1111"):
        await failed(await login(client, "192.0.2.10", login_id, "typo"))
    await limited(await login(client, "192.0.2.10", "+15550001111"))
    await limited(await login(client, "192.0.2.10", OWNER))


async def test_many_failures_from_one_address_do_not_stop_someone_behind_it_who_signed_in_before(
    aiohttp_client, settings, db
):
    client = await app_with(aiohttp_client, settings, login_slow_address_after=5)
    shared = "100.64.0.1"  # carrier-grade NAT: the stuffer and the neighbours share it
    await register(client, "regular@example.test", address=shared)
    await register(client, "newcomer@example.test", address="192.0.2.10")
    for n in range(5):
        await failed(await login(client, shared, f"stolen{n}@example.test", "leaked password"))
    # The stuffer is slowed down, on accounts known and unknown...
    await limited(await login(client, shared, "stolen9@example.test", "leaked password"))
    await limited(await login(client, shared, "newcomer@example.test", "leaked password"))
    # ...and so is someone signing in from there for the first time, for a bounded wait only.
    await limited(await login(client, shared, "newcomer@example.test"))
    # Someone who has signed in from there before is not slowed down at all.
    await signed_in(await login(client, shared, "regular@example.test"))
    await failed(await login(client, shared, "regular@example.test", "typo"))
    await signed_in(await login(client, shared, "regular@example.test"))
    await time_passes(db, 60)
    await signed_in(await login(client, shared, "newcomer@example.test"))


async def test_waits_double_with_each_failure_up_to_the_cap(aiohttp_client, settings, db):
    client = await app_with(aiohttp_client, settings, login_slow_account_after=3, login_delay_s=2, login_max_delay_s=10)
    await register(client, address="192.0.2.10")
    for n in range(3):
        await failed(await login(client, f"203.0.113.{n}", password="guess"))
    waits = []
    for n in range(3, 9):
        wait = await limited(await login(client, f"203.0.113.{n}", password="guess"))
        waits.append(wait)
        await time_passes(db, wait)
        await failed(await login(client, f"203.0.113.{n}", password="guess"))
    # 2 s, doubling with every failure, never more than 10 s (each maybe a second less: time goes on).
    for wait, expected in zip(waits, [2, 4, 8, 10, 10, 10], strict=True):
        assert expected - 1 <= wait <= expected, waits
    # However many failures pile up, the right password is a bounded wait away, and home is never slowed.
    await signed_in(await login(client, "192.0.2.10"))
    await limited(await login(client, "198.51.100.1"))
    await time_passes(db, 10)
    await signed_in(await login(client, "198.51.100.1"))


async def test_a_limited_attempt_does_not_try_the_password(aiohttp_client, settings, db):
    """No oracle: a refused attempt answers the same for the right password and a wrong one, and records
    nothing."""
    client = await app_with(aiohttp_client, settings, login_slow_account_after=5)
    await register(client, address="192.0.2.10")
    for _ in range(5):
        await failed(await login(client, "203.0.113.1", password="guess"))
    rows = await db.fetchval("SELECT count(*) FROM login_failures")
    for address in ("203.0.113.1", "203.0.113.2"):  # the pair at its limit; a new address slowed down
        right, wrong = await login(client, address), await login(client, address, password="guess")
        assert (right.status, wrong.status) == (429, 429)
        right_error, wrong_error = (await right.json())["error"], (await wrong.json())["error"]
        assert right_error["message"] == wrong_error["message"]
        assert right_error["details"].keys() == wrong_error["details"].keys()
    assert await db.fetchval("SELECT count(*) FROM login_failures") == rows
    assert await db.fetchval("SELECT count(*) FROM sessions") == 1  # registering's


async def test_concurrent_guesses_cannot_exceed_the_pair_limit(aiohttp_client, settings, db):
    """Parallel attempts must not all pass the check before any failure is recorded."""
    client = await app_with(aiohttp_client, settings, login_max_failures_per_pair=3)
    await register(client)
    responses = await asyncio.gather(*(login(client, "203.0.113.1", password=f"guess {i}") for i in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(401) <= 3 and set(statuses) <= {401, 429}, statuses
    # However the burst went, the pair gets exactly three wrong guesses in all.
    guesses = statuses.count(401)
    for i in range(5):
        res = await login(client, "203.0.113.1", password=f"later guess {i}")
        if res.status == 429:
            break
        await failed(res)
        guesses += 1
    assert guesses == 3
    await limited(await login(client, "203.0.113.1"))


async def test_concurrent_guesses_from_many_addresses_get_one_try_per_wait(aiohttp_client, settings, db):
    client = await app_with(aiohttp_client, settings, login_slow_account_after=2, login_delay_s=30)
    await register(client)
    for n in range(2):
        await failed(await login(client, f"203.0.113.{n}", password="guess"))
    await time_passes(db, 30)
    # The wait is over: twenty addresses at once, and only one of them gets to try.
    responses = await asyncio.gather(*(login(client, f"203.0.113.{n + 100}", password="guess") for n in range(20)))
    assert sorted(r.status for r in responses) == [401] + [429] * 19


async def test_many_people_signing_in_at_once_from_one_address_are_not_limited(aiohttp_client, settings, db):
    """Carrier-grade NAT: successful sign-ins in flight together are not failures of that address, even
    from people signing in there for the first time."""
    client = await app_with(aiohttp_client, settings, login_slow_address_after=2, login_slow_account_after=2)
    for n in range(30):
        await register(client, f"user{n}@example.test", address=f"192.0.2.{n}")
    responses = await asyncio.gather(*(login(client, "100.64.0.1", f"user{n}@example.test") for n in range(30)))
    assert [r.status for r in responses] == [200] * 30
    assert await db.fetchval("SELECT count(*) FROM login_failures") == 0


async def test_a_success_forgets_the_pairs_failures_only(aiohttp_client, settings, db):
    client = await app_with(aiohttp_client, settings, login_max_failures_per_pair=3)
    await register(client, address="192.0.2.10")
    for _ in range(2):
        await failed(await login(client, "192.0.2.10", password="typo"))
        await failed(await login(client, "203.0.113.1", password="guess"))
    await signed_in(await login(client, "192.0.2.10"))
    for _ in range(2):
        await failed(await login(client, "192.0.2.10", password="typo"))
    await signed_in(await login(client, "192.0.2.10"))
    # The attacker's failures stay: one more and that pair is at its limit.
    await failed(await login(client, "203.0.113.1", password="guess"))
    await limited(await login(client, "203.0.113.1"))


async def test_unknown_accounts_count_like_known_ones(aiohttp_client, settings, db):
    client = await app_with(aiohttp_client, settings, login_max_failures_per_pair=2, login_slow_address_after=3)
    await register(client, address="192.0.2.10")
    for n in range(3):
        await failed(await login(client, "203.0.113.1", f"ghost{n}@example.test", "guess"))
    # Whether the account exists does not change the answer.
    for email in ("ghost9@example.test", OWNER):
        await limited(await login(client, "203.0.113.1", email, "guess"))
    # An unknown account is the login lowercased: one pair however it is cased.
    await failed(await login(client, "203.0.113.2", "ghost@example.test", "guess"))
    await failed(await login(client, "203.0.113.2", "GHOST@Example.test", "guess"))
    assert await limited(await login(client, "203.0.113.2", "Ghost@example.TEST", "guess")) == settings.login_window_s


async def test_forwarded_for_is_ignored_without_a_trusted_proxy(aiohttp_client, settings, db):
    client = await aiohttp_client(create_app(settings.model_copy(update={"login_max_failures_per_pair": 2})))
    await register(client)
    for n in range(2):
        await failed(await login(client, f"198.51.100.{n}", password="guess"))
    # A spoofed header does not get a client out from under its pair's limit.
    await limited(await login(client, "198.51.100.77"))
    rows = await db.fetch("SELECT DISTINCT address FROM login_failures")
    assert [r["address"] for r in rows] == ["127.0.0.1"]


async def test_the_sweep_forgets_what_has_left_the_window(client, settings, db):
    await db.execute(
        """INSERT INTO login_failures (account, address, failed_at)
           VALUES ('old', '192.0.2.1', now() - make_interval(secs => $1 + 1)), ('new', '192.0.2.1', now())""",
        settings.login_window_s,
    )
    await db.execute(
        """INSERT INTO sign_in_known (account, address, last_success_at)
           VALUES ('old', '192.0.2.1', now() - make_interval(secs => $1 + 1)), ('new', '192.0.2.1', now())""",
        settings.login_known_address_ttl_s,
    )
    await client.app[keys.LOGIN_LIMITER].sweep(client.app[keys.POOL])
    assert [r["account"] for r in await db.fetch("SELECT account FROM login_failures")] == ["new"]
    assert [r["account"] for r in await db.fetch("SELECT account FROM sign_in_known")] == ["new"]
