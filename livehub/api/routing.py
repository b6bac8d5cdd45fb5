"""How REST handlers are declared: one decorator that routes, parses, authorises and documents.

    @api.post("/api/products", body=ProductIn, response=ProductOut, status=201, auth="seller")
    async def create_product(request, body: ProductIn) -> ProductOut: ...

The wrapper reads the body (size-limited), validates JSON bodies and the query string with pydantic
(unknown fields are refused), resolves the caller, checks the role, runs idempotent routes at most once
per Idempotency-Key, and returns the handler's result as JSON.
The same declarations generate the OpenAPI document, so the spec cannot drift from the code.
"""

import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import asyncpg
import pydantic
from aiohttp import web

from livehub import keys, logs, twofactor
from livehub.api import idempotency
from livehub.auth import Principal, principal_for_token
from livehub.errors import Forbidden, NotFound, PayloadTooLarge, Unauthorized, ValidationFailed
from livehub.http import check_origin, client_address, request_token
from livehub.jsonx import json_response, loads
from livehub.shop import audit
from livehub.storable import check_storable
from storage.db import transaction

Auth = Literal["none", "optional", "user", "seller", "admin"]
PRINCIPAL = web.RequestKey("principal", Principal | None)
# Where a route declared with fresh_code=True takes the caller's current two-factor code.
FRESH_CODE_HEADER = "X-Two-Factor-Code"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# A multipart route's handler reads its parts itself (request.multipart()), so a file streams in and its
# own limit applies; the wrapper does not buffer the body.
MULTIPART = "multipart/form-data"


class Model(pydantic.BaseModel):
    """Base for request bodies and query strings: unknown fields are an error, not silently dropped."""

    model_config = pydantic.ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(pydantic.BaseModel):
    """Base for response bodies."""

    model_config = pydantic.ConfigDict(from_attributes=True)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[..., Awaitable[Any]]
    summary: str
    tag: str
    auth: Auth = "none"
    body: type[pydantic.BaseModel] | None = None
    query: type[pydantic.BaseModel] | None = None
    response: Any = None
    status: int = 200
    content_type: str = "application/json"
    # Accepts an Idempotency-Key header: a retry returns the first response (see idempotency.py).
    idempotent: bool = False
    # A successful call changes what product listings show: this node drops its cached listing pages
    # (other nodes catch up within the cache's lifetime, api/cache.py).
    changes_listings: bool = False
    # Recorded in the audit log under this action (e.g. "seller.approve") in the same transaction as the
    # handler's writes, which must go through `db(request)`: the action never happens without its row.
    audit: str | None = None
    # A money action an admin takes: the caller's current two-factor code must come in X-Two-Factor-Code
    # with every request (403 forbidden otherwise; wrong codes count as failed sign-ins).
    fresh_code: bool = False
    # Statuses this route answers besides the usual ones (openapi.py), with when: {401: "wrong password"}.
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    # Other successful answers, each with its own model, which the handler returns as a response it makes
    # itself: {202: (Model, "when")}.
    also: dict[int, tuple[Any, str]] = dataclasses.field(default_factory=dict)
    # The OpenAPI schema of a body that is not JSON (a multipart form's fields); a plain string if not given.
    body_schema: dict[str, Any] | None = None


class Api:
    """A collection of routes; `app.router.add_routes(api.table())` mounts them."""

    def __init__(self, tag: str):
        self.tag = tag
        self.routes: list[Route] = []

    def route(self, method: str, path: str, **spec: Any):
        def decorate(handler):
            summary = (handler.__doc__ or handler.__name__.replace("_", " ")).strip().splitlines()[0]
            self.routes.append(Route(method, path, handler, summary, self.tag, **spec))
            return handler

        return decorate

    def get(self, path: str, **spec: Any):
        return self.route("GET", path, **spec)

    def post(self, path: str, **spec: Any):
        return self.route("POST", path, **spec)

    def patch(self, path: str, **spec: Any):
        return self.route("PATCH", path, **spec)

    def delete(self, path: str, **spec: Any):
        return self.route("DELETE", path, **spec)

    def table(self) -> list[web.RouteDef]:
        return [web.route(r.method, r.path, _wrap(r)) for r in self.routes]


