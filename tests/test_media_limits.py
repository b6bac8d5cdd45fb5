"""Abuse of the media plane with real aiortc peers: watch sessions per client address, sessions whose ICE
never connects, and SDP offers refused with messages a person can act on (never aiortc's own)."""

import asyncio
import re
import time
import uuid

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender

from conftest import Factory
from helpers import error_of
from livehub import keys
from livehub.app import create_app
from livehub.media import internals
from media_helpers import LOOPBACK, Publisher, Viewer, assert_frame_is, live_stream

WAIT_S = 20.0


def media_settings(settings, **extra):
    return settings.model_copy(update={"media_host_addresses": LOOPBACK, "trusted_proxy_count": 1, **extra})


@pytest.fixture
async def client(aiohttp_client, settings, db):
    return await aiohttp_client(create_app(media_settings(settings, media_watch_per_address=2)))


@pytest.fixture
def make(client, db):
    return Factory(client, db)


def at(address: str) -> dict:
    """Headers of a client at that address (the app trusts one proxy in these tests)."""
    return {"X-Forwarded-For": address}


async def until(check, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
    return value


async def test_watch_sessions_per_address_are_limited_with_429(client, make):
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    publisher = await Publisher(client, stream["id"], seller).start()
    held = [await Viewer(client, stream["id"], at("198.51.100.7")).start() for _ in range(2)]
    # Signed in or not, the address is what counts: the slots are the node's.
    fan = await make.user()
    third = Viewer(client, stream["id"], {**at("198.51.100.7"), **fan.headers})
    res = await third.offer()
    error = await error_of(res, 429, "rate_limited")
    assert "2" in error["message"] and error["details"]["max_per_address"] == 2
    assert int(res.headers["Retry-After"]) >= 1
    assert len(node.sessions) == 3  # the publisher and the two held: nothing was set up for the refused one

    elsewhere = await Viewer(client, stream["id"], at("203.0.113.9")).start()
    assert_frame_is(await elsewhere.frame())
    # A session that ends frees its slot.
    res = await client.delete(f"/api/streams/{stream['id']}/watch/{held[0].session_id}")
    assert res.status == 204
    again = await Viewer(client, stream["id"], at("198.51.100.7")).start()
    assert_frame_is(await again.frame())
    for peer in (*held, third, elsewhere, again, publisher):
        await peer.close()


async def test_a_session_whose_ice_never_connects_is_closed_despite_heartbeats(aiohttp_client, settings, db):
    client = await aiohttp_client(create_app(media_settings(settings, media_ice_timeout_s=2.0)))
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, Factory(client, db))
    publisher = await Publisher(client, stream["id"], seller).start()
    watching = await Viewer(client, stream["id"]).start()
    assert_frame_is(await watching.frame())

    stuck = Viewer(client, stream["id"])
    res = await stuck.offer()  # its peer never applies the answer: ICE never starts
    stuck_id = (await res.json())["session_id"]
    deadline = time.monotonic() + WAIT_S
    while stuck_id in node.sessions:
        assert time.monotonic() < deadline, "a session that never connected is still open"
        res = await client.post(f"/api/streams/{stream['id']}/media/{stuck_id}/heartbeat")
        assert res.status in (204, 404)
        await asyncio.sleep(0.2)
    # The connected viewer is older than the ICE timeout by now, and stays.
    assert watching.session_id in node.sessions and publisher.session_id in node.sessions
    assert_frame_is(await watching.frame())
    for peer in (stuck, watching, publisher):
        await peer.close()


async def test_a_viewer_banned_while_watching_loses_the_video(client, make, db, monkeypatch):
    from livehub.media import sessions

    monkeypatch.setattr(sessions, "STREAM_CHECK_S", 0.2)
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    publisher = await Publisher(client, stream["id"], seller).start()
    troll, fan = await make.user(), await make.user()
    banned = await Viewer(client, stream["id"], troll.headers).start()
    kept = await Viewer(client, stream["id"], fan.headers).start()
    for viewer in (banned, kept):
        assert_frame_is(await viewer.frame())
    # Stored as any node's ban is; this node learns of it from the database.
    await db.execute("INSERT INTO seller_bans (seller_id, user_id) VALUES ($1, $2)", seller.seller["id"], troll.id)
    await until(lambda: banned.session_id not in node.sessions)
    assert kept.session_id in node.sessions
    assert_frame_is(await kept.frame())
    for peer in (banned, kept, publisher):
        await peer.close()


