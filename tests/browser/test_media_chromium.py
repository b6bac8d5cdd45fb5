"""Chromium publishes and watches through the media endpoints, with the default (encoded) relay.

Chromium's fake camera and microphone publish (VP8 and Opus, with RTX and padding as a real browser
sends them); an aiortc viewer and a Chromium viewer that joins late must both get video, which in the
encoded relay needs the keyframe request to reach Chromium's media SSRC. ICE on loopback: the server
gathers on 127.0.0.1 only (LIVEHUB_MEDIA_HOST_ADDRESSES) and Chromium is told to offer loopback and
real addresses (CHROMIUM_ARGS in this folder's conftest). Skipped without Chromium, except under CI.
"""

import asyncio

import pytest

from livehub.app import create_app
from media_helpers import LOOPBACK, Viewer, live_stream

WAIT_MS = 20_000
NEGOTIATE = """
async function negotiate(pc, path, token) {
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== "complete") {
    await new Promise((done) => pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && done()));
  }
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, { method: "POST", headers,
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" }) });
  const answer = await res.json();
  if (!res.ok) throw new Error(JSON.stringify(answer));
  await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
  return answer;
}
"""

PUBLISH = (
    "async ([streamId, token]) => {"
    + NEGOTIATE
    + """
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  const pc = new RTCPeerConnection();
  for (const track of media.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  window.publisher = pc;
  return (await negotiate(pc, `/api/streams/${streamId}/publish`, token)).sdp;
}"""
)

WATCH = (
    "async (streamId) => {"
    + NEGOTIATE
    + """
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  window.viewer = pc;
  return (await negotiate(pc, `/api/streams/${streamId}/watch`)).sdp;
}"""
)

RECEIVED = """async () => {
  const out = { framesDecoded: 0, frameWidth: 0, audioPackets: 0 };
  (await window.viewer.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") {
      out.framesDecoded = Math.max(out.framesDecoded, r.framesDecoded || 0);
      out.frameWidth = Math.max(out.frameWidth, r.frameWidth || 0);
    }
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      out.audioPackets = Math.max(out.audioPackets, r.packetsReceived || 0);
    }
  });
  return out;
}"""


@pytest.fixture
async def client(aiohttp_client, settings, db):
    return await aiohttp_client(create_app(settings.model_copy(update={"media_host_addresses": LOOPBACK})))


async def received(page, enough) -> dict:
    """The viewer page's receive statistics once `enough(stats)` holds (or the last ones after WAIT_MS)."""
    for _ in range(WAIT_MS // 200):
        stats = await page.evaluate(RECEIVED)
        if enough(stats):
            break
        await asyncio.sleep(0.2)
    return stats


async def harness_page(browser, base: str):
    """A document of the server's origin for the scripts above to run in. The server's own headers on it
    (/healthz) are dropped: they let a JSON document fetch nothing and use no camera, and this test drives
    the media endpoints, not a page."""
    page = await (await browser.new_context()).new_page()

    async def without_policies(route):
        res = await route.fetch()
        dropped = {"content-security-policy", "permissions-policy"}
        await route.fulfill(response=res, headers={k: v for k, v in res.headers.items() if k.lower() not in dropped})

    await page.route(f"{base}/healthz", without_policies)
    await page.goto(f"{base}/healthz")
    return page


async def test_chromium_publishes_and_a_late_chromium_viewer_gets_video(client, make, browser):
    from livehub import keys

    assert client.app[keys.MEDIA].relay == "encoded"
    stream, seller = await live_stream(client, make)
    base = str(client.make_url("")).rstrip("/")
    host_page = await harness_page(browser, base)
    answer = await host_page.evaluate(PUBLISH, [stream["id"], seller.token])
    assert "a=candidate:" in answer and " 127.0.0.1 " in answer

    viewer = await Viewer(client, stream["id"]).start()
    frame = await viewer.frame()
    assert frame.width > 0 and frame.height > 0
    await asyncio.sleep(2.0)  # the late joiner comes well after Chromium's first keyframe

    watch_page = await harness_page(browser, base)
    await watch_page.evaluate(WATCH, stream["id"])
    # Decoded video frames with a size, and Opus packets, relayed from Chromium to Chromium.
    stats = await received(watch_page, lambda s: s["framesDecoded"] > 5 and s["frameWidth"] and s["audioPackets"])
    assert stats["framesDecoded"] > 5 and stats["frameWidth"] > 0 and stats["audioPackets"] > 0, stats
    await viewer.close()
    await watch_page.evaluate("window.viewer.close()")
    await host_page.evaluate("window.publisher.close()")
