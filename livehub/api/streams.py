"""Streams: schedule, go live, end, browse, moderators and the host's numbers.

What happens inside a live room (chat, pins, flash sales, moderation) goes over the websocket; these
routes are the stream's life around it.
"""

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from aiohttp import web
from pydantic import AfterValidator, AwareDatetime, Field

from livehub import keys
from livehub.api.catalog import SellerRef
from livehub.api.images import ImageOut
from livehub.api.models import Cents, Page, PageQuery, RatingOut, Text
from livehub.api.routing import PRINCIPAL, Api, Model, Out, db, path_id, principal
from livehub.errors import NotFound
from livehub.shop import reminders, streams
from livehub.shop.following import is_following

log = logging.getLogger(__name__)

api = Api("streams")

StreamStatus = Literal["scheduled", "live", "ended"]


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # year 1 at +14:00, year 9999 at -14:00
        raise ValueError("out of range") from None


UtcTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class StreamProductIn(Model):
    product_id: UUID
    live_price_cents: Cents | None = None
    per_buyer_limit: Annotated[int, Field(ge=1, le=10_000)] | None = None


class StreamIn(Model):
    title: Text
    scheduled_at: UtcTime | None = None
    products: Annotated[list[StreamProductIn], Field(max_length=100)]
    moderators: Annotated[list[UUID], Field(max_length=50)] = []
    host_id: UUID | None = Field(
        None, description="another user to host the show (invited: they accept before it can start)"
    )
    host_commission_bps: Annotated[int, Field(ge=0, le=5000)] = Field(
        0, description="the host's share of the items sold in the show, in basis points (with host_id)"
    )
    unlisted: bool = Field(
        False, description="a practice show: only people with the link watch; never listed, followers not told"
    )
    record: bool = Field(True, description="record the show as a replay (false: this show is not recorded)")


class ModeratorIn(Model):
    user_id: UUID


class StreamVariantOut(Out):
    id: UUID
    sku: str
    options: dict[str, Any]
    price_cents: int = Field(description="the price in this stream when no flash sale runs")
    available: int
    digital: bool = Field(description="sells codes: needs no shipping address")


class StreamProductOut(Out):
    id: UUID
    title: str
    position: int
    live_price_cents: int | None
    per_buyer_limit: int | None
    rating: RatingOut
    images: list[ImageOut]
    variants: list[StreamVariantOut]


class FlashSaleOut(Out):
    id: UUID
    variant_id: UUID
    product_id: UUID
    price_cents: int
    quantity: int
    remaining: int
    per_buyer_limit: int | None
    starts_at: datetime
    ends_at: datetime
    ended: bool
    ended_reason: Literal["sold_out", "time", "host", "stream_ended"] | None


class StreamOut(Out):
    id: UUID
    title: str
    status: StreamStatus
    seller: SellerRef
    host_id: UUID
    host_status: Literal["invited", "accepted", "declined"] = Field(
        description="a guest host's answer; 'accepted' when the shop hosts its own show"
    )
    scheduled_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    pinned_product_id: UUID | None
    unlisted: bool = Field(description="a practice show: watched through its link only, never listed")
    record: bool = Field(description="whether the show is recorded as a replay")
    products: list[StreamProductOut]
    viewers: int = Field(0, description="watching now, over all nodes")


class StreamDetailOut(StreamOut):
    flash_sale: FlashSaleOut | None = Field(description="the flash sale running now")
    following: bool | None = Field(None, description="whether you follow the shop; null when not signed in")
    reminders: int = Field(0, description="how many asked to be reminded of the stream (POST .../remind)")
    reminded: bool | None = Field(None, description="whether you asked to be reminded; null when not signed in")


class StreamEnvelope(Out):
    stream: StreamOut


class StreamDetailEnvelope(Out):
    stream: StreamDetailOut


class StreamQuery(PageQuery):
    status: StreamStatus | None = None
    seller: UUID | None = None
    include_unlisted: bool = Field(
        default=False,
        description="practice (unlisted) shows too: for the caller's own shop (`seller` set to it: the studio), "
        "or for an admin (any `seller`, or none)",
    )


class ProductStatsOut(Out):
    product_id: UUID
    title: str
    clicks: int
    orders: int
    units: int
    revenue_cents: int


class StreamStatsOut(Out):
    stream_id: UUID
    status: StreamStatus
    started_at: datetime | None
    ended_at: datetime | None
    peak_viewers: int
    unique_viewers: int
    chat_messages: int
    reactions: dict[str, int]
    orders: int = Field(description="orders placed in the stream, cancelled ones not counted")
    revenue_cents: int = Field(description="what those orders kept: totals less refunds")
    products: list[ProductStatsOut]


async def with_viewers(request: web.Request, stream: dict) -> dict:
    counts = await request.app[keys.HUB].viewer_counts([UUID(stream["id"])])
    return {**stream, "viewers": counts.get(UUID(stream["id"]), 0)}


