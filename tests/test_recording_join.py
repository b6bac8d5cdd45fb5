"""Joining a show's segments (livehub/media/recording.py, `join_segments`) on frames encoded here and written by
the recorder's own SegmentWriter: segments with different tracks, H.264 in fragmented MP4 (whose tracks read
back from 0), an output that cannot be written."""

import asyncio
import fractions
import time
from pathlib import Path

import av
import numpy as np
import pytest

from livehub.media import recording
from livehub.media.recording import SegmentWriter, _Packet, join_segments, write_started_at

MIME = {"h264": "video/H264", "vp8": "video/VP8"}


def encoded_video(codec: str, size: tuple[int, int], count: int, noise=False) -> list[tuple[bytes, bool]]:
    """`count` frames of a plain colour (or of noise: large frames) at 30 fps, encoded the way a browser
    would send them."""
    context = av.CodecContext.create("libx264" if codec == "h264" else "libvpx", "w")
    context.width, context.height, context.pix_fmt = *size, "yuv420p"
    context.time_base = fractions.Fraction(1, 90000)
    context.options = {"tune": "zerolatency", "bf": "0"} if codec == "h264" else {"deadline": "realtime"}
    picture = np.full((size[1], size[0], 3), (200, 40, 90), np.uint8)
    out = []
    random = np.random.default_rng(1)
    for i in range(count):
        if noise:
            picture = random.integers(0, 256, (size[1], size[0], 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * 3000
        out += [(bytes(p), p.is_keyframe) for p in context.encode(frame)]
    return out


def encoded_audio(count: int) -> list[bytes]:
    """`count` 20 ms Opus frames of silence."""
    context = av.CodecContext.create("libopus", "w")
    context.sample_rate, context.layout, context.format = 48000, "stereo", "s16"
    out = []
    for i in range(count):
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1920), np.int16), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in context.encode(frame)]
    return out


def write_segment(
    directory: Path,
    number: int,
    codec: str,
    *,
    at: float,
    seconds: float,
    size=(320, 240),
    audio_at: float | None = None,
    video: bool = True,
) -> Path:
    """Segment `number`: video from `at` seconds after the recording's offset 0, audio (if `audio_at`) from
    `audio_at`, both `seconds` long, through the recorder's SegmentWriter."""
    fmt = recording.container_format(MIME[codec])
    writer = SegmentWriter(
        directory / f"segment-{number:04d}.{fmt}", MIME[codec] if video else None, audio_at is not None
    )
    if video:
        for i, (data, key) in enumerate(encoded_video(codec, size, int(seconds * 30))):
            assert writer.put(_Packet("video", round((at + i / 30) * 90000), data, key))
    if audio_at is not None:
        for i, data in enumerate(encoded_audio(int(seconds * 50))):
            assert writer.put(_Packet("audio", round((audio_at + i / 50) * 48000), data, True))
    asyncio.run(writer.close())
    return writer.path


def read(path: Path) -> dict:
    """Codecs, where each track's first packet sits (seconds), the decoded video frames' times and sizes."""
    with av.open(str(path)) as container:
        first = {}
        for packet in container.demux():
            if packet.pts is not None and packet.stream.type not in first:
                first[packet.stream.type] = float(packet.pts * packet.time_base)
        codecs = sorted(s.codec_context.name for s in container.streams)
    with av.open(str(path)) as container:
        times, sizes = [], []
        for frame in container.decode(video=0):
            times.append(float(frame.time))
            if not sizes or sizes[-1] != (frame.width, frame.height):
                sizes.append((frame.width, frame.height))
    return {"codecs": codecs, "first": first, "times": times, "sizes": sizes}


