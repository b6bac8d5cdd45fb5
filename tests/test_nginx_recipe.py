"""The production recipe end to end: the shipped nginx site (deploy/nginx/livehub.conf) in a real nginx, in
front of two nodes on one PostgreSQL and Redis, over HTTPS with a certificate of the test's own CA.

Through it: a browser registers, signs out (a cookie write: the Origin check sees https through the proxy)
and in again; websockets land on both nodes and chat crosses between them; a stream's publish and watch
reach the one node that relays it (real aiortc peers); the sign-in limits count the real client address,
never one the client wrote into X-Forwarded-For; nginx serves the static files and product images itself,
refuses oversized bodies in LiveHub's error shape, and redirects plain HTTP to HTTPS.

nginx missing: skipped on a laptop, a failure under CI (`.ci/run` installs Debian's nginx).
"""

import asyncio
import io
import os
import re
import secrets
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from image_helpers import form, picture
from nginx_server import Nginx, nginx_executable, ports, render_site
from tls_helpers import make_certificate

from conftest import ROOT, settings_for
from live_helpers import Viewer, live_show
from livehub import keys
from livehub.app import create_app
from livehub.settings import Settings
from media_helpers import LOOPBACK, Publisher, assert_frame_is, live_stream
from media_helpers import Viewer as MediaViewer
from redis_server import redis_url  # noqa: F401

NODE_HEADER = "X-LiveHub-Node"
ENV_EXAMPLE = ROOT / "deploy" / "livehub.env.example"
UNIT = ROOT / "deploy" / "systemd" / "livehub@.service"


def world_readable_dir(prefix: str) -> Path:
    # As root, nginx's workers run as nobody: they read the images under the data directory and write
    # their temp files under nginx's, so neither may be mkdtemp's 0700.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


async def error_code(res, status: int) -> dict:
    """The error object of a response in LiveHub's error shape (from a node or from nginx)."""
    body = await res.json()
    assert res.status == status and set(body) == {"error"}, (res.status, body)
    assert {"code", "message", "details"} <= set(body["error"]), body
    return body["error"]


@dataclass
class Stack:
    nginx: Nginx
    nodes: list  # the nodes' aiohttp test clients (A builds the test data)
    ca: Path
    node_ids: list[str] = field(default_factory=list)
    answered: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, node)

    def session(self, *, local_address: str | None = None, **options) -> aiohttp.ClientSession:
        """A client of the site that trusts only the test's CA and notes which node answered each request
        (websocket handshakes included)."""
        trace = aiohttp.TraceConfig()

        async def note(session, context, params):
            self.answered.append((params.method, params.url.path, params.response.headers.get(NODE_HEADER)))

        trace.on_request_end.append(note)
        tls = ssl.create_default_context(cafile=str(self.ca))
        local = (local_address, 0) if local_address else None
        connector = aiohttp.TCPConnector(ssl=tls, local_addr=local, limit=0)
        return aiohttp.ClientSession(self.nginx.url, connector=connector, trace_configs=[trace], **options)

    def node_of(self, method: str, path: str) -> str:
        nodes = [node for m, p, node in self.answered if (m, p) == (method, path)]
        assert nodes and nodes[-1] in self.node_ids, (method, path, self.answered)
        return nodes[-1]


@pytest.fixture
def nginx_binary() -> str:
    path = nginx_executable()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("nginx not found: CI must install Debian's nginx (see .ci/run)")
        pytest.skip("nginx not found: install Debian's nginx or set LIVEHUB_NGINX")
    return path


