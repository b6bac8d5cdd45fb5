"""The access log without secrets.

A websocket cannot send an Authorization header from a browser, so its session token rides in the URL
(`/ws/me?token=...`), and aiohttp's access log writes request lines as they came. `RedactingAccessLogger`
is aiohttp's own logger (same `access_log_format`) shown a request whose query parameters named like a
secret (token, password, secret, code, key, auth, session, credential, signature, in any case and
however percent-encoded) read `[redacted]`, and whose credential headers (Authorization, Cookie,
Set-Cookie...) are hidden whole, in case a format logs them. `redact_query` does the same for any URL
our own log lines might show.
"""

import re
from urllib.parse import unquote_plus

from aiohttp import web_log

REDACTED = "[redacted]"
SECRET_NAME = re.compile(r"token|passw|secret|code|key|auth|session|credential|signature", re.I)
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def redact_query(url: str) -> str:
    """`url` (a path with its query, or a whole URL) with the values of secret-named query parameters
    replaced by `[redacted]`; everything else is left byte for byte."""
    head, sep, rest = url.partition("?")
    if not sep:
        return url
    query, hash_, fragment = rest.partition("#")
    items = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        items.append(f"{name}={REDACTED}" if eq and SECRET_NAME.search(unquote_plus(name)) else item)
    return head + "?" + "&".join(items) + hash_ + fragment


class _Headers:
    def __init__(self, headers) -> None:
        self._headers = headers

    def get(self, key: str, default: str | None = None) -> str | None:
        value = self._headers.get(key, default)
        if value is None or value == default:
            return value
        if key.lower() in _CREDENTIAL_HEADERS or SECRET_NAME.search(key):
            return REDACTED
        return redact_query(value)  # Referer, Origin, Location: URLs


class _Shown:
    """A request or response as the access log may see it: the real one, but its query and headers
    through the redaction above."""

    def __init__(self, real) -> None:
        self._real = real
        self.headers = _Headers(real.headers)

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    @property
    def path_qs(self) -> str:
        return redact_query(self._real.path_qs)


class RedactingAccessLogger(web_log.AccessLogger):
    """aiohttp's access logger (pass as `access_log_class`), fed redacted views of what it logs."""

    def log(self, request, response, time: float) -> None:
        super().log(_Shown(request) if request is not None else None, _Shown(response), time)
