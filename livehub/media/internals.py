"""Every use of aiortc's (and aioice's) private parts, in one place, for one pinned range of versions.

aiortc has no public API for an SFU-style relay, so the encoded-frame relay reaches inside it:

- `tap_encoded_frames`: an `RTCRtpReceiver` hands each reassembled encoded frame to its decoder thread
  through a `queue.Queue` (`_RTCRtpReceiver__decoder_queue`, filled by `_handle_rtp_packet` on the event
  loop). The tap replaces that queue before `receive()` starts the thread: frames go to a callback
  instead and nothing is decoded; the `None` that stops the thread still goes through, so the remote
  track still ends when the publisher goes.
- `on_keyframe_request`: an `RTCRtpSender` answers a viewer's PLI/FIR by calling `_send_keyframe()`,
  which only matters when it encodes; a sender fed `av.Packet`s packs them as they are. The hook
  replaces that method on one sender so the request can go on to the publisher.
- `request_keyframe`: sends a PLI to the publisher (`RTCRtpReceiver._send_rtcp_pli`).
- `restrict_host_addresses`: aioice gathers host candidates on every interface but loopback; this makes
  one peer connection's ICE gatherers use the given addresses instead (through the aioice `Connection`
  that `RTCIceGatherer._connection` holds, whose `get_component_candidates(addresses=...)` is public).
- `track_activity`: stamps the time of every packet a peer connection receives (`RTCIceTransport._recv`),
  so a session whose tab went away is noticed in seconds rather than at ICE consent expiry (~30 s).

`check()` verifies all of this against the installed aiortc; `AVAILABLE` is its verdict at import, and
tests/test_media_internals.py fails loudly when an upgrade changes any of it.
"""

import inspect
import logging
import queue
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aioice
import aiortc
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc import rtcrtpreceiver as _receiver_module
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

log = logging.getLogger(__name__)

# aiortc versions whose internals were read and tested (see the module docstring).
SUPPORTED_VERSIONS = ("1.16.",)

_QUEUE = "_RTCRtpReceiver__decoder_queue"


class InternalsChanged(RuntimeError):
    """The installed aiortc does not look like the one this module was written against."""


def check() -> None:
    """Raise InternalsChanged unless every internal used here is where it was in the supported versions."""
    version = aiortc.__version__
    if not version.startswith(SUPPORTED_VERSIONS):
        raise InternalsChanged(f"aiortc {version} is not one of the supported {SUPPORTED_VERSIONS}")
    problems = []
    worker = list(inspect.signature(_receiver_module.decoder_worker).parameters)
    if worker != ["loop", "input_q", "output_q", "decode_error"]:
        problems.append(f"decoder_worker{tuple(worker)}")
    init = inspect.getsource(RTCRtpReceiver.__init__)
    if "self.__decoder_queue: queue.Queue = queue.Queue()" not in init:
        problems.append("RTCRtpReceiver.__decoder_queue")
    if "self.__decoder_queue.put((codec, encoded_frame))" not in inspect.getsource(RTCRtpReceiver._handle_rtp_packet):
        problems.append("RTCRtpReceiver._handle_rtp_packet feeding the decoder queue")
    if list(inspect.signature(JitterFrame.__init__).parameters) != ["self", "data", "timestamp"]:
        problems.append("JitterFrame(data, timestamp)")
    if list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) != ["self", "media_ssrc"]:
        problems.append("RTCRtpReceiver._send_rtcp_pli(media_ssrc)")
    if "self._send_keyframe()" not in inspect.getsource(RTCRtpSender._handle_rtcp_packet):
        problems.append("RTCRtpSender._handle_rtcp_packet calling _send_keyframe()")
    if "self.__encoder.pack(data)" not in inspect.getsource(RTCRtpSender._next_encoded_frame):
        problems.append("RTCRtpSender packing pre-encoded av.Packet")
    if "_connection" not in inspect.getsource(RTCIceGatherer.__init__):
        problems.append("RTCIceGatherer._connection")
    if "addresses" not in inspect.signature(aioice.Connection.get_component_candidates).parameters:
        problems.append("aioice Connection.get_component_candidates(addresses=)")
    if "self._recv = self._connection.recv" not in inspect.getsource(RTCIceTransport.__init__):
        problems.append("RTCIceTransport._recv")
    if problems:
        raise InternalsChanged(f"aiortc {version} changed: " + ", ".join(problems))


