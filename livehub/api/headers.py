"""Security headers on every response the node sends: pages, the API, static files, errors.

- Pages (`text/html`) load only this server's scripts and styles (`Content-Security-Policy`), and may be
  framed by no one, except the viewer page (`/watch/{id}`), which the origins in
  `LIVEHUB_FRAME_ANCESTORS` may embed.
- Swagger UI (`/api/docs`) starts with one inline script: it is allowed by its SHA-256, nothing else inline.
- Everything else (JSON, scripts, styles, images) gets `default-src 'none'`: opened on its own in a
  browser, it can run and load nothing.
- With card payments (Stripe), pages may also load Stripe.js, call Stripe's API and show its frames.
- Camera and microphone only for the studio page, where the host goes live; no page asks for anything else.
- With the LiveKit backend a replay's video is LiveKit Egress's file at LIVEHUB_REPLAY_URL_TEMPLATE: the
  replay page (`/replay/{id}`) may play media from that URL's origin.

Set on `on_response_prepare`, not in a middleware, so that responses no handler wrote (aiohttp's static
files, a 404 the router raised, a websocket handshake) get them too. Which policy a response gets follows
from its route, not its content type: a `304 Not Modified` of a page has none, and a browser replaces the
cached page's headers with the 304's.
"""

import base64
import functools
import hashlib
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

from livehub import keys

# Only the form that style attributes take: the pages set a few (chart swatches, a reaction's position),
# which cannot load anything while img-src and default-src stay 'self'. <style> elements stay refused.
_PAGE = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors {ancestors}"
)
# Swagger UI's React view writes inline styles and uses data: images; its script runs by hash only.
_DOCS = (
    "default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_OTHER = "default-src 'none'; frame-ancestors 'none'"

_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb", "display-capture")
_NO_FEATURES = ", ".join(f"{f}=()" for f in _FEATURES)
_STUDIO_FEATURES = ", ".join(f"{f}=(self)" if f in ("camera", "microphone") else f"{f}=()" for f in _FEATURES)

# With card payments (LIVEHUB_PAYMENTS=stripe) pages may load Stripe.js, which talks to Stripe's API and
# shows its card fields and 3-D Secure checks in frames of its own (Stripe's documented CSP).
_STRIPE_FRAMES = "https://hooks.stripe.com"
_STRIPE_API = "https://api.stripe.com"


@functools.lru_cache(maxsize=4)
def _with_stripe(csp: str, js_url: str, api_base: str | None) -> str:
    js = _origin(js_url)
    api = _origin(api_base) if api_base else _STRIPE_API
    return (
        csp.replace("script-src 'self';", f"script-src 'self' {js};", 1)
        + f"; connect-src 'self' {' '.join(dict.fromkeys([js, api]))}; frame-src {js} {_STRIPE_FRAMES}"
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@functools.lru_cache(maxsize=4)
def _with_replay_media(csp: str, template: str) -> str:
    """The replay page's policy when Egress's files are elsewhere: media from their origin too. A template
    on this server's own origin (a path) needs nothing more."""
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc or "{" in parts.netloc:
        return csp
    return csp + f"; media-src 'self' {_origin(template)}"


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
DOCS_PREFIX = "/api/docs"


@functools.lru_cache(maxsize=4)
def _script_hashes(html: bytes) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )


def security_headers(
    pages: Iterable[str], *, studio: str = "/studio", viewer: str = "/watch/{id}", replay: str = "/replay/{id}"
):
    """aiohttp's `on_response_prepare` hook setting the headers above; `pages` are the routes (as
    declared, "/watch/{id}") that serve the HTML pages."""
    pages = frozenset(pages)

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        headers = response.headers
        headers["X-Content-Type-Options"] = "nosniff"
        # Nothing of a URL (a sign-in's ?next=, a stream id) goes to another site.
        headers["Referrer-Policy"] = "same-origin"
        headers["Permissions-Policy"] = _NO_FEATURES
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else None
        ancestors = "'none'"
        if route in pages:
            if route == studio:
                headers["Permissions-Policy"] = _STUDIO_FEATURES
            if route == viewer and (allowed := request.app[keys.SETTINGS].frame_ancestors):
                ancestors = " ".join(allowed)
            csp = _PAGE.format(ancestors=ancestors)
            settings = request.app[keys.SETTINGS]
            if settings.payment_provider == "stripe":
                csp = _with_stripe(csp, settings.stripe_js, settings.stripe_api_base)
            if route == replay and settings.media_backend == "livekit" and settings.replay_url_template:
                csp = _with_replay_media(csp, settings.replay_url_template)
        elif route in (DOCS_PREFIX, DOCS_PREFIX + "/") and isinstance(body := getattr(response, "body", None), bytes):
            csp = _DOCS.format(hashes=_script_hashes(body))
        else:
            csp = _OTHER
        headers["Content-Security-Policy"] = csp
        # For browsers that know no frame-ancestors; it cannot name origins, so it goes when some may embed.
        if ancestors == "'none'":
            headers["X-Frame-Options"] = "DENY"
        else:
            headers.pop("X-Frame-Options", None)

    return hook
