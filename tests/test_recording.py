"""Recording shows (livehub/media/recording.py) with real aiortc publishers over loopback: the replay in the
media store plays (PyAV opens it: the right codecs, its duration the show's, frames that decode), through
a reconnect and a change of size, after a crash; and nothing is recorded when the stream or the node says
not to. The shows are a few seconds long."""

import asyncio
import time
import uuid
from pathlib import Path

import av
import pytest
from aiortc import AudioStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from livehub import keys
from livehub.app import create_app
from livehub.media import internals
from livehub.media.synthetic import PatternTrack
from media_helpers import LOOPBACK, live_stream

WAIT_S = 30.0


@pytest.fixture
def media_settings(settings, tmp_path):
    if not internals.AVAILABLE:
        pytest.fail(f"encoded relay unavailable: {internals.UNAVAILABLE_REASON}")
    return settings.model_copy(
        update={"media_host_addresses": LOOPBACK, "jobs_enabled": False, "media_relay": "encoded", "data_dir": tmp_path}
    )


@pytest.fixture
async def client(aiohttp_client, media_settings, db):
    return await aiohttp_client(create_app(media_settings))


class Show:
    """A host publishing video (a plain colour, `size`) and audio (silence), the way a browser does."""

    def __init__(self, client, stream_id: str, account, *, size=(320, 240), codec: str | None = None):
        self.client, self.stream_id, self.account = client, stream_id, account
        self.size, self.codec = size, codec
        self.pc: RTCPeerConnection | None = None

    async def start(self) -> "Show":
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video = pc.addTransceiver(PatternTrack(*self.size, fps=30, colour=(200, 40, 90)), direction="sendonly")
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        if self.codec is not None:
            codecs = RTCRtpSender.getCapabilities("video").codecs
            video.setCodecPreferences([c for c in codecs if c.mimeType.lower() == self.codec.lower()])
        internals.restrict_host_addresses(pc, LOOPBACK)
        await pc.setLocalDescription(await pc.createOffer())
        res = await self.client.post(
            f"/api/streams/{self.stream_id}/publish",
            json={"sdp": pc.localDescription.sdp, "type": "offer"},
            headers=self.account.headers,
        )
        body = await res.json()
        assert res.status == 200, body
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        return self

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()


async def until(predicate, what: str):
    deadline = time.monotonic() + WAIT_S
    while not (result := await predicate()):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.1)
    return result


async def recording_started(node, stream_id: str) -> float:
    """Waits for the stream's first recorded keyframe; returns the wall time of offset 0."""
    from livehub.media.recording import read_started_at

    async def started():
        return read_started_at(node.recordings.directory(_uuid(stream_id)))

    return await until(started, "the recording to start")


def _uuid(value: str):
    return uuid.UUID(value)


async def end_show(client, stream_id: str, seller) -> float:
    res = await client.post(f"/api/streams/{stream_id}/end", headers=seller.headers)
    assert res.status == 200, await res.text()
    return time.time()


async def replay_row(db, stream_id: str) -> dict:
    async def row():
        return await db.fetchrow("SELECT * FROM stream_replays WHERE stream_id = $1", _uuid(stream_id))

    return dict(await until(row, "the replay row"))


def stored(settings, row) -> Path:
    return Path(settings.data_dir) / "media" / row["media_key"]


def probe(path: Path) -> dict:
    """The file's codecs, duration and the sizes of (up to) the first and last decodable video frames."""
    with av.open(str(path)) as container:
        codecs = sorted(s.codec_context.name for s in container.streams)
        # None for a file whose writer died (no duration in its header); a finished replay has one.
        duration = container.duration / 1_000_000 if container.duration is not None else None
        sizes, frames = [], 0
        for frame in container.decode(video=0):
            frames += 1
            if not sizes or sizes[-1] != (frame.width, frame.height):
                sizes.append((frame.width, frame.height))
    return {"codecs": codecs, "duration": duration, "sizes": sizes, "frames": frames}


