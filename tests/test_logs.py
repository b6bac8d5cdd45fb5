"""The node's log as it is written (livehub/logs.py): JSON or logfmt lines that parse, the request id, user and
route on every line of a request, the access log's fields and its off switch, quiet libraries, and no secret
in the output of a real password reset, sign-in and websocket session."""

import asyncio
import io
import json
import logging
import re
import shlex
import sys
import time

import pytest
from aiohttp.test_utils import TestServer

from livehub import logs
from livehub.api.access_log import access_log_options
from livehub.api.request_id import HEADER
from livehub.api.routing import Api
from livehub.app import create_app
from livehub.settings import Settings
from livehub.tasks import Supervisor, cancel
from smtp_server import body_text

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new staple"
WAIT_S = 10

# A route of the test's own, mounted on a real node, that logs while it runs.
probe = Api("probe")


@probe.get("/api/probe/log", auth="optional")
async def log_inside(request):
    """Logs a line while handling the request."""
    logging.getLogger("livehub.probe").info("inside the handler")
    return {"ok": True}


class Captured:
    """What the process logs from `logs.setup(settings)` on, as that handler writes it."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]

    async def wait_for(self, predicate) -> dict:
        """The first record matching `predicate` (the access line comes after the response: a bounded poll)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            found = [r for r in self.records() if predicate(r)]
            if found:
                return found[0]
            assert time.monotonic() < deadline, self.text
            await asyncio.sleep(0.02)


@pytest.fixture
def captured():
    """Installs the node's log handler (logs.setup) into a buffer; the process's logging is put back after."""
    root = logging.getLogger()
    names = (*logs.OWN_LOGGERS, "aioice", "aiortc")
    saved = root.level, list(root.handlers), {name: logging.getLogger(name).level for name in names}
    holder = Captured()
    yield holder
    for handler in [h for h in root.handlers if h not in saved[1]]:
        root.removeHandler(handler)
    root.setLevel(saved[0])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


async def start_node(aiohttp_client, captured: Captured, settings, **updates):
    """A node with the probe route, its log set up as run.py does (JSON unless told), and its access log."""
    # Pinned, whatever the environment running the tests says.
    pinned = {"log_format": "json", "log_level": "INFO", "library_log_level": "WARNING", "access_log": True}
    settings = settings.model_copy(update={**pinned, **updates})
    logs.setup(settings, captured.stream)
    app = create_app(settings)
    app.router.add_routes(probe.table())
    server = TestServer(app)
    # TestServer(app, **options) drops them; start_server passes them on to the runner.
    await server.start_server(**access_log_options(settings))
    return await aiohttp_client(server)


async def register(client, email: str) -> str:
    body = {"email": email, "password": PASSWORD, "display_name": "Lou Log"}
    res = await client.post("/api/auth/register", json=body)
    assert res.status == 201, await res.text()
    client.session.cookie_jar.clear()
    return (await res.json())["user"]["id"]


async def login(client, email: str, password: str) -> str:
    res = await client.post("/api/auth/login", json={"email": email, "password": password})
    assert res.status == 200, await res.text()
    client.session.cookie_jar.clear()
    return (await res.json())["token"]


def access_line(path: str):
    return lambda r: r["logger"] == "aiohttp.access" and r.get("path", "").startswith(path)


# -- formats --------------------------------------------------------------------------------------------


def format_one(kind: str, record: logging.LogRecord) -> str:
    handler = logs.setup(Settings(log_format=kind), io.StringIO())
    try:
        for f in handler.filters:
            f.filter(record)
        return handler.format(record)
    finally:
        logging.getLogger().removeHandler(handler)


