"""Recording shows as they are relayed: the publisher's encoded frames muxed into files, never decoded.

While a stream is live, each publication (a publisher connection; a reconnect is a new one) writes one
segment under `<data_dir>/recordings/<stream_id>/`: VP8 video into WebM, H.264 into fragmented MP4, Opus
audio in either. Both stay readable when the process dies: WebM clusters and MP4 fragments go to disk every
`FLUSH_S` seconds, so a crash loses at most those seconds. When the stream ends, `finalize` joins the
segments (remuxed, not re-encoded) into one file, puts it in the media store, writes the stream_replays row
and deletes the segments.

Timestamps are wall-clock aligned: offset 0 is the wall time of the recording's first video keyframe
(`started_at`, kept in `meta.json`), and every packet sits at (its wall time - started_at). Each track is
anchored at the wall time its first frame of the segment arrived, then advances by its RTP clock, so audio
and video line up and a gap between two segments stays a gap in the joined file.

Nodes may share the data directory (the production recipe runs two on one disk), so a stream's directory
is locked (`flock` on its `.lock`): shared by the node recording into it, exclusive while one finishes it;
a node never finishes segments another is still writing, and two never finish the same stream at once.

Muxing runs in a thread per segment fed through a bounded queue: a stalled disk never blocks the event loop
(which the live rooms share) and never grows memory; when the queue is full frames are dropped (logged),
and video waits for the next keyframe, which is asked of the publisher.
"""

import asyncio
import contextlib
import fcntl
import fractions
import json
import logging
import os
import queue
import secrets
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import av

log = logging.getLogger(__name__)

FLUSH_S = 2.0
# The writer thread takes what has queued up this often: one wake-up (and GIL hand-over) per BATCH_S rather
# than one per frame, which is most of what recording costs (docs/BENCHMARKS.md, "Recording").
BATCH_S = 0.25
# Frames waiting for the writer thread: about 15 s of 30 fps video with its audio.
QUEUE_FRAMES = 1200
# How long ending a publication waits for its segment to close before letting it finish in the background.
CLOSE_WAIT_S = 10.0
# A finalize that fails is tried again after FINALIZE_RETRY_S, doubling up to FINALIZE_RETRY_MAX_S, and given
# up after FINALIZE_TRIES (about a day of trying).
FINALIZE_RETRY_S = 30.0
FINALIZE_RETRY_MAX_S = 3600.0
FINALIZE_TRIES = 30
VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
META = "meta.json"
LOCK = ".lock"
CONTENT_TYPES = {"webm": "video/webm", "mp4": "video/mp4"}
_WRAP = 1 << 32


def container_format(video_codec: str | None) -> str:
    """The segment format for a publication's video codec (a mime type like "video/H264", or None)."""
    return "mp4" if video_codec is not None and video_codec.lower().endswith("/h264") else "webm"


def _muxer_options(fmt: str) -> dict[str, str]:
    if fmt == "mp4":
        # Fragmented: a moov without samples up front, then self-contained fragments, cut at keyframes and
        # at least every FLUSH_S: whatever reached the disk plays.
        return {
            "movflags": "frag_keyframe+empty_moov+default_base_moof",
            "frag_duration": str(int(FLUSH_S * 1_000_000)),
            "flush_packets": "1",
        }
    # A Matroska cluster is written out when it closes: close one at least every FLUSH_S.
    return {"cluster_time_limit": str(int(FLUSH_S * 1000)), "flush_packets": "1"}


# -- frame sizes, read from the bitstream (the muxers want them in the header) ------------------------------


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """A VP8 keyframe's width and height (RFC 6386 section 9.1), None for other frames."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(data[6:8], "little") & 0x3FFF, int.from_bytes(data[8:10], "little") & 0x3FFF


class _Bits:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]
        self.pos += 1
        return (byte >> (7 - ((self.pos - 1) & 7))) & 1

    def bits(self, n: int) -> int:
        value = 0
        for _ in range(n):
            value = value << 1 | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bit():
            zeros += 1
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _nal_units(data: bytes):
    """The NAL units of an Annex B buffer (start codes removed)."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        yield data[start:end].rstrip(b"\x00")


