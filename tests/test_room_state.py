"""The room's parts without sockets or a database: the state reducer and its effects, recovery windows,
and fan-out (what a viewer that joins between two ticks is sent)."""

from datetime import UTC, datetime, timedelta

from livehub.jsonx import loads
from livehub.live.fanout import FanOut, one_frame_per_event, one_frame_per_tick
from livehub.live.state import Kick, ReloadBlockedWords, RoleChanged, RoomState, StreamEnded

HOST, MOD, FAN = "h0000000-0000-0000-0000-000000000000", "m-user", "f-user"


def snapshot(**stream) -> dict:
    variant = {"id": "v1", "sku": "S", "options": {}, "price_cents": 1000, "available": 5}
    product = {"id": "p1", "title": "Sneakers", "variants": [variant]}
    return {
        "stream": {"id": "s1", "status": "live", "host_id": HOST, "products": [product], **stream},
        "moderators": [MOD],
        "slow_mode_s": 0,
        "blocked_words": [],
        "timeouts": {},
    }


def loaded(history: list[dict] | None = None, offset: int = 0, history_size: int = 10) -> RoomState:
    state = RoomState(history_size=history_size, recent_chat=3, max_chat_chars=500)
    state.load(snapshot(), offset=offset, epoch="e1", history=history or [], reactions={"heart": 2})
    return state


def chat(offset: int, text: str = "hi") -> dict:
    return {"type": "chat", "id": f"c{offset}", "user": {"id": FAN}, "text": text, "at": "", "offset": offset}


def test_chat_is_kept_for_recovery_and_the_recent_list_and_a_deletion_removes_it():
    state = loaded()
    for n in range(1, 5):
        assert state.apply(chat(n)) == []
    assert state.offset == 4
    assert [m["id"] for m in state.recent_chat] == ["c2", "c3", "c4"]  # the last three (recent_chat=3)
    state.apply({"type": "chat_deleted", "message_id": "c3", "offset": 5})
    assert [m["id"] for m in state.recent_chat] == ["c2", "c4"]
    assert [e["offset"] for e in state.history] == [1, 2, 3, 4, 5]


def test_missed_events_are_given_only_when_all_of_them_are_still_kept():
    state = loaded(history_size=3)
    for n in range(1, 6):
        state.apply(chat(n))
    assert [e["offset"] for e in state.missed(3, "e1")] == [4, 5]
    assert state.missed(2, "e1") is not None  # 3, 4, 5 are kept
    assert state.missed(1, "e1") is None  # 2 fell out of the window
    assert state.missed(3, "another epoch") is None
    assert state.missed(9, "e1") is None  # from the future
    assert state.missed(None, None) is None
    assert not state.is_new({"offset": 5, "epoch": "e1"}) and state.is_new({"offset": 6, "epoch": "e1"})


def test_pins_follow_the_rooms_own_product_and_stock_updates_it():
    state = loaded()
    state.apply({"type": "pin", "product": {"id": "p1", "variants": [{"id": "v1", "available": 4}]}, "offset": 1})
    assert state.pinned is state.stream["products"][0] and state.pinned["variants"][0]["available"] == 4
    shown = state.apply_state({"type": "stock", "variant_id": "v1", "stock": 3, "available": 2})
    assert shown == {"type": "stock", "variant_id": "v1", "available": 2}  # what viewers get, nothing internal
    assert state.pinned["variants"][0]["available"] == 3
    state.apply({"type": "unpin", "offset": 2})
    assert state.pinned is None


def test_a_stream_that_ends_unpins_and_says_so():
    state = loaded()
    state.apply({"type": "pin", "product": {"id": "p1", "variants": []}, "offset": 1})
    effects = state.apply({"type": "stream_status", "stream": {"status": "ended", "products": []}, "offset": 2})
    assert effects == [StreamEnded()]
    assert state.pinned is None and not state.live and state.stream["products"]  # products kept


def test_moderation_changes_rules_and_roles_and_asks_the_room_for_the_rest():
    state = loaded()
    assert state.role_of(HOST) == "host" and state.role_of(MOD) == "moderator"
    assert state.role_of(FAN) == "viewer" and state.role_of(FAN, is_admin=True) == "moderator"
    assert state.role_of(None) == "anonymous"

    until = datetime.now(UTC) + timedelta(seconds=60)
    assert state.apply({"type": "moderation", "action": "ban", "user_id": FAN, "offset": 1}) == [Kick(FAN)]
    assert (
        state.apply(
            {"type": "moderation", "action": "timeout", "user_id": FAN, "until": until.isoformat(), "offset": 2}
        )
        == []
    )
    assert state.rules.timeouts[FAN] == until
    state.apply({"type": "moderation", "action": "slow_mode", "seconds": 30, "offset": 3})
    assert state.rules.slow_mode_s == 30
    assert state.apply({"type": "moderation", "action": "block_words", "count": 2, "offset": 4}) == [
        ReloadBlockedWords()
    ]
    assert state.apply({"type": "moderation", "action": "moderator", "user_id": FAN, "offset": 5}) == [RoleChanged(FAN)]
    assert state.role_of(FAN) == "moderator"
    state.apply({"type": "moderation", "action": "unmoderator", "user_id": FAN, "offset": 6})
    assert state.role_of(FAN) == "viewer"


def test_a_reset_starts_a_new_history():
    state = loaded()
    state.apply(chat(1))
    state.reset(40, "e2")
    assert (state.offset, state.epoch, list(state.history)) == (40, "e2", [])
    assert state.missed(40, "e2") == []


class Recorder:
    """Stands in for a websocket connection: keeps what it is sent, decoded."""

    def __init__(self):
        self.frames: list[dict] = []

    def send(self, message: dict) -> None:
        self.frames.append(message)

    def send_frame(self, frame: bytes) -> None:
        header = 2 if frame[1] < 126 else 4  # short frames only in these tests
        self.frames.append(loads(frame[header:]))


def events_of(viewer: Recorder) -> list[list]:
    return [[e.get("offset", e["type"]) for e in f["events"]] for f in viewer.frames]


def test_one_frame_per_tick_and_a_viewer_joining_mid_tick_skips_what_its_welcome_had():
    fanout = FanOut(one_frame_per_tick)
    early, late = Recorder(), Recorder()
    fanout.add(early, offset=0)
    fanout.durable(chat(1))
    fanout.latest("viewers", {"type": "viewers", "count": 1})
    fanout.latest("viewers", {"type": "viewers", "count": 2})  # latest value wins
    fanout.add(late, offset=1)  # its welcome reflected offset 1 already
    fanout.durable(chat(2))
    fanout.flush()
    assert events_of(early) == [[1, 2, "viewers"]]
    assert events_of(late) == [[2, "viewers"]]
    assert early.frames[0]["events"][-1]["count"] == 2
    fanout.flush()  # nothing new: nothing sent
    assert len(early.frames) == 1


def test_the_per_event_baseline_sends_the_same_events_one_frame_each():
    fanout = FanOut(one_frame_per_event)
    early, late = Recorder(), Recorder()
    fanout.add(early, offset=0)
    fanout.durable(chat(1))
    fanout.add(late, offset=1)
    fanout.durable(chat(2))
    fanout.latest("reactions", {"type": "reactions", "counts": {"heart": 1}})
    fanout.flush()
    assert events_of(early) == [[1], [2], ["reactions"]]
    assert events_of(late) == [[2], ["reactions"]]