def _wrap(route: Route):
    settings_limit = "max_json_bytes" if route.content_type == "application/json" else "max_upload_bytes"

    @functools.wraps(route.handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        check_storable(dict(request.query), where=("query",))
        principal = await resolve_principal(request) if route.auth != "none" else None
        _authorise(request, principal, route.auth)
        if route.fresh_code:
            await _check_fresh_code(request, principal)
        kwargs: dict[str, Any] = {}
        raw = b""
        if route.body is not None or route.content_type not in ("application/json", MULTIPART):
            raw = await _read_body(request, getattr(request.app[keys.SETTINGS], settings_limit))
        if route.body is not None:
            data = parse_json(raw)
            check_storable(data, where=("body",))
            # Strict, as websocket frames are: "2" is not a quantity and false is not a price. But 2.0 is the
            # integer 2, as JSON Schema (so the OpenAPI document) has it.
            if _has_whole_floats(data):
                # Rare: re-encoded with the standard library, which keeps integers of any size.
                raw_body: bytes | str = json.dumps(_whole_numbers(data))
            else:
                raw_body = raw
            kwargs["body"] = route.body.model_validate_json(raw_body, strict=True)
        elif route.content_type not in ("application/json", MULTIPART):
            kwargs["data"] = raw
        if route.query is not None:
            kwargs["query"] = route.query.model_validate(dict(request.query))

        async def call() -> web.StreamResponse:
            result = await route.handler(request, **kwargs)
            if route.audit is not None:
                await _record(request, route.audit, principal, kwargs.get("query"), kwargs.get("body"))
            if isinstance(result, web.StreamResponse):
                return result
            if result is None:
                return web.Response(status=204)
            return json_response(result, status=route.status)

        key = request.headers.get("Idempotency-Key") if route.idempotent else None
        if key is not None and principal is not None:
            response = await idempotency.run_once(request, principal.user_id, key, raw, call)
        elif route.audit is not None:
            async with transaction(request.app[keys.POOL]) as conn:
                request[idempotency.CONNECTION] = conn
                try:
                    response = await call()
                finally:
                    del request[idempotency.CONNECTION]
        else:
            response = await call()
        if route.changes_listings:
            request.app[keys.LISTING_CACHE].clear()
        return response

    return wrapper


def _has_whole_floats(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, list):
        return any(_has_whole_floats(v) for v in value)
    if isinstance(value, dict):
        return any(_has_whole_floats(v) for v in value.values())
    return False


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    return value


async def _record(request: web.Request, action: str, actor: Principal | None, query: Any, body: Any) -> None:
    ids = dict(request.match_info)
    target_id = ids.pop("id", None) or ids.pop("user_id", None)
    details = dict(ids)
    for model in (query, body):
        if isinstance(model, pydantic.BaseModel):
            details.update(model.model_dump(mode="json", exclude_none=model is query))
    await record_audit(
        request,
        action,
        actor_id=actor.user_id if actor else None,
        target_type=action.split(".")[0],
        target_id=target_id,
        details=details,
    )


async def record_audit(
    request: web.Request,
    action: str,
    *,
    actor_id: UUID | None,
    target_type: str | None = None,
    target_id: str | None = None,
    details: dict | None = None,
) -> None:
    """An audit row for this request (its address and browser), on the request's connection: inside an
    idempotent or audited request's transaction, or on its own."""
    await audit.record(
        db(request),
        action,
        actor_id=actor_id,
        target_type=target_type,
        target_id=target_id,
        address=client_address(request),
        user_agent=request.headers.get("User-Agent"),
        details=details,
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it passes `limit` bytes (with or without a
    Content-Length: a chunked body is counted as it arrives)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    # StreamReader.read(n) returns what has arrived so far, not n bytes: read until the end.
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes")
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise ValidationFailed("a JSON body is required")
    try:
        return loads(raw)
    except ValueError as exc:
        raise ValidationFailed("body is not valid JSON", {"reason": str(exc)}) from None


async def resolve_principal(request: web.Request) -> Principal | None:
    if PRINCIPAL in request:
        return request[PRINCIPAL]
    token, via_cookie = request_token(request)
    principal = None
    if token:
        principal = await principal_for_token(request.app[keys.POOL], token)
        if principal is not None and via_cookie:
            principal = dataclasses.replace(principal, via_cookie=True)
        if principal is not None:
            logs.bind_user(principal.user_id)
    request[PRINCIPAL] = principal
    return principal


def _authorise(request: web.Request, principal: Principal | None, auth: Auth) -> None:
    if auth == "none" or (auth == "optional" and principal is None):
        return
    if principal is None:
        raise Unauthorized("sign in first")
    if principal.via_cookie and request.method not in _SAFE_METHODS:
        check_origin(request)
    if auth == "admin" and not principal.is_admin:
        if "admin" in principal.roles:
            twofactor.require_enabled(False, "admins act as admins only with a second factor")
        raise Forbidden("admins only")
    if auth == "seller" and not principal.is_seller:
        raise Forbidden("an approved seller profile is required")


async def _check_fresh_code(request: web.Request, principal: Principal | None) -> None:
    assert principal is not None, "fresh_code needs a signed-in route"
    twofactor.require_enabled(principal.two_factor, "this action needs a code from your authenticator app")
    app = request.app
    await app[keys.TWO_FACTOR].prove(
        app[keys.POOL],
        app[keys.LOGIN_LIMITER],
        principal.user_id,
        request.headers.get(FRESH_CODE_HEADER),
        client_address(request),
        step_up=True,
    )


def db(request: web.Request) -> asyncpg.Pool | asyncpg.Connection:
    """Where a handler's queries go: the pool, or inside an idempotent request the connection whose
    transaction also records the response, so the effect and its replay commit together."""
    return request.get(idempotency.CONNECTION) or request.app[keys.POOL]


def principal(request: web.Request) -> Principal:
    """The signed-in caller of a route declared with auth user/seller/admin."""
    p = request.get(PRINCIPAL)
    assert p is not None, "route declared without auth"
    return p


def path_id(request: web.Request, name: str = "id") -> UUID:
    """A UUID path segment; anything else names nothing that exists."""
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"no such {name.removesuffix('_id') if name != 'id' else 'resource'}") from None
