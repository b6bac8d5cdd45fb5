"""Your own account: profile (and avatar), password, and the sessions signed in to it (docs/API.md, Your account)."""

from datetime import datetime
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api import images as images_api
from livehub.api.auth import AnyPassword, MeOut, Password
from livehub.api.models import AvatarOut, Phone, Text
from livehub.api.routing import MULTIPART, Api, Model, Out, db, path_id, principal, record_audit
from livehub.errors import ValidationFailed
from livehub.http import client_address, request_token
from livehub.mediastore import STORE
from livehub.shop import account, avatars

api = Api("account")


class ProfilePatch(Model):
    # Leave a field out to keep it.
    display_name: Text = None
    phone: Phone | None = Field(default=None, description="null removes it")
    avatar_image_id: UUID | None = Field(
        default=None, description="a picture you uploaded with POST /api/me/avatar; null removes your avatar"
    )


AVATAR_UPLOAD_SCHEMA = {
    "type": "object",
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "a JPEG, PNG or WebP picture (the type is read from the bytes)",
        },
    },
    "required": ["file"],
    "additionalProperties": False,
}


class AvatarEnvelope(Out):
    image: AvatarOut


class PasswordChangeIn(Model):
    current_password: AnyPassword
    new_password: Password


class EndedOut(Out):
    ended_sessions: int = Field(description="how many other sessions were signed out")


class DeviceSessionOut(Out):
    id: UUID
    current: bool = Field(description="the session making this request")
    created_at: datetime = Field(description="when it signed in")
    last_seen_at: datetime = Field(description="when it was last used, to the minute")
    expires_at: datetime
    user_agent: str | None = Field(description="the browser or app it signed in with")
    address: str | None = Field(description="the address it signed in from")


class SessionsOut(Out):
    sessions: list[DeviceSessionOut]


def _token(request: web.Request) -> str:
    token, _ = request_token(request)
    assert token is not None, "a signed-in route"
    return token


@api.patch(
    "/api/me",
    auth="user",
    body=ProfilePatch,
    response=MeOut,
    errors={404: "avatar_image_id is not a picture you uploaded", 409: "the phone is another account's"},
)
async def update_me(request: web.Request, body: ProfilePatch) -> MeOut:
    """Change your display name, phone number or avatar"""
    user = await account.update_profile(
        db(request), request.app[STORE], principal(request).user_id, body.model_dump(exclude_unset=True)
    )
    return MeOut(user=user)


@api.post(
    "/api/me/avatar",
    auth="user",
    content_type=MULTIPART,
    body_schema=AVATAR_UPLOAD_SCHEMA,
    response=AvatarEnvelope,
    status=201,
    errors={409: "several pictures uploaded and none chosen yet: choose one (or none) with PATCH /api/me first"},
)
async def upload_avatar(request: web.Request) -> AvatarEnvelope:
    """Upload a picture for your avatar (multipart, field `file`); PATCH /api/me {avatar_image_id} then wears it"""
    settings = request.app[keys.SETTINGS]
    data, variant_id = await images_api.read_upload(request)
    if variant_id is not None:
        raise ValidationFailed("unexpected form field", {"field": "variant_id"})
    image = await avatars.upload(
        request.app[keys.POOL],
        request.app[STORE],
        principal(request).user_id,
        data,
        max_pixels=settings.max_image_pixels,
    )
    return AvatarEnvelope.model_validate({"image": image})


@api.post(
    "/api/me/password",
    auth="user",
    body=PasswordChangeIn,
    response=EndedOut,
    errors={403: "wrong current password", 422: "the new password is too easy to guess, or is the current one"},
)
async def change_password(request: web.Request, body: PasswordChangeIn) -> EndedOut:
    """Change your password (the current one again, and a new one); every other session is signed out"""
    app, me = request.app, principal(request)
    ended = await account.change_password(
        app[keys.POOL],
        app[keys.HASHER],
        app[keys.LOGIN_LIMITER],
        me.user_id,
        current_password=body.current_password,
        new_password=body.new_password,
        address=client_address(request),
        keep_token=_token(request),
    )
    await record_audit(
        request,
        "password.change",
        actor_id=me.user_id,
        target_type="account",
        target_id=str(me.user_id),
        details={"ended_sessions": ended},
    )
    return EndedOut(ended_sessions=ended)


@api.get("/api/me/sessions", auth="user", response=SessionsOut)
async def list_sessions(request: web.Request) -> SessionsOut:
    """Where you are signed in: this session first, then the others by when they were last used"""
    sessions = await account.list_sessions(db(request), principal(request).user_id, _token(request))
    return SessionsOut.model_validate({"sessions": sessions})


@api.delete("/api/me/sessions/{id}", auth="user", status=204)
async def end_session(request: web.Request) -> None:
    """Sign one of your sessions out (another device, or this one)"""
    me, session_id = principal(request), path_id(request)
    await account.end_session(db(request), me.user_id, session_id)
    await record_audit(request, "session.end", actor_id=me.user_id, target_type="session", target_id=str(session_id))


@api.delete("/api/me/sessions", auth="user", response=EndedOut)
async def end_other_sessions(request: web.Request) -> EndedOut:
    """Sign out everywhere else: every session but this one"""
    me = principal(request)
    ended = await account.end_other_sessions(db(request), me.user_id, _token(request))
    await record_audit(request, "session.end_others", actor_id=me.user_id, details={"ended_sessions": ended})
    return EndedOut(ended_sessions=ended)