def h264_size(data: bytes) -> tuple[int, int] | None:
    """The picture size from the sequence parameter set in an H.264 Annex B frame (ITU-T H.264 7.3.2.1.1)."""
    for nal in _nal_units(data):
        if not nal or nal[0] & 0x1F != 7:
            continue
        rbsp = nal[1:].replace(b"\x00\x00\x03", b"\x00\x00")
        try:
            return _sps_size(_Bits(rbsp))
        except IndexError:
            return None
    return None


def _sps_size(b: _Bits) -> tuple[int, int]:
    profile = b.bits(8)
    b.bits(16)  # constraint flags, level
    b.ue()  # seq_parameter_set_id
    chroma = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma = b.ue()
        if chroma == 3:
            b.bit()
        b.ue(), b.ue(), b.bit()  # bit depths, qpprime_y_zero_transform_bypass
        if b.bit():  # seq_scaling_matrix_present
            for i in range(12 if chroma == 3 else 8):
                if b.bit():
                    last = following = 8
                    for _ in range(16 if i < 6 else 64):
                        if following:
                            following = (last + b.se() + 256) % 256
                        last = following or last
    b.ue()  # log2_max_frame_num
    poc_type = b.ue()
    if poc_type == 0:
        b.ue()
    elif poc_type == 1:
        b.bit(), b.se(), b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue(), b.bit()  # max_num_ref_frames, gaps allowed
    width_mbs, height_units = b.ue() + 1, b.ue() + 1
    frame_mbs_only = b.bit()
    if not frame_mbs_only:
        b.bit()
    b.bit()  # direct_8x8_inference
    left = right = top = bottom = 0
    if b.bit():
        left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
    unit_x = 1 if chroma in (0, 3) else 2
    unit_y = (1 if chroma in (0, 2, 3) else 2) * (2 - frame_mbs_only)
    width = width_mbs * 16 - (left + right) * unit_x
    height = (2 - frame_mbs_only) * height_units * 16 - (top + bottom) * unit_y
    return width, height


def frame_size(codec: str, data: bytes) -> tuple[int, int] | None:
    return h264_size(data) if codec.lower().endswith("/h264") else vp8_size(data)


# -- one segment: a file written by its own thread ----------------------------------------------------------


@dataclass
class _Packet:
    kind: str
    pts: int  # in the kind's clock (VIDEO_CLOCK or AUDIO_CLOCK), from the recording's offset 0
    data: bytes
    keyframe: bool  # every audio frame is one