@pytest.fixture
def show(tmp_path) -> Path:
    directory = tmp_path / "recordings" / "a-show"
    directory.mkdir(parents=True)
    write_started_at(directory, time.time())
    return directory


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_segments_with_different_tracks_join_into_one_file_with_both(show, codec):
    """The host's first connection sent video only, the second video and audio: the joined file has both
    tracks (all of them are known before its header is written; adding one after crashed the muxer)."""
    write_segment(show, 1, codec, at=0, seconds=2)
    write_segment(show, 2, codec, at=3, seconds=2, audio_at=3)
    joined = join_segments(show)
    info = read(joined.path)
    assert info["codecs"] == sorted(["opus", codec])
    assert len(info["times"]) == 120
    assert abs(info["first"]["audio"] - 3.0) < 0.05
    assert abs(joined.duration_s - 5.0) < 0.1


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_a_reconnect_keeps_its_gap_and_both_sizes(show, codec):
    """Segment 2 starts a second after segment 1 ended, at another size: the joined file has both, the gap
    kept (fragmented MP4 reads back from 0 whatever was written: the recorder's meta says where it was)."""
    write_segment(show, 1, codec, at=0, seconds=2, audio_at=0)
    write_segment(show, 2, codec, at=3, seconds=2, size=(480, 360), audio_at=3)
    joined = join_segments(show)
    info = read(joined.path)
    assert info["sizes"] == [(320, 240), (480, 360)]
    assert len(info["times"]) == 120
    assert abs(info["times"][0]) < 0.05 and abs(info["times"][60] - 3.0) < 0.05, info["times"][55:65]
    assert abs(joined.duration_s - 5.0) < 0.1


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_audio_starting_after_video_in_one_segment_stays_in_sync(show, codec):
    write_segment(show, 1, codec, at=0, seconds=2, audio_at=0.5)
    info = read(join_segments(show).path)
    assert abs(info["first"]["video"]) < 0.05
    assert abs(info["first"]["audio"] - 0.5) < 0.05, info["first"]


def test_a_segment_starting_late_sits_at_its_offset(show):
    """A show whose recording's first segment starts after offset 0 (its meta's offset) keeps that."""
    write_segment(show, 1, "h264", at=1.5, seconds=1, audio_at=1.5)
    info = read(join_segments(show).path)
    assert abs(info["times"][0] - 1.5) < 0.05 and abs(info["first"]["audio"] - 1.5) < 0.05


@pytest.mark.parametrize("codec", ["vp8", "h264"])
def test_a_joined_file_that_cannot_be_written_is_an_error_not_a_short_replay(show, codec):
    """The disk is full (the joined file is /dev/full): the join fails, it does not hand back what it got
    out as if a segment had ended early, and the segments stay for another try."""
    write_segment(show, 1, codec, at=0, seconds=3, audio_at=0)
    (show / f"joined.{recording.container_format(MIME[codec])}").symlink_to("/dev/full")
    with pytest.raises((av.error.FFmpegError, OSError)):
        join_segments(show)
    assert len(recording.segments(show)) == 1


async def test_finishing_a_stream_while_its_segment_closes_waits_for_it(tmp_path):
    """The publisher leaves and the stream ends at once: `finalize` starts while the segment's writer is
    still closing its file; it waits for that and stores the whole segment (it used to find the stream no
    longer recording, start, and give up or join a file without its end)."""
    import uuid

    from livehub.media.recording import Recordings

    recordings = Recordings(tmp_path / "recordings")
    stream_id = uuid.uuid4()
    recorder = recordings.start(stream_id, {"video": MIME["vp8"]}, lambda: None)
    for i, (data, key) in enumerate(encoded_video("vp8", (320, 240), 60)):
        recorder.frame("video", 90000, data, i * 3000, key)
    saved = []

    async def save(stream_id, joined):
        saved.append(read(joined.path))
        return True

    stopping = asyncio.create_task(recordings.stop(stream_id, recorder))
    await asyncio.sleep(0)  # stop has begun closing
    await recordings.finalize(stream_id, save)
    await stopping
    assert len(saved) == 1 and len(saved[0]["times"]) == 60
    assert not recordings.directory(stream_id).exists() and stream_id not in recordings.active


