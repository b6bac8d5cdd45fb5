"""JSON in and out with orjson: one encoder for HTTP bodies, websocket frames and jsonb columns."""

import uuid
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

loads = orjson.loads


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, uuid.UUID):  # asyncpg's UUID subclass; orjson encodes only uuid.UUID itself
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Encode to UTF-8 JSON bytes; UUIDs and datetimes (RFC 3339) natively, pydantic models by dump."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_UTC_Z)


def json_response(body: Any, *, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, headers=headers, content_type="application/json")
