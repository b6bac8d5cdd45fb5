"""Property-based fuzzing of the whole REST API from its own OpenAPI document: bad input never yields a
500, and every error is docs/API.md's `{"error": {"code", "message", "details", "request_id"}}`.

Schemathesis loads GET /api/openapi.json from the real app, served on a 127.0.0.1 port by an event loop
in a thread of its own (schemathesis sends its requests synchronously over HTTP), and every documented
operation gets, as a test of its own:

- schemathesis's coverage cases: boundary values, missing, null and mistyped fields, unknown
  properties, wrong media types, unexpected methods, valid and invalid alike, deterministic; each
  also sent with ids that exist, and with every integer in its body one past PostgreSQL's bigint;
- then a bounded Hypothesis run (a fixed seed per operation) of generated valid and invalid requests.

(Schemathesis's own pytest integration, `schemathesis.pytest.from_fixture`, does not run on pytest 9:
it sets `node._nodeid`. So each operation is a parametrized test over its public strategies instead.)

Requests carry the bearer token of a user who is an admin and an approved seller, so the role-gated
paths run past their role checks. A module-scoped world gives path ids that exist (a product and its
variants, sellers, orders as seller and as buyer, a payout, users); generated requests use one of them
some of the time and random ids the rest, and each coverage case with a path id is sent with a real one
too. Those sends get a fresh Idempotency-Key, or a key generated before would replay or refuse them
before the handler runs. The world is shared by the operations and fuzzing changes it (that is the
point); operations that would destroy it get their own victims (a spare product to delete, another
seller to suspend, a fresh session to log out).

Each response must pass schemathesis's `not_a_server_error` and `error_follows_contract` below. A
failure names the operation, the request as a curl command, and for a 5xx the server's logged traceback.
"""

import asyncio
import logging
import threading
import zlib
from collections.abc import Coroutine
from typing import Any

import hypothesis
import pyotp
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from conftest import empty_tables, settings_for
from livehub import keys, storable
from livehub.api.openapi import openapi_path
from livehub.app import APIS, create_app
from livehub.auth import create_session
from livehub.errors import ErrorCode
from livehub.settings import Settings

SEED = 20240611  # with each operation's name, the seed of its Hypothesis run
# Generated requests per operation, on top of its coverage cases (about 10 to 120 each).
MAX_EXAMPLES = 40
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
OPERATIONS = [(route.method, openapi_path(route.path)) for api in APIS for route in api.routes]

# The error codes docs/API.md names (livehub.errors.ErrorCode), with the status each comes with.
CODE_STATUS = {code.value: code.status for code in ErrorCode}


def error_follows_contract(ctx, response, case) -> None:
    """A schemathesis check: every 4xx/5xx body is `{"error": {"code", "message", "details", "request_id"}}` as JSON,
    and a code docs/API.md names comes with its status."""
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), (
        f"error response is not JSON: content-type {response.headers.get('content-type')}, body {response.text[:300]!r}"
    )
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"error body is not valid JSON: {response.text[:300]!r}") from None
    error = body.get("error") if isinstance(body, dict) else None
    assert (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(error, dict)
        and set(error) == {"code", "message", "details", "request_id"}
        and isinstance(error["code"], str)
        and error["request_id"] == response.headers.get("x-request-id", [None])[0]
        and error["code"]
        and isinstance(error["message"], str)
        and isinstance(error["details"], dict)
    ), f"error body is not docs/API.md's shape: {response.text[:300]!r}"
    expected = CODE_STATUS.get(error["code"])
    assert expected in (None, response.status_code), (
        f"error code {error['code']!r} came with status {response.status_code}; docs/API.md gives it {expected}"
    )


CHECKS = [not_a_server_error, error_follows_contract]
# Body fields that name something, and which of the seeded ids they may be given.
BODY_IDS = {
    "variant_id": "buyable_variants",
    "category_id": "categories",
    "parent_id": "categories",
    "product_id": "products",
    "user_id": "users",
}


