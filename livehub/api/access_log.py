"""The access log: a line per request, structured and without secrets.

A websocket cannot send an Authorization header from a browser, so its session token rides in the URL
(`/ws/me?token=...`). The access log shows every URL through `redact_query` (livehub/logs.py): the values
of query parameters named like a secret (token, password, secret, code, key, auth, session, credential,
signature, cookie, in any case and however percent-encoded) read `[redacted]`. No header is logged but
the Referer (a URL, redacted alike) and the User-Agent.

Each line is `METHOD PATH STATUS` with the fields method, path, status, bytes, duration_ms, remote,
referer, user_agent, and the request's request_id, user_id and route (livehub/api/request_id.py keeps
them on the request, because the line is written after the handler's context has ended). aiohttp's
`access_log_format` is not used. LIVEHUB_ACCESS_LOG=false turns the log off (`access_log_options`).
"""

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from livehub.api.request_id import LOG_FIELDS
from livehub.http import client_address
from livehub.logs import redact_query
from livehub.settings import Settings

__all__ = ["RedactingAccessLogger", "access_log_options", "redact_query"]

ACCESS_LOGGER = logging.getLogger("aiohttp.access")


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's access logger (pass as `access_log_class`): one structured, redacted line per request."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = redact_query(request.path_qs)
        fields: dict[str, Any] = {
            "method": request.method,
            "path": path,
            "status": response.status,
            "bytes": response.body_length,
            "duration_ms": round(time * 1000, 1),
            "remote": _remote(request),
            "referer": redact_query(request.headers.get("Referer", "")) or None,
            "user_agent": request.headers.get("User-Agent"),
            "request_id": None,
            "user_id": None,
            "route": None,
            **request.get(LOG_FIELDS, {}),
        }
        self.logger.info("%s %s %s", request.method, path, response.status, extra=fields)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def _remote(request: web.BaseRequest) -> str | None:
    try:
        return client_address(request)  # behind trusted proxies, the client's own address
    except (AttributeError, KeyError, RuntimeError):  # a request that never reached the application
        return request.remote


def access_log_options(settings: Settings) -> dict[str, Any]:
    """The web server's access log options (web.run_app, or a test server): ours, or none at all."""
    if not settings.access_log:
        return {"access_log": None}
    return {"access_log_class": RedactingAccessLogger, "access_log": ACCESS_LOGGER}
