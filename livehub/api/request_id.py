"""A request id on every request, and the request's fields on every line it logs.

The id is the caller's `X-Request-Id` when it is one (1 to 128 printable ASCII characters, no spaces), so
a proxy's or a client's id follows the request through; otherwise a new one (32 hex digits). It is sent
back as `X-Request-Id` on every response (websocket handshakes included) and is in every error body, so a
user's report can be matched to the node's log lines.

`request_context` is the outermost middleware: while the handler runs (a websocket's whole life), the
log context (livehub/logs.py) holds the request id and the route template; sign-in adds the user id.
When it ends, the fields are left on the request for the access log, which is written after.
"""

import re
import uuid

from aiohttp import web

from livehub import logs

HEADER = "X-Request-Id"
LOG_FIELDS = web.RequestKey("log_fields", dict)
_ACCEPTED = re.compile(r"[\x21-\x7e]{1,128}")


def request_id_of(request: web.Request) -> str:
    """The caller's id if acceptable, else a new one."""
    given = request.headers.get(HEADER, "")
    return given if _ACCEPTED.fullmatch(given) else uuid.uuid4().hex


def _route(request: web.Request) -> str | None:
    resource = getattr(request.match_info.route, "resource", None)
    return resource.canonical if resource is not None else None


@web.middleware
async def request_context(request: web.Request, handler):
    request_id = request_id_of(request)
    request[LOG_FIELDS] = {"request_id": request_id}
    with logs.bound(request_id=request_id, user_id=None, route=_route(request)):
        try:
            return await handler(request)
        finally:
            request[LOG_FIELDS] = logs.context()


async def echo_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the response says which request it answers."""
    if LOG_FIELDS in request:
        response.headers[HEADER] = request[LOG_FIELDS]["request_id"]