try:
    check()
    AVAILABLE, UNAVAILABLE_REASON = True, None
except InternalsChanged as exc:
    AVAILABLE, UNAVAILABLE_REASON = False, str(exc)


class _Tap(queue.Queue):
    """Stands in for a receiver's decoder queue: frames go to `on_frame`, only the stop sentinel is queued."""

    def __init__(self, on_frame: Callable[[object, bytes, int], None], on_end: Callable[[], None] | None):
        super().__init__()
        self._on_frame = on_frame
        self._on_end = on_end

    def put(self, item, block=True, timeout=None):
        if item is None:
            super().put(None)
            if self._on_end is not None:
                self._on_end()
            return
        codec, frame = item
        try:
            self._on_frame(codec, frame.data, frame.timestamp)
        except Exception:
            log.exception("encoded frame relay failed")


def tap_encoded_frames(
    receiver: RTCRtpReceiver,
    on_frame: Callable[[object, bytes, int], None],
    on_end: Callable[[], None] | None = None,
) -> None:
    """Deliver the receiver's encoded frames to `on_frame(codec, data, timestamp)` on the event loop
    instead of decoding them, and call `on_end()` when the receiver stops (the publisher left, sent a
    BYE, or the connection closed). Call before the receiver starts (in the peer connection's "track"
    event). `timestamp` is in the codec's clock rate, starting near 0."""
    if not isinstance(getattr(receiver, _QUEUE, None), queue.Queue):
        raise InternalsChanged("RTCRtpReceiver has no decoder queue")
    setattr(receiver, _QUEUE, _Tap(on_frame, on_end))


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` when the sender's remote peer asks for a keyframe (PLI or FIR)."""
    sender._send_keyframe = callback


def request_keyframe(receiver: RTCRtpReceiver) -> Coroutine[Any, Any, None] | None:
    """A coroutine that sends a PLI for the stream the receiver receives; None while it has received
    nothing lately.

    The PLI goes to every SSRC heard in the last 10 s: besides the media SSRC that may be the RTX one
    (Chromium sends RTX padding before any retransmission), and a sender ignores a PLI for an SSRC
    that is not its media stream's."""
    ssrcs = [source.source for source in receiver.getSynchronizationSources()]
    if not ssrcs:
        return None

    async def send() -> None:
        for ssrc in ssrcs:
            await receiver._send_rtcp_pli(ssrc)

    return send()


def _ice_gatherers(pc: RTCPeerConnection) -> list[RTCIceGatherer]:
    return [t.receiver.transport.transport.iceGatherer for t in pc.getTransceivers()]


def restrict_host_addresses(pc: RTCPeerConnection, addresses: list[str]) -> None:
    """Gather host candidates on these addresses only (loopback allowed). Call after the transceivers
    exist (addTransceiver, or setRemoteDescription of an offer) and before setLocalDescription."""
    given = list(addresses)
    for gatherer in _ice_gatherers(pc):
        connection = gatherer._connection
        gather = connection.get_component_candidates

        async def on_given_addresses(component, addresses=None, timeout=5, *, _gather=gather):
            return await _gather(component, list(given), timeout)

        connection.get_component_candidates = on_given_addresses


def track_activity(pc: RTCPeerConnection) -> Callable[[], float]:
    """A function giving the monotonic time the peer connection last received a packet (or was set up)."""
    seen = [time.monotonic()]
    for gatherer_transport in {t.receiver.transport.transport for t in pc.getTransceivers()}:
        recv = gatherer_transport._recv

        async def stamped(_recv=recv):
            data = await _recv()
            seen[0] = time.monotonic()
            return data

        gatherer_transport._recv = stamped
    return lambda: seen[0]
