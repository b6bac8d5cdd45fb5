"""The one middleware that answers every failure of a REST request in the error shape of docs/API.md:
`{"error": {"code", "message", "details", "request_id"}}` with the code's HTTP status (the request id is
the one in the X-Request-Id header and on the request's log lines, livehub/api/request_id.py). Which
error an exception is comes from livehub.errors.to_error; this module only writes the response."""

import logging

from aiohttp import web

from livehub import logs
from livehub.errors import ErrorCode, LiveHubError, Unavailable, error_of, to_error
from livehub.jsonx import json_response

log = logging.getLogger(__name__)

# The router's own errors (no route, wrong method, body too large) in the same shape.
_HTTP_STATUS_CODES = {code.status: code for code in ErrorCode if code.status in (401, 403, 404, 405, 413)}
_HTTP_STATUS_CODES[400] = ErrorCode.VALIDATION_ERROR


def error_response(err: LiveHubError, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"code": err.code.value, "message": err.message, "details": err.details}}
    if (request_id := logs.REQUEST_ID.get()) is not None:
        body["error"]["request_id"] = request_id
    if err.retry_after_s is not None:
        headers = {**(headers or {}), "Retry-After": str(err.retry_after_s)}
    return json_response(body, status=err.status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        code = _HTTP_STATUS_CODES.get(exc.status)
        if code is None:
            raise  # a redirect, or a success raised as an exception
        # A 405 must say which methods the resource allows.
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(error_of(code, exc.reason), headers)
    except Exception as exc:
        err = to_error(exc)
        if err is None:
            log.exception("unhandled error on %s %s", request.method, request.path)
            err = error_of(ErrorCode.INTERNAL)
        elif isinstance(err, Unavailable) and not isinstance(exc, LiveHubError):
            log.warning("unavailable on %s %s: %r", request.method, request.path, exc)
        return error_response(err)
