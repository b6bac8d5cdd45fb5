"""Every error code of docs/API.md that the API can produce today, in its error shape, and bad
input that must never become a 500."""

import asyncio
import uuid

import pytest

from livehub.app import create_app
from tests.helpers import error_of, mark_verified


def anonymous(client) -> None:
    client.session.cookie_jar.clear()


JSON = {"Content-Type": "application/json"}


# -- validation_error -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"email": "a@b.test", ', id="truncated"),
        pytest.param(b"{'email': 'single quotes'}", id="single-quotes"),
        pytest.param(b'{"email": "a@b.test",}', id="trailing-comma"),
        pytest.param(b"\xff\xfe\x00garbage\x80", id="binary-garbage"),
        pytest.param(b'{"email": "\xff"}', id="invalid-utf8"),
        pytest.param(b"NaN", id="nan"),
        pytest.param(b"email=a%40b.test&password=x", id="form-encoded"),
    ],
)
async def test_malformed_json_is_a_validation_error(client, db, raw):
    res = await client.post("/api/auth/register", data=raw, headers=JSON)
    await error_of(res, 422, "validation_error")
    assert await db.fetchval("SELECT count(*) FROM users") == 0


@pytest.mark.parametrize("raw", [b"[]", b'["a", "b"]', b'"text"', b"42", b"null", b"true"])
async def test_json_that_is_not_an_object_is_a_validation_error(client, raw):
    res = await client.post("/api/auth/register", data=raw, headers=JSON)
    await error_of(res, 422, "validation_error")


@pytest.mark.parametrize("raw", [b"", b"   \n\t "])
async def test_missing_body_is_a_validation_error(client, raw):
    res = await client.post("/api/auth/register", data=raw, headers=JSON)
    err = await error_of(res, 422, "validation_error")
    assert "body" in err["message"]


async def test_wrong_types_and_unknown_fields_are_validation_errors(client, make):
    seller = await make.seller()
    res = await client.post(
        "/api/products",
        json={"title": "T", "variants": [{"sku": "S-1", "price_cents": "ten dollars"}]},
        headers=seller.headers,
    )
    err = await error_of(res, 422, "validation_error")
    locs = [e["loc"] for e in err["details"]["errors"]]
    assert ["variants", "0", "price_cents"] in locs

    res = await client.post(
        "/api/products",
        json={"title": "T", "variants": [{"sku": "S-1", "price_cents": 1}], "colour": "red"},
        headers=seller.headers,
    )
    err = await error_of(res, 422, "validation_error")
    assert [e["loc"] for e in err["details"]["errors"]] == [["colour"]]
    assert err["details"]["errors"][0]["type"] == "extra_forbidden"

    res = await client.get("/api/products?limit=lots")
    await error_of(res, 422, "validation_error")
    res = await client.get("/api/products?unknown_filter=1")
    await error_of(res, 422, "validation_error")


# -- unauthorized / forbidden -----------------------------------------------------------------------


async def test_unauthorized(client):
    anonymous(client)
    err = await error_of(await client.get("/api/me"), 401, "unauthorized")
    assert err["message"]
    await error_of(await client.get("/api/me", headers={"Authorization": "Bearer forged"}), 401, "unauthorized")
    await error_of(await client.get("/api/me", headers={"Authorization": "Basic dTpw"}), 401, "unauthorized")
    await error_of(await client.post("/api/products", json={"title": "x", "variants": []}), 401, "unauthorized")


async def test_forbidden(client, make):
    viewer = await make.user()
    res = await client.post(
        "/api/products", json={"title": "T", "variants": [{"sku": "S-1", "price_cents": 1}]}, headers=viewer.headers
    )
    await error_of(res, 403, "forbidden")
    await error_of(await client.get("/api/admin/sellers", headers=viewer.headers), 403, "forbidden")

    owner, other = await make.seller(), await make.seller()
    product = await make.product(owner)
    res = await client.patch(f"/api/products/{product['id']}", json={"title": "Mine now"}, headers=other.headers)
    await error_of(res, 403, "forbidden")


# -- not_found / method_not_allowed -----------------------------------------------------------------


async def test_unknown_api_route_is_not_found(client):
    for path in ("/api/nope", "/api/products/x/y/z", "/api"):
        await error_of(await client.get(path), 404, "not_found")
    await error_of(await client.post("/api/nope", json={}), 404, "not_found")


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g", "%00"])
async def test_malformed_id_in_path_is_not_found(client, bad_id):
    await error_of(await client.get(f"/api/products/{bad_id}"), 404, "not_found")
    await error_of(await client.get(f"/api/sellers/{bad_id}"), 404, "not_found")