@api.post("/api/streams", auth="seller", body=StreamIn, response=StreamEnvelope, status=201)
async def create_stream(request: web.Request, body: StreamIn) -> StreamEnvelope:
    """Schedule a stream of your shop featuring your products (in the order given), hosted by you or an invited host"""
    stream = await streams.create_stream(
        db(request),
        principal(request).user_id,
        title=body.title,
        scheduled_at=body.scheduled_at,
        products=[p.model_dump() for p in body.products],
        moderators=body.moderators,
        host_id=body.host_id,
        host_commission_bps=body.host_commission_bps,
        unlisted=body.unlisted,
        record=body.record,
    )
    return StreamEnvelope.model_validate({"stream": stream})


@api.post("/api/streams/{id}/start", auth="user", response=StreamEnvelope)
async def start_stream(request: web.Request) -> StreamEnvelope:
    """Go live (the host; a guest host once accepted): the shop's followers are notified"""
    stream_id = path_id(request)
    # Followers' notifications are stored and queued in the same transaction; the deliver_notification job
    # pushes and emails them (livehub/jobs.py).
    stream, _followers = await streams.start_stream(db(request), stream_id, principal(request).user_id)
    await request.app[keys.HUB].stream_changed(stream_id, stream)
    return StreamEnvelope.model_validate({"stream": await with_viewers(request, stream)})


@api.post("/api/streams/{id}/end", auth="user", response=StreamEnvelope)
async def end_stream(request: web.Request) -> StreamEnvelope:
    """End a live stream (the host, its shop or an admin)"""
    stream_id = path_id(request)
    stream = await streams.end_stream(db(request), stream_id, principal(request).user_id)
    await request.app[keys.HUB].stream_changed(stream_id, stream)
    if (media := request.app.get(keys.MEDIA)) is not None:
        await media.stream_ended(stream_id)
    return StreamEnvelope.model_validate({"stream": await with_viewers(request, stream)})


@api.get("/api/streams", auth="optional", query=StreamQuery, response=Page[StreamOut])
async def list_streams(request: web.Request, query: StreamQuery) -> Page[StreamOut]:
    """Browse streams: live ones (newest first), then scheduled (soonest first), then ended (newest first)"""
    # Unlisted (practice) streams are nobody's to browse, but a shop asking for its own (the studio) sees them,
    # and so does an admin asking (to find a practice show, of one shop or any); a storefront, which its shop
    # sees as everyone does, does not ask.
    me = request.get(PRINCIPAL)
    own = me is not None and query.seller is not None and me.seller_id == query.seller
    own = query.include_unlisted and me is not None and (own or me.is_admin)
    page = await streams.list_streams(
        db(request),
        status=query.status,
        seller_id=query.seller,
        limit=query.limit,
        before=query.cursor,
        with_unlisted=own,
    )
    counts = await request.app[keys.HUB].viewer_counts([UUID(s["id"]) for s in page["items"]])
    items = [{**s, "viewers": counts.get(UUID(s["id"]), 0)} for s in page["items"]]
    return Page[StreamOut].model_validate({"items": items, "next_cursor": page["next_cursor"]})


@api.get("/api/streams/{id}", auth="optional", response=StreamDetailEnvelope)
async def get_stream(request: web.Request) -> StreamDetailEnvelope:
    """A stream with its featured products, viewer count, running flash sale and whether you follow the shop"""
    snapshot = await streams.room_snapshot(db(request), path_id(request))
    if snapshot is None:
        raise NotFound("stream not found")
    stream = {**await with_viewers(request, snapshot["stream"]), "flash_sale": snapshot["flash_sale"]}
    me = request.get(PRINCIPAL)
    if me is not None:
        stream["following"] = await is_following(db(request), me.user_id, UUID(stream["seller"]["id"]))
    asked = await reminders.reminders_of(db(request), UUID(stream["id"]), me.user_id if me else None)
    stream["reminders"] = asked["reminders"]
    if me is not None:
        stream["reminded"] = asked["reminded"]
    return StreamDetailEnvelope.model_validate({"stream": stream})


@api.get("/api/streams/{id}/stats", auth="user", response=StreamStatsOut)
async def stream_stats(request: web.Request) -> StreamStatsOut:
    """A stream's audience and sales figures (the host, its shop or an admin)"""
    me = principal(request)
    stats = await streams.stream_stats(db(request), path_id(request), me.user_id, me.is_admin)
    return StreamStatsOut.model_validate(stats)


@api.post("/api/streams/{id}/moderators", auth="user", body=ModeratorIn, status=204)
async def add_moderator(request: web.Request, body: ModeratorIn) -> None:
    """Name a moderator of your stream (the host)"""
    stream_id = path_id(request)
    await streams.add_moderator(db(request), stream_id, principal(request).user_id, body.user_id)
    await request.app[keys.HUB].moderator_changed(stream_id, body.user_id, added=True)


@api.delete("/api/streams/{id}/moderators/{user_id}", auth="user", status=204)
async def remove_moderator(request: web.Request) -> None:
    """Remove a moderator of your stream (the host)"""
    stream_id, user_id = path_id(request), path_id(request, "user_id")
    await streams.remove_moderator(db(request), stream_id, principal(request).user_id, user_id)
    await request.app[keys.HUB].moderator_changed(stream_id, user_id, added=False)
