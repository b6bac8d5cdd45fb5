"""Text PostgreSQL can store. A `text` value may not contain NUL, and a string with an unpaired surrogate
cannot be encoded as UTF-8 at all. Such text is refused where it enters (REST bodies, query strings and
path segments, websocket frames) with `validation_error`, before it can reach a batch or a log line."""

import re
from typing import Any

from livehub.errors import ValidationFailed

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "text may not contain NUL characters or unpaired surrogates"


def unstorable_at(value: Any, loc: tuple = ()) -> tuple | None:
    """Where in `value` (JSON-like data, or a pydantic model's fields) the first unstorable text is, or None."""
    if isinstance(value, str):
        return loc if _UNSTORABLE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if (found := unstorable_at(key, (*loc, key))) is not None:
                return found
            if (found := unstorable_at(item, (*loc, key))) is not None:
                return found
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if (found := unstorable_at(item, (*loc, i))) is not None:
                return found
    elif hasattr(value, "__pydantic_fields__"):
        return unstorable_at(value.__dict__, loc)
    return None


def check_storable(value: Any, *, where: tuple = ()) -> None:
    """ValidationFailed when `value` holds text that cannot be stored."""
    if (loc := unstorable_at(value, where)) is not None:
        raise ValidationFailed(MESSAGE, {"loc": [str(p) for p in loc]})