class SegmentWriter:
    """One segment file, muxed by a thread from a bounded queue. `put` never blocks; False = dropped."""

    def __init__(self, path: Path, video_codec: str | None, audio: bool):
        self.path = path
        self.format = container_format(video_codec)
        self._video_codec = video_codec
        self._audio = audio
        self._queue: queue.Queue[_Packet | None] = queue.Queue(QUEUE_FRAMES)
        self.frames_written = 0  # frames handed to the thread
        self._thread = threading.Thread(target=self._run, name=f"recording-{path.parent.name[:8]}", daemon=True)
        self._thread.start()

    def put(self, packet: _Packet) -> bool:
        try:
            self._queue.put_nowait(packet)
        except queue.Full:
            return False
        self.frames_written += 1
        return True

    async def close(self) -> None:
        """Writes what is queued, closes the file (its index and trailer) and ends the thread."""
        while True:
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                await asyncio.sleep(0.05)
        # Polled rather than joined in the default executor: a writer stuck on a stalled disk must not hold
        # one of its threads, nor the loop's shutdown, which waits for them.
        while self._thread.is_alive():
            await asyncio.sleep(0.05)

    def _run(self) -> None:
        container = None
        streams: dict[str, av.stream.Stream] = {}
        noted: set[str] = set()
        closing = False
        try:
            while True:
                batch = [self._queue.get()]
                with contextlib.suppress(queue.Empty):
                    while batch[-1] is not None:
                        batch.append(self._queue.get_nowait())
                closing = batch[-1] is None
                for packet in batch:
                    if packet is None:
                        return
                    if container is None:
                        container, streams = self._open(packet)
                    if packet.kind not in noted:
                        clock = VIDEO_CLOCK if packet.kind == "video" else AUDIO_CLOCK
                        _note_first_packet(self.path, packet.kind, packet.pts / clock)
                        noted.add(packet.kind)
                    out = av.Packet(packet.data)
                    out.stream = streams[packet.kind]
                    out.pts = out.dts = packet.pts
                    out.time_base = fractions.Fraction(1, VIDEO_CLOCK if packet.kind == "video" else AUDIO_CLOCK)
                    out.is_keyframe = packet.keyframe
                    container.mux_one(out)
                time.sleep(BATCH_S)
        except Exception:
            log.exception("recording %s failed; the segment keeps what was written", self.path)
            # Drain until closed, so the event loop's puts never fill a queue that nothing empties any more.
            while not closing:
                closing = self._queue.get() is None
        finally:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()

    def _open(self, first: _Packet):
        container = av.open(str(self.path), "w", format=self.format, options=_muxer_options(self.format))
        streams = {}
        if self._video_codec is not None:
            width, height = frame_size(self._video_codec, first.data) or (640, 480)
            name = "h264" if self.format == "mp4" else "vp8"
            streams["video"] = container.add_mux_stream(name, width=width, height=height)
            streams["video"].time_base = fractions.Fraction(1, VIDEO_CLOCK)
        if self._audio:
            # An Opus encoder is opened (and never fed) only for its OpusHead, which both muxers need.
            streams["audio"] = container.add_stream("libopus", rate=AUDIO_CLOCK)
            streams["audio"].time_base = fractions.Fraction(1, AUDIO_CLOCK)
        return container, streams


# -- a publication's recorder: RTP timestamps in, wall-aligned packets out ----------------------------------


class _Track:
    """One track's clock: the wall time its first frame arrived plus its RTP timestamps since."""

    def __init__(self, clock: int, timestamp: int, wall: float):
        self.clock, self.wall0 = clock, wall
        self.first = self.last = timestamp
        self.extended = 0  # RTP ticks since the first frame, across 32-bit wrap-arounds
        self.last_pts = -1

    def seconds(self, timestamp: int) -> float:
        delta = (timestamp - self.last) % _WRAP
        if delta >= _WRAP // 2:
            delta -= _WRAP  # a little behind (reordered), not a wrap-around
        self.last = timestamp
        self.extended += delta
        return self.wall0 + self.extended / self.clock


class PublicationRecorder:
    """Takes a publication's frames (`frame`, from EncodedSource) and writes one segment of the show."""

    def __init__(self, directory: Path, codecs: dict[str, str], request_keyframe: Callable[[], None]):
        self.directory = directory
        self._video_codec = codecs.get("video")
        self._request_keyframe = request_keyframe
        self._tracks: dict[str, _Track] = {}
        self._started_at = read_started_at(directory)
        self._waiting_for_keyframe = self._video_codec is not None
        self._dropped = 0
        directory.mkdir(parents=True, exist_ok=True)
        # Shared: a node that finishes the stream's recording waits until nobody records into it.
        self._lock = lock_directory(directory, exclusive=False)
        if self._lock is None:
            raise BlockingIOError(f"{directory} is being finished by another process")
        fmt = container_format(self._video_codec)
        number = 1 + sum(1 for _ in directory.glob("segment-*"))
        self.writer = SegmentWriter(directory / f"segment-{number:04d}.{fmt}", self._video_codec, "audio" in codecs)
        request_keyframe()

    def frame(self, kind: str, clock_rate: int, data: bytes, timestamp: int, keyframe: bool) -> None:
        wall = time.time()
        track = self._tracks.get(kind)
        if track is None:
            track = self._tracks[kind] = _Track(clock_rate, timestamp, wall)
        at = track.seconds(timestamp)
        if self._waiting_for_keyframe:
            if kind != "video" or not keyframe:
                return
            if self.writer.frames_written == 0 and frame_size(self._video_codec, data) is None:
                # The file's header needs the picture size (and H.264 its parameter sets) from the first frame.
                return
            self._waiting_for_keyframe = False
        if self._started_at is None:
            self._started_at = at
            write_started_at(self.directory, at)
        clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        pts = round((at - self._started_at) * clock)
        if pts <= track.last_pts:
            if pts < 0:
                return  # before offset 0 (audio that arrived ahead of the first keyframe)
            pts = track.last_pts + 1
        if not self.writer.put(_Packet(kind, pts, data, keyframe or kind != "video")):
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 100 == 0:
                log.warning("recording %s: the disk is behind, %d frames dropped", self.directory, self._dropped)
            if self._video_codec is not None:
                self._waiting_for_keyframe = True
                self._request_keyframe()
            return
        track.last_pts = pts

    async def close(self) -> None:
        try:
            await self.writer.close()
        finally:
            os.close(self._lock)


