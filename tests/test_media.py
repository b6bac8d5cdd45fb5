"""The media plane with real aiortc peers over loopback (see tests/media_helpers.py for how ICE works
there): a synthetic publisher, viewers receiving its frames in both relay modes, closing, and the rules
(host-only publishing, bans, the viewer cap). Waits are generous; the one timing check is the issue's
"a late joiner sees a frame within a second" in encoded mode."""

import asyncio
import threading
import time
import uuid

import numpy as np
import pytest
from livekit import api as livekit

from helpers import error_of
from livehub import keys
from livehub.app import create_app
from livehub.media import internals
from media_helpers import LOOPBACK, Publisher, Viewer, assert_frame_is, live_stream


def media_settings(settings, **extra):
    # No job queue: its worker starts and ends tasks of its own all the time, and these tests count the tasks
    # a media session leaves behind.
    return settings.model_copy(update={"media_host_addresses": LOOPBACK, "jobs_enabled": False, **extra})


@pytest.fixture(params=["encoded", "decoded"])
async def relay(request):
    if request.param == "encoded" and not internals.AVAILABLE:
        pytest.fail(f"encoded relay unavailable: {internals.UNAVAILABLE_REASON}")
    return request.param


@pytest.fixture
async def client(backplane, aiohttp_client, settings, db, relay):
    return await aiohttp_client(create_app(media_settings(settings, media_relay=relay, **backplane)))


def media_tasks_and_threads() -> tuple[set, set]:
    """Running tasks (but aiohttp's keep-alive connection handlers) and aiortc decoder threads."""
    tasks = {t for t in asyncio.all_tasks() if not t.done() and "RequestHandler.start" not in repr(t.get_coro())} - {
        asyncio.current_task()
    }
    threads = {t for t in threading.enumerate() if t.name.endswith("-decoder")}
    return tasks, threads


async def settled(tasks_before: set, threads_before: set) -> tuple[set, set]:
    """Tasks and decoder threads started since, once they have had a few seconds to finish."""
    for _ in range(100):
        tasks, threads = media_tasks_and_threads()
        tasks, threads = tasks - tasks_before, threads - threads_before
        if not tasks and not threads:
            break
        await asyncio.sleep(0.05)
    return tasks, threads


async def test_two_viewers_receive_the_publishers_frames_and_see_it_leave(client, make, relay):
    node = client.app[keys.MEDIA]
    tasks_before, threads_before = media_tasks_and_threads()
    assert node.relay == relay
    stream, seller = await live_stream(client, make)
    publisher = await Publisher(client, stream["id"], seller).start()
    viewers = [await Viewer(client, stream["id"]).start() for _ in range(2)]
    for viewer in viewers:
        for _ in range(3):
            assert_frame_is(await viewer.frame())
    assert node.viewer_count == 2

    await publisher.close()
    for viewer in viewers:
        await viewer.track_ends()
    for _ in range(200):
        if not node.sessions:
            break
        await asyncio.sleep(0.05)
    assert node.sessions == {} and node.publications == {}
    for viewer in viewers:
        await viewer.close()
    # No peer connection, task or decoder thread is left behind, here or in the test's own peers.
    assert await settled(tasks_before, threads_before) == (set(), set())


async def test_a_late_viewer_sees_a_frame_within_a_second(client, make, relay):
    if relay != "encoded":
        pytest.skip("keyframe forwarding is the encoded relay's")
    stream, seller = await live_stream(client, make)
    publisher = await Publisher(client, stream["id"], seller).start()
    first = await Viewer(client, stream["id"]).start()
    assert_frame_is(await first.frame())
    # Well past the first keyframe: the publisher's encoder would not make another for ~100 s on its own.
    await asyncio.sleep(1.0)
    late = await Viewer(client, stream["id"]).start()
    await late.connected()
    started = time.monotonic()
    assert_frame_is(await late.frame())
    assert time.monotonic() - started < 1.0
    for peer in (first, late, publisher):
        await peer.close()