def a_record(msg: str, *args, exc: bool = False, **extra) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError('bad "value"\non two lines')
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("livehub.x", logging.WARNING, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def parse_logfmt(line: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(line))


def test_a_json_line_is_one_object_with_its_fields(captured):
    line = format_one("json", a_record("sold %d of %s", 3, "a hat", order_id=7, exc=True))
    assert "\n" not in line
    record = json.loads(line)
    assert record["level"] == "warning" and record["logger"] == "livehub.x"
    assert record["msg"] == "sold 3 of a hat" and record["order_id"] == 7
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])
    assert "ValueError" in record["exc"] and "on two lines" in record["exc"]


def test_a_logfmt_line_quotes_what_needs_it(captured):
    line = format_one(
        "logfmt", a_record('said "hi" = hello\\there', shop="Hat Shop", n=2, empty="", none=None, exc=True)
    )
    assert "\n" not in line
    fields = parse_logfmt(line)
    assert fields["level"] == "warning" and fields["logger"] == "livehub.x"
    assert fields["msg"] == 'said "hi" = hello\\there'
    assert fields["shop"] == "Hat Shop" and fields["n"] == "2" and fields["empty"] == "" and "none" not in fields
    assert 'bad "value"\\non two lines' in fields["exc"]  # the traceback's line breaks escaped


def test_auto_is_logfmt_on_a_terminal_and_json_otherwise(captured):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, kind in ((Terminal(), logs.LogfmtFormatter), (io.StringIO(), logs.JsonFormatter)):
        handler = logs.setup(Settings(log_format="auto"), stream)
        assert type(handler.formatter) is kind
    assert len([h for h in logging.getLogger().handlers if getattr(h, "_livehub", False)]) == 1


# -- request ids, users, routes ---------------------------------------------------------------------------


async def test_a_request_id_is_accepted_or_made_and_echoed(aiohttp_client, captured, settings, db):
    client = await start_node(aiohttp_client, captured, settings)
    res = await client.get("/api/no/such/thing", headers={HEADER: "edge-7f3a.42"})
    assert res.status == 404
    assert res.headers[HEADER] == "edge-7f3a.42"
    assert (await res.json())["error"]["request_id"] == "edge-7f3a.42"

    for refused in ("two words", "x" * 129, "caf\u00e9", ""):
        res = await client.get("/api/me", headers={HEADER: refused})
        assert res.status == 401
        made = res.headers[HEADER]
        assert re.fullmatch(r"[0-9a-f]{32}", made), made
        assert (await res.json())["error"]["request_id"] == made

    res = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", res.headers[HEADER])


async def test_a_requests_lines_carry_its_id_user_and_route(aiohttp_client, captured, settings, db):
    client = await start_node(aiohttp_client, captured, settings)
    user_id = await register(client, "lou@example.test")
    token = await login(client, "lou@example.test", PASSWORD)

    res = await client.get("/api/probe/log", headers={HEADER: "req-1", "Authorization": f"Bearer {token}"})
    assert res.status == 200
    inside = await captured.wait_for(lambda r: r["msg"] == "inside the handler")
    assert (inside["request_id"], inside["user_id"], inside["route"]) == ("req-1", user_id, "/api/probe/log")
    access = await captured.wait_for(access_line("/api/probe/log"))
    assert (access["request_id"], access["user_id"], access["route"]) == ("req-1", user_id, "/api/probe/log")
    assert access["method"] == "GET" and access["status"] == 200 and access["bytes"] > 0
    assert access["remote"] == "127.0.0.1" and access["duration_ms"] >= 0

    # Signed out: the same route, its own id, no user; a route template, not the path.
    res = await client.get("/api/probe/log")
    inside = [r for r in captured.records() if r["msg"] == "inside the handler"][-1]
    assert inside["request_id"] == res.headers[HEADER] and "user_id" not in inside
    res = await client.get("/api/orders/0b6a0c1e-0000-4000-8000-000000000000", headers={HEADER: "req-2"})
    assert res.status == 401
    access = await captured.wait_for(lambda r: r.get("request_id") == "req-2")
    assert access["route"] == "/api/orders/{id}" and access["status"] == 401

    # A line logged after the request is over carries none of it.
    logging.getLogger("livehub.later").warning("after the requests")
    later = await captured.wait_for(lambda r: r["msg"] == "after the requests")
    assert not {"request_id", "user_id", "route"} & later.keys()