# -- SDP offers ----------------------------------------------------------------------------------------

INTERNAL = re.compile(r"None is not in list|object has no attribute|assert|Traceback|not in list", re.IGNORECASE)


async def refused(res, *, needle: str) -> dict:
    error = await error_of(res, 422, "validation_error")
    text = f"{error['message']} {error['details']}"
    assert not INTERNAL.search(text), error
    assert needle in error["message"], error
    return error


async def real_offer(kinds=("video", "audio"), direction="recvonly", codec: str | None = None) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in kinds:
        transceiver = pc.addTransceiver(kind, direction=direction)
        if codec is not None and kind == "video":
            codecs = RTCRtpSender.getCapabilities(kind).codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType.lower() == codec.lower()])
    internals.restrict_host_addresses(pc, LOOPBACK)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def without(sdp: str, prefix: str) -> str:
    return "".join(line for line in sdp.splitlines(keepends=True) if not line.startswith(prefix))


async def test_bad_watch_offers_are_refused_with_a_clear_message(client, make):
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    publisher = await Publisher(client, stream["id"], seller).start()
    url = f"/api/streams/{stream['id']}/watch"

    async def watch(sdp: str):
        return await client.post(url, json={"sdp": sdp, "type": "offer"}, headers=at("192.0.2.1"))

    for garbage in ("0", "garbage", "v=0", "v=0\r\nnonsense", "v=0\r\nm=video x\r\n"):
        await refused(await watch(garbage), needle="SDP")
    await refused(await watch(await real_offer(kinds=("audio",))), needle="video")
    await refused(await watch(await real_offer(direction="sendonly")), needle="receive")
    good = await real_offer()
    await refused(await watch(without(good, "a=ice-ufrag")), needle="ICE")
    await refused(await watch(without(good, "a=fingerprint")), needle="fingerprint")
    if node.relay == "encoded":
        # The relay forwards the publisher's VP8 as it is: a viewer that only takes H.264 cannot watch.
        await refused(await watch(await real_offer(codec="video/H264")), needle="VP8")
    # Nothing of the refused offers is left behind, and the limit per address was not used up by them.
    assert set(node.sessions) == {publisher.session_id}
    viewer = await Viewer(client, stream["id"], at("192.0.2.1")).start()
    assert_frame_is(await viewer.frame())
    for peer in (viewer, publisher):
        await peer.close()


async def test_bad_publish_offers_are_refused_with_a_clear_message(client, make):
    stream, seller = await live_stream(client, make)
    url = f"/api/streams/{stream['id']}/publish"

    async def publish(sdp: str):
        return await client.post(url, json={"sdp": sdp, "type": "offer"}, headers=seller.headers)

    for garbage in ("0", "v=0", "v=0\r\nnonsense"):
        await refused(await publish(garbage), needle="SDP")
    await refused(await publish(await real_offer()), needle="send")  # recvonly: nothing to publish
    good = await real_offer(kinds=("video",), direction="sendonly")
    await refused(await publish(without(good, "a=ice-pwd")), needle="ICE")
    node = client.app[keys.MEDIA]
    assert node.sessions == {} and uuid.UUID(stream["id"]) not in node.publications

    # A bad offer from a reloaded studio tab leaves the running publication alone.
    publisher = await Publisher(client, stream["id"], seller).start()
    viewer = await Viewer(client, stream["id"]).start()
    await refused(await publish("0"), needle="SDP")
    assert node.publications[uuid.UUID(stream["id"])].session.id == publisher.session_id
    assert_frame_is(await viewer.frame())
    for peer in (viewer, publisher):
        await peer.close()
