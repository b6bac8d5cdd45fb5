"""Register, sign in and out, who am I, and two-factor sign-in (docs/API.md, Authentication)."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from aiohttp import web
from pydantic import Field, StringConstraints

from livehub import auth, keys
from livehub.api.models import Email, Phone, Text, UserOut
from livehub.api.routing import Api, Model, Out, principal, record_audit
from livehub.auth import Principal
from livehub.errors import Conflict, Forbidden, Unauthorized, ValidationFailed
from livehub.http import SESSION_COOKIE, client_address, request_token
from livehub.jsonx import json_response
from livehub.shop import account_emails
from livehub.signin_limits import Outcome

api = Api("auth")

# The document states what is refused, so a request valid by it is never refused as malformed: text
# PostgreSQL cannot store (livehub/storable.py), and what is too short once whitespace as Python strips it
# (\s, and \x1c-\x1f and \x85 besides) is gone from both ends.
_NO_NUL = Field(json_schema_extra={"pattern": r"^[^\x00]*$"})
_WS, _SOLID = r"[\s\x1c-\x1f\x85]", r"[^\s\x1c-\x1f\x85\x00]"
Password = Annotated[
    str,
    StringConstraints(min_length=8, max_length=256),
    Field(json_schema_extra={"pattern": rf"^{_WS}*{_SOLID}[^\x00]{{6,}}{_SOLID}{_WS}*$"}),
]
AnyPassword = Annotated[str, StringConstraints(max_length=256), _NO_NUL]
# A TOTP code ("123456", spaces allowed) or a recovery code ("abcd-efgh-jkmn-pqrs").
Code = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=32, pattern=r"^[0-9A-Za-z -]*[0-9A-Za-z][0-9A-Za-z -]*$")
]


class RegisterIn(Model):
    email: Email
    password: Password
    display_name: Text
    phone: Phone | None = None


class LoginIn(Model):
    email: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=254),
        Field(json_schema_extra={"pattern": rf"^{_WS}*{_SOLID}[^\x00]*$"}),
    ]
    password: AnyPassword
    # Needed when the account has two-factor sign-in on (a first try without it says so).
    code: Code | None = None


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
        app[keys.LOGIN_LIMITER],
        app[keys.SETTINGS],
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        phone=body.phone,
        address=client_address(request),
        user_agent=request.headers.get("User-Agent"),
    )
    return _signed_in(request, user, token, 201)


@api.post(
    "/api/auth/login",
    body=LoginIn,
    response=SessionOut,
    errors={
        401: "wrong email, phone or password; or, with details.two_factor_required, the password was right "
        "and `code` is missing, wrong or already used",
        403: "the account has been deactivated",
    },
)
async def login(request: web.Request, body: LoginIn) -> web.Response:
    """Sign in with email (or phone), password and, with two-factor sign-in on, a code; sets the session cookie"""
    app = request.app
    try:
        user, token = await auth.login(
            app[keys.POOL],
            app[keys.HASHER],
            app[keys.LOGIN_LIMITER],
            app[keys.TWO_FACTOR],
            app[keys.SETTINGS],
            login_id=body.email,
            password=body.password,
            code=body.code,
            address=client_address(request),
            user_agent=request.headers.get("User-Agent"),
        )
    except (Unauthorized, Forbidden) as exc:
        # Wrong passwords and codes, and deactivated accounts; the limits bound how many rows an attacker
        # makes (a limited attempt, 429, is not recorded: it was never checked). The first step of a
        # two-factor sign-in (the right password, no code yet) is no failure.
        if exc.details.get("two_factor_required") and not body.code:
            raise
        account = auth.login_account(body.email)
        await record_audit(
            request,
            "sign_in_failed",
            actor_id=None,
            target_type="account",
            target_id=account,
            details={"why": exc.message},
        )
        raise
    await record_audit(
        request, "sign_in", actor_id=UUID(str(user["id"])), target_type="account", target_id=user["email"]
    )
    return _signed_in(request, user, token, 200)


@api.post("/api/auth/logout", auth="user", status=204)
async def logout(request: web.Request) -> web.Response:
    """End this session"""
    token, _ = request_token(request)
    await auth.end_session(request.app[keys.POOL], token)
    await record_audit(request, "sign_out", actor_id=principal(request).user_id)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


@api.get("/api/me", auth="user", response=MeOut)
async def me(request: web.Request) -> MeOut:
    """The signed-in account with its roles and seller profile id"""
    async with request.app[keys.POOL].acquire() as conn:
        return MeOut(user=await auth.user_json(conn, principal(request).user_id))


# -- email verification and password reset (docs/MESSAGES.md, "Accounts") ------------------------------

# A token from an emailed link; one new_token did not make is `invalid_token`, not a malformed request.
Token = Annotated[str, StringConstraints(max_length=256), _NO_NUL]


class TokenIn(Model):
    token: Token


class ResetRequestIn(Model):
    email: Email


class ResetConfirmIn(Model):
    token: Token
    password: Password


@api.post(
    "/api/auth/verify-email",
    body=TokenIn,
    status=204,
    errors={422: "`invalid_token`: the link is unknown, used or expired (details.reason)"},
)
async def verify_email(request: web.Request, body: TokenIn) -> None:
    """Verify the account's email address with the token of the emailed link (no sign-in needed)"""
    user_id = await account_emails.verify_email(request.app[keys.POOL], body.token)
    await record_audit(request, "email_verified", actor_id=user_id, target_type="account", target_id=str(user_id))


@api.post(
    "/api/auth/verify-email/resend",
    auth="user",
    status=202,
    errors={409: "the email address is verified already", 429: "asked too often (details.retry_after_s)"},
)
async def resend_verification(request: web.Request) -> web.Response:
    """Email a new verification link (at most one a minute and five a day)"""
    app = request.app
    await account_emails.resend_verification(app[keys.POOL], app[keys.SETTINGS], principal(request).user_id)
    return web.Response(status=202)


