"""Test harness: real PostgreSQL, a fresh database per run, a clean state per test.

DATABASE_URL (CI sets it) names a server to use; without it an embedded server is started for the
session. Either way the run creates its own database and drops it afterwards, so runs never see each
other's data, and every test starts from empty tables.
"""

import asyncio
import atexit
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import hang_report
import pyotp
import pytest
from cryptography.fernet import Fernet
from stripe_server import stripe_server, stripe_settings  # noqa: F401  (fixtures: localstripe, settings paying by card)

from livehub import keys
from livehub.app import create_app
from livehub.settings import Settings
from redis_server import redis_url  # noqa: F401  (a fixture: the session's Redis)
from smtp_server import smtp_server  # noqa: F401  (a fixture: a real SMTP server the test's settings mail)
from storage.db import init_connection, migrate

ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A test about to time out reports which asyncio tasks it is still waiting on (tests/hang_report.py)."""
    timer = hang_report.arm(item)
    try:
        yield
    finally:
        if timer is not None:
            timer.cancel()


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _migrate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def server_dsn():
    """A PostgreSQL server: DATABASE_URL's, or an embedded one for this session."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from storage.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="livehub-tests-"))
    base.chmod(0o755)  # the embedded server runs as `nobody` when we are root
    try:
        with EmbeddedPostgres(base / "pgdata") as pg:
            yield pg.dsn
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_postgres():
    """A throwaway embedded PostgreSQL of this test's own, for tests that stop, stall or kill their server
    (never the shared one)."""
    from storage.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="livehub-private-"))
    base.chmod(0o755)  # the server runs as `nobody` when we are root
    pg = EmbeddedPostgres(base / "pgdata")
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(server_dsn):
    """A database of this run's own, migrated once, dropped at the end."""
    name = f"livehub_test_{os.getpid()}_{secrets.token_hex(4)}"
    asyncio.run(_admin(server_dsn, f'CREATE DATABASE "{name}"'))
    url = _with_database(server_dsn, name)
    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        asyncio.run(_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


TEST_DATA_DIR = Path(tempfile.mkdtemp(prefix="livehub-tests-"))
atexit.register(shutil.rmtree, TEST_DATA_DIR, ignore_errors=True)


PAYOUT_KEY = Fernet.generate_key().decode()


def settings_for(database_url: str) -> Settings:
    """Settings for an app on the test database."""
    # argon2id with a small cost keeps the suite fast; the algorithm and code path are the real ones.
    return Settings(
        database_url=database_url,
        redis_url=None,
        password_time_cost=1,
        password_memory_kib=8192,
        password_parallelism=1,
        db_pool_min=1,
        db_pool_max=10,
        # Listings straight from the database, so a test sees a change at once (the cache has its own tests).
        catalog_cache_ms=0,
        # Product images and the like go to a throwaway directory, never to the checkout's var/.
        data_dir=TEST_DATA_DIR,
        # A failed job (an SMTP server that is down) is tried again soon; a node's jobs drain quickly.
        job_retry_min_s=0.2,
        job_retry_max_s=2.0,
        job_poll_s=0.2,
        job_drain_s=5.0,
        # Payouts: sent at once (tests/test_payout_destinations.py sets manual), any amount, destinations
        # sealed under a key of the run's.
        payouts="instant-dev",
        min_payout_cents=1,
        payout_keys=[PAYOUT_KEY],
    )


async def empty_tables(db) -> None:
    """Every table emptied (but the migrations record): a known state for a test."""
    tables = await db.fetchval(
        """SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables
            WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"""
    )
    await db.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
def settings(database_url) -> Settings:
    return settings_for(database_url)


@pytest.fixture(params=["local", "redis"])
async def backplane(request) -> dict[str, Any]:
    """Settings for how a node's rooms reach each other: in process, or through Redis under a key prefix of
    the test's own (deleted afterwards). Room tests take it, so they run on both; name it before
    aiohttp_client, so that the app is closed before its Redis keys are deleted (fixtures end in reverse)."""
    if request.param == "local":
        yield {"redis_url": None}
        return
    from redis.asyncio import Redis

    url = request.getfixturevalue("redis_url")
    prefix = f"t{secrets.token_hex(4)}"
    yield {"redis_url": url, "redis_prefix": prefix, "room_history_ttl_s": 120}
    async with asyncio.timeout(30), Redis.from_url(url) as redis:
        if stale := [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]:
            await redis.delete(*stale)


@pytest.fixture
async def db(database_url):
    """A connection to the test database, with every table emptied first; JSON through the same codec
    as the app's pool."""
    conn = await asyncpg.connect(database_url)
    await init_connection(conn)
    await empty_tables(conn)
    yield conn
    await conn.close()


@pytest.fixture
async def client(aiohttp_client, settings, db):
    return await aiohttp_client(create_app(settings))


class AccountHeaders(Mapping):
    """An account's request headers: its bearer token and, once it has two-factor sign-in on, a current code
    (X-Two-Factor-Code, which admin money actions need), computed whenever the headers are read."""

    def __init__(self, account: "Account"):
        self._account = account

    def _now(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._account.token}"}
        if self._account.totp is not None:
            headers["X-Two-Factor-Code"] = self._account.totp.now()
        return headers

    def __getitem__(self, name: str) -> str:
        return self._now()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


@dataclass
class Account:
    user: dict
    token: str
    password: str
    seller: dict | None = None
    # With two-factor sign-in on (Factory.two_factor): the authenticator app, and the recovery codes.
    totp: pyotp.TOTP | None = None
    recovery_codes: list[str] = field(default_factory=list)
    headers: AccountHeaders = field(init=False)
    _last_step: int = field(default=0, init=False)

    def __post_init__(self):
        self.headers = AccountHeaders(self)

    @property
    def id(self) -> str:
        return self.user["id"]

    async def sign_in_code(self) -> str:
        """A code the server has not accepted yet (a sign-in code works once): the current step's, or the
        next one's (accepted too, for clock drift); after that, the clock has to move on."""
        deadline = time.monotonic() + 70
        while True:
            current = int(time.time() // 30)
            step = max(self._last_step + 1, current)
            if step <= current + 1:
                self._last_step = step
                return self.totp.generate_otp(step)
            assert time.monotonic() < deadline, "the clock did not move on"
            await asyncio.sleep(0.2)


async def verify_in_db(db, account: Account) -> None:
    """Mark `account`'s email verified directly (test setup: applying to sell needs it)."""
    await db.execute("UPDATE users SET email_verified_at = now() WHERE id = $1", account.user["id"])
    account.user["email_verified"] = True


class Factory:
    """Builds test data through the public API, the way a client would."""

    def __init__(self, client, db):
        self.client = client
        self.db = db
        self._n = 0

    def _next(self) -> int:
        self._n += 1
        return self._n

    async def user(
        self,
        *,
        email: str | None = None,
        password: str = "correct horse battery",
        address: bool = True,
        verified: bool = True,
        **extra,
    ) -> Account:
        """A registered account; with `address` (the default) it has saved a default shipping address, as a
        shopper who buys goods that ship has (a physical order without one is refused); with `verified` (the
        default) its email counts as verified (set in the database: no mail is read), as a seller's must be."""
        n = self._next()
        body = {"email": email or f"user{n}@example.test", "password": password, "display_name": f"User {n}", **extra}
        res = await self.client.post("/api/auth/register", json=body)
        assert res.status == 201, await res.text()
        # Registering sets the session cookie; tests authenticate explicitly (Account.headers), so a
        # request made without them is anonymous, as it would be from another client.
        self.client.session.cookie_jar.clear()
        data = await res.json()
        account = Account(data["user"], data["token"], password)
        if verified:
            # Through the app's pool, not the test's one connection: tests make users concurrently
            # (asyncio.gather), and one asyncpg connection takes one statement at a time.
            await verify_in_db(self.client.app[keys.POOL], account)
        if address:
            await self.address(account)
        return account

    async def address(self, account: Account, **fields: Any) -> dict:
        """Saves an address for `account` through the API (its first one becomes the default)."""
        body = {
            "name": account.user["display_name"],
            "line1": "1 Test Street",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
            **fields,
        }
        res = await self.client.post("/api/me/addresses", json=body, headers=account.headers)
        assert res.status == 201, await res.text()
        return (await res.json())["address"]

    async def two_factor(self, account: Account) -> Account:
        """Turn two-factor sign-in on for `account` through the API; its headers carry a current code from then on."""
        res = await self.client.post(
            "/api/me/two-factor/setup", json={"password": account.password}, headers=account.headers
        )
        assert res.status == 200, await res.text()
        totp = pyotp.TOTP((await res.json())["secret"])
        step = int(time.time() // 30)
        res = await self.client.post(
            "/api/me/two-factor/enable", json={"code": totp.generate_otp(step)}, headers=account.headers
        )
        assert res.status == 200, await res.text()
        account.totp, account._last_step = totp, step
        account.recovery_codes = (await res.json())["recovery_codes"]
        return account

    async def payout_destination(self, account: Account, **fields: Any) -> dict:
        """Saves a payout destination (a German IBAN unless told) for `account` through the API; that needs
        two-factor sign-in, turned on here if it is not yet."""
        if account.totp is None:
            await self.two_factor(account)
        body = {"holder_name": account.user["display_name"], "country": "DE", "iban": "DE89370400440532013000"}
        res = await self.client.put("/api/me/payout-destination", json={**body, **fields}, headers=account.headers)
        assert res.status == 200, await res.text()
        return (await res.json())["destination"]

    async def admin(self) -> Account:
        """An admin, with the two-factor sign-in every admin needs."""
        account = await self.user()
        await self.db.execute("UPDATE users SET roles = '{viewer,admin}' WHERE id = $1", account.user["id"])
        return await self.two_factor(account)

    async def seller(self, *, approved: bool = True, shop_name: str | None = None, two_factor: bool = False) -> Account:
        """A seller (approved unless told); with two_factor (and a payout destination), able to ask for payouts."""
        account = await self.user()
        if two_factor:
            await self.two_factor(account)
            await self.payout_destination(account)
        res = await self.client.post(
            "/api/sellers/apply", json={"shop_name": shop_name or f"Shop {self._n}"}, headers=account.headers
        )
        assert res.status == 201, await res.text()
        account.seller = (await res.json())["seller"]
        if approved:
            await self.db.execute("SELECT set_seller_status($1, 'approved', NULL)", account.seller["id"])
            account.seller["status"] = "approved"
        return account

    async def product(self, seller: Account, *, variants: list[dict] | None = None, **fields: Any) -> dict:
        n = self._next()
        body = {
            "title": f"Product {n}",
            "variants": variants or [{"sku": f"SKU-{n}", "price_cents": 1000, "stock": 10}],
            **fields,
        }
        res = await self.client.post("/api/products", json=body, headers=seller.headers)
        assert res.status == 201, await res.text()
        return (await res.json())["product"]


@pytest.fixture
def make(client, db) -> Factory:
    return Factory(client, db)
