"""Your notifications (a shop you follow went live, ...): list and mark read."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub.api.models import Page, PageQuery
from livehub.api.routing import Api, Model, Out, db, principal
from livehub.shop import messages, notifications

api = Api("notifications")


class NotificationOut(Out):
    id: UUID
    kind: str = Field(description="what happened, e.g. stream_live")
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class MarkReadIn(Model):
    ids: Annotated[list[UUID], Field(max_length=500)] | None = Field(None, description="omitted or null: all")


class MarkedOut(Out):
    marked: int


@api.get("/api/notifications", auth="user", query=PageQuery, response=Page[NotificationOut])
async def list_notifications(request: web.Request, query: PageQuery) -> Page[NotificationOut]:
    """Your notifications, newest first"""
    page = await notifications.list_notifications(
        db(request), principal(request).user_id, limit=query.limit, before=query.cursor
    )
    return Page[NotificationOut].model_validate(page)


class UnreadOut(Out):
    unread: int = Field(description="your notifications not read yet")


@api.get("/api/notifications/unread-count", auth="user", response=UnreadOut)
async def unread_count(request: web.Request) -> UnreadOut:
    """How many of your notifications are unread (the header bell)"""
    return UnreadOut(unread=await notifications.unread_count(db(request), principal(request).user_id))


@api.post("/api/notifications/read", auth="user", body=MarkReadIn, response=MarkedOut)
async def mark_read(request: web.Request, body: MarkReadIn) -> MarkedOut:
    """Mark notifications read: the ones named, or all"""
    return MarkedOut(marked=await notifications.mark_read(db(request), principal(request).user_id, body.ids))


class KindSetting(Model):
    kind: str = Field(max_length=64, description="a notification kind (docs/MESSAGES.md, Kinds)")
    email: bool = Field(description="emailed (true, the default) or only stored and pushed")


class NotificationSettingsIn(Model):
    kinds: Annotated[list[KindSetting], Field(max_length=100)]


class NotificationSettingsOut(Out):
    kinds: list[KindSetting] = Field(description="every kind, in a fixed order")


@api.get("/api/me/notification-settings", auth="user", response=NotificationSettingsOut)
async def get_notification_settings(request: web.Request) -> NotificationSettingsOut:
    """Which kinds of notification are emailed to you"""
    kinds = await messages.notification_settings(db(request), principal(request).user_id)
    return NotificationSettingsOut.model_validate({"kinds": kinds})


@api.route(
    "PUT", "/api/me/notification-settings", auth="user", body=NotificationSettingsIn, response=NotificationSettingsOut
)
async def put_notification_settings(request: web.Request, body: NotificationSettingsIn) -> NotificationSettingsOut:
    """Turn email on or off per kind (kinds left out are unchanged)"""
    kinds = await messages.set_notification_settings(
        db(request), principal(request).user_id, [k.model_dump() for k in body.kinds]
    )
    return NotificationSettingsOut.model_validate({"kinds": kinds})
