"""What both transports (REST handlers and websockets) read off an HTTP request: the session token, the
client's address, and whether a cookie-authenticated request comes from our own pages."""

from aiohttp import web

from livehub import keys
from livehub.errors import Forbidden

SESSION_COOKIE = "livehub_session"


def request_token(request: web.Request) -> tuple[str | None, bool]:
    """The session token and whether it came from the cookie (which needs the Origin check)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None, False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def check_origin(request: web.Request) -> None:
    """A cookie rides along on cross-site requests; only our own pages (or configured origins) may write."""
    origin = request.headers.get("Origin")
    if origin is None:
        raise Forbidden("cookie-authenticated writes need an Origin header")
    settings = request.app[keys.SETTINGS]
    scheme = request.scheme
    if settings.trusted_proxy_count and (proto := request.headers.get("X-Forwarded-Proto")):
        # Behind a TLS-terminating proxy the browser's origin is https while this hop is http.
        scheme = proto.split(",")[-1].strip()
    own = f"{scheme}://{request.host}"
    if origin != own and origin not in settings.allowed_origins:
        raise Forbidden("cross-origin request refused", {"origin": origin})


def client_address(request: web.Request) -> str:
    """The caller's address; behind N trusted proxies, the Nth address from the right of X-Forwarded-For."""
    hops = request.app[keys.SETTINGS].trusted_proxy_count
    forwarded = [a.strip() for a in request.headers.get("X-Forwarded-For", "").split(",") if a.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.remote or "unknown"
