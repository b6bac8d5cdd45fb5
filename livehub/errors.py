"""One vocabulary of errors for every way into LiveHub: REST responses, websocket frames, storage functions.

`ErrorCode` names each error a client can get, with its HTTP status and default message (docs/API.md's
table is checked against it). Domain code raises a `LiveHubError` subclass anywhere; plpgsql functions raise
a SQLSTATE of class `LH` (`RAISE ... USING ERRCODE = 'LH404'`), which `ErrorCode` also lists, so a rule
enforced in the database reaches the client as the same error a Python check would give.

`to_error` is the one translation from any exception to a `LiveHubError` (None for our own bugs, which the
caller logs and answers as `internal`). The REST middleware (livehub/api/errors.py), the websocket
handler and the checkout all use it; nothing here knows about HTTP or sockets.
"""

from collections.abc import Callable
from enum import StrEnum
from typing import Any

import asyncpg
import pydantic
from orjson import loads


class ErrorCode(StrEnum):
    """code, HTTP status, default message, and the SQLSTATE a storage function raises it with (if any)."""

    VALIDATION_ERROR = "validation_error", 422, "invalid request", "LH422"
    UNAUTHORIZED = "unauthorized", 401, "sign in first"
    FORBIDDEN = "forbidden", 403, "not allowed", "LH403"
    EMAIL_UNVERIFIED = "email_unverified", 403, "verify your email address first", "LHEUV"
    NOT_FOUND = "not_found", 404, "not found", "LH404"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "method not allowed"
    CONFLICT = "conflict", 409, "conflicts with the current state", "LH409"
    OUT_OF_STOCK = "out_of_stock", 409, "not enough stock", "LHOOS"
    INSUFFICIENT_FUNDS = "insufficient_funds", 409, "not enough money in the wallet", "LHNSF"
    PAYMENT_OWED = "payment_owed", 402, "a card payment was taken back: top up to settle what you owe first", "LHOWE"
    TOP_UP_LIMIT = "top_up_limit", 409, "this would pass your card top-up limit for 24 hours", "LHTUL"
    BAD_SIGNATURE = "bad_signature", 400, "the signature does not verify"
    PAYMENT_PROVIDER = "payment_provider_error", 502, "the payment provider did not answer as expected, try again"
    IDEMPOTENCY_MISMATCH = "idempotency_mismatch", 422, "this Idempotency-Key was used with another request"
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, "request too large"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable", 416, "the range asked for starts past the end of the file"
    INVALID_TOKEN = "invalid_token", 422, "this link is not valid (any more): ask for a new one", "LHTOK"
    RATE_LIMITED = "rate_limited", 429, "too many requests, slow down"
    UNAVAILABLE = "unavailable", 503, "temporarily unavailable, try again"
    INTERNAL = "internal", 500, "internal server error"

    def __new__(cls, code: str, status: int, message: str, sqlstate: str | None = None):
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.message = message
        member.sqlstate = sqlstate
        return member


