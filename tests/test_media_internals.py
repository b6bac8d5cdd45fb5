"""The aiortc internals the encoded relay relies on (livehub/media/internals.py) are still there.

When an aiortc upgrade moves any of them this fails loudly, naming what changed; the node itself would
log it and fall back to the decoded relay. Update internals.py (and SUPPORTED_VERSIONS) after reading
the new aiortc source, then the pin in pyproject.toml.
"""

import fractions

import aiortc
import av
import numpy as np
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from livehub.media import internals
from livehub.media.relay import is_keyframe


def test_the_installed_aiortc_has_every_internal_the_encoded_relay_uses():
    internals.check()
    assert internals.AVAILABLE, internals.UNAVAILABLE_REASON
    assert aiortc.__version__.startswith(internals.SUPPORTED_VERSIONS)


def _frames(n: int) -> list[av.VideoFrame]:
    frames = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), (i * 20) % 255, dtype=np.uint8), format="rgb24")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
        frames.append(frame)
    return frames


def _first_and_second(mime: str) -> tuple[bytes, bytes]:
    """Two encoded frames from aiortc's own encoder, joined from its RTP payloads' depayloaded data."""
    from aiortc.codecs import depayload

    codec = RTCRtpCodecParameters(
        mimeType=mime, clockRate=90000, payloadType=96, parameters={"packetization-mode": "1"}
    )
    encoder = get_encoder(codec)
    out = []
    for frame in _frames(2):
        payloads, _ = encoder.encode(frame)
        out.append(b"".join(depayload(codec, p) for p in payloads))
    return out[0], out[1]


def test_keyframes_are_recognised_in_vp8_and_h264():
    for mime in ("video/VP8", "video/H264"):
        key, delta = _first_and_second(mime)
        assert is_keyframe(mime.split("/")[1], key), mime
        assert not is_keyframe(mime.split("/")[1], delta), mime
