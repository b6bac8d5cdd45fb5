"""How REST handlers are declared: one decorator that routes, parses, authorises and documents.

    @api.post("/api/products", body=ProductIn, response=ProductOut, status=201, auth="seller")
    async def create_product(request, body: ProductIn) -> ProductOut: ...

The wrapper reads the JSON body (size-limited), validates it and the query string with pydantic (unknown
fields are refused), resolves the caller, checks the role and returns the handler's result as JSON.
The same declarations generate the OpenAPI document, so the spec cannot drift from the code.
"""

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import pydantic
from aiohttp import web

from livehub import keys
from livehub.auth import Principal, principal_for_token
from livehub.errors import Forbidden, NotFound, PayloadTooLarge, Unauthorized, ValidationFailed
from livehub.jsonx import json_response, loads

Auth = Literal["none", "optional", "user", "seller", "admin"]
SESSION_COOKIE = "livehub_session"
PRINCIPAL = web.RequestKey("principal", Principal | None)
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


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
    auth: Auth
    body: type[pydantic.BaseModel] | None
    query: type[pydantic.BaseModel] | None
    response: Any
    status: int
    content_type: str


class Api:
    """A collection of routes; `app.router.add_routes(api.table())` mounts them."""

    def __init__(self, tag: str):
        self.tag = tag
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        auth: Auth = "none",
        body=None,
        query=None,
        response=None,
        status: int = 200,
        content_type: str = "application/json",
    ):
        def decorate(handler):
            summary = (handler.__doc__ or handler.__name__.replace("_", " ")).strip().splitlines()[0]
            self.routes.append(
                Route(
                    method,
                    path,
                    _wrap(handler, auth, body, query, status, content_type),
                    summary,
                    self.tag,
                    auth,
                    body,
                    query,
                    response,
                    status,
                    content_type,
                )
            )
            return handler

        return decorate

    def get(self, path: str, **kw):
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw):
        return self.route("POST", path, **kw)

    def patch(self, path: str, **kw):
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw):
        return self.route("DELETE", path, **kw)

    def table(self) -> list[web.RouteDef]:
        return [web.route(r.method, r.path, r.handler) for r in self.routes]


def _wrap(handler, auth: Auth, body_model, query_model, status: int, content_type: str):
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        principal = await resolve_principal(request)
        _authorise(request, principal, auth)
        kwargs: dict[str, Any] = {}
        if body_model is not None:
            kwargs["body"] = body_model.model_validate(await read_json(request))
        if query_model is not None:
            kwargs["query"] = query_model.model_validate(dict(request.query))
        result = await handler(request, **kwargs)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return json_response(result, status=status)

    return wrapper


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


async def read_json(request: web.Request) -> Any:
    raw = await _read_body(request, request.app[keys.SETTINGS].max_json_bytes)
    if not raw.strip():
        raise ValidationFailed("a JSON body is required")
    try:
        return loads(raw)
    except ValueError as exc:
        raise ValidationFailed("body is not valid JSON", {"reason": str(exc)}) from None


async def read_upload(request: web.Request) -> bytes:
    """A raw body up to the upload limit (CSV imports)."""
    return await _read_body(request, request.app[keys.SETTINGS].max_upload_bytes)


def request_token(request: web.Request) -> tuple[str | None, bool]:
    """The session token and whether it came from the cookie (which needs the Origin check)."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None, False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


async def resolve_principal(request: web.Request) -> Principal | None:
    if PRINCIPAL in request:
        return request[PRINCIPAL]
    token, via_cookie = request_token(request)
    principal = None
    if token:
        principal = await principal_for_token(request.app[keys.POOL], token)
        if principal is not None and via_cookie:
            principal = Principal(
                principal.user_id, principal.roles, principal.seller_id, principal.seller_status, via_cookie=True
            )
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
        raise Forbidden("admins only")
    if auth == "seller" and not principal.is_seller:
        raise Forbidden("an approved seller profile is required")


def check_origin(request: web.Request) -> None:
    """A cookie rides along on cross-site requests; only our own pages (or configured origins) may write."""
    origin = request.headers.get("Origin")
    if origin is None:
        raise Forbidden("cookie-authenticated writes need an Origin header")
    own = f"{request.scheme}://{request.host}"
    if origin != own and origin not in request.app[keys.SETTINGS].allowed_origins:
        raise Forbidden("cross-origin request refused", {"origin": origin})


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
