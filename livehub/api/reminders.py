"""Show reminders: "remind me" on a scheduled stream."""

from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub.api.routing import Api, Out, db, path_id, principal
from livehub.shop import reminders

api = Api("reminders")


class ReminderOut(Out):
    stream_id: UUID
    reminders: int = Field(description="how many asked to be reminded of the stream")
    reminded: bool = Field(description="whether you did")


@api.post("/api/streams/{id}/remind", auth="user", response=ReminderOut)
async def remind(request: web.Request) -> ReminderOut:
    """Be reminded of a scheduled stream: a notification 15 minutes before it and when it goes live"""
    result = await reminders.set_reminder(db(request), path_id(request), principal(request).user_id, True)
    return ReminderOut.model_validate(result)


@api.delete("/api/streams/{id}/remind", auth="user", response=ReminderOut)
async def forget(request: web.Request) -> ReminderOut:
    """Stop being reminded of a stream"""
    result = await reminders.set_reminder(db(request), path_id(request), principal(request).user_id, False)
    return ReminderOut.model_validate(result)