async def test_missing_id_is_not_found(client, make):
    seller = await make.seller()
    missing = uuid.uuid4()
    await error_of(await client.get(f"/api/products/{missing}"), 404, "not_found")
    await error_of(await client.get(f"/api/sellers/{missing}"), 404, "not_found")
    res = await client.patch(f"/api/products/{missing}", json={"title": "x"}, headers=seller.headers)
    await error_of(res, 404, "not_found")


async def test_wrong_method_on_a_known_path(client, make):
    user = await make.user()
    res = await client.put("/api/me", json={}, headers=user.headers)
    await error_of(res, 405, "method_not_allowed")
    assert "GET" in res.headers.get("Allow", "")
    res = await client.get("/api/auth/login")
    await error_of(res, 405, "method_not_allowed")
    assert "POST" in res.headers.get("Allow", "")
    await error_of(await client.delete("/api/products"), 405, "method_not_allowed")


# -- conflict / rate_limited ------------------------------------------------------------------------


async def test_conflict(client, make):
    await make.user(email="taken@example.test")
    res = await client.post(
        "/api/auth/register", json={"email": "taken@example.test", "password": "long enough pw", "display_name": "X"}
    )
    await error_of(res, 409, "conflict")
    seller = await make.seller()
    await make.product(seller, variants=[{"sku": "DUP-1", "price_cents": 1}])
    res = await client.post(
        "/api/products",
        json={"title": "Again", "variants": [{"sku": "DUP-1", "price_cents": 1}]},
        headers=seller.headers,
    )
    await error_of(res, 409, "conflict")


async def test_rate_limited(aiohttp_client, settings, db):
    client = await aiohttp_client(create_app(settings.model_copy(update={"login_max_failures_per_pair": 1})))
    bad = {"email": "who@example.test", "password": "nope"}
    await error_of(await client.post("/api/auth/login", json=bad), 401, "unauthorized")
    res = await client.post("/api/auth/login", json=bad)
    err = await error_of(res, 429, "rate_limited")
    assert res.headers["Retry-After"] == str(settings.login_window_s)
    assert err["details"]["retry_after_s"] == settings.login_window_s


# -- payload_too_large ------------------------------------------------------------------------------


def oversized(settings) -> bytes:
    filler = "x" * (settings.max_json_bytes + 1024)
    return b'{"email": "big@example.test", "password": "long enough", "display_name": "' + filler.encode() + b'"}'


async def test_body_over_the_limit_with_content_length(client, settings, db):
    raw = oversized(settings)
    res = await client.post("/api/auth/register", data=raw, headers=JSON)
    assert res.request_info.headers.get("Content-Length") == str(len(raw))
    await error_of(res, 413, "payload_too_large")
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_body_over_the_limit_chunked(client, settings, db):
    raw = oversized(settings)

    async def chunks():
        for i in range(0, len(raw), 4096):
            yield raw[i : i + 4096]
            await asyncio.sleep(0)

    res = await client.post("/api/auth/register", data=chunks(), headers=JSON)
    assert "Content-Length" not in res.request_info.headers
    await error_of(res, 413, "payload_too_large")
    assert await db.fetchval("SELECT count(*) FROM users") == 0


async def test_body_just_under_the_limit_is_read_whole_when_it_arrives_in_pieces(client, settings):
    """A body is read to its end however the network splits it, not just its first chunk."""
    raw = b'{"email": "split@example.test", "password": "long enough pw", "display_name": "Split", "phone": null}'

    async def trickle():
        for i in range(0, len(raw), 10):
            yield raw[i : i + 10]
            await asyncio.sleep(0.005)

    res = await client.post("/api/auth/register", data=trickle(), headers=JSON)
    assert res.status == 201, await res.text()

    # A large (but allowed) body split in pieces, with a Content-Length this time.
    seller = (await res.json())["token"]
    await mark_verified(client, (await res.json())["user"]["id"])
    apply = b'{"shop_name": "Split Shop", "description": "' + b"d" * 9000 + b'"}'

    async def pieces():
        for i in range(0, len(apply), 1000):
            yield apply[i : i + 1000]
            await asyncio.sleep(0.005)

    res = await client.post(
        "/api/sellers/apply",
        data=pieces(),
        headers={**JSON, "Authorization": f"Bearer {seller}", "Content-Length": str(len(apply))},
    )
    assert res.status == 201, await res.text()
    assert len((await res.json())["seller"]["description"]) == 9000


# -- bad input never yields a 500 -------------------------------------------------------------------


