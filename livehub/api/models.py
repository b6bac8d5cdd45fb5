"""Shapes shared by several resources."""

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

from livehub.api.routing import Model, Out
from livehub.auth import normalise_phone

T = TypeVar("T")

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        max_length=254,
        pattern=r"^[^@\s\x00-\x1f\x7f\x85]+@[^@\s\x00-\x1f\x7f\x85]+\.[^@\s\x00-\x1f\x7f\x85]+$",
    ),
]
# Control characters, and the bidirectional overrides that can make a name read backwards in chat.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _printable(value: str) -> str:
    if _UNPRINTABLE.search(value):
        raise ValueError("contains control characters")
    return value


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value or "\t" in value:
        raise ValueError("must be a single line")
    return _printable(value)


Phone = Annotated[
    str,
    BeforeValidator(lambda v: normalise_phone(v) if isinstance(v, str) else v),
    StringConstraints(pattern=r"^\+?[0-9]{6,15}$"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\+?[0-9]{6,15}$",
            "description": "6 to 15 digits, optionally after a +; spaces, dashes, dots and parentheses are ignored",
        }
    ),
]
# The OpenAPI document states what the validators refuse, so that every request valid by the schema is
# accepted (the fuzz test counts refusals of schema-valid requests).
_CONTROL = r"\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069"
# One line of text with at least one character that stripping leaves (\x85 is whitespace to Python only).
_ONE_LINE = rf"^[^{_CONTROL}]*[^\s\x85{_CONTROL}][^{_CONTROL}]*$"
_UNPRINTABLE_CLASS = r"\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069"
_PRINTABLE = rf"^[^{_UNPRINTABLE_CLASS}]*$"


_NO_NUL = r"^[^\x00]*$"


def text_map(max_items: int, max_value_length: int):
    """A JSON object of short texts (variant options, an address): keys and values without NUL."""
    value = {"type": "string", "maxLength": max_value_length, "pattern": _NO_NUL}
    return Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=max_value_length)]],
        Field(max_length=max_items),
        WithJsonSchema(
            {
                "type": "object",
                "maxProperties": max_items,
                "propertyNames": {"pattern": _NO_NUL},
                "additionalProperties": value,
            }
        ),
    ]


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_one_line),
    Field(json_schema_extra={"pattern": _ONE_LINE}),
]
LongText = Annotated[
    str,
    StringConstraints(max_length=10_000),
    AfterValidator(_printable),
    Field(json_schema_extra={"pattern": _PRINTABLE}),
]


def paragraph(max_length: int, *, required: bool):
    """Free text that may span lines (a review, a reason): printable, tabs and line breaks allowed, at most
    `max_length` characters; `required`: with something besides whitespace."""
    bad = _UNPRINTABLE_CLASS
    pattern = rf"^[^{bad}]*[^\s\x85{bad}][^{bad}]*$" if required else _PRINTABLE
    return Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1 if required else 0, max_length=max_length),
        AfterValidator(_printable),
        Field(json_schema_extra={"pattern": pattern}),
    ]


Cents = Annotated[int, Field(ge=0, le=10**12)]
# An amount of money moved (top-up, refund, payout): positive, and inside what Postgres' bigint holds.
Amount = Annotated[int, Field(gt=0, le=10**12)]


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageQuery(Model):
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    # The previous page's `next_cursor`: the id of its last item (a list continues after it).
    cursor: UUID | None = None


class EntryPageQuery(Model):
    """Pages of ledger entries, whose ids are integers."""

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None


class RatingOut(Out):
    average: float | None = Field(description="the listed reviews' mean rating (1 to 5), 2 decimals; null without any")
    count: int = Field(description="listed reviews (hidden ones are not counted)")


class AvatarSizeOut(Out):
    url: str
    width: int
    height: int


class AvatarOut(Out):
    id: UUID
    url: str = Field(description="the largest stored size (at most 1080 px wide)")
    width: int
    height: int
    sizes: list[AvatarSizeOut] = Field(description="every stored size, narrowest first (for srcset)")


class UserOut(Out):
    id: UUID
    email: str
    phone: str | None
    display_name: str
    roles: list[str]
    seller_id: UUID | None
    created_at: datetime
    avatar: AvatarOut | None = Field(description="your picture (PATCH /api/me avatar_image_id), or null")
    email_verified: bool = Field(description="whether the email address was verified (POST /api/auth/verify-email)")


class ErrorBody(Out):
    code: str
    message: str
    details: dict[str, Any]
    # The request's id, also in its X-Request-Id response header and on its log lines.
    request_id: str


class ErrorOut(Out):
    error: ErrorBody
