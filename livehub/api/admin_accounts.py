"""Admin tools for accounts: deactivating and reactivating users, and reading the audit log."""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from aiohttp import web
from pydantic import Field, StringConstraints

from livehub import keys
from livehub.api.models import Page, Text
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.shop import accounts, audit

api = Api("admin")


class DeactivateIn(Model):
    reason: Text


class DeactivatedOut(Out):
    user_id: UUID
    seller_id: UUID | None = Field(description="the shop that was suspended with the account, if any")
    ended_streams: int = Field(description="live streams of the shop that ended")


@api.post(
    "/api/admin/users/{id}/deactivate",
    auth="admin",
    body=DeactivateIn,
    response=DeactivatedOut,
    changes_listings=True,
    audit="user.deactivate",
)
async def deactivate_user(request: web.Request, body: DeactivateIn) -> DeactivatedOut:
    """Deactivate an account: its sessions end, it cannot sign in, its shop is suspended, its live streams end"""
    result = await accounts.deactivate(db(request), path_id(request), principal(request).user_id)
    hub = request.app[keys.HUB]
    for stream in result["ended_streams"]:
        await hub.stream_changed(UUID(stream["id"]), stream)
    return DeactivatedOut(
        user_id=result["user_id"], seller_id=result["seller_id"], ended_streams=len(result["ended_streams"])
    )


@api.post("/api/admin/users/{id}/reactivate", auth="admin", audit="user.reactivate")
async def reactivate_user(request: web.Request) -> None:
    """Let a deactivated account sign in again (its shop stays suspended until approved again)"""
    await accounts.reactivate(db(request), path_id(request))


Action = Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z_]+(\.[a-z_]+)*\.?$")]


class AuditQuery(Model):
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    cursor: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    actor: UUID | None = Field(default=None, description="who acted")
    action: Action | None = Field(default=None, description="an action, or a prefix ending in '.' (`seller.`)")
    target: Annotated[str, StringConstraints(max_length=64)] | None = Field(default=None, description="the id acted on")
    since: datetime | None = None
    until: datetime | None = None


class AuditEntryOut(Out):
    id: int
    at: datetime
    actor_id: UUID | None
    actor_email: str | None
    action: str
    target_type: str | None
    target_id: str | None
    address: str | None
    user_agent: str | None
    details: dict[str, Any]


@api.get("/api/admin/audit", auth="admin", query=AuditQuery, response=Page[AuditEntryOut])
async def list_audit(request: web.Request, query: AuditQuery) -> Page[AuditEntryOut]:
    """The audit log, newest first: sign-ins, sign-outs and every admin action, with filters"""
    page = await audit.entries(
        db(request),
        actor_id=query.actor,
        action=query.action,
        target_id=query.target,
        since=query.since,
        until=query.until,
        limit=query.limit,
        before=query.cursor,
    )
    return Page[AuditEntryOut].model_validate(page)