async def test_huge_numbers_are_validation_errors(client, make):
    seller = await make.seller()
    for price in (10**30, 2**63, -(2**63) - 1, 10**13):
        res = await client.post(
            "/api/products",
            json={"title": "T", "variants": [{"sku": "BIG-1", "price_cents": price}]},
            headers=seller.headers,
        )
        await error_of(res, 422, "validation_error")
    raw = b'{"title": "T", "variants": [{"sku": "BIG-1", "price_cents": 1e400}]}'
    res = await client.post("/api/products", data=raw, headers={**JSON, **seller.headers})
    await error_of(res, 422, "validation_error")
    res = await client.post(
        "/api/products",
        json={"title": "T", "variants": [{"sku": "BIG-1", "price_cents": 1, "stock": 2**40}]},
        headers=seller.headers,
    )
    await error_of(res, 422, "validation_error")
    for query in ("limit=100000000000000000000000000000", "min_price_cents=1" + "0" * 30, "max_price_cents=-1"):
        await error_of(await client.get(f"/api/products?{query}"), 422, "validation_error")


async def test_nul_characters_are_refused_not_crashed_on(client, make, db):
    res = await client.post(
        "/api/auth/register", json={"email": "nul@example.test", "password": "long enough pw", "display_name": "a\x00b"}
    )
    await error_of(res, 422, "validation_error")
    res = await client.post(
        "/api/auth/register", json={"email": "nul@example.test", "password": "long\x00enough pw", "display_name": "N"}
    )
    assert res.status in (201, 422), await res.text()

    seller = await make.seller()
    res = await client.post(
        "/api/products",
        json={"title": "T\x00", "variants": [{"sku": "NUL-1", "price_cents": 1}]},
        headers=seller.headers,
    )
    await error_of(res, 422, "validation_error")
    res = await client.post(
        "/api/products",
        json={"title": "T", "attributes": {"k": "v\x00"}, "variants": [{"sku": "NUL-2", "price_cents": 1}]},
        headers=seller.headers,
    )
    await error_of(res, 422, "validation_error")
    res = await client.post("/api/sellers/apply", json={"shop_name": "S\x00"}, headers=(await make.user()).headers)
    await error_of(res, 422, "validation_error")
    res = await client.post("/api/auth/login", json={"email": "x\x00@example.test", "password": "whatever"})
    assert res.status in (401, 422), await res.text()
    await error_of(res)
    res = await client.get("/api/products?q=a%00b")
    assert res.status in (200, 422), await res.text()


async def test_unicode_and_emoji_round_trip(client, make):
    name = "Zoë 🛍️ 東京"
    res = await client.post(
        "/api/auth/register", json={"email": "emoji@example.test", "password": "пароль-🔑-secret", "display_name": name}
    )
    assert res.status == 201, await res.text()
    assert (await res.json())["user"]["display_name"] == name.strip()
    res = await client.post("/api/auth/login", json={"email": "emoji@example.test", "password": "пароль-🔑-secret"})
    assert res.status == 200, await res.text()
    await mark_verified(client, (await res.json())["user"]["id"])
    res = await client.post(
        "/api/sellers/apply",
        json={"shop_name": "🐉 Dragon Shop"},
        headers={"Authorization": f"Bearer {(await res.json())['token']}"},
    )
    assert res.status == 201
    assert (await res.json())["seller"]["shop_name"] == "🐉 Dragon Shop"
    res = await client.get("/api/products?q=🐉")
    assert res.status == 200


async def test_garbage_headers_and_odd_content_types_do_not_crash(client, make):
    user = await make.user()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        res = await client.post(
            "/api/sellers/apply", data=b"\x00\x01\x02", headers={"Content-Type": content_type, **user.headers}
        )
        await error_of(res, 422, "validation_error")
    res = await client.get("/api/me", headers={"Authorization": "Bearer " + "\u00e9" * 10})
    assert res.status == 401


# -- unavailable ------------------------------------------------------------------------------------


async def test_database_down_is_unavailable(aiohttp_client, settings, private_postgres):
    client = await aiohttp_client(create_app(settings.model_copy(update={"database_url": private_postgres.dsn})))
    res = await client.get("/readyz")
    assert res.status == 200
    assert await res.json() == {"status": "ready"}
    assert (await client.get("/api/products")).status == 200

    await asyncio.to_thread(private_postgres.stop)

    await error_of(await client.get("/readyz"), 503, "unavailable")
    await error_of(await client.get("/api/products"), 503, "unavailable")
    await error_of(await client.get(f"/api/products/{uuid.uuid4()}"), 503, "unavailable")
    res = await client.post(
        "/api/auth/register", json={"email": "down@example.test", "password": "long enough pw", "display_name": "D"}
    )
    await error_of(res, 503, "unavailable")
    res = await client.get("/api/me", headers={"Authorization": "Bearer whatever"})
    await error_of(res, 503, "unavailable")
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize("in_transaction", [False, True], ids=["plain-query", "in-transaction"])
async def test_a_database_session_ended_mid_request_is_unavailable(client, db, make, in_transaction):
    """The server ending a session mid-query (shutdown, failover, an operator) is a 503, not a 500."""
    user = await make.user()

    def send():
        if in_transaction:  # registering inserts in a transaction
            return client.post(
                "/api/auth/register",
                json={"email": "late@example.test", "password": "long enough pw", "display_name": "L"},
            )
        return client.get("/api/me", headers=user.headers)  # a single query outside any transaction

    async with db.transaction():
        await db.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        request = asyncio.ensure_future(send())
        blocked = None
        for _ in range(500):
            blocked = await db.fetchval(
                """SELECT pid FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"""
            )
            if blocked or request.done():
                break
            await asyncio.sleep(0.01)
        assert blocked, "the request never reached the database"
        assert await db.fetchval("SELECT pg_terminate_backend($1)", blocked)
        res = await request
    await error_of(res, 503, "unavailable")
    # The pool replaces the lost connection: the same request works now.
    res = await send()
    assert res.status in (200, 201), await res.text()


