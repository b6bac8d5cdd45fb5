"""Media relay benchmark: server CPU and frames per second each viewer receives, by relay mode and viewers.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        flock /tmp/livehub-bench.lock .venv/bin/python bench/media.py [--viewers 1,4,8,16,32] \\
        [--modes encoded,decoded] [--seconds 10] [--warmup 4] [--per-process 8] [--recording off,on] [--repeat 1]

For each mode and viewer count: a fresh server process (LIVEHUB_MEDIA_RELAY=<mode>, ICE on 127.0.0.1
only), a publisher process sending a 640x480 30 fps VP8 test pattern through POST .../publish, and the
viewers as aiortc peers in load-generator processes (up to --per-process each) that POST .../watch. Once
every viewer has its first frame and --warmup seconds have passed, the server process's CPU (utime+stime
of all its threads, from /proc) and each viewer's received frames are counted over the same --seconds.
Viewers count reassembled encoded frames at their receiver without decoding them (the hook in
livehub/media/internals.py), so 32 viewers do not need 32 decoders on the same two cores.
Everything runs on this machine and talks over 127.0.0.1; the database is `livehub_bench_media`.

Recording (docs/REPLAYS.md): `--recording off` (the default) runs the server with LIVEHUB_RECORD_SHOWS=false;
`--recording off,on` runs each viewer count both ways, one after the other (the encoded relay only: the
decoded one records nothing), so the recorder's CPU sits next to the per-viewer cost. The server then
writes into a throwaway LIVEHUB_DATA_DIR, and the row says how many bytes of segments it wrote in the window.
`--repeat R` goes through everything R times, so that runs with and without recording alternate.

`--recorder-cost` measures the recorder alone, in this process, more finely than a server's CPU allows:
a 640x480 VP8 test pattern (about 250 kbit/s) and 20 ms Opus frames, encoded beforehand, are handed over
in real time for --seconds, as the encoded relay hands them over, once to nothing and once to a
PublicationRecorder (livehub/media/recording.py) writing into a temporary directory; the difference in
this process's CPU (getrusage: every thread) is what recording costs.
"""

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from common import (
    CHEAP_PASSWORD_HASHING,
    CLK_TCK,
    HOST,
    ROOT,
    cpu_ticks,
    die_with_parent,
    free_port,
    ints,
    live_stream,
    log,
    serve_livehub,
    spawn_server,
    stop_process,
    wait_ready,
    with_database,
)
from common import ensure_database as common_ensure_database

DATABASE = "livehub_bench_media"
SCRIPT = Path(__file__).resolve()


# -- child processes ---------------------------------------------------------------------------------


async def publisher(base: str, stream_id: str, token: str) -> None:
    from livehub.media.synthetic import PatternTrack, publish

    async with aiohttp.ClientSession(base, headers={"Authorization": f"Bearer {token}"}) as http:

        async def post_offer(sdp: str) -> dict:
            async with http.post(f"/api/streams/{stream_id}/publish", json={"sdp": sdp, "type": "offer"}) as res:
                body = await res.json()
                if res.status != 200:
                    raise RuntimeError(f"publish: {res.status} {body}")
                return body

        pc = await publish(PatternTrack(640, 480, 30), post_offer, host_addresses=[HOST])
        print("publishing", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await pc.close()


async def viewers(base: str, stream_id: str, count: int, start_at: float, seconds: float) -> None:
    """`count` viewers; prints one JSON line: the frames each received in [start_at, start_at + seconds]
    (wall clock), and the time its first frame took."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from livehub.media import internals

    end_at = start_at + seconds
    counts = [0] * count
    first = [None] * count
    pcs = []
    async with aiohttp.ClientSession(base) as http:
        for i in range(count):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs.append(pc)
            began = time.monotonic()

            def on_frame(codec, data, timestamp, i=i, began=began):
                now = time.time()
                if first[i] is None:
                    first[i] = time.monotonic() - began
                if start_at <= now < end_at:
                    counts[i] += 1

            @pc.on("track")
            def on_track(track, pc=pc, on_frame=on_frame):
                if track.kind == "video":
                    receiver = next(r for r in pc.getReceivers() if r.track is track)
                    internals.tap_encoded_frames(receiver, on_frame)

            pc.addTransceiver("video", direction="recvonly")
            internals.restrict_host_addresses(pc, [HOST])
            await pc.setLocalDescription(await pc.createOffer())
            async with http.post(
                f"/api/streams/{stream_id}/watch", json={"sdp": pc.localDescription.sdp, "type": "offer"}
            ) as res:
                body = await res.json()
                if res.status != 200:
                    raise RuntimeError(f"watch: {res.status} {body}")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        await asyncio.sleep(max(0.0, end_at - time.time()) + 0.2)
        print(json.dumps({"frames": counts, "first_frame_s": first}), flush=True)
        await asyncio.gather(*(pc.close() for pc in pcs))


# -- the run -----------------------------------------------------------------------------------------


async def setup_stream(base: str, dsn: str) -> tuple[str, str]:
    """A live stream whose host's token publishes, through the REST API."""
    async with aiohttp.ClientSession(base) as http:
        return await live_stream(http, dsn, f"media-{os.urandom(4).hex()}", stock=1)


def child(args: list[str], stdout=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=str(ROOT),
        stdout=stdout,
        stderr=None,
        text=True,
        start_new_session=True,
    )


def recorded_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "recordings").rglob("segment-*"))


