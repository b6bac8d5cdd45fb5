"""Security headers on every response, by kind: the pages, the studio (camera and microphone), the viewer
page (embeddable only where LIVEHUB_FRAME_ANCESTORS says), Swagger UI (its one inline script by hash),
and everything else (JSON, static files, errors)."""

import base64
import hashlib
import re
import uuid

import pytest

from livehub.app import create_app
from livehub.settings import Settings

# Any id: a page is the same file whatever it names. Fixed, so every test worker collects the same tests.
SOME_ID = "6f1c2a52-3b7e-4d3a-9a51-0c2f5e8b7d10"
PAGES = ["/", "/signin", f"/watch/{SOME_ID}", f"/replay/{SOME_ID}", "/studio", "/seller", "/admin"] + [
    # The buyer's shop pages.
    f"/products/{SOME_ID}",
    f"/shops/{SOME_ID}",
    "/cart",
    "/checkout",
    "/orders",
    f"/orders/{SOME_ID}",
    "/wallet",
    "/account",
]
NOT_PAGES = [
    "/api/products",
    "/api/openapi.json",
    "/static/js/api.js",
    "/static/css/app.css",
    "/healthz",
    "/api/nope",
    "/nope",
]


def policy(res) -> dict[str, str]:
    """The Content-Security-Policy as {directive: sources}."""
    header = res.headers.get("Content-Security-Policy")
    assert header, f"no CSP on {res.url}"
    directives = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition(" ")
        directives[name] = value.strip()
    return directives


def common(res) -> None:
    assert res.headers.get("X-Content-Type-Options") == "nosniff", res.url
    assert res.headers.get("Referrer-Policy") == "same-origin", res.url


@pytest.mark.parametrize("path", PAGES)
async def test_pages_load_only_their_own_scripts_and_styles(client, path):
    res = await client.get(path)
    assert res.status == 200 and res.content_type == "text/html"
    common(res)
    csp = policy(res)
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self'"
    assert csp["style-src"] == "'self'"
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    assert csp["form-action"] == "'self'"
    assert csp["frame-ancestors"] == "'none'" and res.headers["X-Frame-Options"] == "DENY"
    features = dict(f.strip().split("=", 1) for f in res.headers["Permissions-Policy"].split(","))
    wanted = "(self)" if path == "/studio" else "()"
    assert features["camera"] == features["microphone"] == wanted, res.headers["Permissions-Policy"]


@pytest.mark.parametrize("path", NOT_PAGES)
async def test_everything_else_is_locked_down(client, path):
    res = await client.get(path)
    await res.read()
    common(res)
    assert policy(res) == {"default-src": "'none'", "frame-ancestors": "'none'"}
    assert res.headers["X-Frame-Options"] == "DENY"
    features = dict(f.strip().split("=", 1) for f in res.headers["Permissions-Policy"].split(","))
    assert features["camera"] == features["microphone"] == "()"


async def test_errors_carry_the_headers(client):
    for res in (await client.delete("/api/products"), await client.get("/api/products?limit=lots")):
        assert res.status in (405, 422)
        common(res)
        assert res.headers["X-Frame-Options"] == "DENY"


async def test_swagger_ui_runs_its_inline_script_by_hash_only(client):
    res = await client.get("/api/docs")
    html = await res.text()
    common(res)
    csp = policy(res)
    inline = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert inline, "Swagger UI's page has an inline script"
    hashes = {"'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'" for s in inline}
    assert set(csp["script-src"].split()) == {"'self'", *hashes}
    assert "unsafe-inline" not in csp["script-src"] and "unsafe-eval" not in csp["script-src"]
    assert csp["frame-ancestors"] == "'none'"


async def test_the_viewer_page_alone_is_embeddable_where_configured(aiohttp_client, settings):
    origins = ["https://blog.example", "https://*.partner.example:8443"]
    client = await aiohttp_client(create_app(settings.model_copy(update={"frame_ancestors": origins})))
    res = await client.get(f"/watch/{uuid.uuid4()}")
    assert policy(res)["frame-ancestors"] == " ".join(origins)
    # X-Frame-Options cannot name origins; with it, browsers that read it would refuse every embedder.
    assert "X-Frame-Options" not in res.headers
    for path in ["/", "/studio", "/signin", "/api/docs", "/api/products", "/static/js/watch.js"]:
        res = await client.get(path)
        await res.read()
        assert policy(res)["frame-ancestors"] == "'none'", path
        assert res.headers["X-Frame-Options"] == "DENY", path


async def test_the_replay_page_plays_egress_files_from_the_templates_origin(aiohttp_client, settings):
    """With LiveKit, a replay's video is LiveKit Egress's file wherever LIVEHUB_REPLAY_URL_TEMPLATE says: the
    replay page alone may load media from there."""
    livekit = {"media_backend": "livekit", "livekit_api_key": "devkey", "livekit_api_secret": "secret" * 6}
    template = "https://cdn.example.com:8443/egress/{room}.mp4"
    app = create_app(settings.model_copy(update={**livekit, "replay_url_template": template}))
    client = await aiohttp_client(app)
    res = await client.get(f"/replay/{uuid.uuid4()}")
    assert policy(res)["media-src"] == "'self' https://cdn.example.com:8443"
    assert policy(res)["default-src"] == "'self'"
    res = await client.get(f"/watch/{uuid.uuid4()}")
    assert "media-src" not in policy(res)


@pytest.mark.parametrize(
    "bad", ["https://a.example; script-src *", "https://a.example\r\nSet-Cookie: x=1", "'self'", "*", "javascript:"]
)
def test_frame_ancestors_must_be_origins(bad):
    with pytest.raises(ValueError):
        Settings(frame_ancestors=[bad])


async def test_a_pages_304_carries_the_pages_policy(client):
    """A browser revalidating a cached page takes the 304's headers for it: they must be the page's."""
    path = f"/watch/{uuid.uuid4()}"
    first = await client.get(path)
    await first.read()
    res = await client.get(path, headers={"If-Modified-Since": first.headers["Last-Modified"]})
    assert res.status == 304
    assert policy(res) == policy(first)
    assert policy(res)["script-src"] == "'self'"