async def test_a_websockets_lines_carry_its_id_and_user(aiohttp_client, captured, settings, db):
    client = await start_node(aiohttp_client, captured, settings)
    user_id = await register(client, "wes@example.test")
    token = await login(client, "wes@example.test", PASSWORD)
    ws = await client.ws_connect(f"/ws/me?token={token}", headers={HEADER: "socket-9"})
    assert ws._response.headers[HEADER] == "socket-9"
    assert (await ws.receive_json())["type"] == "welcome"
    await ws.close()
    access = await captured.wait_for(access_line("/ws/me"))
    assert (access["request_id"], access["user_id"], access["route"]) == ("socket-9", user_id, "/ws/me")
    assert access["status"] == 101 and token not in captured.text


async def test_a_loop_started_during_a_request_is_not_that_requests(captured):
    """A one-shot step a request spawns is its work (its lines carry the request); a loop it happens to
    start (a room's ticker, started by its first viewer) is the node's, and its lines carry none of it."""
    logs.setup(Settings(log_format="json", log_level="INFO"), captured.stream)
    tasks = Supervisor()

    async def step() -> None:
        logging.getLogger("livehub.step").warning("step")

    with logs.bound(request_id="req-9", user_id="u-1", route="/ws/streams/{id}"):
        tasks.spawn(step(), name="step")
        loop = tasks.every(0.01, lambda: logging.getLogger("livehub.loop").warning("tick"), name="ticker")
    try:
        step = await captured.wait_for(lambda r: r["msg"] == "step")
        tick = await captured.wait_for(lambda r: r["msg"] == "tick")
    finally:
        await cancel(loop)
        await tasks.close()
    assert (step["request_id"], step["user_id"]) == ("req-9", "u-1")
    assert not {"request_id", "user_id", "route"} & tick.keys()


async def test_the_access_log_can_be_turned_off(aiohttp_client, captured, settings, db):
    client = await start_node(aiohttp_client, captured, settings, access_log=False)
    assert (await client.get("/healthz")).status == 200
    res = await client.get("/api/probe/log")
    await captured.wait_for(lambda r: r["msg"] == "inside the handler")
    assert res.status == 200
    assert not [r for r in captured.records() if r["logger"] == "aiohttp.access"]


def test_library_chatter_below_warning_is_not_written(captured):
    logs.setup(Settings(log_format="json", log_level="INFO", library_log_level="WARNING"), captured.stream)
    logging.getLogger("aioice.ice").info("Connection(0) Check CandidatePair ... State.IN_PROGRESS")
    logging.getLogger("aiortc.rtcpeerconnection").debug("RTCPeerConnection() signalingState -> stable")
    logging.getLogger("aioice.ice").warning("Connection(0) ICE failed")
    logging.getLogger("livehub.media.sessions").info("stream 1: publishing")
    assert [r["msg"] for r in captured.records()] == ["Connection(0) ICE failed", "stream 1: publishing"]

    # Asked for: the libraries' debug lines, and LiveHub's own at WARNING only.
    logs.setup(Settings(log_format="json", library_log_level="DEBUG", log_level="WARNING"), captured.stream)
    logging.getLogger("aiortc.rtcpeerconnection").debug("signalingState -> closed")
    logging.getLogger("livehub.media.sessions").info("stream 2: publishing")
    assert [r["msg"] for r in captured.records()][2:] == ["signalingState -> closed"]


