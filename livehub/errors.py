"""Domain errors and the one middleware that turns every failure into CONTRACT.md's error shape.

Storage functions raise with a custom SQLSTATE (class `LH`) so a rule enforced in plpgsql reaches the
client as the same error a Python check would give, without the handler knowing either exists.
"""

import logging
from typing import Any

import asyncpg
import pydantic
from aiohttp import web

from livehub.jsonx import json_response, loads

log = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None, *, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers


class ValidationFailed(ApiError):
    status, code = 422, "validation_error"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    status, code = 409, "conflict"


class OutOfStock(ApiError):
    status, code = 409, "out_of_stock"


class InsufficientFunds(ApiError):
    status, code = 409, "insufficient_funds"


class IdempotencyMismatch(ApiError):
    status, code = 422, "idempotency_mismatch"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


# SQLSTATEs raised by storage/functions/*.sql (RAISE ... USING ERRCODE = 'LH404').
SQLSTATE_ERRORS: dict[str, type[ApiError]] = {
    "LH403": Forbidden,
    "LH404": NotFound,
    "LH409": Conflict,
    "LH422": ValidationFailed,
    "LHOOS": OutOfStock,
    "LHNSF": InsufficientFunds,
}


def from_postgres(exc: asyncpg.PostgresError) -> ApiError | None:
    """Translate a database error that a client caused; None for a real server fault."""
    state = exc.sqlstate or ""
    if state in SQLSTATE_ERRORS:
        return SQLSTATE_ERRORS[state](exc.args[0] if exc.args else str(exc), _pg_details(exc))
    if isinstance(exc, asyncpg.UniqueViolationError):
        return Conflict("already exists", {"constraint": exc.constraint_name})
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ValidationFailed("refers to something that does not exist", {"constraint": exc.constraint_name})
    if isinstance(exc, asyncpg.CheckViolationError):
        return ValidationFailed("violates a rule", {"constraint": exc.constraint_name})
    # Class 22 "data exception": a value Postgres cannot take (a NUL in text, a number out of range, ...).
    # Raised by the server only: asyncpg raises the same class itself when it cannot encode an argument,
    # which is our bug (and has no severity).
    if isinstance(exc, asyncpg.DataError) and getattr(exc, "severity", None):
        return ValidationFailed("invalid value", {"reason": str(exc)})
    # The server is shutting down, restarting, out of connections, or ended this session.
    if isinstance(
        exc, (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError)
    ):
        return Unavailable("the database is not reachable, try again")
    return None


def _pg_details(exc: asyncpg.PostgresError) -> dict[str, Any]:
    # DETAIL carries a JSON object when a function has structured details to give.
    detail = getattr(exc, "detail", None)
    if detail and detail.startswith("{"):
        try:
            return loads(detail)
        except ValueError:
            pass
    return {}


def validation_details(exc: pydantic.ValidationError) -> dict[str, Any]:
    return {
        "errors": [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
    }


def error_response(err: ApiError) -> web.Response:
    body = {"error": {"code": err.code, "message": err.message, "details": err.details}}
    return json_response(body, status=err.status, headers=err.headers)


_HTTP_ERRORS: dict[int, type[ApiError]] = {
    400: ValidationFailed,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except pydantic.ValidationError as exc:
        return error_response(ValidationFailed("invalid request", validation_details(exc)))
    except asyncpg.PostgresError as exc:
        err = from_postgres(exc)
        if err is None:
            log.exception("database error on %s %s", request.method, request.path)
            return _internal()
        return error_response(err)
    except (asyncpg.InterfaceError, ConnectionError, TimeoutError) as exc:
        # The database went away mid-request or cannot be reached. Other interface errors (a client
        # feature asyncpg lacks, overlapping operations) are our bugs and stay 500s.
        if isinstance(exc, asyncpg.InterfaceError) and not _connection_lost(exc):
            log.exception("database client error on %s %s", request.method, request.path)
            return _internal()
        log.warning("database unavailable on %s %s: %r", request.method, request.path, exc)
        return error_response(Unavailable("the database is not reachable, try again"))
    except web.HTTPException as exc:
        if exc.status < 400 or exc.status not in _HTTP_ERRORS:
            raise
        # A 405 must say which methods the resource allows.
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(_HTTP_ERRORS[exc.status](exc.reason, headers=headers))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _internal()


def _connection_lost(exc: asyncpg.InterfaceError) -> bool:
    # asyncpg reports a closed connection or pool as a plain InterfaceError, told apart only by its text.
    return isinstance(exc, asyncpg.ConnectionDoesNotExistError) or "closed" in str(exc)


def _internal() -> web.Response:
    body = {"error": {"code": "internal", "message": "internal server error", "details": {}}}
    return json_response(body, status=500)
