"""The hot frames' fast path (livehub/live/fastframes.py) and the validator agree on every input: the same
frame (class, fields, the fields the client set) for a good one, the same `error` for a bad one."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from livehub.live import fastframes, protocol
from livehub.live.room import FRAMES
from livehub.live.ws import error_reply

VALIDATOR = protocol.Parser(FRAMES.frames, fast=False)
# Fixed, not random: they name the parametrized tests, which every xdist worker must collect alike.
VARIANT = "ffb222cd-65d6-40b5-ba82-68ea3c0d4e11"
SALE = "0c6f3a52-9b1e-4d7a-8f20-3e5d6c7b8a90"


def outcome(parser: protocol.Parser, raw: str):
    try:
        frame = parser.parse(raw)
    except protocol.BadFrame as exc:
        return ("error", error_reply(exc, None))
    return ("frame", type(frame), frame.model_dump(), frame.model_fields_set, frame.request_id)


def agree(raw: str) -> None:
    assert outcome(FRAMES, raw) == outcome(VALIDATOR, raw), raw


GOOD = [
    {"type": "buy", "variant_id": VARIANT},
    {"type": "buy", "variant_id": VARIANT, "quantity": 1, "flash_sale_id": SALE, "request_id": "b-1"},
    {"type": "buy", "variant_id": VARIANT.upper(), "quantity": 100, "flash_sale_id": None, "address_id": SALE},
    {"type": "buy", "variant_id": VARIANT, "request_id": None, "price_cents": 1},  # unknown fields are ignored
    {"type": "chat", "text": "hello"},
    {"type": "chat", "text": 'héllo 🎉 "quoted" \\ slash', "request_id": "c" * 64},
    {"type": "react", "kind": "heart"},
    {"type": "react", "kind": "wow", "request_id": "r"},
]


@pytest.mark.parametrize("frame", GOOD, ids=lambda f: json.dumps(f)[:60])
def test_a_well_formed_hot_frame_takes_the_fast_path_and_is_the_validators_frame(frame):
    raw = json.dumps(frame, ensure_ascii=False)
    fast = fastframes.parse(raw)
    assert fast is not None
    assert fast == VALIDATOR.parse(raw)
    assert fast.model_fields_set == VALIDATOR.parse(raw).model_fields_set
    agree(raw)


BAD = [
    '{"type": "buy"}',
    '{"type": "buy", "variant_id": "not-a-uuid"}',
    '{"type": "buy", "variant_id": "$V", "quantity": "2"}',
    '{"type": "buy", "variant_id": "$V", "quantity": true}',
    '{"type": "buy", "variant_id": "$V", "quantity": 1.0}',
    '{"type": "buy", "variant_id": "$V", "quantity": 0}',
    '{"type": "buy", "variant_id": "$V", "quantity": 101}',
    '{"type": "buy", "variant_id": "$V", "quantity": 99999999999999999999999}',
    '{"type": "buy", "variant_id": "$V", "request_id": ""}',
    '{"type": "buy", "variant_id": "$V", "request_id": "%s"}' % ("x" * 65),
    '{"type": "buy", "variant_id": "$V", "request_id": 7}',
    '{"type": "buy", "variant_id": "$V", "flash_sale_id": 5}',
    '{"type": "buy", "variant_id": "$U"}',  # not canonical: the validator's to decide
    '{"type": "chat", "text": ""}',
    '{"type": "chat", "text": 5, "request_id": "c1"}',
    '{"type": "chat", "text": "a\\u0000b", "request_id": "c2"}',
    '{"type": "chat", "text": "\\ud800", "request_id": "c3"}',
    '{"type": "chat", "text": "escaped \\u00e9 is fine"}',
    '{"type": "chat", "text": "hi", "request_id": "\\u0000"}',
    '{"type": "react", "kind": "love"}',
    '{"type": "react", "kind": "heart", "kind": "love"}',
    '{"type": "react", "kind": "love", "kind": "heart"}',
    '{"type": "chat", "type": "react", "kind": "heart"}',
    '{"type": "react", "kind": ["heart"]}',
    '{"type": "teleport"}',
    '{"type": ["buy"]}',
    '{"type": {"buy": 1}}',
    '{"type": 5, "kind": "heart"}',
    '{"type": null}',
    '{"kind": "heart"}',
    '["type", "react"]',
    '"react"',
    "null",
    "{not json",
    '{"type": "react", "kind": "heart"} trailing',
    '{"type": "react", "kind": NaN}',
    "",
]


@pytest.mark.parametrize("raw", BAD)
def test_the_fast_path_and_the_validator_agree_on_bad_or_unusual_frames(raw):
    agree(raw.replace("$V", VARIANT).replace("$U", VARIANT.replace("-", "")))


def test_a_frame_with_an_escape_goes_to_the_validator():
    # An escape could decode to text PostgreSQL cannot store: the validator and the storable check decide.
    assert fastframes.parse('{"type": "chat", "text": "caf\\u00e9"}') is None
    assert FRAMES.parse('{"type": "chat", "text": "caf\\u00e9"}').text == "café"


def test_a_parser_without_the_hot_frames_does_not_take_them():
    parser = protocol.Parser([protocol.Ping])
    with pytest.raises(protocol.BadFrame, match="unknown frame type"):
        parser.parse('{"type": "react", "kind": "heart"}')


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=70)
    | st.sampled_from([VARIANT, SALE, VARIANT.upper(), "heart", "fire", "wow", "", "x" * 64, "x" * 65]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
frames = st.fixed_dictionaries(
    {"type": st.sampled_from(["buy", "chat", "react", "ping", "click", "nope"]) | values},
    optional={
        name: values
        for name in ("request_id", "variant_id", "quantity", "flash_sale_id", "address_id", "text", "kind", "extra")
    },
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames, ascii_only=st.booleans())
def test_the_fast_path_and_the_validator_agree_on_generated_frames(frame, ascii_only):
    agree(json.dumps(frame, ensure_ascii=ascii_only))