# The app's loggers, and aiohttp's (which logs what fails before the app sees a request).
LOGGERS = ("livehub", "aiohttp")


class ServerLog(logging.Handler):
    """Keeps the app's error records (with tracebacks), so a 500 can be explained."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def since(self, mark: int) -> str:
        return "\n".join(self.format(r) for r in self.records[mark:])


class LiveServer:
    """The real app on 127.0.0.1, served by an event loop in a thread of its own."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-server", daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def run(self, coro: Coroutine) -> Any:
        """Run a coroutine on the server's loop (for SQL through the app's own pool)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def start(self) -> None:
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self.runner = web.AppRunner(create_app(self.settings))
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    @property
    def pool(self):
        return self.runner.app[keys.POOL]

    def stop(self) -> None:
        try:
            if self.runner is not None:
                self.run(self.runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


class World:
    """The server, the fuzzing user (admin and approved seller), and ids that exist."""

    def __init__(self, server: LiveServer, log: ServerLog):
        self.server = server
        self.log = log
        self.http = requests.Session()
        self.user_id = ""
        self.token = ""
        self.totp: pyotp.TOTP | None = None
        self.ids: dict[str, list[str]] = {}
        self.keys = 0

    def call(self, method: str, path: str, token: str | None = None, *, fresh: bool = False, **kwargs) -> dict:
        """`fresh`: the fuzzing user's current two-factor code too (payout destination and payouts ask)."""
        headers = self.auth_headers(token) if fresh else {"Authorization": f"Bearer {token}"} if token else {}
        res = self.http.request(method, self.server.url + path, headers=headers, timeout=30, **kwargs)
        self.http.cookies.clear()  # requests authenticate by their bearer token only
        assert res.status_code < 300, (method, path, res.status_code, res.text)
        return res.json() if res.content else {}

    def sql(self, query: str, *args) -> Any:
        return self.server.run(self.server.pool.execute(query, *args))

    def new_session(self) -> str:
        """Another session of the fuzzing user: logout ends the one it is called with."""

        async def make() -> str:
            async with self.server.pool.acquire() as conn:
                return await create_session(conn, self.user_id, 3600)

        return self.server.run(make())

    def register(self, name: str) -> tuple[str, str]:
        """A new account with a default address, so its orders of goods that ship can be placed."""
        body = {"email": f"{name}@fuzz.test", "password": "fuzz-password", "display_name": name.title()}
        session = self.call("POST", "/api/auth/register", json=body)
        # Verified (as if the emailed link was opened): the fuzzing user and "other" apply to sell.
        self.sql("UPDATE users SET email_verified_at = now() WHERE id = $1", session["user"]["id"])
        address = {"name": name.title(), "line1": "1 Fuzz Street", "city": "Berlin", "country": "DE"}
        self.call("POST", "/api/me/addresses", session["token"], json=address)
        return session["user"]["id"], session["token"]

    def two_factor(self, token: str) -> None:
        secret = self.call("POST", "/api/me/two-factor/setup", token, json={"password": "fuzz-password"})["secret"]
        self.totp = pyotp.TOTP(secret)
        self.call("POST", "/api/me/two-factor/enable", token, json={"code": self.totp.now()})

    def auth_headers(self, token: str) -> dict[str, str]:
        """The fuzzing user's bearer token, and a current code for the routes that ask for a fresh one."""
        return {"Authorization": f"Bearer {token}", "X-Two-Factor-Code": self.totp.now()}

    def product(self, token: str, sku: str, category_id: str | None = None) -> dict:
        body = {
            "title": f"Fuzz {sku}",
            "description": "seeded for the fuzz test",
            "category_id": category_id,
            "attributes": {"brand": "fuzz"},
            "variants": [
                {"sku": f"{sku}-S", "options": {"size": "S"}, "price_cents": 500, "stock": 1000},
                {"sku": f"{sku}-L", "options": {"size": "L"}, "price_cents": 700, "stock": 1000},
            ],
        }
        return self.call("POST", "/api/products", token, json=body)["product"]

    def order(self, token: str, variant_id: str) -> str:
        body = {"items": [{"variant_id": variant_id, "quantity": 1}]}
        return self.call("POST", "/api/orders", token, json=body)["order"]["id"]

    def seed(self) -> None:
        self.user_id, self.token = me, token = self.register("fuzzer")
        self.sql("UPDATE users SET roles = '{viewer,admin}' WHERE id = $1", me)
        self.two_factor(token)  # admins act as admins, and payouts are asked for, only with a second factor
        seller_id = self.call("POST", "/api/sellers/apply", token, json={"shop_name": "Fuzz shop"})["seller"]["id"]
        self.call("POST", f"/api/admin/sellers/{seller_id}/approve", token)
        category = self.call("POST", "/api/admin/categories", token, json={"slug": "fuzz", "name": "Fuzz"})
        spare_category = self.call("POST", "/api/admin/categories", token, json={"slug": "spare", "name": "Spare"})
        product = self.product(token, "FUZZ", category["id"])
        spare = self.product(token, "SPARE")
        variants = [v["id"] for v in product["variants"]]
        self.call("POST", "/api/wallet/top-up", token, json={"amount_cents": 100_000})

        # A buyer: one order paid, one delivered (its earnings make a payout the admin can decide).
        buyer, buyer_token = self.register("buyer")
        self.call("POST", "/api/wallet/top-up", buyer_token, json={"amount_cents": 100_000})
        paid = self.order(buyer_token, variants[0])
        delivered = self.order(buyer_token, variants[1])
        tracking = {"carrier": "DHL", "tracking_number": "FUZZ-1"}
        self.call("POST", f"/api/orders/{delivered}/ship", token, json=tracking)
        self.call("POST", f"/api/orders/{delivered}/deliver", buyer_token)
        destination = {"holder_name": "Fuzz Shop", "country": "DE", "iban": "DE89370400440532013000"}
        self.call("PUT", "/api/me/payout-destination", token, fresh=True, json=destination)
        payout = self.call("POST", "/api/seller/payouts", token, fresh=True, json={"amount_cents": 100})["payout"]["id"]

        # Another seller, whom the fuzzing user buys from (and whom the admin fuzzing may suspend).
        other, other_token = self.register("other")
        other_seller = self.call("POST", "/api/sellers/apply", other_token, json={"shop_name": "Other"})
        other_seller_id = other_seller["seller"]["id"]
        self.call("POST", f"/api/admin/sellers/{other_seller_id}/approve", token)
        other_variants = [v["id"] for v in self.product(other_token, "OTHER")["variants"]]
        bought = self.order(token, other_variants[0])
        # A support ticket of the fuzzing user about that order (its replies and status are fuzzed).
        ticket = {"subject": "Fuzz help", "body": "seeded for the fuzz test", "order_id": bought}
        ticket_id = self.call("POST", "/api/tickets", token, json=ticket)["ticket"]["id"]

        # A review of the delivered order (which the seller may answer and the admin hide), the fuzzing user's
        # address, and a spare session of theirs to end (never the one the fuzzing runs with).
        review = {"order_id": delivered, "rating": 4, "text": "fine"}
        review_id = self.call("POST", f"/api/products/{product['id']}/reviews", buyer_token, json=review)["review"][
            "id"
        ]
        address_ids = [a["id"] for a in self.call("GET", "/api/me/addresses", token)["items"]]
        spare_session = self.new_session()
        session_ids = [s["id"] for s in self.call("GET", "/api/me/sessions", spare_session)["sessions"] if s["current"]]

        # A live stream of the fuzzing user's shop (the buyer moderates it) and a scheduled one.
        streams = []
        for _ in range(2):
            body = {"title": "Fuzz live", "products": [{"product_id": product["id"]}], "moderators": [buyer]}
            streams.append(self.call("POST", "/api/streams", token, json=body)["stream"]["id"])
        self.call("POST", f"/api/streams/{streams[0]}/start", token)
        # A giveaway running in the live stream (GET /api/giveaways/{id}).
        giveaway = self.server.run(
            self.server.pool.fetchval(
                "SELECT start_giveaway($1::uuid, $2::uuid, $3::uuid, 3600, 'everyone', $4)->>'id'",
                streams[0],
                me,
                variants[0],
                bytes(32),
            )
        )

        # A card payment of the fuzzing user, pending (as if opened with a card provider; GET /api/payments/{id}).
        card_payment = self.server.run(
            self.server.pool.fetchval(
                "SELECT id FROM (SELECT gen_random_uuid() AS id) p, "
                "open_card_payment(p.id, $1::uuid, 1000, 'USD', 'stripe', NULL)",
                me,
            )
        )

        self.ids = {
            "payments": [str(card_payment)],
            "products": [product["id"]],
            "categories": [category["id"]],
            "spare_categories": [spare_category["id"]],
            "spare_products": [spare["id"]],
            "variants": variants,
            "buyable_variants": [*other_variants, *variants],
            "sellers": [seller_id, other_seller_id],
            "other_sellers": [other_seller_id],
            "orders": [paid, delivered, bought],
            "payouts": [payout],
            "users": [me, buyer, other],
            "other_users": [buyer, other],
            "streams": streams,
            "reviews": [review_id],
            "tickets": [ticket_id],
            "giveaways": [giveaway],
            "addresses": address_ids,
            "sessions": session_ids,
        }

    def path_ids(self, method: str, path: str, name: str = "id") -> list[str]:
        """Ids that exist for the path's parameter `name`."""
        if name == "user_id":
            return self.ids["users"]
        if name == "review_id" or path.startswith("/api/admin/reviews/"):
            return self.ids["reviews"]
        if (method, path) == ("DELETE", "/api/products/{id}"):
            return self.ids["spare_products"]
        if (method, path) == ("POST", "/api/admin/sellers/{id}/suspend"):
            return self.ids["other_sellers"]
        if (method, path) == ("DELETE", "/api/admin/categories/{id}"):
            return self.ids["spare_categories"]
        if path.startswith("/api/admin/users/"):
            return self.ids["other_users"]  # the fuzzing user deactivated would end the run
        for prefix, kind in [
            ("/api/me/addresses/", "addresses"),
            ("/api/me/sessions/", "sessions"),
            ("/api/admin/categories/", "categories"),
            ("/api/admin/wallets/", "users"),
            ("/api/admin/sellers/", "sellers"),
            ("/api/admin/payouts/", "payouts"),
            ("/api/sellers/", "sellers"),
            ("/api/products/", "products"),
            ("/api/variants/", "variants"),
            ("/api/cart/items/", "variants"),
            ("/api/orders/", "orders"),
            ("/api/streams/", "streams"),
            ("/api/tickets/", "tickets"),
            ("/api/giveaways/", "giveaways"),
            ("/api/payments/", "payments"),
        ]:
            if path.startswith(prefix):
                return self.ids[kind]
        return []

    def realise(self, case, pick: int | None):
        """The case with existing ids (the `pick`th of each kind) for its path parameter and for the
        ids its JSON body names, and a new Idempotency-Key if it has one (a generated key is often one
        used before, which replays or refuses before the handler runs); None leaves it as generated."""
        if pick is None:
            return case
        if case.headers and "Idempotency-Key" in case.headers:
            self.keys += 1
            headers = CaseInsensitiveDict(case.headers)
            headers["Idempotency-Key"] = f"fuzz-{self.keys}"
            case.headers = headers
        for name in [p.name for p in case.operation.path_parameters]:
            if name in case.path_parameters:
                known = self.path_ids(case.operation.method.upper(), case.operation.path, name)
                case.path_parameters = {**case.path_parameters, name: known[pick % len(known)]}
        if isinstance(case.body, (dict, list)):
            case.body = self._body_ids(case.body, pick)
        return case

    def _body_ids(self, value, pick: int):
        if isinstance(value, list):
            return [self._body_ids(item, pick) for item in value]
        if not isinstance(value, dict):
            return value
        out = {}
        for key, item in value.items():
            kind = BODY_IDS.get(key)
            if kind and isinstance(item, str):
                out[key] = self.ids[kind][pick % len(self.ids[kind])]
            else:
                out[key] = self._body_ids(item, pick)
        return out

    def send(self, case, headers: dict | None = None) -> None:
        """Send a case as the fuzzing user (or with `headers` instead) and run the checks; a 5xx failure
        carries the server's log."""
        token = self.new_session() if case.operation.path == "/api/auth/logout" else self.token
        mark = len(self.log.records)
        try:
            case.call_and_validate(
                base_url=self.server.url,
                session=self.http,
                headers=headers if headers is not None else self.auth_headers(token),
                checks=CHECKS,
            )
        except FailureGroup as exc:
            if logged := self.log.since(mark):
                exc.add_note(f"server log:\n{logged}")
            raise
        finally:
            self.http.cookies.clear()


