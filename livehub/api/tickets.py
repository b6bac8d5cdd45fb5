"""Support tickets: open one (about one of your orders, or not), read and answer them, set their status.
The opener, the seller of the order a ticket is about and admins see it; each reply notifies every other
party of it (docs/MESSAGES.md, Support tickets)."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub.api.models import Page, PageQuery, Text, paragraph
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.shop import tickets

api = Api("tickets")

Status = Literal["open", "waiting", "resolved", "closed"]
Role = Literal["opener", "seller", "admin"]
Body = paragraph(5000, required=True)


class TicketIn(Model):
    subject: Text
    body: Body
    order_id: UUID | None = Field(default=None, description="one of your orders, if it is about one")


class MessageIn(Model):
    body: Body


class StatusIn(Model):
    status: Status


class TicketQuery(PageQuery):
    scope: Literal["mine", "shop"] | None = Field(
        default=None,
        description="mine: tickets you opened; shop: tickets about your shop's orders; "
        "left out: every ticket you may see (an admin: all)",
    )
    status: Status | None = None
    older_than_s: Annotated[int, Field(ge=0, le=10 * 365 * 86400)] | None = Field(
        default=None, description="only tickets whose last message is at least this many seconds old"
    )
    sort: Literal["recent", "oldest"] = Field(
        default="recent",
        description="recent: latest message first; oldest: longest without a message first (the admin queue)",
    )


class PersonOut(Out):
    id: UUID
    display_name: str


class TicketOrderOut(Out):
    id: UUID
    number: str


class TicketSellerOut(Out):
    id: UUID
    shop_name: str


class TicketMessageOut(Out):
    id: UUID
    author: PersonOut
    role: Role = Field(description="what the author is to the ticket: its opener, the order's seller, or an admin")
    body: str
    created_at: datetime


class TicketOut(Out):
    id: UUID
    subject: str
    status: Status = Field(
        description="open: waiting on the shop or the admins; waiting: on the customer; resolved; "
        "closed (takes no replies)"
    )
    opener: PersonOut
    order: TicketOrderOut | None = Field(description="the order it is about, if any")
    seller: TicketSellerOut | None = Field(description="the order's shop, which answers it; null without an order")
    created_at: datetime
    updated_at: datetime
    last_reply_at: datetime
    last_reply_by: Role
    message_count: int
    messages: list[TicketMessageOut] | None = Field(description="oldest first; null in lists")


class TicketEnvelope(Out):
    ticket: TicketOut


@api.post(
    "/api/tickets",
    auth="user",
    body=TicketIn,
    response=TicketEnvelope,
    status=201,
    errors={403: "the order is one you sell, not one you bought", 404: "no such order of yours"},
)
async def open_ticket(request: web.Request, body: TicketIn) -> TicketEnvelope:
    """Ask for help, about one of your orders or not; its shop (or the admins) are told"""
    ticket = await tickets.open_ticket(db(request), principal(request), body.subject, body.body, body.order_id)
    return TicketEnvelope(ticket=ticket)


@api.get("/api/tickets", auth="user", query=TicketQuery, response=Page[TicketOut])
async def list_tickets(request: web.Request, query: TicketQuery) -> Page[TicketOut]:
    """Tickets you opened, about your shop's orders, or (an admin) all; by status and age"""
    page = await tickets.list_tickets(
        db(request),
        principal(request),
        scope=query.scope,
        status=query.status,
        older_than_s=query.older_than_s,
        sort=query.sort,
        limit=query.limit,
        cursor=query.cursor,
    )
    return Page[TicketOut].model_validate(page)


@api.get("/api/tickets/{id}", auth="user", response=TicketEnvelope)
async def get_ticket(request: web.Request) -> TicketEnvelope:
    """A ticket and its messages (its opener, the order's seller, or an admin)"""
    return TicketEnvelope(ticket=await tickets.get_ticket(db(request), path_id(request), principal(request)))


@api.post(
    "/api/tickets/{id}/messages",
    auth="user",
    body=MessageIn,
    response=TicketEnvelope,
    status=201,
    errors={409: "the ticket is closed, or has as many messages as it can take"},
)
async def reply(request: web.Request, body: MessageIn) -> TicketEnvelope:
    """Answer a ticket; every other party is told, and the status moves (waiting on the customer, or open)"""
    return TicketEnvelope(ticket=await tickets.reply(db(request), path_id(request), principal(request), body.body))


@api.post(
    "/api/tickets/{id}/status",
    auth="user",
    body=StatusIn,
    response=TicketEnvelope,
    errors={403: "the opener may only close or reopen"},
)
async def set_status(request: web.Request, body: StatusIn) -> TicketEnvelope:
    """Set a ticket's status: the opener closes or reopens it, the seller or an admin sets any"""
    ticket = await tickets.set_status(db(request), path_id(request), principal(request), body.status)
    return TicketEnvelope(ticket=ticket)
