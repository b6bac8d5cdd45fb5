"""Websocket frames: what a client may send, validated by one discriminated union, and the server's frames.

Client frames ignore fields they do not know (a `price_cents` on a `buy` changes nothing: the price is
always the database's) but reject wrong types: validation is strict, so `"quantity": "2"` is an error.
The full protocol is in docs/PROTOCOL.md.
"""

from typing import Annotated, Literal
from uuid import UUID

import pydantic
from pydantic import Field

from livehub.errors import ValidationFailed, validation_details

REACTIONS = ("heart", "fire", "clap", "laugh", "wow")


class Frame(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", strict=True, frozen=True)

    request_id: str | None = Field(default=None, min_length=1, max_length=64)


class Chat(Frame):
    type: Literal["chat"]
    # The room applies the configured length limit; this only bounds what is worth validating.
    text: str = Field(min_length=1)


class React(Frame):
    type: Literal["react"]
    kind: Literal[REACTIONS]


class Buy(Frame):
    type: Literal["buy"]
    variant_id: UUID
    quantity: int = Field(default=1, ge=1, le=100)
    # Buy only in this flash sale: once it has ended the answer is sold_out, not the regular price.
    flash_sale_id: UUID | None = None


class Pin(Frame):
    type: Literal["pin"]
    product_id: UUID


class Unpin(Frame):
    type: Literal["unpin"]


class FlashSale(Frame):
    type: Literal["flash_sale"]
    variant_id: UUID
    price_cents: int = Field(ge=0)
    quantity: int = Field(ge=1)
    duration_s: int = Field(ge=5, le=3600)
    per_buyer_limit: int | None = Field(default=None, ge=1)


class EndFlashSale(Frame):
    type: Literal["end_flash_sale"]


class Moderate(Frame):
    type: Literal["moderate"]
    action: Literal["delete", "ban", "unban", "timeout", "slow_mode", "block_words"]
    message_id: UUID | None = None
    user_id: UUID | None = None
    seconds: int | None = Field(default=None, ge=0)
    words: list[str] | None = None
    reason: str | None = Field(default=None, max_length=200)


class Click(Frame):
    """A viewer opened a product's card: counted in the stream's stats."""

    type: Literal["click"]
    product_id: UUID


class Ping(Frame):
    type: Literal["ping"]


ClientFrame = Annotated[
    Chat | React | Buy | Pin | Unpin | FlashSale | EndFlashSale | Moderate | Click | Ping,
    Field(discriminator="type"),
]
_FRAMES: pydantic.TypeAdapter[ClientFrame] = pydantic.TypeAdapter(ClientFrame)


class BadFrame(ValidationFailed):
    """A frame that is not JSON or not a valid client frame; carries its request_id when readable."""

    def __init__(self, message: str, details: dict | None = None, request_id: str | None = None):
        super().__init__(message, details)
        self.request_id = request_id


def parse(raw: str) -> Frame:
    """A client frame, or BadFrame saying what is wrong with it (and its request_id when readable)."""
    try:
        return _FRAMES.validate_json(raw)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise BadFrame("frame is not valid JSON") from None
        kinds = {e["type"] for e in errors}
        message = "unknown frame type" if kinds & {"union_tag_invalid", "union_tag_not_found"} else "invalid frame"
        raise BadFrame(message, validation_details(exc), _request_id_of(raw)) from None


def _request_id_of(raw: str) -> str | None:
    try:
        value = pydantic.TypeAdapter(dict).validate_json(raw).get("request_id")
    except pydantic.ValidationError:
        return None
    return value if isinstance(value, str) and len(value) <= 64 else None


def error(code: str, message: str, request_id: str | None = None, details: dict | None = None) -> dict:
    frame = {"type": "error", "code": code, "message": message}
    if request_id is not None:
        frame["request_id"] = request_id
    if details:
        frame["details"] = details
    return frame
