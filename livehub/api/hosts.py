"""Guest hosts: the seller invites another user to host a show for a commission; the host accepts or
declines, sees their invitations, and runs the show once accepted (the rules: storage/functions/hosts.sql).
The host's earnings and payouts are GET /api/seller/earnings and POST /api/seller/payouts (any user's)."""

from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.api.streams import StreamOut, with_viewers
from livehub.shop import hosts

api = Api("hosts")


class HostIn(Model):
    host_id: UUID = Field(description="another user than the shop's own")
    host_commission_bps: Annotated[int, Field(ge=0, le=5000)] = Field(
        0, description="the host's share of the items sold in the show, in basis points"
    )


class AcceptIn(Model):
    host_commission_bps: Annotated[int, Field(ge=0, le=5000)] = Field(
        description="the commission you accept, as the invitation showed it (refused if the shop changed it since)"
    )


class HostRef(Out):
    id: UUID
    name: str


class InvitationOut(Out):
    stream: StreamOut
    host_status: Literal["invited", "accepted", "declined"]
    host_commission_bps: int
    host: HostRef


class InvitationEnvelope(Out):
    invitation: InvitationOut


class HostingOut(Out):
    items: list[InvitationOut] = Field(description="invitations and accepted shows not ended, live first, at most 100")


async def _changed(request: web.Request, stream_id: UUID, invitation: dict) -> InvitationEnvelope:
    # Rooms on every node learn who hosts now (roles change with it: live/state.py).
    await request.app[keys.HUB].stream_changed(stream_id, invitation["stream"])
    stream = await with_viewers(request, invitation["stream"])
    return InvitationEnvelope.model_validate({"invitation": {**invitation, "stream": stream}})


@api.post("/api/streams/{id}/host", auth="seller", body=HostIn, response=InvitationEnvelope)
async def invite_host(request: web.Request, body: HostIn) -> InvitationEnvelope:
    """Invite another user to host your scheduled stream, or change the invitation (they accept again)"""
    stream_id = path_id(request)
    invitation = await hosts.set_host(
        db(request), stream_id, principal(request).user_id, body.host_id, body.host_commission_bps
    )
    return await _changed(request, stream_id, invitation)


@api.delete("/api/streams/{id}/host", auth="seller", response=InvitationEnvelope)
async def take_back_stream(request: web.Request) -> InvitationEnvelope:
    """Cancel the host's invitation: your shop hosts the scheduled stream again, with no commission"""
    stream_id = path_id(request)
    invitation = await hosts.set_host(db(request), stream_id, principal(request).user_id, None, 0)
    return await _changed(request, stream_id, invitation)


@api.post(
    "/api/streams/{id}/host/accept",
    auth="user",
    body=AcceptIn,
    response=InvitationEnvelope,
    errors={409: "the stream is not scheduled, or the commission changed since (details.host_commission_bps)"},
)
async def accept_invitation(request: web.Request, body: AcceptIn) -> InvitationEnvelope:
    """Accept the invitation to host a scheduled stream at the commission it showed: you may then start it and
    run it"""
    stream_id = path_id(request)
    invitation = await hosts.answer(
        db(request), stream_id, principal(request).user_id, accept=True, commission_bps=body.host_commission_bps
    )
    return await _changed(request, stream_id, invitation)


@api.post("/api/streams/{id}/host/decline", auth="user", response=InvitationEnvelope)
async def decline_invitation(request: web.Request) -> InvitationEnvelope:
    """Decline the invitation to host a scheduled stream (also after accepting, until it starts)"""
    stream_id = path_id(request)
    invitation = await hosts.answer(db(request), stream_id, principal(request).user_id, accept=False)
    return await _changed(request, stream_id, invitation)


@api.get("/api/me/hosting", auth="user", response=HostingOut)
async def my_hosting(request: web.Request) -> HostingOut:
    """Shows other shops invited you to host: invitations waiting and accepted shows not ended"""
    items = await hosts.hosting_of(db(request), principal(request).user_id)
    counts = await request.app[keys.HUB].viewer_counts([UUID(i["stream"]["id"]) for i in items])
    for item in items:
        item["stream"]["viewers"] = counts.get(UUID(item["stream"]["id"]), 0)
    return HostingOut.model_validate({"items": items})