def reproducible(name: str, examples: int, *, shrink: bool = False):
    """Hypothesis settings for one operation's run: a fixed seed of its own (the same inner function would
    otherwise give every operation the same derandomised choices), no deadline, no example database."""
    phases = [hypothesis.Phase.explicit, hypothesis.Phase.generate] + ([hypothesis.Phase.shrink] if shrink else [])

    def decorate(test):
        settings = hypothesis.settings(
            max_examples=examples,
            derandomize=True,
            deadline=None,
            database=None,
            phases=phases,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        return hypothesis.seed(SEED ^ zlib.crc32(name.encode()))(settings(test))

    return decorate


def past_bigint(value):
    """The value with every integer in it made one past PostgreSQL's bigint: valid JSON, and valid
    for any schema without a maximum."""
    if isinstance(value, list):
        return [past_bigint(item) for item in value]
    if isinstance(value, dict):
        return {key: past_bigint(item) for key, item in value.items()}
    if isinstance(value, int) and not isinstance(value, bool):
        return 2**63 if value >= 0 else -(2**63) - 1
    return value


def distinct(*cases):
    """The cases that differ in their path parameters or body."""
    seen = []
    for case in cases:
        key = (case.path_parameters, case.body)
        if key not in seen:
            seen.append(key)
            yield case


def describe(exc: FailureGroup) -> str:
    """A failure's report: the checks that failed, the response, the request as curl, the server log."""
    return "\n".join([exc.message, *getattr(exc, "__notes__", [])])


@pytest.fixture(scope="module")
def world(database_url):
    settings = settings_for(database_url)
    # Jobs are queued but not run here: the queue's worker (pgqueuer) draws on the global `random` module
    # for its jitter in the server's thread, which Hypothesis refuses while it generates a case. The REST
    # answers are what is fuzzed; the jobs have their own tests (test_jobs.py, test_mail.py, ...).
    settings.jobs_enabled = False
    log = ServerLog()
    for name in LOGGERS:
        logging.getLogger(name).addHandler(log)
    server = LiveServer(settings)
    try:
        server.start()
        server.run(empty_tables(server.pool))
        world = World(server, log)
        world.seed()
        yield world
    finally:
        server.stop()
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(log)


@pytest.fixture(scope="module")
def api_schema(world):
    # An explicit config, so no schemathesis.toml from the working directory applies.
    config = schemathesis.Config.from_dict({"generation": {"deterministic": True, "database": "none"}})
    return schemathesis.openapi.from_url(world.server.url + "/api/openapi.json", config=config)


def test_the_fuzzed_operations_are_the_documented_ones(api_schema):
    documented = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_bad_input_never_yields_a_server_error(api_schema, world, method, path):
    operation = api_schema[path][method]
    names = [p.name for p in operation.path_parameters]
    assert all(world.path_ids(method, path, name) for name in names), f"no ids seeded for {method} {path}"

    # Coverage cases; each with a path or body id is sent again with ids that exist, and each with
    # integers in its body once more with them past bigint.
    generation = api_schema.config.generation_for(operation=operation, phase="coverage")
    failures: list[FailureGroup] = []
    for n, case in enumerate(
        api_schema.iter_coverage_cases(operation, generation_modes=MODES, generation_config=generation)
    ):
        real = world.realise(case.derive(), n)
        huge = world.realise(case.derive(), n)
        huge.body = past_bigint(huge.body)
        for each in distinct(case, real, huge):
            try:
                world.send(each)
            except FailureGroup as exc:
                failures.append(exc)
    if failures:
        kinds: dict[tuple, list[FailureGroup]] = {}
        for exc in failures:
            kinds.setdefault(tuple(sorted((f.code, f.title) for f in exc.exceptions)), []).append(exc)
        shown = "\n".join(f"{len(same)} case(s) like this one:\n{describe(same[0])}" for same in kinds.values())
        pytest.fail(f"{len(failures)} coverage case(s) of {method} {path} failed:\n{shown}")

    # Generated requests, valid and invalid, with existing ids some of the time.
    strategy = st.builds(
        world.realise,
        st.one_of([operation.as_strategy(generation_mode=mode) for mode in MODES]),
        st.none() | st.integers(0, 5),
    )

    @reproducible(f"{method} {path}", MAX_EXAMPLES, shrink=True)
    @hypothesis.given(case=strategy)
    def fuzz(case):
        world.send(case)

    fuzz()


# Header values HTTP allows (RFC 9110 field-value: visible ASCII, space, tab and obs-text bytes 0x80-0xFF,
# which are not UTF-8 on their own); aiohttp's parser answers anything else 400 before the app sees it.
FIELD_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]
HEADER_SAFE = st.lists(st.sampled_from(FIELD_BYTES), max_size=60).map(bytes)