async def test_a_vp8_show_is_recorded_into_a_webm_replay(client, make, db, media_settings):
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    show = await Show(client, stream["id"], seller).start()
    started = await recording_started(node, stream["id"])
    await asyncio.sleep(3)
    ended = await end_show(client, stream["id"], seller)
    await show.close()

    row = await replay_row(db, stream["id"])
    assert row["content_type"] == "video/webm"
    assert abs(row["started_at"].timestamp() - started) < 0.01
    path = stored(media_settings, row)
    assert path.stat().st_size == row["size_bytes"]
    info = probe(path)
    assert info["codecs"] == ["opus", "vp8"]
    assert abs(info["duration"] - (ended - started)) < 1.0, (info, ended - started)
    assert abs(row["duration_s"] - info["duration"]) < 0.5
    assert info["sizes"] == [(320, 240)] and info["frames"] > 30
    # The segments are gone; finishing again does nothing.
    assert not node.recordings.directory(_uuid(stream["id"])).exists()
    node.finish_recording(_uuid(stream["id"]))
    assert await db.fetchval("SELECT count(*) FROM stream_replays") == 1


async def test_an_h264_show_is_recorded_into_an_mp4_replay(client, make, db, media_settings):
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    show = await Show(client, stream["id"], seller, codec="video/H264").start()
    started = await recording_started(node, stream["id"])
    await asyncio.sleep(2)
    ended = await end_show(client, stream["id"], seller)
    await show.close()

    row = await replay_row(db, stream["id"])
    assert row["content_type"] == "video/mp4" and row["media_key"].endswith(".mp4")
    info = probe(stored(media_settings, row))
    assert info["codecs"] == ["h264", "opus"]
    assert abs(info["duration"] - (ended - started)) < 1.0, (info, ended - started)
    assert info["sizes"] == [(320, 240)] and info["frames"] > 20


async def test_a_host_reconnecting_at_another_size_gives_one_replay_spanning_the_show(client, make, db, media_settings):
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    first = await Show(client, stream["id"], seller).start()
    started = await recording_started(node, stream["id"])
    await asyncio.sleep(2)
    await first.close()  # the tab reloads: the publication ends, the stream stays live
    await until(lambda: _no_publication(node, stream["id"]), "the first publication to end")
    await asyncio.sleep(1)  # a gap, which stays one in the replay
    second = await Show(client, stream["id"], seller, size=(480, 360)).start()
    await until(lambda: _segments(node, stream["id"], 2), "the second segment")
    await asyncio.sleep(2)
    ended = await end_show(client, stream["id"], seller)
    await second.close()

    row = await replay_row(db, stream["id"])
    info = probe(stored(media_settings, row))
    assert info["codecs"] == ["opus", "vp8"]
    assert abs(info["duration"] - (ended - started)) < 1.0, (info, ended - started)
    assert info["sizes"] == [(320, 240), (480, 360)]


async def _no_publication(node, stream_id: str) -> bool:
    return _uuid(stream_id) not in node.publications


async def _segments(node, stream_id: str, count: int) -> bool:
    from livehub.media.recording import segments

    parts = segments(node.recordings.directory(_uuid(stream_id)))
    return len(parts) >= count and parts[-1].stat().st_size > 0


async def test_a_stream_the_host_opted_out_is_not_recorded(client, make, db, media_settings):
    stream, seller = await live_stream(client, make)
    await db.execute("UPDATE streams SET record = false WHERE id = $1", _uuid(stream["id"]))
    await _publish_then_end(client, stream, seller)
    assert not (Path(media_settings.data_dir) / "recordings" / stream["id"]).exists()
    assert await db.fetchval("SELECT count(*) FROM stream_replays") == 0


async def test_nothing_is_recorded_when_the_node_records_no_shows(aiohttp_client, make, db, media_settings):
    client = await aiohttp_client(create_app(media_settings.model_copy(update={"record_shows": False})))
    stream, seller = await live_stream(client, make)
    await _publish_then_end(client, stream, seller)
    assert not (Path(media_settings.data_dir) / "recordings").exists()
    assert await db.fetchval("SELECT count(*) FROM stream_replays") == 0


async def _publish_then_end(client, stream, seller) -> None:
    node = client.app[keys.MEDIA]
    show = await Show(client, stream["id"], seller).start()

    async def frames_flowing():
        publication = node.publications.get(_uuid(stream["id"]))
        return publication is not None and publication.session.connected

    await until(frames_flowing, "the publisher to connect")
    await asyncio.sleep(1)
    await end_show(client, stream["id"], seller)
    await show.close()
    await asyncio.sleep(0.5)


