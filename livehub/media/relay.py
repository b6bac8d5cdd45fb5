"""Relays: how one publisher's track reaches every viewer of the stream on this node.

Two implementations of one small interface (`subscribe()` a track for a viewer's sender, `close()`):

- `EncodedSource` forwards the publisher's encoded frames (VP8, H.264, Opus) to every viewer as they
  arrive, SFU-style: no decoding, no re-encoding, one `av.Packet` per frame shared by all viewers.
  Guarantees: a viewer gets frames in order, and video starts at a keyframe; a viewer that falls
  `VIEWER_QUEUE` frames behind loses what it had queued and waits for the next keyframe. Keyframe
  requests (a new viewer, a viewer's PLI/FIR, a dropped backlog) go to the publisher as a PLI, at most
  one per `PLI_MIN_INTERVAL_S` per track (a request inside that window is sent when it ends).
  Every frame also goes to `recorder` when one is set (livehub/media/recording.py), viewers or not.
- `DecodedSource` is aiortc's MediaRelay (`buffered=False`): the track is decoded once and each viewer's
  sender encodes it again (about 10-12% of a core per VP8 viewer at 640x480). A blackhole keeps reading
  the track while no one watches, so decoded frames never pile up.
"""

import asyncio
import contextlib
import fractions
import logging
from collections import deque

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.contrib.media import MediaBlackhole, MediaRelay
from aiortc.mediastreams import MediaStreamError

from livehub.media import internals
from livehub.metrics import MEDIA_PACKETS
from livehub.tasks import Supervisor

log = logging.getLogger(__name__)

PLI_MIN_INTERVAL_S = 0.5
VIEWER_QUEUE = 60


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether an encoded video frame can be decoded on its own."""
    name = codec_name.upper()
    if name == "VP8":
        # RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame.
        return bool(data) and not data[0] & 0x01
    if name == "H264":
        # Annex B NAL units: an IDR slice (5) or a sequence parameter set (7) starts a decodable picture.
        start = data.find(b"\x00\x00\x01")
        while start != -1 and start + 3 < len(data):
            if data[start + 3] & 0x1F in (5, 7):
                return True
            start = data.find(b"\x00\x00\x01", start + 3)
        return False
    return True


class EncodedTrack(MediaStreamTrack):
    """One viewer's copy of a publisher track: yields `av.Packet`s, which the sender packs as they are."""

    def __init__(self, source: "EncodedSource"):
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._queue: deque[av.Packet | None] = deque()
        self._ready = asyncio.Event()
        self._waiting_for_keyframe = source.kind == "video"
        self._attached = False

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._attached:
            # Frames queued before the viewer's connection is up would be stale: start at the first read.
            self._attached = True
            self._source.attach(self)
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        packet = self._queue.popleft()
        if packet is None:
            self.stop()
            raise MediaStreamError
        return packet

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        if self._waiting_for_keyframe:
            if not keyframe:
                return
            self._waiting_for_keyframe = False
        if len(self._queue) >= VIEWER_QUEUE:
            self._queue.clear()
            if self.kind == "video":
                self._waiting_for_keyframe = True
                self._source.request_keyframe()
                return
        self._queue.append(packet)
        self._ready.set()

    def end(self) -> None:
        self._queue.append(None)
        self._ready.set()

    def stop(self) -> None:
        super().stop()
        self._source.detach(self)


class EncodedSource:
    """A publisher track's encoded frames, fanned out to viewers' EncodedTracks."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str, tasks: Supervisor, *, on_end=None):
        self.kind = kind
        self._receiver = receiver
        self._tasks = tasks
        self._viewers: set[EncodedTrack] = set()
        self._last_pli = float("-inf")
        self._pli_timer: asyncio.TimerHandle | None = None
        self._on_end = on_end
        self._closed = False
        self._pli_pending = False
        # Called with (kind, clock rate, data, RTP timestamp, keyframe) for every frame: the show's recording.
        self.recorder = None
        internals.tap_encoded_frames(receiver, self._on_frame, self._ended)

    def subscribe(self) -> EncodedTrack:
        return EncodedTrack(self)

    def attach(self, track: EncodedTrack) -> None:
        if self._closed:
            track.end()
            return
        self._viewers.add(track)
        if self.kind == "video":
            self.request_keyframe()

    def detach(self, track: EncodedTrack) -> None:
        self._viewers.discard(track)

    def _on_frame(self, codec, data: bytes, timestamp: int) -> None:
        if self._pli_pending:
            # Asked for before the publisher had sent anything lately (its SSRC was not known yet).
            self._send_pli()
        keyframe = self.kind != "video" or is_keyframe(codec.name, data)
        if self.recorder is not None:
            self.recorder(self.kind, codec.clockRate, data, timestamp, keyframe)
        if not self._viewers:
            return
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = fractions.Fraction(1, codec.clockRate)
        viewers = list(self._viewers)
        for track in viewers:
            track.push(packet, keyframe)
        MEDIA_PACKETS.inc(len(viewers))

    def _ended(self) -> None:
        if self._on_end is not None:
            self._on_end()

    def request_keyframe(self) -> None:
        if self._closed or self.kind != "video":
            return
        loop = asyncio.get_running_loop()
        wait = self._last_pli + PLI_MIN_INTERVAL_S - loop.time()
        if wait <= 0:
            self._send_pli()
        elif self._pli_timer is None:
            self._pli_timer = loop.call_later(wait, self._send_pli)

    def _send_pli(self) -> None:
        self._pli_timer = None
        if self._closed:
            return
        self._last_pli = asyncio.get_running_loop().time()
        send = internals.request_keyframe(self._receiver)
        self._pli_pending = send is None
        if send is not None:
            self._tasks.spawn(send, name="media-pli")

    async def close(self) -> None:
        self._closed = True
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        for track in list(self._viewers):
            track.end()
        self._viewers.clear()


class DecodedSource:
    """aiortc's MediaRelay over a publisher track, with a blackhole reading it while no one watches."""

    def __init__(self, track: MediaStreamTrack):
        self.kind = track.kind
        self._track = track
        self._relay = MediaRelay()
        self._sink = MediaBlackhole()
        self._sink.addTrack(self._relay.subscribe(track, buffered=False))
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self._sink.start()

    def subscribe(self) -> MediaStreamTrack:
        return self._relay.subscribe(self._track, buffered=False)

    def request_keyframe(self) -> None:
        """Each viewer's sender encodes for itself and makes its own keyframes."""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sink.stop()
