"""The room's clock and pacing: a big room gets fewer, larger frames than a small one, every event still
reaches every viewer in order, and the clock does not drift by the time a beat takes."""

import asyncio
import time

import aiohttp
import pytest

from conftest import settings_for
from live_helpers import Viewer, live_show
from livehub.app import create_app
from livehub.jsonx import loads
from livehub.live.fanout import FanOut, Pacing, beat_forever, next_beat

# 1,000 writes a second, 10 viewers a beat: a room of 200 viewers gets a 200 ms tick cut into 20 beats.
PACING = Pacing(tick_s=0.05, writes_per_s=1000, max_tick_s=1.0, slice_viewers=10)


class Recorder:
    """Stands in for a viewer's connection: keeps the frames it is written, decoded."""

    def __init__(self):
        self.frames: list[dict] = []

    def send_frame(self, frame: bytes) -> None:
        header = 2 if frame[1] < 126 else 4 if frame[1] == 126 else 10
        self.frames.append(loads(frame[header:]))


def chat(offset: int) -> dict:
    return {"type": "chat", "id": f"c{offset}", "user": {"id": "u1"}, "text": "hi", "at": "", "offset": offset}


def run_room(viewers: int, seconds: float, pacing: Pacing = PACING) -> tuple[list[Recorder], int]:
    """A room fed one chat message every 10 ms of simulated time, beaten at its own pace; returns its
    viewers and how many messages were sent."""
    fanout = FanOut(pacing=pacing)
    recorders = [Recorder() for _ in range(viewers)]
    for r in recorders:
        fanout.add(r, offset=0)
    now, sent, next_chat = 0.0, 0, 0.0
    while now < seconds:
        while next_chat <= now:
            sent += 1
            fanout.durable(chat(sent))
            next_chat += 0.01
        fanout.beat()
        now += fanout.beat_s()
    fanout.flush()  # what is still on its way
    return recorders, sent


def offsets(viewer: Recorder) -> list[int]:
    return [e["offset"] for f in viewer.frames for e in f["events"] if "offset" in e]


def test_a_big_room_gets_fewer_larger_frames_than_a_small_one_and_every_event_in_order():
    small, small_sent = run_room(5, 2.0)
    big, big_sent = run_room(200, 2.0)
    assert PACING.period_s(5) == 0.05 and PACING.period_s(200) == pytest.approx(0.2)
    for viewers, sent in ((small, small_sent), (big, big_sent)):
        for viewer in viewers:
            assert offsets(viewer) == list(range(1, sent + 1))
    small_frames = len(small[0].frames) / 2.0
    big_frames = max(len(v.frames) for v in big) / 2.0
    assert 18 <= small_frames <= 22  # one frame per 50 ms tick
    assert big_frames <= 6  # one per 200 ms: 1,000 writes a second over 200 viewers
    writes_per_s = sum(len(v.frames) for v in big) / 2.0
    assert writes_per_s <= 1000 * 1.1
    # Each frame carries more: the same events in a quarter of the frames.
    assert sum(len(f["events"]) for f in big[0].frames) / len(big[0].frames) > 3 * (
        sum(len(f["events"]) for f in small[0].frames) / len(small[0].frames)
    )


def test_a_big_room_is_sent_in_slices_so_one_beat_writes_to_a_few_viewers():
    fanout = FanOut(pacing=PACING)
    viewers = [Recorder() for _ in range(200)]
    for v in viewers:
        fanout.add(v, offset=0)
    fanout.durable(chat(1))
    fanout.beat()
    assert sum(1 for v in viewers if v.frames) == 10
    for _ in range(19):
        fanout.beat()
    assert all(offsets(v) == [1] for v in viewers)
    fanout.beat()  # nothing new: nothing sent
    assert all(len(v.frames) == 1 for v in viewers)


def test_a_viewer_joining_mid_round_gets_what_came_after_its_welcome_and_those_left_behind_get_the_rest():
    fanout = FanOut(pacing=PACING)
    viewers = [Recorder() for _ in range(30)]
    for v in viewers:
        fanout.add(v, offset=0)
    fanout.durable(chat(1))
    fanout.beat()  # the first 10 have offset 1
    fanout.durable(chat(2))
    late = Recorder()
    fanout.add(late, offset=2)  # its welcome reflected offsets 1 and 2
    fanout.latest("viewers", {"type": "viewers", "count": 31})
    fanout.durable(chat(3))
    for _ in range(3):
        fanout.beat()  # the round's other two slices, then the joiner, last
    assert offsets(late) == [3] and offsets(viewers[-1]) == [1, 2, 3] and offsets(viewers[0]) == [1]
    for _ in range(PACING.slices(31)):
        fanout.beat()  # the next round: the first 10 get what came after their turn
    for v in viewers:
        assert offsets(v) == [1, 2, 3]
        assert v.frames[-1]["events"][-1] == {"type": "viewers", "count": 31}
    assert offsets(late) == [3]
    removed = viewers[0]
    fanout.remove(removed)
    fanout.durable(chat(4))
    fanout.flush()
    assert offsets(removed) == [1, 2, 3]
    assert all(offsets(v) == [1, 2, 3, 4] for v in viewers[1:])


