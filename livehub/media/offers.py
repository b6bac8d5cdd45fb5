"""SDP offers checked before aiortc sees them, so a bad one is refused with a message a person can act on.

aiortc's parser accepts almost anything ("0" is an offer with no media) and fails later with its own
internals' words ("None is not in list"); those never reach a client. What is checked here is what the
node needs of an offer: it parses, it has an audio or video section of a kind this session carries,
facing the right way, with ICE credentials, a DTLS fingerprint and setup role, RTCP multiplexed on RTP,
and, where the relay forwards the publisher's codec as it is, that codec.
"""

from collections.abc import Collection

from aiortc.sdp import SessionDescription

from livehub.errors import ValidationFailed

_RECEIVES = ("sendrecv", "recvonly")
_SENDS = ("sendrecv", "sendonly")


def check_offer(
    sdp: str, *, kinds: Collection[str], sending: bool, codecs: dict[str, Collection[str]] | None = None
) -> None:
    """Raise ValidationFailed unless `sdp` is an offer this node can answer.

    `kinds`: the media kinds the session carries ("video", "audio"); at least one section of one of them
    must be there. `sending`: the offerer sends (a publisher) rather than receives (a viewer). `codecs`:
    kind -> the codecs (mime types) a section of that kind must accept one of, where it matters.
    """
    if not sdp.lstrip().startswith("v=0"):
        raise _refused("sdp is not an SDP offer: it must start with the line 'v=0'")
    try:
        description = SessionDescription.parse(sdp)
    except Exception:  # aiortc's parser fails on bad lines with asserts, ValueErrors and KeyErrors alike
        raise _refused("sdp is not a valid SDP offer: a line of it cannot be read") from None
    media = [m for m in description.media if m.kind in ("audio", "video") and m.port != 0]
    if not media:
        raise _refused("the SDP offer has no audio or video section (m=audio or m=video)")
    directions = _SENDS if sending else _RECEIVES
    wanted = [m for m in media if m.kind in kinds and m.direction in directions]
    if not wanted:
        kind = " or ".join(sorted(kinds)) or "media"
        verb = "send" if sending else "receive"
        raise _refused(
            f"the SDP offer has no {kind} section to {verb} (a=sendrecv or a={'sendonly' if sending else 'recvonly'})",
            {"kinds": sorted(kinds)},
        )
    for m in media:
        if not m.ice.usernameFragment or not m.ice.password:
            raise _refused("the SDP offer has no ICE credentials (a=ice-ufrag and a=ice-pwd)")
        if m.dtls is None or not m.dtls.fingerprints:
            raise _refused("the SDP offer has no DTLS fingerprint and setup role (a=fingerprint, a=setup)")
        if not m.rtcp_mux:
            raise _refused("the SDP offer must multiplex RTCP on RTP (a=rtcp-mux)")
        if not m.rtp.codecs:
            raise _refused(f"the SDP offer's {m.kind} section names no codec (a=rtpmap)")
    for m in wanted:
        need = {mime.lower(): mime.split("/")[-1] for mime in (codecs or {}).get(m.kind, ())}
        if need and not any(c.mimeType.lower() in need for c in m.rtp.codecs):
            names = sorted(need.values())
            offered = sorted({c.mimeType.split("/")[-1] for c in m.rtp.codecs} - {"rtx", "red", "ulpfec"})
            raise _refused(
                f"this stream's {m.kind} needs {' or '.join(names)}, which the offer does not accept (it offers "
                f"{', '.join(offered)}); use a browser that can receive {' or '.join(names)}",
                {"codecs": names, "offered": offered},
            )


def _refused(message: str, details: dict | None = None) -> ValidationFailed:
    return ValidationFailed(message, {"field": "sdp", **(details or {})})