# A node recording a show, killed mid-segment: the real recorder (PublicationRecorder and its writer thread)
# fed VP8 and Opus frames, as the encoded relay hands them over, with their RTP timestamps, in real time.
RECORDING_NODE = """
import asyncio, fractions, sys, time
from pathlib import Path
import av, numpy as np
from livehub.media.recording import PublicationRecorder

async def main():
    recorder = PublicationRecorder(Path(sys.argv[1]), {"video": "video/VP8", "audio": "audio/opus"}, lambda: None)
    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    video.time_base = fractions.Fraction(1, 90000)
    video.options = {"deadline": "realtime", "lag-in-frames": "0"}
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format = 48000, "stereo", "s16"
    image = np.full((240, 320, 3), (200, 40, 90), np.uint8)
    silence = np.zeros((1, 960 * 2), np.int16)
    start, n = time.monotonic(), 0
    while True:
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = n * 3000, video.time_base
        for packet in video.encode(frame):
            recorder.frame("video", 90000, bytes(packet), 1000 + n * 3000, packet.is_keyframe)
        for k in range(2):  # 20 ms of Opus twice per 33 ms video frame, near enough
            sound = av.AudioFrame.from_ndarray(silence, format="s16", layout="stereo")
            sound.sample_rate, sound.pts = 48000, (2 * n + k) * 960
            for packet in audio.encode(sound):
                recorder.frame("audio", 48000, bytes(packet), 5000 + (2 * n + k) * 960, True)
        n += 1
        await asyncio.sleep(max(0, start + n / 30 - time.monotonic()))

asyncio.run(main())
"""


async def test_a_crashed_nodes_segment_plays_and_the_next_start_finishes_it(
    client, make, db, media_settings, aiohttp_client, tmp_path
):
    import signal
    import subprocess
    import sys

    from livehub.media.recording import segments

    stream, seller = await live_stream(client, make)
    await end_show(client, stream["id"], seller)
    # The crashed node has its own disk (this test's app must not finish the recording while it is written).
    node_b = tmp_path / "node-b"
    directory = node_b / "recordings" / stream["id"]
    recording = subprocess.Popen([sys.executable, "-c", RECORDING_NODE, str(directory)], cwd=Path.cwd())
    try:

        async def flushed():
            parts = segments(directory) if directory.exists() else []
            return parts and parts[0].stat().st_size > 10_000

        await until(flushed, "the first cluster on disk")
        await asyncio.sleep(3)
    finally:
        recording.send_signal(signal.SIGKILL)
        recording.wait()

    # What the crash left plays: at least the flushed seconds, frames that decode.
    [segment] = segments(directory)
    left = probe(segment)
    assert left["codecs"] == ["opus", "vp8"] and left["frames"] >= 30, left

    # The node starts again: the stream has ended, so the leftover segment becomes its replay.
    restarted = await aiohttp_client(create_app(media_settings.model_copy(update={"data_dir": node_b})))
    row = await replay_row(db, stream["id"])
    info = probe(Path(node_b) / "media" / row["media_key"])
    assert info["codecs"] == ["opus", "vp8"] and info["frames"] >= left["frames"]
    assert abs(info["duration"] - row["duration_s"]) < 0.5
    await until(lambda: _gone(directory), "the segments to be deleted")
    assert restarted.app[keys.MEDIA].recordings.waiting() == []


async def _gone(path: Path) -> bool:
    return not path.exists()


async def test_a_show_ended_elsewhere_after_its_host_left_is_finished_by_the_reaper(client, make, db, media_settings):
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    show = await Show(client, stream["id"], seller).start()
    await recording_started(node, stream["id"])
    await asyncio.sleep(2)
    await show.close()
    await until(lambda: _no_publication(node, stream["id"]), "the publication to end")
    # Another node ends the stream: this one learns it from the database, not from a call.
    await db.execute("UPDATE streams SET status = 'ended', ended_at = now() WHERE id = $1", _uuid(stream["id"]))
    row = await replay_row(db, stream["id"])
    info = probe(stored(media_settings, row))
    assert info["codecs"] == ["opus", "vp8"] and info["frames"] > 30


