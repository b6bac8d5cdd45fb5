"""Replays: a recorded show's video, its timeline, the lists of recent replays, and discarding one
(docs/REPLAYS.md). The video's bytes are served by livehub/api/replay_video.py."""

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api.catalog import SellerRef
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.errors import NotFound
from livehub.media.backends import room_name
from livehub.mediastore import STORE
from livehub.settings import Settings
from livehub.shop import replays

api = Api("replays")

# An opaque cursor: what a page's next_cursor was (URL-safe base64).
Cursor = Annotated[str, Field(min_length=1, max_length=400, pattern=r"^[A-Za-z0-9_-]+$")]


class ReplayProductOut(Out):
    id: UUID
    title: str
    position: int
    price_cents: int | None = Field(description="the regular catalog price (the cheapest variant's), never a show's")
    image_url: str | None = Field(description="the product's first image, or null")


class ReplayOut(Out):
    stream_id: UUID
    title: str
    seller: SellerRef
    unlisted: bool = Field(description="a practice show's replay: reached by its link, never listed")
    video_url: str = Field(description="the video (with the LiveKit backend, LiveKit Egress's file)")
    content_type: Literal["video/webm", "video/mp4"]
    duration_s: float | None = Field(description="seconds; null with the LiveKit backend")
    started_at: datetime = Field(description="the wall-clock time of the video's second 0")
    timeline_url: str
    products: list[ReplayProductOut] = Field(description="the show's line-up, in order, at regular prices")


class UserRef(Out):
    id: UUID
    name: str


class _Event(Out):
    id: str = Field(description="unique within the timeline")
    at: datetime
    offset_s: float = Field(description="seconds into the video (at - started_at), never below 0")


class ChatEvent(_Event):
    kind: Literal["chat"]
    user: UserRef
    text: str


class PinEvent(_Event):
    kind: Literal["pin"]
    product_id: UUID | None = Field(description="the product pinned from then on; null: nothing pinned")


class FlashSaleStartedEvent(_Event):
    kind: Literal["flash_sale_started"]
    sale_id: UUID
    product_id: UUID
    variant_id: UUID
    price_cents: int
    quantity: int


class FlashSaleEndedEvent(_Event):
    kind: Literal["flash_sale_ended"]
    sale_id: UUID
    reason: Literal["sold_out", "time", "host", "stream_ended"] | None
    sold: int


class AuctionStartedEvent(_Event):
    kind: Literal["auction_started"]
    auction_id: UUID
    product_id: UUID
    variant_id: UUID
    start_cents: int


class AuctionEndedEvent(_Event):
    kind: Literal["auction_ended"]
    auction_id: UUID
    product_id: UUID
    reason: str | None
    winning_bid_cents: int | None = Field(description="the winning bid; null when nobody won")
    winner: UserRef | None


class GiveawayStartedEvent(_Event):
    kind: Literal["giveaway_started"]
    giveaway_id: UUID
    product_id: UUID


class GiveawayEndedEvent(_Event):
    kind: Literal["giveaway_ended"]
    giveaway_id: UUID
    product_id: UUID
    winner: UserRef | None


EventOut = Annotated[
    ChatEvent
    | PinEvent
    | FlashSaleStartedEvent
    | FlashSaleEndedEvent
    | AuctionStartedEvent
    | AuctionEndedEvent
    | GiveawayStartedEvent
    | GiveawayEndedEvent,
    Field(discriminator="kind"),
]


class TimelineOut(Out):
    items: list[EventOut]
    next_cursor: str | None


class TimelineQuery(Model):
    limit: Annotated[int, Field(ge=1, le=500)] = 200
    cursor: Cursor | None = None


class ReplayItemOut(Out):
    stream_id: UUID
    title: str
    seller: SellerRef
    started_at: datetime
    duration_s: float | None
    replay_url: str = Field(description="the replay's page")


class ReplayPage(Out):
    items: list[ReplayItemOut]
    next_cursor: str | None


class ReplaysQuery(Model):
    seller_id: UUID | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Cursor | None = None


def _template(settings: Settings) -> str | None:
    """LIVEHUB_REPLAY_URL_TEMPLATE when it applies: with the LiveKit backend, LiveKit Egress records."""
    return settings.replay_url_template if settings.media_backend == "livekit" else None


def _settings(request: web.Request) -> Settings:
    return request.app[keys.SETTINGS]


def _video(settings: Settings, stream_id: UUID, replay: dict[str, Any]) -> tuple[str, str]:
    """The replay's video URL and content type."""
    if replay["media_key"] is not None:
        return f"/api/streams/{stream_id}/replay/video", replay["content_type"]
    template = _template(settings)
    assert template is not None, "a replay without a file exists only with the template"
    # replace, not format: braces elsewhere in a URL are not placeholders.
    url = template.replace("{room}", room_name(stream_id)).replace("{stream_id}", str(stream_id))
    kind = "video/webm" if urlsplit(url).path.lower().endswith(".webm") else "video/mp4"
    return url, kind


@api.get("/api/streams/{id}/replay", response=ReplayOut, errors={404: "no such stream, or it has no replay"})
async def get_replay(request: web.Request) -> ReplayOut:
    """A show's replay: its video, where its timeline is, and its line-up at regular prices"""
    stream_id = path_id(request)
    settings = _settings(request)
    replay = await replays.get_replay(db(request), stream_id, template=_template(settings) is not None)
    if replay is None:
        raise NotFound("this stream has no replay")
    video_url, content_type = _video(settings, stream_id, replay)
    return ReplayOut.model_validate(
        {
            **replay,
            "video_url": video_url,
            "content_type": content_type,
            "timeline_url": f"/api/streams/{stream_id}/replay/timeline",
        }
    )


@api.get(
    "/api/streams/{id}/replay/timeline",
    query=TimelineQuery,
    response=TimelineOut,
    errors={404: "no such stream, or it has no replay"},
)
async def replay_timeline(request: web.Request, query: TimelineQuery) -> TimelineOut:
    """A replay's timeline: the show's chat, pins, flash sales, auctions and giveaways in time order, with
    their offsets into the video"""
    page = await replays.timeline(
        db(request),
        path_id(request),
        limit=query.limit,
        cursor=query.cursor,
        template=_template(_settings(request)) is not None,
    )
    if page is None:
        raise NotFound("this stream has no replay")
    return TimelineOut.model_validate(page)


@api.get("/api/replays", query=ReplaysQuery, response=ReplayPage)
async def list_replays(request: web.Request, query: ReplaysQuery) -> ReplayPage:
    """Recent replays of listed shows, newest first; of one shop with seller_id"""
    page = await replays.list_replays(
        db(request),
        seller_id=query.seller_id,
        limit=query.limit,
        cursor=query.cursor,
        template=_template(_settings(request)) is not None,
    )
    items = [{**r, "replay_url": f"/replay/{r['stream_id']}"} for r in page["items"]]
    return ReplayPage.model_validate({"items": items, "next_cursor": page["next_cursor"]})


@api.delete("/api/streams/{id}/replay", auth="user", status=204, errors={404: "no such stream, or it has no replay"})
async def discard_replay(request: web.Request) -> None:
    """Discard a show's replay (the host, the shop or an admin); with LiveKit its file stays in LiveKit's storage

    With the aiortc backend the video file is deleted; with the LiveKit backend the replay stops being offered
    and LiveKit Egress's file stays where it is (docs/REPLAYS.md)."""
    await replays.discard(
        db(request),
        request.app[STORE],
        path_id(request),
        principal(request).user_id,
        template=_template(_settings(request)) is not None,
    )
