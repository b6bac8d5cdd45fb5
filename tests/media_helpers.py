"""Real aiortc peers for the media tests: a publisher of a synthetic track and viewers, over loopback.

ICE on loopback: aioice never offers 127.0.0.1 as a host candidate (and this machine also has other
interfaces the tests must not use), so both sides restrict their host candidates to 127.0.0.1: the
server through its LIVEHUB_MEDIA_HOST_ADDRESSES setting, these test peers by calling the same hook
(livehub.media.internals.restrict_host_addresses) on their own peer connections. No STUN/TURN servers.
"""

import asyncio
import contextlib
import uuid

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from livehub.media import internals
from livehub.media.synthetic import PatternTrack, publish

LOOPBACK = ["127.0.0.1"]
COLOUR = (200, 40, 90)
WIDTH, HEIGHT = 320, 240
WAIT_S = 20.0


def sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


async def live_stream(client, make, seller=None) -> tuple[dict, object]:
    seller = seller or await make.seller()
    product = await make.product(seller, variants=[{"sku": sku(), "price_cents": 1000, "stock": 5}])
    res = await client.post(
        "/api/streams", json={"title": "Media", "products": [{"product_id": product["id"]}]}, headers=seller.headers
    )
    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    res = await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
    assert res.status == 200, await res.text()
    return stream, seller


class Publisher:
    def __init__(self, client, stream_id: str, account, colour=COLOUR, size=(WIDTH, HEIGHT), codec: str | None = None):
        self.client, self.stream_id, self.account = client, stream_id, account
        self.codec = codec  # e.g. "video/H264" to offer only that, as Safari prefers
        self.track = PatternTrack(width=size[0], height=size[1], fps=30, colour=colour)
        self.pc: RTCPeerConnection | None = None
        self.session_id: str | None = None

    async def _post(self, sdp: str) -> dict:
        res = await self.client.post(
            f"/api/streams/{self.stream_id}/publish", json={"sdp": sdp, "type": "offer"}, headers=self.account.headers
        )
        body = await res.json()
        assert res.status == 200, body
        self.session_id = body["session_id"]
        return body

    async def start(self) -> "Publisher":
        self.pc = await publish(self.track, self._post, host_addresses=LOOPBACK, codec=self.codec)
        return self

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()


class Viewer:
    """A browser-like viewer: a recvonly video (and audio) offer, frames read from the received track."""

    def __init__(self, client, stream_id: str, headers: dict | None = None):
        self.client, self.stream_id, self.headers = client, stream_id, headers or {}
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track_ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.session_id: str | None = None

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "video" and not self.track_ready.done():
                self.track_ready.set_result(track)

    async def offer(self):
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        internals.restrict_host_addresses(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return await self.client.post(
            f"/api/streams/{self.stream_id}/watch",
            json={"sdp": self.pc.localDescription.sdp, "type": "offer"},
            headers=self.headers,
        )

    async def start(self) -> "Viewer":
        res = await self.offer()
        body = await res.json()
        assert res.status == 200, body
        self.session_id = body["session_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        return self

    async def frame(self):
        track = await asyncio.wait_for(asyncio.shield(self.track_ready), WAIT_S)
        return await asyncio.wait_for(track.recv(), WAIT_S)

    async def connected(self) -> None:
        async def wait():
            while self.pc.connectionState != "connected":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(wait(), WAIT_S)

    async def track_ends(self) -> None:
        """Reads until the received track ends (the publisher left)."""
        track = await asyncio.wait_for(asyncio.shield(self.track_ready), WAIT_S)

        async def drain():
            with contextlib.suppress(MediaStreamError):
                while True:
                    await track.recv()

        await asyncio.wait_for(drain(), WAIT_S)

    async def close(self) -> None:
        await self.pc.close()


def assert_frame_is(frame, colour=COLOUR, size=(WIDTH, HEIGHT)) -> None:
    assert (frame.width, frame.height) == size
    rgb = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    assert np.all(np.abs(rgb - np.array(colour)) < 20), (rgb, colour)