@api.post("/api/auth/password-reset", body=ResetRequestIn, status=202)
async def password_reset(request: web.Request, body: ResetRequestIn) -> web.Response:
    """Email a password reset link to this address if it has an account; the answer is the same either way"""
    app = request.app
    await account_emails.request_password_reset(app[keys.POOL], app[keys.SETTINGS], body.email, client_address(request))
    return web.Response(status=202)


@api.post(
    "/api/auth/password-reset/confirm",
    body=ResetConfirmIn,
    status=204,
    errors={422: "`invalid_token`: the link is unknown, used or expired (details.reason)"},
)
async def password_reset_confirm(request: web.Request, body: ResetConfirmIn) -> None:
    """Set a new password with the token of the emailed link; every session of the account is signed out"""
    result = await account_emails.reset_password(
        request.app[keys.POOL], request.app[keys.HASHER], body.token, body.password
    )
    await record_audit(
        request,
        "password_reset",
        actor_id=result["user_id"],
        target_type="account",
        target_id=str(result["user_id"]),
        details={"ended_sessions": result["ended_sessions"]},
    )


# -- two-factor sign-in ---------------------------------------------------------------------------------


class TwoFactorOut(Out):
    enabled: bool
    enabled_at: datetime | None
    recovery_codes_left: int


class PasswordIn(Model):
    password: AnyPassword


class SetupOut(Out):
    secret: str = Field(description="base32, for typing into an authenticator app")
    otpauth_uri: str = Field(description="the otpauth:// URI that a QR code carries to the app")
    qr_matrix: list[str] = Field(description="that QR code: rows top to bottom, '1' a dark module, no quiet zone")


class CodeIn(Model):
    code: Code


class RecoveryCodesOut(Out):
    recovery_codes: list[str]


def _require_on(me: Principal) -> None:
    if not me.two_factor:
        raise Conflict("two-factor sign-in is off")


@api.get("/api/me/two-factor", auth="user", response=TwoFactorOut)
async def two_factor_status(request: web.Request) -> TwoFactorOut:
    """Whether two-factor sign-in is on, and how many recovery codes are left"""
    status = await request.app[keys.TWO_FACTOR].status(request.app[keys.POOL], principal(request).user_id)
    return TwoFactorOut.model_validate(dict(status))


@api.post("/api/me/two-factor/setup", auth="user", body=PasswordIn, response=SetupOut)
async def two_factor_setup(request: web.Request, body: PasswordIn) -> SetupOut:
    """Start turning two-factor sign-in on (the password again): a secret for an authenticator app"""
    app = request.app
    pool, me = app[keys.POOL], principal(request)
    await auth.confirm_password(
        pool, app[keys.HASHER], app[keys.LOGIN_LIMITER], me.user_id, body.password, client_address(request)
    )
    email = await pool.fetchval("SELECT email FROM users WHERE id = $1", me.user_id)
    return SetupOut.model_validate(await app[keys.TWO_FACTOR].begin(pool, me.user_id, email))


@api.post("/api/me/two-factor/enable", auth="user", body=CodeIn, response=RecoveryCodesOut, audit="two_factor.enable")
async def two_factor_enable(request: web.Request, body: CodeIn) -> RecoveryCodesOut:
    """Turn two-factor sign-in on with a first code from the app; answers ten recovery codes, shown once"""
    app = request.app
    pool, me = app[keys.POOL], principal(request)
    limiter = app[keys.LOGIN_LIMITER]
    # A wrong code counts like any other, so a stolen session cannot try codes endlessly.
    attempt = await limiter.attempt(pool, str(me.user_id), client_address(request))
    outcome: Outcome = "neutral"
    try:
        codes = await app[keys.TWO_FACTOR].confirm(pool, me.user_id, body.code)
        outcome = "failed" if codes is None else "passed"
    finally:
        await limiter.settle(pool, attempt, outcome)
    if codes is None:
        raise ValidationFailed(
            "the code does not match: check that the phone's clock is right and type the newest code",
            {"errors": [{"loc": ["code"], "msg": "the code does not match", "type": "code_mismatch"}]},
        )
    return RecoveryCodesOut(recovery_codes=codes)


@api.post("/api/me/two-factor/disable", auth="user", body=CodeIn, status=204, audit="two_factor.disable")
async def two_factor_disable(request: web.Request, body: CodeIn) -> None:
    """Turn two-factor sign-in off, with a code from the app or a recovery code"""
    app = request.app
    pool, me = app[keys.POOL], principal(request)
    two_factor = app[keys.TWO_FACTOR]
    _require_on(me)
    await two_factor.prove(pool, app[keys.LOGIN_LIMITER], me.user_id, body.code, client_address(request))
    await two_factor.disable(pool, me.user_id)


@api.post(
    "/api/me/two-factor/recovery-codes",
    auth="user",
    body=CodeIn,
    response=RecoveryCodesOut,
    audit="two_factor.recovery_codes",
)
async def two_factor_recovery_codes(request: web.Request, body: CodeIn) -> RecoveryCodesOut:
    """Ten new recovery codes, shown once, with a code from the app (or a recovery code); the old ones stop working"""
    app = request.app
    pool, me = app[keys.POOL], principal(request)
    two_factor = app[keys.TWO_FACTOR]
    _require_on(me)
    await two_factor.prove(pool, app[keys.LOGIN_LIMITER], me.user_id, body.code, client_address(request))
    return RecoveryCodesOut(recovery_codes=await two_factor.regenerate(pool, me.user_id))