async def test_a_finalize_that_keeps_failing_backs_off_then_gives_up_loudly(tmp_path, monkeypatch, caplog):
    """The disk is full (the joined file is /dev/full) every time: each failure is counted in the stream's
    meta.json and the next try waits twice as long (it used to re-join the whole show every 5 s, forever);
    after FINALIZE_TRIES an error is logged and the segments stay, never tried again."""
    import uuid

    from livehub.media.recording import Recordings, read_meta, update_meta

    monkeypatch.setattr(recording, "FINALIZE_TRIES", 3)
    recordings = Recordings(tmp_path / "recordings")
    stream_id = uuid.uuid4()
    directory = recordings.directory(stream_id)
    directory.mkdir(parents=True)
    write_started_at(directory, time.time())
    await asyncio.to_thread(write_segment, directory, 1, "h264", at=0, seconds=3, audio_at=0)
    saved = []

    async def save(stream_id, joined):
        saved.append(joined)

    async def attempt():
        (directory / "joined.mp4").unlink(missing_ok=True)
        (directory / "joined.mp4").symlink_to("/dev/full")
        await recordings.finalize(stream_id, save)
        return read_meta(directory).get("finalize")

    before = time.time()
    first = await attempt()
    assert first["attempts"] == 1 and first["next_try"] >= before + recording.FINALIZE_RETRY_S
    assert await attempt() == first  # not due yet: nothing tried
    update_meta(directory, finalize={**first, "next_try": 0})  # the time has come
    second = await attempt()
    assert second["attempts"] == 2 and second["next_try"] >= time.time() + 1.9 * recording.FINALIZE_RETRY_S
    update_meta(directory, finalize={**second, "next_try": 0})
    with caplog.at_level("ERROR"):
        assert await attempt() == {"attempts": 3, "gave_up": True}
    assert any(r.levelname == "ERROR" and "giving up" in r.getMessage() for r in caplog.records)
    (directory / "joined.mp4").unlink(missing_ok=True)
    await recordings.finalize(stream_id, save)  # given up: not tried again, even with room on the disk
    assert saved == [] and len(recording.segments(directory)) == 1


async def test_a_stalled_disk_does_not_hold_up_ending_the_publication(tmp_path, monkeypatch):
    """The segment's file is a pipe nobody reads (a disk that stalls: the writer thread blocks writing the
    first cluster). Stopping the publication's recording returns after CLOSE_WAIT_S (it used to wait for the
    disk, holding up POST /end); the stream counts as recording until the writer is done, then finishing it
    goes ahead."""
    import fcntl
    import os
    import subprocess
    import uuid

    from livehub.media.recording import Recordings

    monkeypatch.setattr(recording, "CLOSE_WAIT_S", 0.5)
    recordings = Recordings(tmp_path / "recordings")
    stream_id = uuid.uuid4()
    recorder = recordings.start(stream_id, {"video": MIME["vp8"]}, lambda: None)
    path = recorder.writer.path
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # there, so the writer's open goes through; unread
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
    # 3 s of noise: the first cluster (2 s, far more than the pipe holds) is written while they are muxed.
    for i, (data, key) in enumerate(encoded_video("vp8", (320, 240), 90, noise=True)):
        recorder.frame("video", 90000, data, i * 3000, key)

    await asyncio.wait_for(recordings.stop(stream_id, recorder), 20)  # before: waited for the disk forever
    assert stream_id in recordings.active and stream_id not in recordings.waiting()
    saved = []

    async def save(stream_id, joined):
        saved.append(joined)

    finishing = asyncio.create_task(recordings.finalize(stream_id, save))
    await asyncio.sleep(0.2)
    assert not finishing.done()
    # The disk comes back: a reader in another process drains the pipe to its end (PyAV writes the file's
    # end holding the GIL, so a reader in this process could not make room while it waits, and a bigger pipe
    # might still be too small for what is left). What it wrote goes nowhere.
    fcntl.fcntl(reader, fcntl.F_SETFL, fcntl.fcntl(reader, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    drain = subprocess.Popen(["cat"], stdin=reader, stdout=subprocess.DEVNULL)
    os.close(reader)
    os.unlink(path)
    await asyncio.wait_for(finishing, 20)
    assert await asyncio.to_thread(drain.wait, 20) == 0
    assert saved == [] and not recordings.directory(stream_id).exists()
    assert stream_id not in recordings.active
