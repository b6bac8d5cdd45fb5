"""Register, sign in and out, and who am I."""

from typing import Annotated

from aiohttp import web
from pydantic import StringConstraints

from livehub import auth, keys
from livehub.api.models import Email, Phone, Text, UserOut
from livehub.api.routing import Api, Model, Out, principal
from livehub.http import SESSION_COOKIE, client_address, request_token
from livehub.jsonx import json_response

api = Api("auth")

Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]


class RegisterIn(Model):
    email: Email
    password: Password
    display_name: Text
    phone: Phone | None = None


class LoginIn(Model):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=254)]
    password: Annotated[str, StringConstraints(max_length=256)]


class SessionOut(Out):
    user: UserOut
    token: str


class MeOut(Out):
    user: UserOut


def _signed_in(request: web.Request, user: dict, token: str, status: int) -> web.Response:
    settings = request.app[keys.SETTINGS]
    body = SessionOut.model_validate({"user": user, "token": token})
    response = json_response(body, status=status)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_ttl_s,
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
        path="/",
    )
    return response


@api.post("/api/auth/register", body=RegisterIn, response=SessionOut, status=201)
async def register(request: web.Request, body: RegisterIn) -> web.Response:
    """Create an account and sign it in"""
    app = request.app
    user, token = await auth.register(
        app[keys.POOL],
        app[keys.HASHER],
        app[keys.SETTINGS],
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        phone=body.phone,
    )
    return _signed_in(request, user, token, 201)


@api.post("/api/auth/login", body=LoginIn, response=SessionOut)
async def login(request: web.Request, body: LoginIn) -> web.Response:
    """Sign in with email (or phone) and password; sets the session cookie too"""
    app = request.app
    user, token = await auth.login(
        app[keys.POOL],
        app[keys.HASHER],
        app[keys.LOGIN_LIMITER],
        app[keys.SETTINGS],
        login_id=body.email,
        password=body.password,
        address=client_address(request),
    )
    return _signed_in(request, user, token, 200)


@api.post("/api/auth/logout", auth="user", status=204)
async def logout(request: web.Request) -> web.Response:
    """End this session"""
    token, _ = request_token(request)
    await auth.end_session(request.app[keys.POOL], token)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@api.get("/api/me", auth="user", response=MeOut)
async def me(request: web.Request) -> MeOut:
    """The signed-in account with its roles and seller profile id"""
    async with request.app[keys.POOL].acquire() as conn:
        return MeOut(user=await auth.user_json(conn, principal(request).user_id))