def credentials(kind: str, raw: bytes) -> dict:
    if kind == "bearer":
        return {"Authorization": b"Bearer " + raw}
    return {"Cookie": b"livehub_session=" + raw}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_random_credentials_never_yield_a_server_error(api_schema, world, method, path):
    """Every operation with a random bearer token or session cookie (printable, control characters, bytes that
    are not UTF-8): an error in the documented shape, never a 5xx."""
    operation = api_schema[path][method]
    strategy = st.tuples(
        st.builds(world.realise, operation.as_strategy(generation_mode=GenerationMode.POSITIVE), st.integers(0, 5)),
        st.sampled_from(["bearer", "cookie"]),
        HEADER_SAFE.map(lambda v: v.strip(b" \t")),
    )

    @reproducible(f"credentials {method} {path}", 8)
    @hypothesis.given(sent=strategy)
    def fuzz(sent):
        case, kind, value = sent
        world.send(case, headers=credentials(kind, value))

    fuzz()


# The messages of a refusal for the request's shape: pydantic's, and text PostgreSQL cannot store.
SHAPE_ERRORS = ("invalid request", storable.MESSAGE, "body is not valid JSON", "a JSON body is required")


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_requests_valid_by_the_schema_are_not_refused_as_invalid(api_schema, world, method, path):
    """The OpenAPI document states every rule the server checks on a request's shape: generated requests that
    follow it are never refused as malformed (400, or 422 from validation). Refusals about the data, which a
    schema cannot state (an archived product, a top-up over the configured maximum, a category moved under
    itself), are answered by the rules in the storage functions and are not counted here."""
    operation = api_schema[path][method]
    refused = []

    @reproducible(f"positive {method} {path}", 15)
    @hypothesis.given(
        case=st.builds(world.realise, operation.as_strategy(generation_mode=GenerationMode.POSITIVE), st.integers(0, 5))
    )
    def fuzz(case):
        token = world.new_session() if path == "/api/auth/logout" else world.token
        res = case.call(base_url=world.server.url, session=world.http, headers=world.auth_headers(token))
        world.http.cookies.clear()
        if res.status_code == 400 or (res.status_code == 422 and res.json()["error"]["message"] in SHAPE_ERRORS):
            refused.append(f"{case.as_curl_command()}\n-> {res.status_code} {res.text[:300]}")

    fuzz()
    assert refused == [], "schema-valid requests refused:\n" + "\n".join(refused)
