"""The OpenAPI 3.1 document, derived from the routes and their pydantic models (never hand-written)."""

import re
from typing import Any

from pydantic.json_schema import models_json_schema

from livehub.api.models import ErrorOut
from livehub.api.routing import FRESH_CODE_HEADER, Api, Route

REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{(\w+)\}")
# aiohttp's `{name:regex}` (a parameter that must look like an id) is plain `{name}` in the document.
_CONSTRAINED_PARAM = re.compile(r"\{(\w+):[^/]*\}")

# Path parameters are ids (UUIDs), but for a media session's, a random token (livehub/media/sessions.py).
UUID_PARAM = {"type": "string", "format": "uuid"}
PATH_PARAMS = {"session_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}

ERROR_STATUSES = {
    "user": ("401", "403", "404", "409", "422", "429"),
    "none": ("404", "409", "422", "429"),
}


def build_openapi(apis: list[Api], *, title: str, version: str, description: str) -> dict[str, Any]:
    routes = [r for api in apis for r in api.routes]
    wanted = [(ErrorOut, "serialization")]
    for r in routes:
        if r.body is not None:
            wanted.append((r.body, "validation"))
        if r.response is not None:
            wanted.append((r.response, "serialization"))
        wanted.extend((model, "serialization") for model, _ in r.also.values())
    refs, schemas = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    components: dict[str, Any] = dict(schemas.get("$defs", {}))

    paths: dict[str, dict] = {}
    for r in routes:
        paths.setdefault(openapi_path(r.path), {})[r.method.lower()] = _operation(r, refs, components)
    for schema in components.values():
        _drop_null_defaults(schema)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "livehub_session"},
            },
        },
    }


def openapi_path(path: str) -> str:
    """A route's path as the document writes it: `/api/sellers/{id}` for `/api/sellers/{id:[0-9a-f-]+}`."""
    return _CONSTRAINED_PARAM.sub(r"{\1}", path)


def _operation(r: Route, refs: dict, components: dict) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": r.handler.__name__, "summary": r.summary, "tags": [r.tag]}
    params = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMS.get(name, UUID_PARAM)}
        for name in _PATH_PARAM.findall(openapi_path(r.path))
    ]
    if r.query is not None:
        schema = r.query.model_json_schema(ref_template=REF)
        components.update(schema.get("$defs", {}))
        required = set(schema.get("required", []))
        params += [
            {"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema["properties"].items()
        ]
    if r.idempotent:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "retrying with the same key and body returns the first response",
                "schema": {"type": "string", "maxLength": 255},
            }
        )
    if r.fresh_code:
        params.append(
            {
                "name": FRESH_CODE_HEADER,
                "in": "header",
                "required": True,
                "description": "the current code of the caller's authenticator app (two-factor sign-in)",
                "schema": {"type": "string", "pattern": "^[0-9]{6}$"},
            }
        )
    if params:
        op["parameters"] = params
    if r.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(r.body, "validation")]}},
        }
    elif r.content_type != "application/json":
        op["requestBody"] = {
            "required": True,
            "content": {r.content_type: {"schema": r.body_schema or {"type": "string"}}},
        }

    ok: dict[str, Any] = {"description": "success"}
    if r.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(r.response, "serialization")]}}
    op["responses"] = {str(r.status): ok}
    for status, (model, when) in r.also.items():
        op["responses"][str(status)] = {
            "description": when,
            "content": {"application/json": {"schema": refs[(model, "serialization")]}},
        }
    error = {"description": "error", "content": {"application/json": {"schema": refs[(ErrorOut, "serialization")]}}}
    for status in ERROR_STATUSES["none" if r.auth in ("none", "optional") else "user"]:
        op["responses"][status] = error
    if r.body is not None or r.content_type != "application/json":
        op["responses"]["413"] = error
    for status, when in r.errors.items():
        op["responses"][str(status)] = {**error, "description": when}
    if r.auth not in ("none", "optional"):
        op["security"] = [{"bearer": []}, {"cookie": []}]
    return op


def _drop_null_defaults(schema: dict) -> None:
    """A PATCH field that may be left out but not set to null has the default None in Python; in the
    document that default would contradict its type, so it goes (leaving the field out keeps the value)."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None and not _allows_null(prop):
            del prop["default"]


def _allows_null(prop: dict) -> bool:
    kinds = prop.get("type")
    if kinds == "null" or (isinstance(kinds, list) and "null" in kinds):
        return True
    return any(_allows_null(option) for option in prop.get("anyOf", []) + prop.get("oneOf", []))