async def test_sessions_ended_mid_transaction_over_and_over_are_never_a_500(client, db, make):
    """The server ending sessions while they are in a transaction, again and again (as when it shuts down
    or crashes). Some of those interrupted transactions leave asyncpg's protocol half-way (its ROLLBACK
    finds the FATAL error still being consumed: InternalClientError "cannot switch to state 15"):
    every answer is still the request's own or 503 unavailable."""
    seller = await make.seller()
    variant = (await make.product(seller))["variants"][0]["id"]
    buyers = [await make.user() for _ in range(8)]
    statuses: dict[int, int] = {}
    done = False

    async def shop(buyer):
        while not done:
            res = await client.post(
                "/api/cart/items", json={"variant_id": variant, "quantity": 1}, headers=buyer.headers
            )
            body = await res.json()
            statuses[res.status] = statuses.get(res.status, 0) + 1
            assert res.status in (200, 503), body
            if res.status == 503:
                assert body["error"]["code"] == "unavailable"

    shoppers = [asyncio.ensure_future(shop(b)) for b in buyers]
    ended = 0
    deadline = asyncio.get_running_loop().time() + 20
    try:
        while ended < 300 and asyncio.get_running_loop().time() < deadline:
            if any(s.done() for s in shoppers):
                break
            ended += await db.fetchval(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE datname = current_database() AND pid <> pg_backend_pid()
                      AND state = 'active' AND xact_start IS NOT NULL"""
            )
    finally:
        done = True
        await asyncio.gather(*shoppers)
    assert statuses.get(503, 0) > 0, statuses
    res = await client.post("/api/cart/items", json={"variant_id": variant, "quantity": 1}, headers=buyers[0].headers)
    assert res.status == 200, await res.text()


def test_only_asyncpgs_lost_protocol_state_is_unavailable():
    import asyncpg

    from livehub.errors import Unavailable, to_error

    for message in (
        "cannot switch to state 15; another operation (2) is in progress",
        'cannot switch to state 12; protocol is in the "failed" state',
    ):
        assert isinstance(to_error(asyncpg.InternalClientError(message)), Unavailable)
    assert to_error(asyncpg.exceptions.OutdatedSchemaCacheError("cached statement plan is invalid")) is None


async def test_a_transaction_the_database_cancels_to_break_a_deadlock_is_unavailable_for_a_moment(db, database_url):
    """Two transactions locking two rows in opposite orders: PostgreSQL cancels one (SQLSTATE 40P01).
    Nothing of it was written, so the client is told to try again (503 with Retry-After), not 500."""
    import asyncpg

    from livehub.errors import Unavailable, to_error

    other = await asyncpg.connect(database_url)
    try:
        await db.execute("CREATE TABLE deadlock_rows (id int PRIMARY KEY)")
        await db.execute("INSERT INTO deadlock_rows VALUES (1), (2)")

        async def lock(conn, first: int, second: int, both_hold: asyncio.Barrier):
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM deadlock_rows WHERE id = $1 FOR UPDATE", first)
                await both_hold.wait()
                await conn.execute("SELECT 1 FROM deadlock_rows WHERE id = $1 FOR UPDATE", second)

        both_hold = asyncio.Barrier(2)
        results = await asyncio.gather(lock(db, 1, 2, both_hold), lock(other, 2, 1, both_hold), return_exceptions=True)
        cancelled = [r for r in results if isinstance(r, BaseException)]
        assert len(cancelled) == 1 and isinstance(cancelled[0], asyncpg.DeadlockDetectedError), results
        err = to_error(cancelled[0])
        assert isinstance(err, Unavailable) and err.status == 503 and err.retry_after_s == 1
        assert "try again" in err.message
    finally:
        await other.close()
        await db.execute("DROP TABLE IF EXISTS deadlock_rows")