@pytest.mark.parametrize("codec", ["libx264", "libvpx"])
@pytest.mark.parametrize("size", [(320, 240), (642, 362), (1280, 720)])
def test_the_picture_size_is_read_from_the_first_keyframe(codec, size):
    """The muxers need it in the header: from a VP8 keyframe's header or an H.264 sequence parameter set
    (x264's High profile, with cropping for sizes that are not whole macroblocks)."""
    import fractions

    import numpy as np

    from livehub.media.recording import frame_size

    encoder = av.CodecContext.create(codec, "w")
    encoder.width, encoder.height, encoder.pix_fmt = *size, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90000)
    frame = av.VideoFrame.from_ndarray(np.zeros((size[1], size[0], 3), np.uint8), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    packets = [bytes(p) for p in encoder.encode(frame)] + [bytes(p) for p in encoder.encode(None)]
    mime = "video/H264" if codec == "libx264" else "video/VP8"
    assert frame_size(mime, packets[0]) == size
    assert frame_size(mime, b"\x00\x00\x01\x41\x9a") is None  # not a keyframe: no size


async def test_a_node_sharing_the_disk_never_finishes_segments_still_being_written(tmp_path):
    """Two nodes on one data directory (the production recipe): the one that did not record a stream sees
    its segments but leaves them while the other still writes, then finishes them once it has closed."""
    from livehub.media.recording import PublicationRecorder, Recordings

    recording_node, other_node = Recordings(tmp_path), Recordings(tmp_path)
    stream_id = uuid.uuid4()
    recorder = PublicationRecorder(recording_node.directory(stream_id), {"video": "video/VP8"}, lambda: None)
    saved = []

    async def save(stream_id, joined):
        saved.append(stream_id)

    assert other_node.waiting() == [stream_id]
    await other_node.finalize(stream_id, save)
    assert recording_node.directory(stream_id).exists()  # left alone: it is being written
    await recorder.close()
    await other_node.finalize(stream_id, save)
    assert not recording_node.directory(stream_id).exists()  # nothing playable was written: just removed
    assert saved == []


async def test_a_writer_that_falls_behind_drops_frames_and_asks_for_a_keyframe(tmp_path, caplog):
    """Frames come faster than the writer takes them (as when the disk stalls): past the queue's bound
    they are dropped and logged, video waits for a keyframe and asks the publisher for one; memory stays
    bounded and what was queued is written."""
    import fractions

    import numpy as np

    from livehub.media.recording import QUEUE_FRAMES, PublicationRecorder, segments

    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 160, 120, "yuv420p"
    encoder.time_base = fractions.Fraction(1, 90000)
    encoder.options = {"deadline": "realtime", "lag-in-frames": "0"}
    packets = []
    for n in range(2):
        frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), n * 50, np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = n * 3000
        packets += [(bytes(p), p.is_keyframe) for p in encoder.encode(frame)]
    (key, is_key), (delta, is_delta_key) = packets
    assert is_key and not is_delta_key
    asked = []
    recorder = PublicationRecorder(tmp_path / "show", {"video": "video/VP8"}, lambda: asked.append(1))
    asked.clear()  # the keyframe asked for when the segment starts
    recorder.frame("video", 90000, key, 0, True)
    await asyncio.sleep(0.05)  # the writer takes the first frame, then waits before its next batch
    for n in range(1, QUEUE_FRAMES + 200):
        recorder.frame("video", 90000, delta, n * 3000, False)  # one burst: the writer gets no turn
    assert asked, "no keyframe was asked for"
    assert "frames dropped" in caplog.text
    await recorder.close()
    [segment] = segments(tmp_path / "show")
    with av.open(str(segment)) as container:
        written = sum(1 for p in container.demux(video=0) if p.size)
    assert QUEUE_FRAMES <= written < QUEUE_FRAMES + 200


@pytest.mark.parametrize("change", ["record = false", "replay_discarded_at = now()"])
async def test_a_show_no_longer_wanted_when_it_ends_leaves_no_replay(client, make, db, media_settings, change):
    """Recorded while live, then opted out or its replay discarded before the recorder finished it: the
    segments are dropped and no replay comes back."""
    node = client.app[keys.MEDIA]
    stream, seller = await live_stream(client, make)
    show = await Show(client, stream["id"], seller).start()
    await recording_started(node, stream["id"])
    await asyncio.sleep(1)
    await db.execute(f"UPDATE streams SET {change} WHERE id = $1", _uuid(stream["id"]))
    await end_show(client, stream["id"], seller)
    await show.close()

    directory = node.recordings.directory(_uuid(stream["id"]))

    async def dropped():
        return not directory.exists()

    await until(dropped, "the segments to be dropped")
    assert await db.fetchval("SELECT count(*) FROM stream_replays") == 0
    assert not list((Path(media_settings.data_dir) / "media").rglob("*.webm"))