async def one_run(dsn: str, mode: str, n: int, opts: argparse.Namespace, recording: bool = False) -> dict:
    port = free_port()
    base = f"http://{HOST}:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="livehub-bench-media-"))
    env = {
        "DATABASE_URL": dsn,
        "LIVEHUB_DATA_DIR": str(data_dir),
        "LIVEHUB_RECORD_SHOWS": "true" if recording else "false",
        "LIVEHUB_MEDIA_RELAY": mode,
        "LIVEHUB_MEDIA_HOST_ADDRESSES": '["127.0.0.1"]',
        "LIVEHUB_MEDIA_MAX_VIEWERS": "1000",
        # Every load-generator peer comes from 127.0.0.1.
        "LIVEHUB_MEDIA_WATCH_PER_ADDRESS": "1000",
        **CHEAP_PASSWORD_HASHING,
        "LIVEHUB_LOG_LEVEL": "WARNING",
    }
    server = spawn_server(SCRIPT, port, env, None)  # its output goes where this script's goes
    procs = [server]
    try:
        await wait_ready(base, server)
        stream_id, token = await setup_stream(base, dsn)
        pub = child(["--publish", base, stream_id, token], stdout=subprocess.PIPE)
        procs.append(pub)
        line = await asyncio.to_thread(pub.stdout.readline)
        if "publishing" not in line:
            raise RuntimeError("the publisher did not start")
        # Every viewer connects before the window opens: connecting takes longer with more of them.
        start_at = time.time() + 3.0 + 0.25 * n + opts.warmup
        gens = []
        for k in range(0, n, opts.per_process):
            count = min(opts.per_process, n - k)
            args = ["--view", base, stream_id, str(count), repr(start_at), str(opts.seconds)]
            gens.append(child(args, stdout=subprocess.PIPE))
        procs.extend(gens)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        t0, c0, b0 = time.monotonic(), cpu_ticks(server.pid), recorded_bytes(data_dir)
        await asyncio.sleep(opts.seconds)
        t1, c1, b1 = time.monotonic(), cpu_ticks(server.pid), recorded_bytes(data_dir)
        frames, firsts = [], []
        for gen in gens:
            out, _ = await asyncio.to_thread(gen.communicate, None, opts.seconds + 60)
            data = json.loads(out.strip().splitlines()[-1])
            frames += data["frames"]
            firsts += [f for f in data["first_frame_s"] if f is not None]
        fps = sorted(f / opts.seconds for f in frames)
        return {
            "mode": mode,
            "recording": recording,
            "recorded_kib": (b1 - b0) / 1024,
            "viewers": n,
            "server_cpu_pct": 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0),
            "fps_min": fps[0],
            "fps_median": fps[len(fps) // 2],
            "fps_mean": sum(fps) / len(fps),
            "viewers_with_frames": sum(1 for f in frames if f > 0),
            "first_frame_s_max": max(firsts) if firsts else None,
            "load_1min": os.getloadavg()[0],
        }
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        shutil.rmtree(data_dir, ignore_errors=True)


def encoded_show(seconds: float) -> tuple[list, list]:
    """`seconds` of 30 fps 640x480 VP8 test pattern and of 20 ms Opus frames (silence): (data, RTP timestamp,
    keyframe) each, as the relay gets them."""
    import fractions

    import av
    import numpy as np

    from livehub.media.synthetic import PatternTrack

    track = PatternTrack(640, 480, 30)
    video = av.CodecContext.create("libvpx", "w")
    video.width, video.height, video.pix_fmt = 640, 480, "yuv420p"
    video.time_base, video.bit_rate = fractions.Fraction(1, 90000), 250_000
    video.options = {"deadline": "realtime", "lag-in-frames": "0", "kf-max-dist": "3000"}
    frames = []
    for n in range(int(seconds * 30)):
        track._count = n
        image = av.VideoFrame.from_ndarray(track._pattern(), format="rgb24").reformat(format="yuv420p")
        image.pts, image.time_base = n * 3000, video.time_base
        frames += [(bytes(p), n * 3000, p.is_keyframe) for p in video.encode(image)]
    audio = av.CodecContext.create("libopus", "w")
    audio.sample_rate, audio.layout, audio.format = 48000, "stereo", "s16"
    sounds = []
    for n in range(int(seconds * 50)):
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 1920), np.int16), format="s16", layout="stereo")
        sound.sample_rate, sound.pts = 48000, n * 960
        sounds += [(bytes(p), n * 960, True) for p in audio.encode(sound)]
    return frames, sounds