def test_a_fixed_pacing_sends_every_viewer_at_once_every_tick():
    fixed = Pacing(tick_s=0.05, mode="fixed", writes_per_s=1000, slice_viewers=10)
    assert fixed.period_s(200) == 0.05 and fixed.slices(200) == 1
    viewers, sent = run_room(200, 0.5, fixed)
    assert all(offsets(v) == list(range(1, sent + 1)) for v in viewers)
    assert len(viewers[0].frames) == len(viewers[-1].frames) >= 9


def test_the_next_beat_keeps_to_the_grid_whatever_the_last_one_took():
    assert next_beat(1.0, 0.05, 1.03, 0.2) == pytest.approx(1.05)  # a beat that took 30 ms: still 50 ms apart
    assert next_beat(1.0, 0.05, 1.0, 0.2) == pytest.approx(1.05)
    assert next_beat(1.0, 0.05, 1.06, 0.2) == pytest.approx(1.05)  # late: made up at once, the grid kept
    assert next_beat(1.05, 0.05, 1.06, 0.2) == pytest.approx(1.10)
    assert next_beat(1.0, 0.05, 1.5, 0.2) == pytest.approx(1.5)  # far behind: start again from now


async def test_the_clock_does_not_drift_by_the_time_a_beat_takes():
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    def slow_beat() -> None:
        starts.append(loop.time())
        time.sleep(0.06)  # a beat's writes, blocking the loop for 60 % of the interval

    clock = asyncio.create_task(beat_forever(lambda: 0.1, lambda: 0.5, slow_beat))
    await asyncio.sleep(1.05)
    clock.cancel()
    # On the grid: 10 beats in a second, each 100 ms after the one before. Sleeping a whole interval after
    # each beat would give 6, each 160 ms after the last. A beat the loop got to late (a busy machine) is
    # made up at once, so the beats never fall behind the grid by more than one, however late one was.
    assert len(starts) >= 8
    assert starts[-1] - starts[0] < (len(starts) - 1) * 0.1 + 0.1, starts


@pytest.fixture
async def client(backplane, aiohttp_client, database_url, db):
    # 200 writes a second, 2 viewers a beat: a room of 20 viewers gets a 100 ms tick, one of 2 gets 20 ms.
    settings = settings_for(database_url).model_copy(
        update={
            "tick_ms": 20,
            "tick_writes_per_s": 200,
            "tick_slice_viewers": 2,
            "chat_rate_per_s": 1000.0,
            "chat_burst": 1000,
            **backplane,
        }
    )
    return await aiohttp_client(create_app(settings), connector=aiohttp.TCPConnector(limit=0))


async def chat_for(host: Viewer, messages: int) -> None:
    for i in range(messages):
        assert (await host.request("chat", text=f"m{i}"))["type"] == "ack"
        await asyncio.sleep(0.01)


async def test_over_websockets_a_crowded_room_gets_fewer_frames_and_every_message_in_order(client, make):
    small, big = await live_show(make), await live_show(make)
    small_host = await Viewer.connect(client, small.id, small.seller)
    small_fan = await Viewer.connect(client, small.id)
    big_host = await Viewer.connect(client, big.id, big.seller)
    crowd = [await Viewer.connect(client, big.id) for _ in range(19)]
    await asyncio.gather(chat_for(small_host, 30), chat_for(big_host, 30))
    for viewer in (small_fan, *crowd):
        await viewer.wait_for(lambda v: len(v.of_type("chat")) >= 30)
        assert [e["text"] for e in viewer.of_type("chat")] == [f"m{i}" for i in range(30)]

    def chat_frames(viewer: Viewer) -> int:
        return sum(1 for f in viewer.frames if f["type"] == "events" and any(e["type"] == "chat" for e in f["events"]))

    crowded = max(chat_frames(v) for v in crowd)
    assert crowded * 2 < chat_frames(small_fan), (crowded, chat_frames(small_fan))
    for viewer in (small_fan, *crowd):
        await viewer.close()
