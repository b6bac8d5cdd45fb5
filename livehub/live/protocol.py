"""Websocket frames: what a client may send, and the models of what the server sends.

Client frames ignore fields they do not know (a `price_cents` on a `buy` changes nothing: the price is
always the database's) but reject wrong types: validation is strict, so `"quantity": "2"` is an error.
Show formats (livehub/live/formats/) bring their own frames; `Parser` validates against all of them with
one discriminated union on `type` (and `moderate` frames on `action`).

The server's frames are built as plain dicts on the hot path; the models below say what they hold, and
the tests check both every frame a test client receives and docs/PROTOCOL.md's tables against them.
"""

from collections.abc import Iterable
from typing import Annotated, Any, ClassVar, Literal, Union
from uuid import UUID

import pydantic
from pydantic import Field

from livehub import storable
from livehub.errors import ValidationFailed, validation_details
from livehub.storable import unstorable_at

REACTIONS = ("heart", "fire", "clap", "laugh", "wow")
ROLES = Literal["host", "moderator", "viewer", "anonymous"]

# -- client frames ----------------------------------------------------------------------------------


class Frame(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", strict=True, frozen=True)

    # Answered once its work is done, while the socket goes on reading (a buy waits for its batch).
    answered_later: ClassVar[bool] = False

    request_id: str | None = Field(default=None, min_length=1, max_length=64)


class Chat(Frame):
    type: Literal["chat"]
    # The room applies the configured length limit; this only bounds what is worth validating.
    text: str = Field(min_length=1)


class React(Frame):
    type: Literal["react"]
    kind: Literal[REACTIONS]


class Buy(Frame):
    answered_later: ClassVar[bool] = True

    type: Literal["buy"]
    variant_id: UUID
    quantity: int = Field(default=1, ge=1, le=100)
    # Buy only in this flash sale: once it has ended the answer is sold_out, not the regular price.
    flash_sale_id: UUID | None = None
    # Ship to this saved address of the buyer's; without it, to the default one.
    address_id: UUID | None = None


class Click(Frame):
    """A viewer opened a product's card: counted in the stream's stats."""

    type: Literal["click"]
    product_id: UUID


class Pin(Frame):
    type: Literal["pin"]
    product_id: UUID


class Unpin(Frame):
    type: Literal["unpin"]


class Ping(Frame):
    type: Literal["ping"]


class DeleteMessage(Frame):
    type: Literal["moderate"]
    action: Literal["delete"]
    message_id: UUID


class Ban(Frame):
    type: Literal["moderate"]
    action: Literal["ban"]
    user_id: UUID
    reason: str | None = Field(default=None, max_length=200)


class Unban(Frame):
    type: Literal["moderate"]
    action: Literal["unban"]
    user_id: UUID


class Timeout(Frame):
    type: Literal["moderate"]
    action: Literal["timeout"]
    user_id: UUID
    seconds: int = Field(ge=0)  # the storage function says which range is allowed


class SlowMode(Frame):
    type: Literal["moderate"]
    action: Literal["slow_mode"]
    seconds: int = Field(ge=0)


class BlockWords(Frame):
    type: Literal["moderate"]
    action: Literal["block_words"]
    words: list[str]


MODERATE = (DeleteMessage, Ban, Unban, Timeout, SlowMode, BlockWords)
CORE_FRAMES: tuple[type[Frame], ...] = (Chat, React, Buy, Click, Pin, Unpin, Ping, *MODERATE)


class BadFrame(ValidationFailed):
    """A frame that is not JSON or not a valid client frame; carries its request_id when readable."""

    def __init__(self, message: str, details: dict | None = None, request_id: str | None = None):
        super().__init__(message, details)
        self.request_id = request_id


class Parser:
    """Validates raw text against a set of frame classes: one discriminated union on `type`, frames that
    share a `type` (moderation) nested on `action`. `fast=False`: the validator alone, also for the hot
    frames (what the fast path is compared with)."""

    def __init__(self, frames: Iterable[type[Frame]], *, fast: bool = True):
        frames = tuple(frames)
        by_type: dict[str, list[type[Frame]]] = {}
        for frame in frames:
            by_type.setdefault(_literal(frame, "type"), []).append(frame)
        members = [
            group[0] if len(group) == 1 else Annotated[Union[tuple(group)], Field(discriminator="action")]  # noqa: UP007
            for group in by_type.values()
        ]
        union = Annotated[Union[tuple(members)], Field(discriminator="type")]  # noqa: UP007
        self.types = tuple(by_type)
        self._adapter: pydantic.TypeAdapter = pydantic.TypeAdapter(union)
        self.frames = frames
        self._classes = frozenset(frames)
        from livehub.live import fastframes  # it builds this module's frames

        self._fast = fastframes
        self._fast_path = fast

    def parse(self, raw: str) -> Frame:
        """A client frame, or BadFrame saying what is wrong with it (and its request_id when readable).
        The hot frames (buy, chat, react) are decided without the validator when they are well-formed
        (livehub/live/fastframes.py); everything else, and every error, comes from the validator."""
        if self._fast_path and (frame := self._fast.parse(raw)) is not None and type(frame) in self._classes:
            return frame
        try:
            frame = self._adapter.validate_json(raw)
        except pydantic.ValidationError as exc:
            errors = exc.errors(include_url=False)
            if errors and errors[0]["type"] == "json_invalid":
                raise BadFrame("frame is not valid JSON") from None
            tags = [e for e in errors if e["type"] in ("union_tag_invalid", "union_tag_not_found")]
            if any(e["loc"] == () for e in tags):
                message = "unknown frame type"
            elif tags:
                message = "unknown action"
            else:
                message = "invalid frame"
            raise BadFrame(message, validation_details(exc), _request_id_of(raw)) from None
        if self._fast.may_hold_unstorable(raw) and (loc := unstorable_at(frame)) is not None:
            # Refused here, before it can reach a purchase batch or the chat archive.
            echo = frame.request_id if loc != ("request_id",) else None
            raise BadFrame(storable.MESSAGE, {"loc": [str(p) for p in loc]}, echo)
        return frame


def _literal(model: type[pydantic.BaseModel], name: str) -> str:
    (value,) = model.model_fields[name].annotation.__args__
    return value


def _request_id_of(raw: str) -> str | None:
    try:
        value = pydantic.TypeAdapter(dict).validate_json(raw).get("request_id")
    except pydantic.ValidationError:
        return None
    return value if isinstance(value, str) and len(value) <= 64 else None


# -- server frames ----------------------------------------------------------------------------------


class Message(pydantic.BaseModel):
    """A frame or event the server sends. Unknown fields are refused: a model lists every field."""

    model_config = pydantic.ConfigDict(extra="forbid")


class Event(Message):
    """An event in an `events` frame. Durable events (`durable = True`) carry the room's offset."""

    durable: ClassVar[bool] = True

    offset: int | None = None


class ChatUser(Message):
    id: UUID
    name: str | None
    role: ROLES


class ChatEvent(Event):
    type: Literal["chat"]
    id: UUID
    user: ChatUser
    text: str
    at: str


class ChatDeleted(Event):
    type: Literal["chat_deleted"]
    message_id: UUID


class PinEvent(Event):
    type: Literal["pin"]
    product: dict[str, Any]


class UnpinEvent(Event):
    type: Literal["unpin"]


class StreamStatus(Event):
    type: Literal["stream_status"]
    stream: dict[str, Any]


class Moderation(Event):
    type: Literal["moderation"]
    action: Literal["ban", "unban", "timeout", "slow_mode", "block_words", "moderator", "unmoderator"]
    user_id: UUID | None = None
    until: str | None = None
    seconds: int | None = None
    count: int | None = None


class Viewers(Event):
    durable: ClassVar[bool] = False
    type: Literal["viewers"]
    count: int


class Reactions(Event):
    durable: ClassVar[bool] = False
    type: Literal["reactions"]
    counts: dict[str, int]


class Stock(Event):
    durable: ClassVar[bool] = False
    type: Literal["stock"]
    variant_id: UUID
    available: int


CORE_EVENTS: tuple[type[Event], ...] = (
    ChatEvent,
    ChatDeleted,
    PinEvent,
    UnpinEvent,
    StreamStatus,
    Moderation,
    Viewers,
    Reactions,
    Stock,
)


class You(Message):
    user_id: UUID | None
    role: ROLES


class Welcome(Message):
    type: Literal["welcome"]
    stream: dict[str, Any]
    you: You
    # pinned, viewers, reactions, slow_mode_s, and each show format's part under its key.
    state: dict[str, Any]
    recent: list[ChatEvent]
    offset: int
    epoch: str
    recovered: bool


class Events(Message):
    type: Literal["events"]
    events: list[dict[str, Any]]


class Ack(Message):
    type: Literal["ack"]
    request_id: str
    offset: int | None = None


class Purchase(Message):
    type: Literal["purchase"]
    request_id: str | None
    status: Literal[
        "ok", "sold_out", "insufficient_funds", "limit_reached", "banned", "address_required", "payment_owed", "error"
    ]
    order_id: UUID | None = None
    order_number: str | int | None = None
    message: str | None = None


class BidResult(Message):
    """The answer to a `bid` (livehub/live/formats/auction.py), once the database decided it."""

    type: Literal["bid_result"]
    request_id: str | None
    status: Literal["leading", "outbid", "too_low", "insufficient_funds", "ended", "not_allowed"]
    current_cents: int | None  # the auction's price after this bid (null: no auction of that id runs here)
    message: str | None = None


class Error(Message):
    type: Literal["error"]
    code: str
    message: str
    request_id: str | None = None
    details: dict[str, Any] | None = None


class Pong(Message):
    type: Literal["pong"]
    request_id: str | None


class NotificationBody(pydantic.BaseModel):
    """A stored notification as GET /api/notifications lists it; `payload`'s fields depend on `kind`."""

    id: str
    kind: str
    payload: dict[str, Any]
    created_at: str
    read_at: str | None


class Notification(Message):
    type: Literal["notification"]
    notification: NotificationBody


class Wallet(Message):
    """The user's wallet balance after a purchase, a refund or a top-up (livehub/shop/notices.py)."""

    type: Literal["wallet"]
    balance_cents: int
    reason: Literal["purchase", "refund", "top_up"]


class Earnings(Message):
    """The seller's (or host's) available earnings after some passed their hold."""

    type: Literal["earnings"]
    available_cents: int


SERVER_FRAMES: tuple[type[Message], ...] = (
    Welcome,
    Events,
    Ack,
    Purchase,
    BidResult,
    Error,
    Pong,
    Notification,
    Wallet,
    Earnings,
)


# -- building replies -------------------------------------------------------------------------------


def error(code: str, message: str, request_id: str | None = None, details: dict | None = None) -> dict:
    frame = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        frame["request_id"] = request_id
    if details:
        frame["details"] = details
    return frame


def ack(frame: Frame, event: dict | None = None) -> dict | None:
    """The reply to a frame that asked for one (it carried a request_id), with the offset of the durable
    event it made, if any."""
    if frame.request_id is None:
        return None
    reply = {"type": "ack", "request_id": frame.request_id}
    if event is not None and "offset" in event:
        reply["offset"] = event["offset"]
    return reply
