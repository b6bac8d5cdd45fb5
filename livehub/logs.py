"""The node's log: one line per record, as JSON or logfmt, each carrying the request it belongs to, with
secrets taken out before anything is written.

Every line says when (`ts`, ISO-8601 UTC), how bad (`level`), where from (`logger`) and what (`msg`), then
whatever the code passed as `extra=`. A line logged while a request or websocket is being handled also
carries that request's `request_id`, the signed-in `user_id` and the `route` template (/api/orders/{id}):
the request middleware (livehub/api/request_id.py) and sign-in set the context variables below, and a
filter stamps them on each record as it is written, so no call site passes them.

`RedactFilter` runs on every record, LiveHub's and the libraries': values of secret-named keys and query
parameters (token, password, code, key...), `Bearer ...` credentials, credential headers, passwords in URLs
and Stripe-shaped keys read `[redacted]` in the message, in the `extra` fields and in tracebacks. It is a
net under the rule that code never logs a secret in the first place.

LiveHub's own loggers (`livehub.*`, `storage.*`, the access log `aiohttp.access`) log at
LIVEHUB_LOG_LEVEL; everyone else's (aiortc, aioice, pgqueuer, asyncio...) at LIVEHUB_LIBRARY_LOG_LEVEL,
WARNING unless asked, so a video session's ICE chatter does not bury the node's own lines.
"""

import contextlib
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import unquote_plus

import orjson

from livehub.settings import Settings

REDACTED = "[redacted]"
# A name whose value is a secret: a query parameter, a key=value pair, an extra field, a header.
SECRET_NAME = re.compile(r"token|passw|secret|code|key|auth|session|credential|signature|cookie", re.I)

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
USER_ID: ContextVar[str | None] = ContextVar("user_id", default=None)
ROUTE: ContextVar[str | None] = ContextVar("route", default=None)
CONTEXT = {"request_id": REQUEST_ID, "user_id": USER_ID, "route": ROUTE}

OWN_LOGGERS = ("livehub", "storage", "aiohttp.access")


def context() -> dict[str, str]:
    """The request fields in force here (those set)."""
    return {name: value for name, var in CONTEXT.items() if (value := var.get()) is not None}


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """The request fields set to these values inside the block, and back as they were after."""
    tokens = [(CONTEXT[name], CONTEXT[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind_user(user_id: Any) -> None:
    """From here on, in this request's (or websocket's) task, lines carry this user."""
    USER_ID.set(str(user_id))


def redact_query(url: str) -> str:
    """`url` (a path with its query, or a whole URL) with the values of secret-named query parameters
    replaced by `[redacted]` (names compared percent-decoded, in any case); everything else is left
    byte for byte."""
    head, sep, rest = url.partition("?")
    if not sep:
        return url
    query, hash_, fragment = rest.partition("#")
    items = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        items.append(f"{name}={REDACTED}" if eq and SECRET_NAME.search(unquote_plus(name)) else item)
    return head + "?" + "&".join(items) + hash_ + fragment


_WORDS = SECRET_NAME.pattern
# (pattern, replacement) applied in order to every message, string field and traceback.
_SECRETS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # A URL's password: postgresql://user:pw@host, smtp://user:pw@host.
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@", re.I), rf"\1{REDACTED}@"),
    # Query strings of URLs and paths, with percent-encoded names.
    (re.compile(r"[^\s\"'<>?]*\?[^\s\"'<>]+"), lambda m: redact_query(m.group(0))),
    # Credential headers, whole: "Cookie: a=b; c=d".
    (re.compile(r"\b((?:proxy-)?authorization|set-cookie|cookie)(\s*:\s*)[^\r\n]+", re.I), rf"\1\2{REDACTED}"),
    (re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}", re.I), rf"\1 {REDACTED}"),
    # Stripe secret, restricted and webhook-signing keys, wherever they appear.
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9]+"), REDACTED),
    # key=value, key: value, "key": "value", 'key': 'value' whose key names a secret; a fragment's
    # #token=... too.
    (
        re.compile(rf"(\b[\w.-]*(?:{_WORDS})[\w.-]*['\"]?\s*[=:]\s*['\"]?)(?!\[redacted\])[^\s&#;,'\"}})\]]+", re.I),
        rf"\1{REDACTED}",
    ),
]


def redact(text: str) -> str:
    """`text` with every secret-shaped value replaced by `[redacted]`."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the call passed as `extra=` (and the filters below stamped)."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}


class ContextFilter(logging.Filter):
    """Stamps the request's fields on each record (a record that brought its own, as the access log's
    do, keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in context().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


_TRACEBACKS = logging.Formatter()


class RedactFilter(logging.Filter):
    """Takes secrets out of a record before any handler writes it: the message is formatted and
    redacted once, extra fields named like a secret are replaced whole and other string fields
    redacted, and the traceback is rendered and redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a call whose arguments do not fit its format: keep what can be shown
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        for name, value in extra_fields(record).items():
            if SECRET_NAME.search(name):
                setattr(record, name, REDACTED)
            elif isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {
        "ts": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
        **extra_fields(record),
    }
    if record.exc_info and not record.exc_text:
        record.exc_text = _TRACEBACKS.formatException(record.exc_info)
    if record.exc_text:
        fields["exc"] = record.exc_text
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line (for a collector)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        try:
            return orjson.dumps(fields, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # an integer past 64 bits, say: the standard library's encoder takes anything
            return json.dumps(fields, default=str)


_BARE = re.compile(r"[^\s=\"\\]+")


def logfmt_value(value: Any) -> str:
    """A logfmt value: bare if it can be, else double-quoted with `"`, `\\` and line breaks escaped."""
    text = "" if value is None else str(value)
    if _BARE.fullmatch(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


class LogfmtFormatter(logging.Formatter):
    """key=value pairs on one line (for a terminal; still one record per line). A field with no value
    (an anonymous request's user_id) is left out rather than written empty."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record).items()
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields if value is not None)


FORMATTERS = {"json": JsonFormatter, "logfmt": LogfmtFormatter}


def setup(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Sends every log record to `stream` (stderr) in the configured format, redacted and with its
    request's fields; sets LiveHub's and the libraries' levels. Replaces a handler set up before (a
    second call in one process changes the format, not the number of lines)."""
    stream = stream or sys.stderr
    kind = settings.log_format
    if kind == "auto":
        kind = "logfmt" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FORMATTERS[kind]())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    handler._livehub = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_livehub", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.library_log_level.upper())
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level.upper())
    return handler
