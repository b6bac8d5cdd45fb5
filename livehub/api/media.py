"""Media signalling: publish a stream's camera and microphone, watch it, and how (GET .../media).

The aiortc backend answers SDP offers here (one round trip, candidates included); with the livekit
backend GET .../media hands out a LiveKit token instead and the SDP routes answer 409.
"""

import secrets
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field

from livehub import keys
from livehub.api.routing import PRINCIPAL, Api, Model, Out, db, path_id, principal
from livehub.errors import Conflict, Forbidden, NotFound
from livehub.http import client_address
from livehub.media.backends import media_info
from livehub.shop import streams

if TYPE_CHECKING:
    from livehub.media.sessions import MediaNode

api = Api("media")

Sdp = Annotated[str, Field(min_length=1, max_length=60_000)]


class OfferIn(Model):
    sdp: Sdp
    type: Literal["offer"]


class AnswerOut(Out):
    sdp: str
    type: Literal["answer"]
    session_id: str = Field(description="for heartbeats, and for DELETE of a viewer's session")


class MediaOut(Out):
    backend: Literal["aiortc", "livekit"]
    can_publish: bool = Field(description="whether the caller is the host")
    relay: Literal["encoded", "decoded"] | None = Field(None, description="aiortc: how this node relays")
    ice_servers: list[dict[str, Any]] | None = Field(None, description="aiortc: STUN/TURN servers to use")
    heartbeat_s: float | None = Field(
        None, description="aiortc: POST .../media/{session_id}/heartbeat this often while no media flows"
    )
    url: str | None = Field(None, description="livekit: the server to connect to")
    room: str | None = Field(None, description="livekit: the stream's room")
    token: str | None = Field(None, description="livekit: an access token for the caller")


def _node(request: web.Request) -> "MediaNode":
    node = request.app.get(keys.MEDIA)
    if node is None:
        raise Conflict("this deployment uses the livekit media backend: see GET /api/streams/{id}/media")
    return node


def _is_host(stream: dict, user_id: UUID) -> bool:
    """The stream's host: its shop's own user, or a guest host once they accepted (storage/functions/hosts.sql)."""
    return str(stream["host_id"]) == str(user_id) and stream.get("host_status", "accepted") == "accepted"


async def _stream(request: web.Request, stream_id: UUID) -> dict:
    stream = await streams.get_stream(db(request), stream_id)
    if stream is None:
        raise NotFound("stream not found")
    return stream


@api.get("/api/streams/{id}/media", auth="optional", response=MediaOut)
async def media_options(request: web.Request) -> MediaOut:
    """How to publish or watch the stream's video: the media backend and what it needs"""
    stream_id = path_id(request)
    stream = await _stream(request, stream_id)
    me = request.get(PRINCIPAL)
    if me is not None and await streams.is_banned(db(request), stream_id, me.user_id):
        raise Forbidden("banned from this seller's streams")
    host = me is not None and _is_host(stream, me.user_id)
    identity = str(me.user_id) if me is not None else f"anonymous-{secrets.token_hex(8)}"
    node = request.app.get(keys.MEDIA)
    relay = node.relay if node is not None else None
    info = media_info(request.app[keys.SETTINGS], stream_id, identity=identity, name=None, host=host, relay=relay)
    return MediaOut.model_validate(info)


@api.post("/api/streams/{id}/publish", auth="user", body=OfferIn, response=AnswerOut)
async def publish(request: web.Request, body: OfferIn) -> AnswerOut:
    """Publish the stream's camera and microphone (the host, while live): an SDP offer in, the answer out"""
    stream_id = path_id(request)
    node = _node(request)
    stream = await _stream(request, stream_id)
    if not _is_host(stream, principal(request).user_id):
        raise Forbidden("only the stream's host can publish")
    if stream["status"] != "live":
        raise Conflict(f"the stream is {stream['status']}: go live first", {"status": stream["status"]})
    answer, session_id = await node.publish(stream_id, body.sdp)
    return AnswerOut(sdp=answer.sdp, type="answer", session_id=session_id)


@api.delete("/api/streams/{id}/publish", auth="user", status=204)
async def unpublish(request: web.Request) -> None:
    """Stop publishing (the host); viewers' connections close"""
    stream_id = path_id(request)
    node = _node(request)
    stream = await _stream(request, stream_id)
    if not _is_host(stream, principal(request).user_id):
        raise Forbidden("only the stream's host can stop publishing")
    await node.unpublish(stream_id)


@api.post("/api/streams/{id}/watch", auth="optional", body=OfferIn, response=AnswerOut)
async def watch(request: web.Request, body: OfferIn) -> AnswerOut:
    """Watch the stream (anyone not banned, signed in or not): an SDP offer in, the answer out"""
    stream_id = path_id(request)
    node = _node(request)
    await _stream(request, stream_id)
    me = request.get(PRINCIPAL)
    if me is not None and await streams.is_banned(db(request), stream_id, me.user_id):
        raise Forbidden("banned from this seller's streams")
    answer, session_id = await node.watch(
        stream_id, body.sdp, client_address(request), me.user_id if me is not None else None
    )
    return AnswerOut(sdp=answer.sdp, type="answer", session_id=session_id)


@api.delete("/api/streams/{id}/watch/{session_id}", status=204)
async def stop_watching(request: web.Request) -> None:
    """Stop watching (whoever holds the session id)"""
    await _node(request).leave(path_id(request), request.match_info["session_id"])


@api.post("/api/streams/{id}/media/{session_id}/heartbeat", status=204)
async def heartbeat(request: web.Request) -> None:
    """Keep a media session open while no media flows (a session silent for the timeout is closed)"""
    _node(request).heartbeat(path_id(request), request.match_info["session_id"])