async def test_only_the_host_publishes_and_only_while_live(client, make, relay):
    stream, seller = await live_stream(client, make)
    other = await make.seller()
    res = await client.post(f"/api/streams/{stream['id']}/publish", json={"sdp": "v=0", "type": "offer"})
    await error_of(res, 401, "unauthorized")
    res = await client.post(
        f"/api/streams/{stream['id']}/publish", json={"sdp": "v=0", "type": "offer"}, headers=other.headers
    )
    await error_of(res, 403, "forbidden")
    # A malformed offer from the host is refused as invalid, not a server error.
    res = await client.post(
        f"/api/streams/{stream['id']}/publish", json={"sdp": "v=0\r\nnonsense", "type": "offer"}, headers=seller.headers
    )
    await error_of(res, 422, "validation_error")
    res = await client.post(f"/api/streams/{stream['id']}/end", headers=seller.headers)
    assert res.status == 200
    res = await client.post(
        f"/api/streams/{stream['id']}/publish", json={"sdp": "v=0", "type": "offer"}, headers=seller.headers
    )
    await error_of(res, 409, "conflict")
    assert client.app[keys.MEDIA].sessions == {}


async def test_banned_viewer_cannot_watch_and_unknown_sessions_are_404(client, make, db, relay):
    stream, seller = await live_stream(client, make)
    banned = await make.user()
    await db.execute(
        "INSERT INTO seller_bans (seller_id, user_id) VALUES ($1, $2)", seller.seller["id"], banned.user["id"]
    )
    publisher = await Publisher(client, stream["id"], seller).start()
    viewer = Viewer(client, stream["id"], banned.headers)
    await error_of(await viewer.offer(), 403, "forbidden")
    await viewer.close()
    res = await client.delete(f"/api/streams/{stream['id']}/watch/no-such-session")
    await error_of(res, 404, "not_found")
    res = await client.post(f"/api/streams/{stream['id']}/media/no-such-session/heartbeat")
    await error_of(res, 404, "not_found")
    res = await client.post(f"/api/streams/{stream['id']}/watch", json={"sdp": "garbage", "type": "offer"})
    await error_of(res, 422, "validation_error")
    res = await client.post(f"/api/streams/{stream['id']}/watch", json={"sdp": "v=0", "type": "answer"})
    await error_of(res, 422, "validation_error")
    await publisher.close()


async def test_watch_and_stop_and_stream_end_close_sessions(client, make, relay):
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    publisher = await Publisher(client, stream["id"], seller).start()
    viewer = await Viewer(client, stream["id"]).start()
    assert_frame_is(await viewer.frame())
    res = await client.post(f"/api/streams/{stream['id']}/media/{viewer.session_id}/heartbeat")
    assert res.status == 204
    res = await client.delete(f"/api/streams/{stream['id']}/watch/{viewer.session_id}")
    assert res.status == 204
    assert viewer.session_id not in node.sessions
    await viewer.close()
    second = await Viewer(client, stream["id"]).start()
    assert_frame_is(await second.frame())
    res = await client.post(f"/api/streams/{stream['id']}/end", headers=seller.headers)
    assert res.status == 200
    await second.track_ends()
    assert node.sessions == {} and node.publications == {}
    await second.close()
    await publisher.close()


async def test_viewer_cap_answers_503_naming_the_scale_out_backend(aiohttp_client, settings, db, make):
    client = await aiohttp_client(create_app(media_settings(settings, media_max_viewers=1)))
    from conftest import Factory

    make = Factory(client, db)
    stream, seller = await live_stream(client, make)
    publisher = await Publisher(client, stream["id"], seller).start()
    first = await Viewer(client, stream["id"]).start()
    second = Viewer(client, stream["id"])
    error = await error_of(await second.offer(), 503, "unavailable")
    assert "livekit" in error["message"] and error["details"]["scale_out_backend"] == "livekit"
    for peer in (first, second, publisher):
        await peer.close()


async def test_media_options_for_aiortc(client, make, relay):
    stream, seller = await live_stream(client, make)
    res = await client.get(f"/api/streams/{stream['id']}/media")
    body = await res.json()
    assert res.status == 200, body
    assert body["backend"] == "aiortc" and body["relay"] == relay and body["ice_servers"] == []
    assert body["can_publish"] is False
    res = await client.get(f"/api/streams/{stream['id']}/media", headers=seller.headers)
    assert (await res.json())["can_publish"] is True