# -- no secrets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "logged, kept",
    [
        ("GET /ws/me?token=S3CR3T&since=4", "GET /ws/me?token=[redacted]&since=4"),
        (
            "link https://x.example/reset-password?%74oken=S3CR3T",
            "link https://x.example/reset-password?%74oken=[redacted]",
        ),
        ("page /verify#token=S3CR3T", "page /verify#token=[redacted]"),
        ("headers {'Authorization': 'Bearer S3CR3T', 'Accept': '*/*'}", "headers {'Authorization': '[redacted]"),
        ("sent Bearer S3CR3T upstream", "sent Bearer [redacted] upstream"),
        ("Cookie: livehub_session=S3CR3T; theme=dark", "Cookie: [redacted]"),
        ("payload {'email': 'a@b.test', 'password': 'S3CR3T'}", "'email': 'a@b.test', 'password': '[redacted]'}"),
        ("smtp://mailer:S3CR3T@smtp.example:587 down", "smtp://mailer:[redacted]@smtp.example:587 down"),
        ("stripe said no to sk_live_S3CR3T", "stripe said no to [redacted]"),
        ("webhook whsec_S3CR3T", "webhook [redacted]"),
        ("otp_code=S3CR3T accepted", "otp_code=[redacted] accepted"),
        ("released 3 earnings past their hold", "released 3 earnings past their hold"),
    ],
)
def test_secret_shaped_values_are_redacted_in_messages(logged, kept):
    shown = logs.redact(logged)
    assert "S3CR3T" not in shown
    assert kept in shown


def test_secret_named_fields_and_tracebacks_are_redacted(captured):
    logs.setup(Settings(log_format="json", log_level="INFO"), captured.stream)
    try:
        raise RuntimeError("login failed for password=S3CR3T")
    except RuntimeError:
        logging.getLogger("livehub.x").exception(
            "sign-in of %s", "a@b.test", extra={"session_token": "S3CR3T", "url": "/x?api_key=S3CR3T", "n": 1}
        )
    record = captured.records()[0]
    assert "S3CR3T" not in captured.text
    assert record["session_token"] == "[redacted]" and record["url"] == "/x?api_key=[redacted]"
    assert record["msg"] == "sign-in of a@b.test" and record["n"] == 1 and "password=[redacted]" in record["exc"]


async def test_no_secret_of_a_reset_a_sign_in_and_a_websocket_is_logged(
    aiohttp_client, captured, settings, db, smtp_server
):
    """Everything LiveHub logs at DEBUG, the access log included, through a whole account recovery."""
    client = await start_node(aiohttp_client, captured, settings, log_level="DEBUG")
    await register(client, "rex@example.test")
    old_token = await login(client, "rex@example.test", PASSWORD)

    res = await client.post("/api/auth/password-reset", json={"email": "rex@example.test"})
    assert res.status == 202
    mail = await smtp_server.wait_for("rex@example.test", subject="password")
    reset_token = re.search(r"reset-password\?token=([A-Za-z0-9_-]+)", body_text(mail)).group(1)
    res = await client.get(f"/reset-password?token={reset_token}")
    assert res.status == 200
    res = await client.post("/api/auth/password-reset/confirm", json={"token": reset_token, "password": NEW_PASSWORD})
    assert res.status in (200, 204), await res.text()

    new_token = await login(client, "rex@example.test", NEW_PASSWORD)
    ws = await client.ws_connect(f"/ws/me?token={new_token}")
    assert (await ws.receive_json())["type"] == "welcome"
    await ws.close()
    ws = await client.ws_connect(f"/ws/me?token={old_token}")  # ended by the reset: refused
    await ws.receive()
    await client.get("/api/me", headers={"Authorization": f"Bearer {new_token}", "Referer": f"/x?token={new_token}"})

    await captured.wait_for(lambda r: r.get("path") == "/api/me")
    assert len([r for r in captured.records() if r["logger"] == "aiohttp.access"]) >= 8
    for secret in (PASSWORD, NEW_PASSWORD, old_token, new_token, reset_token):
        assert secret not in captured.text, secret