@pytest.fixture
async def stack(nginx_binary, aiohttp_client, database_url, redis_url, db) -> AsyncIterator[Stack]:  # noqa: F811
    data_dir = world_readable_dir("livehub-nginx-data-")
    nginx_dir = world_readable_dir("livehub-nginx-")
    https_port, http_port = ports()
    prefix = f"t{secrets.token_hex(4)}"
    # The production settings of deploy/livehub.env.example that matter here, on the test's services.
    settings = settings_for(database_url).model_copy(
        update={
            "redis_url": redis_url,
            "redis_prefix": prefix,
            "trusted_proxy_count": 1,
            "cookie_secure": True,
            "public_url": f"https://127.0.0.1:{https_port}",
            "data_dir": data_dir,
            "media_host_addresses": LOOPBACK,
            "jobs_enabled": False,
            "tick_ms": 20,
            "presence_interval_s": 0.2,
            "room_history_ttl_s": 120,
            "login_max_failures_per_pair": 2,
        }
    )
    nodes = [
        await aiohttp_client(create_app(settings.model_copy()), connector=aiohttp.TCPConnector(limit=0))
        for _ in range(2)
    ]
    cert = make_certificate(nginx_dir)
    site = render_site(
        http_port=http_port,
        https_port=https_port,
        nodes=[node.server.port for node in nodes],
        cert=cert,
        data_dir=data_dir,
        log_dir=nginx_dir,
    )
    nginx = Nginx(nginx_dir, site, https_port=https_port, http_port=http_port)
    nginx.executable = nginx_binary
    nginx.start()
    try:
        yield Stack(nginx, nodes, cert.ca, node_ids=[n.app[keys.HUB].broker.node_id for n in nodes])
    finally:
        nginx.stop()
        shutil.rmtree(nginx_dir, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def client(stack):
    # The Factory builds test data on node A directly.
    return stack.nodes[0]


async def test_nginx_serves_static_files_and_images_itself_and_redirects_to_https(stack, make):
    async with stack.session() as site:
        # Plain HTTP moves to HTTPS, path and query kept.
        async with aiohttp.ClientSession() as plain:
            res = await plain.get(f"{stack.nginx.http_url}/watch/x?a=1", allow_redirects=False)
            assert res.status == 301
            assert res.headers["Location"] == f"{stack.nginx.url}/watch/x?a=1"

        # A page comes from a node; a script from nginx, with its caching and security headers.
        res = await site.get("/signin")
        assert res.status == 200 and res.headers[NODE_HEADER] in stack.node_ids
        assert res.headers.get("Strict-Transport-Security")
        res = await site.get("/static/js/api.js")
        assert res.status == 200 and NODE_HEADER not in res.headers
        assert res.headers["Server"].startswith("nginx")
        assert res.headers["Cache-Control"] == "public, no-cache" and res.headers["ETag"]
        # The headers a node sends with a script, so nothing differs for having come from nginx.
        node_headers = (await stack.nodes[0].get("/static/js/api.js")).headers
        for name in ("X-Content-Type-Options", "Referrer-Policy", "Content-Security-Policy", "Permissions-Policy"):
            assert res.headers[name] == node_headers[name], name
        assert (await res.read()) == (ROOT / "static" / "js" / "api.js").read_bytes()
        again = await site.get("/static/js/api.js", headers={"If-None-Match": res.headers["ETag"]})
        assert again.status == 304

        # An image uploaded through the proxy (a multipart body to a node) is served from the disk by nginx.
        seller = await make.seller()
        product = await make.product(seller)
        res = await site.post(
            f"/api/products/{product['id']}/images", data=form(picture("JPEG")), headers=seller.headers
        )
        assert res.status == 201, await res.text()
        url = (await res.json())["image"]["url"]
        res = await site.get(url)
        assert res.status == 200, await res.text()
        assert NODE_HEADER not in res.headers and res.headers["Server"].startswith("nginx")
        assert res.headers["Content-Type"] == "image/webp"
        assert res.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert (await res.read())[8:12] == b"WEBP"
        # One that is not on the disk is the nodes' to answer, in LiveHub's error shape.
        res = await site.get("/media/images/00000000-0000-0000-0000-000000000000/480.webp")
        assert (await error_code(res, 404))["code"] == "not_found"
        assert res.headers[NODE_HEADER] in stack.node_ids

        # A body over LiveHub's upload limit is refused by nginx, in LiveHub's error shape.
        res = await site.post(
            f"/api/products/{product['id']}/images",
            data=io.BytesIO(b"x" * (Settings().max_upload_bytes + 1)),
            headers={**seller.headers, "Content-Type": "image/jpeg", "X-Request-Id": "upload-1"},
        )
        error = await error_code(res, 413)
        assert error["code"] == "payload_too_large" and error["request_id"] == "upload-1"
        assert NODE_HEADER not in res.headers
        # An id a node would refuse (a quote, a space) is replaced by nginx's own: nginx's JSON stays whole.
        res = await site.post(
            f"/api/products/{product['id']}/images",
            data=io.BytesIO(b"x" * (Settings().max_upload_bytes + 1)),
            headers={**seller.headers, "Content-Type": "image/jpeg", "X-Request-Id": 'a" b'},
        )
        error = await error_code(res, 413)
        assert error["request_id"] != 'a" b' and len(error["request_id"]) == 32
    # nginx read every file it served (its workers' user may read the images LiveHub stored).
    errors = stack.nginx.errors()
    assert "Permission denied" not in errors and "[crit]" not in errors, errors


async def test_the_sign_in_limits_count_the_real_client_address_not_a_spoofed_one(stack, make, db):
    account = await make.user(email="target@example.test")
    wrong = {"email": "target@example.test", "password": "not the password"}
    spoofed = {"X-Forwarded-For": "203.0.113.7"}
    # Two clients on different loopback addresses; nginx hears them as 127.0.0.3 and 127.0.0.4, the nodes
    # hear nginx (127.0.0.1). Both claim to be 203.0.113.7.
    async with stack.session(local_address="127.0.0.3") as third, stack.session(local_address="127.0.0.4") as fourth:
        for _ in range(2):
            res = await third.post("/api/auth/login", json=wrong, headers=spoofed)
            await error_code(res, 401)
        addresses = await db.fetch("SELECT address FROM login_failures WHERE account = $1", account.id)
        assert [r["address"] for r in addresses] == ["127.0.0.3", "127.0.0.3"]

        # The pair (account, 127.0.0.3) is at its limit (2 here): refused even with the right password.
        res = await third.post("/api/auth/login", json={**wrong, "password": account.password}, headers=spoofed)
        assert (await error_code(res, 429))["code"] == "rate_limited"
        # Another address is not held to it, whatever X-Forwarded-For it sends.
        res = await fourth.post("/api/auth/login", json={**wrong, "password": account.password}, headers=spoofed)
        assert res.status == 200, await res.text()


async def test_websockets_reach_both_nodes_and_chat_crosses_them(stack, make):
    show = await live_show(make, products=1)
    async with stack.session() as site:
        host = await Viewer.connect(site, show.id, show.seller)
        viewers = [await Viewer.connect(site, show.id) for _ in range(3)]
        sockets = [host, *viewers]
        assert all(v.welcome is not None for v in sockets)
        path = f"/ws/streams/{show.id}"
        nodes = [node for method, p, node in stack.answered if p == path]
        assert len(nodes) == 4 and set(nodes) == set(stack.node_ids), nodes

        # The host chats on one node; a viewer on the other sees it.
        elsewhere = next(v for v, node in zip(viewers, nodes[1:], strict=True) if node != nodes[0])
        assert (await host.request("chat", text="hello through nginx"))["type"] == "ack"
        await elsewhere.wait_for(lambda v: any(e["text"] == "hello through nginx" for e in v.of_type("chat")))
        for v in sockets:
            await v.ws.close()

        # A browser's socket: the session cookie and the page's https origin, which the node must see as its
        # own through the proxy (nginx passes Host and X-Forwarded-Proto on websockets too).
        fan = await make.user()
        ws = await site.ws_connect(path, headers={"Cookie": f"livehub_session={fan.token}", "Origin": stack.nginx.url})
        browser = Viewer(ws)
        await browser.wait_for(lambda v: v.welcome is not None or v.close_code is not None)
        assert browser.welcome is not None, browser.close_code
        await ws.close()

        # A session token in a websocket's URL (browsers cannot send headers there) stays out of nginx's log.
        token = secrets.token_urlsafe(16)
        ws = await site.ws_connect(f"/ws/me?token={token}", headers={"X-Request-Id": "socket-1"})
        await ws.close()
    # nginx writes a websocket's line when it has closed on both sides.
    for _ in range(100):
        if "rid=socket-1" in (log := stack.nginx.access_log()):
            break
        await asyncio.sleep(0.05)
    assert re.search(r'"GET /ws/me HTTP/1.1" 101 .* rid=socket-1 ', log), log
    assert token not in log


async def test_a_streams_publish_and_watch_land_on_the_node_that_relays_it(stack, make):
    stream, seller = await live_stream(stack.nodes[0], make)
    stream_id = stream["id"]
    async with stack.session() as site:
        publisher = await Publisher(site, stream_id, seller).start()
        viewers = []
        try:
            relay = stack.node_of("POST", f"/api/streams/{stream_id}/publish")
            # Several viewers in a row: spread over the nodes like other requests, some would reach the node
            # without the publication and be told the host is not publishing.
            for _ in range(3):
                viewer = await MediaViewer(site, stream_id).start()
                viewers.append(viewer)
                assert stack.node_of("POST", f"/api/streams/{stream_id}/watch") == relay
            assert_frame_is(await viewers[-1].frame())

            path = f"/api/streams/{stream_id}/media/{viewers[0].session_id}/heartbeat"
            assert (await site.post(path)).status == 204
            assert stack.node_of("POST", path) == relay
            path = f"/api/streams/{stream_id}/watch/{viewers[0].session_id}"
            assert (await site.delete(path)).status == 204
            assert stack.node_of("DELETE", path) == relay
            # Describing the backend is any node's to answer.
            assert (await site.get(f"/api/streams/{stream_id}/media")).status == 200
        finally:
            for viewer in viewers:
                await viewer.close()
            await publisher.close()


async def test_a_browser_registers_signs_out_and_in_through_the_proxy(stack):
    from playwright.async_api import async_playwright, expect

    chromium = os.environ.get("LIVEHUB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium not found: CI must install Debian's chromium (see .ci/run)")
        pytest.skip("Chromium not found: install Debian's chromium or set LIVEHUB_CHROMIUM")
    expect.set_options(timeout=15_000)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            # The test's CA is not in Chromium's store; aiohttp checked the certificate in the other tests.
            context = await browser.new_context(base_url=stack.nginx.url, ignore_https_errors=True)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto("/signin")
            await page.get_by_label("Your name").fill("Ada")
            await page.get_by_label("Email", exact=True).fill("ada@example.test")
            await page.get_by_label("Password (at least 8 characters)").fill("correct horse battery")
            await page.get_by_role("button", name="Create account").click()
            await expect(page).to_have_url(f"{stack.nginx.url}/")
            await expect(page.locator("#top")).to_contain_text("Ada")
            cookie = next(c for c in await context.cookies() if c["name"] == "livehub_session")
            assert cookie["secure"] is True

            # Signing out is a cookie-authenticated write: refused unless the node sees the https origin.
            await page.get_by_role("button", name="Sign out").click()
            await expect(page.locator("#top").get_by_role("link", name="Sign in")).to_be_visible()
            assert not [c for c in await context.cookies() if c["name"] == "livehub_session" and c["value"]]

            await page.goto("/signin")
            await page.get_by_label("Email or phone").fill("ada@example.test")
            await page.get_by_label("Password", exact=True).fill("correct horse battery")
            await page.get_by_role("button", name="Sign in", exact=True).click()
            await expect(page).to_have_url(f"{stack.nginx.url}/")
            await expect(page.locator("#top")).to_contain_text("Ada")
            assert errors == []
        finally:
            await browser.close()


def test_the_env_example_names_only_settings_and_parses():
    names = {
        alias
        for name, f in Settings.model_fields.items()
        for alias in (f.validation_alias.choices if f.validation_alias else [f"LIVEHUB_{name.upper()}"])
    }
    lines = [line for line in ENV_EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    variables = dict(line.split("=", 1) for line in lines)
    assert set(variables) - names == set()
    parsed = Settings(_env_file=ENV_EXAMPLE)
    assert parsed.trusted_proxy_count == 1 and parsed.cookie_secure is True
    # Quoted values arrive whole, quotes gone (as systemd and sh read them).
    assert parsed.mail_from == "LiveHub <noreply@shop.example.com>"
    assert parsed.media_ice_servers == [{"urls": ["stun:stun.l.google.com:19302"]}]
    # The unit reads that file and gives each instance its port.
    unit = UNIT.read_text()
    assert "EnvironmentFile=/etc/livehub/livehub.env" in unit
    assert re.search(r"^ExecStart=.*--port %i$", unit, re.M)
