"""This node's media sessions: one publisher per stream, the viewers it relays to, and their lifetimes.

Signalling is one HTTP round trip each way: the client POSTs an SDP offer and gets an answer that
already carries the node's ICE candidates (gathered before answering; no trickle). A session ends on
DELETE, when its peer connection fails or closes, when nothing (no packet, no heartbeat) has come from
it for `media_session_timeout_s` (a closed tab is noticed in seconds, not at ICE consent expiry), when
its connection has not come up `media_ice_timeout_s` after the offer (heartbeats do not keep a session
that never connected), when its stream ends, or for viewers when the publisher leaves (they watch again
once the host is back). One client address holds at most `media_watch_per_address` watch sessions.

Recording (livehub/media/recording.py, docs/REPLAYS.md): each publication of a stream to be recorded writes
a segment; the stream's end (here, or noticed by the reaper when another node ended it, or at start for
segments a previous run left) joins them into the replay.
"""

import asyncio
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from livehub.errors import Conflict, NotFound, RateLimited, Unavailable, ValidationFailed
from livehub.media import internals
from livehub.media.offers import check_offer
from livehub.media.recording import Joined, PublicationRecorder, Recordings, replay_key
from livehub.media.relay import DecodedSource, EncodedSource
from livehub.settings import Settings
from livehub.shop import recordings as recorded
from livehub.tasks import Supervisor, cancel

log = logging.getLogger(__name__)

# Video codecs in order of preference: VP8 by default, H.264 for Safari.
VIDEO_CODECS = ("video/VP8", "video/H264")
# How often the reaper asks the database what other nodes decided (streams ended, viewers banned).
STREAM_CHECK_S = 5.0


@dataclass(eq=False)
class Session:
    id: str
    stream_id: UUID
    role: str  # "publisher" | "viewer"
    pc: RTCPeerConnection
    last_packet: object = None  # () -> monotonic time of the last packet received
    last_heartbeat: float = field(default_factory=time.monotonic)
    tracks: list = field(default_factory=list)
    closed: bool = False
    address: str | None = None  # the watching client's address
    user_id: UUID | None = None  # the signed-in viewer, whose shop may ban them while they watch
    created: float = field(default_factory=time.monotonic)
    connected: bool = False  # the peer connection came up (ICE and DTLS) at least once

    heartbeats: bool = False

    def idle_for(self, now: float) -> float:
        if self.last_packet is None and not self.heartbeats:
            # Packets cannot be seen (the aiortc internals check failed) and the client does not
            # heartbeat: leave it to the connection state (ICE consent, about 30 s).
            return 0.0
        seen = max(self.last_heartbeat, self.last_packet() if self.last_packet else 0.0)
        return now - seen


@dataclass(eq=False)
class Publication:
    session: Session
    sources: dict = field(default_factory=dict)  # kind -> EncodedSource | DecodedSource
    codecs: dict = field(default_factory=dict)  # kind -> RTCRtpCodecCapability the publisher sends
    viewers: set = field(default_factory=set)
    recorder: PublicationRecorder | None = None


def relay_mode(settings: Settings) -> str:
    """The relay this node uses: "encoded" when asked for and the installed aiortc supports it."""
    if settings.media_relay == "encoded" and internals.AVAILABLE:
        return "encoded"
    return "decoded"


def ice_servers(settings: Settings) -> list[RTCIceServer]:
    return [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in settings.media_ice_servers
    ]


def _capabilities(kind: str, mime_types: tuple[str, ...]) -> list[RTCRtpCodecCapability]:
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    ordered = [c for mime in mime_types for c in codecs if c.mimeType.lower() == mime.lower()]
    return ordered + [c for c in codecs if c.mimeType.lower().endswith("/rtx")]


