"""Media backends: how a client publishes or watches a stream, as `GET /api/streams/{id}/media` tells it.

- `aiortc` (default): this node relays; the client POSTs SDP offers to `/publish` and `/watch` and
  uses the ICE servers given here.
- `livekit`: a LiveKit server relays (it scales out over many machines); the client joins the stream's
  room (`stream-<id>`) at `url` with `token`. The host's token may publish; everyone else's may only
  subscribe (publishing explicitly denied).
"""

from datetime import timedelta
from uuid import UUID

from livehub.errors import Unavailable
from livehub.settings import Settings


def room_name(stream_id: UUID) -> str:
    return f"stream-{stream_id}"


def livekit_token(settings: Settings, stream_id: UUID, identity: str, name: str | None, *, host: bool) -> str:
    """A LiveKit access token for the stream's room: publish for the host, subscribe only for others."""
    if not settings.livekit_api_key or not settings.livekit_api_secret:
        raise Unavailable("the LiveKit backend needs LIVEHUB_LIVEKIT_API_KEY and LIVEHUB_LIVEKIT_API_SECRET")
    # Imported here: it takes most of a second, which every node would otherwise pay at start.
    from livekit import api as livekit

    grants = livekit.VideoGrants(
        room_join=True,
        room=room_name(stream_id),
        can_subscribe=True,
        can_publish=host,
        can_publish_data=host,
        can_publish_sources=["camera", "microphone"] if host else [],
    )
    token = livekit.AccessToken(settings.livekit_api_key, settings.livekit_api_secret)
    token = token.with_identity(identity).with_grants(grants).with_ttl(timedelta(seconds=settings.livekit_token_ttl_s))
    if name:
        token = token.with_name(name)
    return token.to_jwt()


def media_info(
    settings: Settings, stream_id: UUID, *, identity: str, name: str | None, host: bool, relay: str | None
) -> dict:
    """What `GET /api/streams/{id}/media` answers for this caller; `relay` is the aiortc node's mode."""
    if settings.media_backend == "livekit":
        return {
            "backend": "livekit",
            "url": settings.livekit_url,
            "room": room_name(stream_id),
            "token": livekit_token(settings, stream_id, identity, name, host=host),
            "can_publish": host,
        }
    return {
        "backend": "aiortc",
        "relay": relay,
        "ice_servers": settings.media_ice_servers,
        "can_publish": host,
        "heartbeat_s": settings.media_session_timeout_s / 3,
    }