async def test_livekit_tokens_grant_publish_to_the_host_only(aiohttp_client, settings, db):
    from conftest import Factory

    settings = settings.model_copy(
        update={"media_backend": "livekit", "livekit_api_key": "devkey", "livekit_api_secret": "s" * 32}
    )
    client = await aiohttp_client(create_app(settings))
    make = Factory(client, db)
    stream, seller = await live_stream(client, make)
    viewer = await make.user()
    verifier = livekit.TokenVerifier("devkey", "s" * 32)
    grants = {}
    for who, headers in (("host", seller.headers), ("viewer", viewer.headers), ("anonymous", {})):
        res = await client.get(f"/api/streams/{stream['id']}/media", headers=headers)
        body = await res.json()
        assert res.status == 200, body
        assert body["backend"] == "livekit" and body["url"] == settings.livekit_url
        assert body["room"] == f"stream-{stream['id']}"
        claims = verifier.verify(body["token"])
        assert claims.video.room == body["room"] and claims.video.room_join is True
        grants[who] = claims
    assert grants["host"].identity == seller.id
    assert grants["host"].video.can_publish is True and grants["host"].video.can_subscribe is True
    for who in ("viewer", "anonymous"):
        assert grants[who].video.can_publish is False, who
        assert grants[who].video.can_publish_data is False, who
        assert grants[who].video.can_subscribe is True, who
    assert grants["viewer"].identity == viewer.id
    # The SDP routes belong to the aiortc backend.
    res = await client.post(f"/api/streams/{stream['id']}/watch", json={"sdp": "v=0", "type": "offer"})
    await error_of(res, 409, "conflict")


async def test_the_demo_stream_shows_moving_video(aiohttp_client, settings, db):
    from livehub import demo

    client = await aiohttp_client(create_app(media_settings(settings, demo_video=True)))
    await demo.seed(client.app[keys.POOL], client.app[keys.HASHER])
    stream_id = await db.fetchval("SELECT id FROM streams WHERE status = 'live' AND title = $1", demo.STREAM_TITLE)
    node = client.app[keys.MEDIA]
    for _ in range(200):
        if stream_id in node.publications:
            break
        await asyncio.sleep(0.05)
    viewer = await Viewer(client, str(stream_id)).start()
    first = await viewer.frame()
    assert (first.width, first.height) == (640, 480)
    for _ in range(15):
        later = await viewer.frame()
    assert not np.array_equal(first.to_ndarray(format="rgb24"), later.to_ndarray(format="rgb24"))
    await viewer.close()


async def test_a_silent_session_is_closed_after_the_timeout_a_live_one_is_not(aiohttp_client, settings, db):
    """A tab that went away sends nothing; one that watches sends RTCP all the time."""
    from conftest import Factory

    client = await aiohttp_client(create_app(media_settings(settings, media_session_timeout_s=3.0)))
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, Factory(client, db))
    publisher = await Publisher(client, stream["id"], seller).start()
    watching = await Viewer(client, stream["id"]).start()
    assert_frame_is(await watching.frame())
    gone = Viewer(client, stream["id"])
    res = await gone.offer()  # the answer never reaches a peer: nothing will come from this session
    gone_id = (await res.json())["session_id"]
    assert gone_id in node.sessions
    for _ in range(200):
        if gone_id not in node.sessions:
            break
        await asyncio.sleep(0.05)
    assert gone_id not in node.sessions
    await asyncio.sleep(4.0)
    assert watching.session_id in node.sessions and publisher.session_id in node.sessions
    assert_frame_is(await watching.frame())
    for peer in (gone, watching, publisher):
        await peer.close()


async def test_an_h264_publisher_reaches_viewers(client, make, relay):
    """Safari publishes H.264: the encoded relay forwards it as it is, the decoded one re-encodes."""
    stream, seller = await live_stream(client, make)
    publisher = await Publisher(client, stream["id"], seller, codec="video/H264").start()
    publication = client.app[keys.MEDIA].publications[uuid.UUID(stream["id"])]
    assert publication.codecs["video"].mimeType == "video/H264"
    viewer = await Viewer(client, stream["id"]).start()
    for _ in range(3):
        assert_frame_is(await viewer.frame())
    for peer in (viewer, publisher):
        await peer.close()


def test_the_encoded_relay_falls_back_to_decoded_when_unsupported(settings, monkeypatch):
    from livehub.media.sessions import relay_mode

    assert relay_mode(settings) == "encoded"
    monkeypatch.setattr(internals, "AVAILABLE", False)
    assert relay_mode(settings) == "decoded"