class LiveHubError(Exception):
    """An error a client caused or must be told about; `code` says which."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None, *, retry_after_s=None):
        self.message = message or self.code.message
        super().__init__(self.message)
        self.details = details or {}
        # When trying again makes sense (a rate limit); REST sends it as Retry-After.
        self.retry_after_s: int | None = retry_after_s

    @property
    def status(self) -> int:
        return self.code.status


class ValidationFailed(LiveHubError):
    code = ErrorCode.VALIDATION_ERROR


class Unauthorized(LiveHubError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(LiveHubError):
    code = ErrorCode.FORBIDDEN


class EmailUnverified(LiveHubError):
    code = ErrorCode.EMAIL_UNVERIFIED


class NotFound(LiveHubError):
    code = ErrorCode.NOT_FOUND


class MethodNotAllowed(LiveHubError):
    code = ErrorCode.METHOD_NOT_ALLOWED


class Conflict(LiveHubError):
    code = ErrorCode.CONFLICT


class OutOfStock(LiveHubError):
    code = ErrorCode.OUT_OF_STOCK


class InsufficientFunds(LiveHubError):
    code = ErrorCode.INSUFFICIENT_FUNDS


class PaymentOwed(LiveHubError):
    code = ErrorCode.PAYMENT_OWED


class TopUpLimit(LiveHubError):
    code = ErrorCode.TOP_UP_LIMIT


class BadSignature(LiveHubError):
    code = ErrorCode.BAD_SIGNATURE


class PaymentProviderError(LiveHubError):
    code = ErrorCode.PAYMENT_PROVIDER


class IdempotencyMismatch(LiveHubError):
    code = ErrorCode.IDEMPOTENCY_MISMATCH


class PayloadTooLarge(LiveHubError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class RangeNotSatisfiable(LiveHubError):
    code = ErrorCode.RANGE_NOT_SATISFIABLE


class InvalidToken(LiveHubError):
    code = ErrorCode.INVALID_TOKEN


class RateLimited(LiveHubError):
    code = ErrorCode.RATE_LIMITED


class Unavailable(LiveHubError):
    code = ErrorCode.UNAVAILABLE


class Internal(LiveHubError):
    code = ErrorCode.INTERNAL


_BY_CODE: dict[ErrorCode, type[LiveHubError]] = {cls.code: cls for cls in LiveHubError.__subclasses__()}
_BY_SQLSTATE: dict[str, type[LiveHubError]] = {code.sqlstate: cls for code, cls in _BY_CODE.items() if code.sqlstate}
DATABASE_AWAY = "the database is not reachable, try again"
CONFLICT_CANCELLED = (
    "the database cancelled this request to settle a conflict with another one; nothing was done, try again"
)


def error_of(code: ErrorCode, message: str | None = None, details: dict[str, Any] | None = None) -> LiveHubError:
    """The error for a code, e.g. from an HTTP status the router raised."""
    return _BY_CODE[code](message, details)


def validation_details(exc: pydantic.ValidationError) -> dict[str, Any]:
    return {
        "errors": [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
    }


def _from_postgres(exc: asyncpg.PostgresError) -> LiveHubError | None:
    state = exc.sqlstate or ""
    if (cls := _BY_SQLSTATE.get(state)) is not None:
        return cls(exc.args[0] if exc.args else str(exc), _pg_details(exc))
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
    # Class 40: the server cancelled this transaction to break a deadlock or a serialization conflict with
    # another one; nothing of it was written, and the same request again normally succeeds.
    if isinstance(exc, asyncpg.TransactionRollbackError):
        return Unavailable(CONFLICT_CANCELLED, retry_after_s=1)
    # The server is shutting down, restarting, out of connections, or ended this session.
    if isinstance(
        exc, (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError)
    ):
        return Unavailable(DATABASE_AWAY)
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


def _from_interface(exc: asyncpg.InterfaceError) -> LiveHubError | None:
    # asyncpg reports a closed connection or pool as a plain InterfaceError, told apart only by its text.
    # Other interface errors (a client feature asyncpg lacks, overlapping operations) are our bugs.
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError) or "closed" in str(exc):
        return Unavailable(DATABASE_AWAY)
    return None


def _from_internal(exc: asyncpg.InternalClientError) -> LiveHubError | None:
    # A session the server ended (shutdown, crash, an operator) mid-transaction can leave asyncpg's
    # protocol consuming the FATAL error when the ROLLBACK or the next statement comes: "cannot switch to
    # state 15; another operation (2) is in progress". The connection is lost (the pool drops it on
    # release); the database is away. Other internal errors (a stale statement cache) are our bugs.
    if str(exc).startswith("cannot switch to state"):
        return Unavailable(DATABASE_AWAY)
    return None


# Exception class -> translation, looked up along the exception's MRO (most specific first), as
# Starlette's exception handlers are. A translation returning None means "our bug".
_TRANSLATIONS: dict[type[BaseException], Callable[[Any], LiveHubError | None]] = {
    LiveHubError: lambda exc: exc,
    pydantic.ValidationError: lambda exc: ValidationFailed("invalid request", validation_details(exc)),
    asyncpg.PostgresError: _from_postgres,
    asyncpg.InterfaceError: _from_interface,
    asyncpg.InternalClientError: _from_internal,
    # The database went away mid-request or cannot be reached (ConnectionError and TimeoutError are
    # OSErrors too; an unreachable host is a bare OSError).
    OSError: lambda exc: Unavailable(DATABASE_AWAY),
}


def to_error(exc: BaseException) -> LiveHubError | None:
    """The client-facing error for an exception, or None when it is a fault of ours (log it, answer
    `internal`)."""
    for cls in type(exc).__mro__:
        if (translate := _TRANSLATIONS.get(cls)) is not None:
            return translate(exc)
    return None