class MediaNode:
    """Publishers and viewers on this node (the aiortc backend)."""

    def __init__(self, settings: Settings, tasks: Supervisor, pool: asyncpg.Pool | None = None, store=None):
        self._settings = settings
        self._tasks = tasks
        self._pool = pool
        self._store = store  # the media store finished recordings go to (livehub/mediastore.py)
        self.recordings = Recordings(settings.data_dir / "recordings")
        self.relay = relay_mode(settings)
        self.host_addresses = list(settings.media_host_addresses) or None
        self.publications: dict[UUID, Publication] = {}
        self.sessions: dict[str, Session] = {}
        self._reaper: asyncio.Task | None = None
        self._streams_checked = 0.0
        if settings.media_relay == "encoded" and self.relay != "encoded":
            log.warning("encoded media relay unavailable (%s): using aiortc's MediaRelay", internals.UNAVAILABLE_REASON)

    @property
    def viewer_count(self) -> int:
        return sum(len(p.viewers) for p in self.publications.values())

    async def start(self) -> None:
        s = self._settings
        interval = min(1.0, s.media_session_timeout_s / 4, s.media_ice_timeout_s / 4)
        self._reaper = self._tasks.every(interval, self._reap, name="media-reaper")

    async def close(self) -> None:
        await cancel(self._reaper)
        await asyncio.gather(*(self.end_session(s) for s in list(self.sessions.values())))

    # -- peers -------------------------------------------------------------------------------------

    def _peer(self) -> RTCPeerConnection:
        return RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(self._settings)))

    async def _answer(self, session: Session, sdp: str) -> RTCSessionDescription:
        """Apply the offer (already checked by `check_offer`), gather candidates and return the answer;
        ValidationFailed if aiortc still cannot use it."""
        pc = session.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if self._settings.media_host_addresses:
                internals.restrict_host_addresses(pc, self._settings.media_host_addresses)
            session.last_packet = internals.track_activity(pc) if internals.AVAILABLE else None
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await self.end_session(session)
            # aiortc's own words ("None is not in list") say nothing to the client: they stay in the log.
            log.info("refused an SDP offer for stream %s: %r", session.stream_id, exc)
            raise ValidationFailed(
                "the SDP offer could not be used: check it offers audio or video this node can send or "
                "receive (VP8 or H.264 video, Opus audio)",
                {"field": "sdp"},
            ) from None
        return pc.localDescription

    def _new_session(self, stream_id: UUID, role: str, address: str | None = None) -> Session:
        session = Session(secrets.token_urlsafe(16), stream_id, role, self._peer(), address=address)
        self.sessions[session.id] = session

        @session.pc.on("connectionstatechange")
        def on_state() -> None:
            if session.pc.connectionState == "connected":
                session.connected = True
            elif session.pc.connectionState in ("failed", "closed"):
                self._end_soon(session)

        return session

    def _end_soon(self, session: Session) -> None:
        if session.closed:
            return
        self._tasks.spawn(self.end_session(session), name=f"media-end-{session.id}")

    # -- publishing --------------------------------------------------------------------------------

    async def publish(self, stream_id: UUID, sdp: str) -> tuple[RTCSessionDescription, str]:
        """Take the host's offer; a new publication replaces the stream's previous one (a reloaded tab)."""
        # Checked before the running publication is replaced: a bad offer leaves it as it is.
        check_offer(sdp, kinds=("audio", "video"), sending=True)
        record = await self._to_record(stream_id)
        if (old := self.publications.get(stream_id)) is not None:
            await self.end_session(old.session)
        session = self._new_session(stream_id, "publisher")
        publication = Publication(session)
        encoded = self.relay == "encoded"

        @session.pc.on("track")
        def on_track(track) -> None:
            if track.kind in publication.sources:
                return
            if encoded:
                receiver = next(r for r in session.pc.getReceivers() if r.track is track)
                publication.sources[track.kind] = EncodedSource(
                    receiver, track.kind, self._tasks, on_end=lambda: self._end_soon(session)
                )
            else:
                publication.sources[track.kind] = DecodedSource(track)
                track.on("ended", lambda: self._end_soon(session))

        answer = await self._answer(session, sdp)
        if not publication.sources:
            await self.end_session(session)
            raise ValidationFailed("the offer sends no audio or video")
        for media in SessionDescription.parse(answer.sdp).media:
            if media.kind in publication.sources and media.rtp.codecs:
                c = media.rtp.codecs[0]
                publication.codecs[media.kind] = RTCRtpCodecCapability(
                    mimeType=c.mimeType, clockRate=c.clockRate, channels=c.channels, parameters=dict(c.parameters)
                )
        for source in publication.sources.values():
            if isinstance(source, DecodedSource):
                await source.start()
        if (other := self.publications.get(stream_id)) is not None:
            # Another publish for the stream finished while this one negotiated: the last one wins.
            await self.end_session(other.session)
        if session.closed:
            raise Conflict("the publishing session closed while it was being set up")
        self.publications[stream_id] = publication
        codecs = [c.mimeType for c in publication.codecs.values()]
        log.info("stream %s: publishing %s (%s relay)", stream_id, codecs, self.relay)
        if record:
            self._record(stream_id, publication)
        return answer, session.id

    async def _to_record(self, stream_id: UUID) -> bool:
        if not self._settings.record_shows or self._pool is None or self._store is None:
            return False
        if self.relay != "encoded":
            log.warning("stream %s: not recorded (recording needs the encoded relay)", stream_id)
            return False
        return await recorded.to_record(self._pool, stream_id)

    def _record(self, stream_id: UUID, publication: Publication) -> None:
        video = publication.sources.get("video")
        codecs = {kind: codec.mimeType for kind, codec in publication.codecs.items()}
        request_keyframe = video.request_keyframe if video is not None else lambda: None
        try:
            recorder = self.recordings.start(stream_id, codecs, request_keyframe)
        except OSError:
            log.exception("stream %s: cannot record", stream_id)
            return
        publication.recorder = recorder
        for source in publication.sources.values():
            source.recorder = recorder.frame

    async def unpublish(self, stream_id: UUID) -> None:
        if (publication := self.publications.get(stream_id)) is None:
            raise NotFound("nothing is being published for this stream on this node")
        await self.end_session(publication.session)

    async def stream_ended(self, stream_id: UUID) -> None:
        """The stream ended: its publisher and viewers go, and its recording is finished (in the background:
        joining a long show's segments takes a while)."""
        if (publication := self.publications.get(stream_id)) is not None:
            await self.end_session(publication.session)
        self.finish_recording(stream_id)

    def finish_recording(self, stream_id: UUID) -> None:
        if self._store is not None and self._pool is not None and self.recordings.directory(stream_id).exists():
            self._tasks.spawn(self.recordings.finalize(stream_id, self._save_replay), name=f"media-replay-{stream_id}")

    async def _save_replay(self, stream_id: UUID, joined: Joined) -> None:
        if not await recorded.wants_replay(self._pool, stream_id):
            log.info("stream %s: its replay is not wanted (opted out, discarded or made); segments dropped", stream_id)
            return
        key = replay_key(stream_id, joined.path.suffix[1:])
        size = (await asyncio.to_thread(joined.path.stat)).st_size
        await self._store.put_file(key, joined.path, joined.content_type)
        saved = await recorded.save_replay(
            self._pool,
            stream_id,
            media_key=key,
            content_type=joined.content_type,
            duration_s=joined.duration_s,
            size_bytes=size,
            started_at=joined.started_at,
        )
        if saved:
            log.info("stream %s: replay stored (%.1f s, %d bytes)", stream_id, joined.duration_s, size)
        else:
            await self._store.delete(key)

    # -- watching ----------------------------------------------------------------------------------

    async def watch(
        self, stream_id: UUID, sdp: str, address: str | None = None, user_id: UUID | None = None
    ) -> tuple[RTCSessionDescription, str]:
        """A viewer's offer in, the answer and session id out. `address`: the client's, for the limit per
        address; `user_id`: the signed-in viewer's, whose session ends if the stream's shop bans them."""
        publication = self.publications.get(stream_id)
        if publication is None:
            raise Conflict("the host is not publishing yet; try again shortly")
        if self.relay == "encoded":
            needed = {kind: [codec.mimeType] for kind, codec in publication.codecs.items()}
        else:
            needed = {"video": list(VIDEO_CODECS)}
        check_offer(sdp, kinds=publication.sources.keys(), sending=False, codecs=needed)
        limit = self._settings.media_watch_per_address
        if address is not None and sum(s.address == address for s in self.sessions.values()) >= limit:
            raise RateLimited(
                f"this address already watches in {limit} sessions on this node; stop one to start another",
                {"max_per_address": limit},
                # A tab that went away without saying so frees its slot within the session timeout.
                retry_after_s=math.ceil(self._settings.media_session_timeout_s),
            )
        if self.viewer_count >= self._settings.media_max_viewers:
            raise Unavailable(
                f"this node relays to at most {self._settings.media_max_viewers} viewers; "
                "run with LIVEHUB_MEDIA_BACKEND=livekit to scale out",
                {"max_viewers": self._settings.media_max_viewers, "scale_out_backend": "livekit"},
            )
        session = self._new_session(stream_id, "viewer", address)
        session.user_id = user_id
        publication.viewers.add(session)
        for kind, source in publication.sources.items():
            track = source.subscribe()
            session.tracks.append(track)
            transceiver = session.pc.addTransceiver(track, direction="sendonly")
            if self.relay == "encoded" and kind in publication.codecs:
                rtx = [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower().endswith("/rtx")]
                transceiver.setCodecPreferences([publication.codecs[kind], *rtx])
                internals.on_keyframe_request(transceiver.sender, source.request_keyframe)
            elif kind == "video":
                transceiver.setCodecPreferences(_capabilities(kind, VIDEO_CODECS))
        answer = await self._answer(session, sdp)
        return answer, session.id

    async def leave(self, stream_id: UUID, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.stream_id != stream_id or session.role != "viewer":
            raise NotFound("no such media session")
        await self.end_session(session)

    def heartbeat(self, stream_id: UUID, session_id: str) -> None:
        session = self.sessions.get(session_id)
        if session is None or session.stream_id != stream_id:
            raise NotFound("no such media session")
        session.last_heartbeat = time.monotonic()
        session.heartbeats = True

    # -- ending ------------------------------------------------------------------------------------

    async def end_session(self, session: Session) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        publication = self.publications.get(session.stream_id)
        if session.role == "publisher":
            if publication is not None and publication.session is session:
                del self.publications[session.stream_id]
                for source in publication.sources.values():
                    await source.close()
                if publication.recorder is not None:
                    await self.recordings.stop(session.stream_id, publication.recorder)
                await asyncio.gather(*(self.end_session(v) for v in list(publication.viewers)))
            await session.pc.close()
        else:
            if publication is not None:
                publication.viewers.discard(session)
            for track in session.tracks:
                track.stop()
            await session.pc.close()

    async def _reap(self) -> None:
        """Close sessions gone quiet; end the publications of streams ended through another node."""
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if session.idle_for(now) > self._settings.media_session_timeout_s:
                log.info("stream %s: %s session gone quiet, closing it", session.stream_id, session.role)
                await self.end_session(session)
            elif not session.connected and now - session.created > self._settings.media_ice_timeout_s:
                # Heartbeats alone would hold a slot forever for a peer that never connects.
                log.info("stream %s: %s session never connected, closing it", session.stream_id, session.role)
                await self.end_session(session)
        if self._pool is not None and now - self._streams_checked > STREAM_CHECK_S:
            self._streams_checked = now
            await self._check_streams()
            await self._check_recordings()

    async def _check_recordings(self) -> None:
        """Segments on disk with no publication writing: finished once their stream has ended (a publisher
        that left before the end, a stream another node ended, a previous run's leftovers)."""
        if self._store is None or not (waiting := await asyncio.to_thread(self.recordings.waiting)):
            return
        for stream_id in await recorded.ended(self._pool, waiting):
            self.finish_recording(stream_id)

    async def _check_streams(self) -> None:
        """What other nodes decided: streams ended there, and viewers their shops banned since they started
        watching (the same rule the purchases ask, `banned_from_stream`)."""
        if not self.publications:
            return
        ended = await self._pool.fetch(
            "SELECT id FROM streams WHERE id = ANY($1::uuid[]) AND status <> 'live'", list(self.publications)
        )
        for row in ended:
            await self.stream_ended(row["id"])
        signed_in = [s for s in self.sessions.values() if s.user_id is not None]
        if not signed_in:
            return
        banned = await self._pool.fetch(
            """SELECT w.id FROM unnest($1::text[], $2::uuid[], $3::uuid[]) AS w (id, stream_id, user_id)
                WHERE banned_from_stream(w.stream_id, w.user_id)""",
            [s.id for s in signed_in],
            [s.stream_id for s in signed_in],
            [s.user_id for s in signed_in],
        )
        for row in banned:
            if (session := self.sessions.get(row["id"])) is not None:
                log.info("stream %s: closing a banned viewer's session", session.stream_id)
                await self.end_session(session)