async def hand_over(frames: list, sounds: list, seconds: float, sink) -> float:
    """Calls `sink(kind, clock, data, timestamp, keyframe)` for each frame at its time; CPU seconds used."""
    events = sorted(
        [(ts / 90000, "video", 90000, d, ts, k) for d, ts, k in frames]
        + [(ts / 48000, "audio", 48000, d, ts, k) for d, ts, k in sounds]
    )
    events = [e for e in events if e[0] < seconds]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    begin, start = usage.ru_utime + usage.ru_stime, time.monotonic()
    for at, kind, clock, data, ts, keyframe in events:
        if (wait := start + at - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        sink(kind, clock, data, ts, keyframe)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime - begin


async def recorder_cost(opts: argparse.Namespace) -> None:
    from livehub.media.recording import PublicationRecorder

    log(f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    frames, sounds = await asyncio.to_thread(encoded_show, min(opts.seconds, 60.0))
    # Replayed in a loop when --seconds is longer than what was encoded (timestamps keep going up).
    span = len(frames) / 30
    laps = int(opts.seconds // span) + 1
    frames = [(d, ts + lap * int(span * 90000), k) for lap in range(laps) for d, ts, k in frames]
    sounds = [(d, ts + lap * int(span * 48000), k) for lap in range(laps) for d, ts, k in sounds]
    print("| run | CPU s per s of show (% of a core) | recorded KiB/s | load |")
    print("|---|---:|---:|---:|")
    for _ in range(opts.repeat):
        idle = await hand_over(frames, sounds, opts.seconds, lambda *frame: None)
        print(f"| without recorder | {100 * idle / opts.seconds:.2f} | 0 | {os.getloadavg()[0]:.1f} |", flush=True)
        directory = Path(tempfile.mkdtemp(prefix="livehub-bench-recorder-"))
        try:
            codecs = {"video": "video/VP8", "audio": "audio/opus"}
            recorder = PublicationRecorder(directory / "show", codecs, lambda: None)
            used = await hand_over(frames, sounds, opts.seconds, recorder.frame)
            await recorder.close()
            size = sum(p.stat().st_size for p in directory.rglob("segment-*"))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        print(
            f"| with recorder | {100 * used / opts.seconds:.2f} | {size / 1024 / opts.seconds:.0f} | "
            f"{os.getloadavg()[0]:.1f} |",
            flush=True,
        )


async def ensure_database(dsn: str) -> str:
    """The benchmark's own database on DATABASE_URL's server, created if missing."""
    url = with_database(dsn, DATABASE)
    await common_ensure_database(url)
    return url


async def main(opts: argparse.Namespace) -> None:
    dsn = await ensure_database(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    log(f"{platform.node()}: {os.cpu_count()} cores, load {os.getloadavg()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    rows = []
    recordings = [r == "on" for r in opts.recording.split(",")]
    for _ in range(opts.repeat):
        for mode in opts.modes.split(","):
            for n in opts.viewers:
                for recording in recordings:
                    if recording and mode != "encoded":
                        continue  # the decoded relay records nothing
                    row = await one_run(dsn, mode, n, opts, recording)
                    log(json.dumps(row))
                    rows.append(row)
    print(
        "| relay | recording | viewers | server CPU (% of a core) | fps per viewer: min / median / mean "
        "| first frame s | recorded KiB | load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        first = f"{r['first_frame_s_max']:.2f}" if r["first_frame_s_max"] is not None else "-"
        print(
            f"| {r['mode']} | {'on' if r['recording'] else 'off'} | {r['viewers']} | {r['server_cpu_pct']:.1f} | "
            f"{r['fps_min']:.1f} / {r['fps_median']:.1f} / {r['fps_mean']:.1f} | {first} | "
            f"{r['recorded_kib']:.0f} | {r['load_1min']:.1f} |"
        )


def cli() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["--serve"]:
        serve_livehub(int(argv[1]))
        return
    if argv[:1] == ["--publish"]:
        die_with_parent()
        asyncio.run(publisher(*argv[1:4]))
        return
    if argv[:1] == ["--view"]:
        die_with_parent()
        base, stream_id, count, start_at, seconds = argv[1:6]
        asyncio.run(viewers(base, stream_id, int(count), float(start_at), float(seconds)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", type=ints, default=[1, 4, 8, 16, 32])
    parser.add_argument("--modes", default="encoded,decoded")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--per-process", type=int, default=8)
    parser.add_argument("--recording", default="off", help="off, on, or off,on: both, side by side")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--recorder-cost", action="store_true", help="measure the recorder alone (see above)")
    opts = parser.parse_args(argv)
    asyncio.run(recorder_cost(opts) if opts.recorder_cost else main(opts))


if __name__ == "__main__":
    cli()