def lock_directory(directory: Path, *, exclusive: bool) -> int | None:
    """An open descriptor holding the directory's lock, or None if another holder excludes it."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# The stream directory's meta.json: {"started_at": wall time of offset 0, "segments": {name: {kind: seconds
# from offset 0 of the track's first packet}}, "finalize": {"attempts", "next_try"}}. The containers are not
# trusted to give those seconds back (fragmented MP4 reads each track back from 0): the join adds them.
_meta_lock = threading.Lock()


def read_meta(directory: Path) -> dict:
    try:
        meta = json.loads((directory / META).read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def update_meta(directory: Path, **changes) -> None:
    """Merges `changes` into meta.json (written whole, then renamed: a crash leaves the old or the new)."""
    with _meta_lock:
        meta = read_meta(directory)
        meta.update(changes)
        tmp = directory / f".{META}.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, directory / META)


def read_started_at(directory: Path) -> float | None:
    return read_meta(directory).get("started_at")


def write_started_at(directory: Path, at: float) -> None:
    update_meta(directory, started_at=at)


def _note_first_packet(path: Path, kind: str, seconds: float) -> None:
    with _meta_lock:
        meta = read_meta(path.parent)
        meta.setdefault("segments", {}).setdefault(path.name, {})[kind] = seconds
        tmp = path.parent / f".{META}.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, path.parent / META)


# -- finishing: the segments joined into one file ----------------------------------------------------------


@dataclass
class Joined:
    path: Path
    content_type: str
    duration_s: float
    started_at: datetime


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("segment-*") if p.suffix in (".webm", ".mp4"))


def join_segments(directory: Path) -> Joined | None:
    """The segments remuxed, in order, into one file next to them (no re-encoding); None if they hold
    nothing playable. A segment cut short by a crash gives what was written of it. Errors writing the joined
    file are raised (the segments stay for another try)."""
    meta = read_meta(directory)
    started_at = meta.get("started_at")
    fmt = None
    parts = []
    for part in segments(directory):
        fmt = fmt or part.suffix[1:]
        if part.suffix[1:] != fmt:
            log.warning("recording %s: %s is not %s like the first segment; left out", directory, part.name, fmt)
        else:
            parts.append(part)
    if started_at is None or not parts:
        return None
    target = directory / f"joined.{fmt}"
    options = {"movflags": "faststart"} if fmt == "mp4" else {}
    output = av.open(str(target), "w", format=fmt, options=options)
    try:
        # Every track of every segment is added before the first packet: a stream added to a muxer whose
        # header is written crashes the process (SIGFPE in the mux after it).
        out_streams = _output_streams(parts, output)
        last_dts: dict[str, float] = {}
        end = 0.0
        firsts = meta.get("segments", {})
        for part in parts:
            end = max(end, _copy_segment(part, firsts.get(part.name, {}), output, out_streams, last_dts))
    except BaseException:
        with contextlib.suppress(Exception):
            output.close()
        target.unlink(missing_ok=True)
        raise
    output.close()
    if not out_streams or end <= 0:
        target.unlink(missing_ok=True)
        return None
    return Joined(target, CONTENT_TYPES[fmt], end, datetime.fromtimestamp(started_at, UTC))


def _output_streams(parts: list[Path], output) -> dict[str, tuple]:
    """kind -> (output stream, codec name): the union of the segments' tracks, each from the first segment
    that has it."""
    out_streams: dict[str, tuple] = {}
    for part in parts:
        try:
            source = av.open(str(part))
        except (av.error.FFmpegError, OSError):
            continue  # _copy_segment says so
        with source:
            for stream in source.streams:
                if stream.type in ("video", "audio") and stream.type not in out_streams:
                    out_streams[stream.type] = (output.add_stream_from_template(stream), stream.codec_context.name)
    return out_streams


def _copy_segment(part: Path, firsts: dict[str, float], output, out_streams: dict, last_dts: dict) -> float:
    """Copies one segment's packets into `output` (`out_streams`: kind -> (output stream, the codec it
    takes)), each track moved to where the recorder wrote its first packet (`firsts`: kind -> seconds; a
    track without is taken as read); returns where its last packet ends, in seconds. Only reading the
    segment may fail quietly (a crash's last cluster or fragment, cut short); writing the output may not."""
    end = 0.0
    try:
        source = av.open(str(part))
    except (av.error.FFmpegError, OSError) as exc:
        log.warning("recording segment %s unreadable (%s): left out", part, exc)
        return 0.0
    with source:
        kinds = {}
        for stream in source.streams:
            if stream.type not in out_streams:
                continue
            if out_streams[stream.type][1] != stream.codec_context.name:
                log.warning("recording segment %s: a %s track in another codec, left out", part, stream.type)
                continue
            kinds[stream.index] = stream.type
        shifts: dict[str, int] = {}  # kind -> ticks (of the packet's time base) to add
        packets = source.demux(*[s for s in source.streams if s.index in kinds])
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                log.info("recording segment %s ends early (%s)", part, exc)
                break
            if packet.size == 0 or packet.pts is None:
                continue
            kind = kinds[packet.stream.index]
            dts = packet.dts if packet.dts is not None else packet.pts
            if kind not in shifts:
                wanted = firsts.get(kind)
                shifts[kind] = 0 if wanted is None else round(wanted / packet.time_base) - dts
            packet.pts += shifts[kind]
            packet.dts = dts + shifts[kind]
            seconds = float(packet.dts * packet.time_base)
            if kind in last_dts and seconds <= last_dts[kind]:
                continue  # overlapping segments (clock trouble): keep time moving forward
            last_dts[kind] = seconds
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            packet.stream = out_streams[kind][0]
            output.mux_one(packet)
    return end


# -- the node's recordings ---------------------------------------------------------------------------------


class Recordings:
    """This node's recordings: a recorder per publication, and finishing those of ended streams."""

    def __init__(self, root: Path):
        self.root = root
        self.active: dict[UUID, PublicationRecorder] = {}  # recording, or closing its segment
        self._closing: dict[UUID, asyncio.Future] = {}
        self._finishing: set[UUID] = set()

    def directory(self, stream_id: UUID) -> Path:
        return self.root / str(stream_id)

    def start(self, stream_id: UUID, codecs: dict[str, str], request_keyframe: Callable[[], None]):
        recorder = PublicationRecorder(self.directory(stream_id), codecs, request_keyframe)
        self.active[stream_id] = recorder
        log.info("stream %s: recording to %s", stream_id, recorder.writer.path)
        return recorder

    async def stop(self, stream_id: UUID, recorder: PublicationRecorder) -> None:
        """Closes the publication's segment, waiting at most CLOSE_WAIT_S: a stalled disk must not hold up
        ending a session (POST /end, a publish replacing one, the reaper). The recorder stays in `active`
        until its file is closed, so nothing finishes the stream under it; `finalize` waits for it.
        This covers a disk that stalls while packets are written (PyAV lets go of the GIL there), not one that
        stalls while the file is opened, its header written or its end (PyAV holds the GIL for those: the whole
        process waits with it)."""
        closing = asyncio.ensure_future(self._close(stream_id, recorder))
        self._closing[stream_id] = closing
        done, _ = await asyncio.wait({closing}, timeout=CLOSE_WAIT_S)
        if not done:
            log.warning("stream %s: the recording's disk is slow; its segment closes in the background", stream_id)

    async def _close(self, stream_id: UUID, recorder: PublicationRecorder) -> None:
        try:
            await recorder.close()
        except Exception:
            log.exception("stream %s: closing the recording's segment failed", stream_id)
        finally:
            if self.active.get(stream_id) is recorder:
                del self.active[stream_id]
            if self._closing.get(stream_id) is asyncio.current_task():
                del self._closing[stream_id]

    def waiting(self) -> list[UUID]:
        """Streams with segments on this node's disk and no publication recording now: finished once
        their stream has ended (left over from a publisher that went, or from before a restart)."""
        try:
            names = [p.name for p in self.root.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []
        ids = []
        for name in names:
            with contextlib.suppress(ValueError):
                stream_id = UUID(name)
                if stream_id not in self.active and stream_id not in self._finishing:
                    ids.append(stream_id)
        return ids

    async def finalize(self, stream_id: UUID, save: Callable[[UUID, Joined], Awaitable[bool]]) -> None:
        """Join the stream's segments and hand the file to `save` (store it, write the row; False if the
        stream already has a replay), then delete the segments. Doing it again does nothing."""
        directory = self.directory(stream_id)
        if stream_id in self._finishing:
            return
        self._finishing.add(stream_id)
        try:
            # A segment still closing (its writer draining to a slow disk) is waited for, never joined half done.
            while (closing := self._closing.get(stream_id)) is not None:
                await asyncio.shield(closing)
            if stream_id in self.active or not directory.exists():
                return
            await self._finalize(stream_id, directory, save)
        finally:
            self._finishing.discard(stream_id)

    async def _finalize(self, stream_id: UUID, directory: Path, save: Callable[[UUID, Joined], Awaitable[bool]]):
        try:
            lock = lock_directory(directory, exclusive=True)
        except FileNotFoundError:
            lock = None  # finished by another node a moment ago
        if lock is None:
            return  # another process records into it (its reaper finishes it later) or is finishing it
        try:
            tries = read_meta(directory).get("finalize", {})
            if tries.get("gave_up") or tries.get("next_try", 0) > time.time():
                return  # failed before: tried again later (the reaper asks every few seconds), or never
            try:
                joined = await asyncio.to_thread(join_segments, directory)
                if joined is None:
                    log.info("stream %s: its recording holds nothing playable", stream_id)
                else:
                    await save(stream_id, joined)
            except Exception:
                attempts = tries.get("attempts", 0) + 1
                await asyncio.to_thread(update_meta, directory, finalize=_failed(stream_id, directory, attempts))
                return
            await asyncio.to_thread(shutil.rmtree, directory, True)
        finally:
            os.close(lock)


def _failed(stream_id: UUID, directory: Path, attempts: int) -> dict:
    """A finalize that failed (the store away, the disk full), logged with its error: tried again after a
    delay that doubles each time, given up loudly after FINALIZE_TRIES (the segments stay on disk; removing
    "finalize" from their meta.json has them tried again). Returns meta.json's new "finalize"."""
    if attempts >= FINALIZE_TRIES:
        log.exception(
            "stream %s: finishing its recording failed %d times; giving up, the segments stay in %s",
            stream_id,
            attempts,
            directory,
        )
        return {"attempts": attempts, "gave_up": True}
    delay = min(FINALIZE_RETRY_S * 2 ** (attempts - 1), FINALIZE_RETRY_MAX_S)
    log.warning(
        "stream %s: finishing its recording failed (try %d of %d), trying again in %.0f s",
        stream_id,
        attempts,
        FINALIZE_TRIES,
        delay,
        exc_info=True,
    )
    return {"attempts": attempts, "next_try": time.time() + delay}


def replay_key(stream_id: UUID, fmt: str) -> str:
    # A new random name each time: a discarded and re-made replay never answers from a cache's old bytes.
    return f"replays/{stream_id}/{secrets.token_hex(8)}.{fmt}"
