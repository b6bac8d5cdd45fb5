"""A camera without a camera: generated video for the demo stream, the tests and the benchmark.

`PatternTrack` draws moving colour bars and a clock (HH:MM:SS.t) at a steady frame rate; with `colour`
it draws a plain frame of that colour instead (the tests check what viewers receive). `publish()` is
the same path a browser takes: a real RTCPeerConnection whose offer goes to the signalling function.
"""

import asyncio
import fractions
import time
from collections.abc import Awaitable, Callable

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame

from livehub.media import internals

VIDEO_CLOCK = 90_000

# Seven-segment digits: segments a b c d e f g, lit or not.
_SEGMENTS = {
    "0": "1111110",
    "1": "0110000",
    "2": "1101101",
    "3": "1111001",
    "4": "0110011",
    "5": "1011011",
    "6": "1011111",
    "7": "1110000",
    "8": "1111111",
    "9": "1111011",
}
_BARS = np.array(
    [[235, 235, 235], [235, 235, 16], [16, 235, 235], [16, 235, 16], [235, 16, 235], [235, 16, 16], [16, 16, 235]],
    dtype=np.uint8,
)


def _draw_digit(img: np.ndarray, ch: str, x: int, y: int, s: int) -> None:
    """A digit `s` pixels wide and 2s tall at (x, y), or a colon / dot."""
    t = max(2, s // 5)
    white = 255
    if ch == ":":
        img[y + s // 2 : y + s // 2 + t, x + s // 2 - t // 2 : x + s // 2 + t // 2 + 1] = white
        img[y + 3 * s // 2 : y + 3 * s // 2 + t, x + s // 2 - t // 2 : x + s // 2 + t // 2 + 1] = white
        return
    if ch == ".":
        img[y + 2 * s - t : y + 2 * s, x + s // 2 - t // 2 : x + s // 2 + t // 2 + 1] = white
        return
    a, b, c, d, e, f, g = (bit == "1" for bit in _SEGMENTS[ch])
    if a:
        img[y : y + t, x : x + s] = white
    if b:
        img[y : y + s, x + s - t : x + s] = white
    if c:
        img[y + s : y + 2 * s, x + s - t : x + s] = white
    if d:
        img[y + 2 * s - t : y + 2 * s, x : x + s] = white
    if e:
        img[y + s : y + 2 * s, x : x + t] = white
    if f:
        img[y : y + s, x : x + t] = white
    if g:
        img[y + s - t // 2 : y + s + t - t // 2, x : x + s] = white


class PatternTrack(VideoStreamTrack):
    """Generated video: moving colour bars with a clock, or one plain colour (RGB) when `colour` is given."""

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        colour: tuple[int, int, int] | None = None,
        wanted: Callable[[], bool] | None = None,
    ):
        super().__init__()
        self.width, self.height, self.fps, self.colour = width, height, fps, colour
        # While `wanted()` is false no frames are made (and none encoded): the demo idles at no cost.
        self._wanted = wanted
        self._start: float | None = None
        self._count = 0
        self._plain = None
        if colour is not None:
            self._plain = np.empty((height, width, 3), dtype=np.uint8)
            self._plain[:] = colour

    async def recv(self) -> VideoFrame:
        if self._wanted is not None and not self._wanted():
            while not self._wanted():
                await asyncio.sleep(0.1)
            self._start = None
        if self._start is None:
            self._start = time.monotonic() - self._count / self.fps
        self._count += 1
        due = self._start + self._count / self.fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        image = self._plain if self._plain is not None else self._pattern()
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = int(self._count * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame

    def _pattern(self) -> np.ndarray:
        h, w = self.height, self.width
        shift = (self._count * 4) % w
        columns = ((np.arange(w) + shift) * len(_BARS) // w) % len(_BARS)
        img = np.ascontiguousarray(np.broadcast_to(_BARS[columns], (h, w, 3)))
        band_y = int(h * 0.62)
        img[band_y:h] = 24
        now = time.time()
        text = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 10) % 10}"
        s = max(8, w // 20)
        x0 = (w - len(text) * (s + s // 3)) // 2
        y0 = band_y + (h - band_y - 2 * s) // 2
        for i, ch in enumerate(text):
            _draw_digit(img, ch, x0 + i * (s + s // 3), y0, s)
        return img


async def publish(
    track,
    post_offer: Callable[[str], Awaitable[dict]],
    *,
    host_addresses: list[str] | None = None,
    codec: str | None = None,
) -> RTCPeerConnection:
    """Publish `track` the way a browser does: an offer to `post_offer(sdp)` (which returns the
    `{sdp, type}` answer), offering only `codec` (e.g. "video/H264") when given. Returns the
    connected-to-be peer connection; close it to stop."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(track, direction="sendonly")
    if codec is not None:
        codecs = RTCRtpSender.getCapabilities(track.kind).codecs
        transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == codec.lower()])
    if host_addresses:
        internals.restrict_host_addresses(pc, host_addresses)
    try:
        await pc.setLocalDescription(await pc.createOffer())
        answer = await post_offer(pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    except BaseException:
        await pc.close()
        raise
    return pc


async def keep_publishing(node, find_stream: Callable[[], Awaitable], *, host_addresses: list[str] | None = None):
    """Publish a PatternTrack into the stream `find_stream()` names (None: no stream now), through the
    node's own signalling function, for as long as this runs, drawing frames only while someone watches.
    A host who publishes takes over; the pattern comes back when the stream has no publisher again."""
    pc: RTCPeerConnection | None = None
    try:
        while True:
            stream_id = await find_stream()
            if stream_id is not None and stream_id not in node.publications:
                if pc is not None:
                    await pc.close()

                async def post_offer(sdp: str, stream_id=stream_id) -> dict:
                    answer, _ = await node.publish(stream_id, sdp)
                    return {"sdp": answer.sdp, "type": answer.type}

                def wanted(stream_id=stream_id) -> bool:
                    publication = node.publications.get(stream_id)
                    return publication is not None and bool(publication.viewers)

                pc = await publish(PatternTrack(wanted=wanted), post_offer, host_addresses=host_addresses)
            await asyncio.sleep(2.0)
    finally:
        if pc is not None:
            await pc.close()
