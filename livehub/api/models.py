"""Shapes shared by several resources."""

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from pydantic import Field, StringConstraints

from livehub.api.routing import Model, Out

T = TypeVar("T")

Email = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9]{6,15}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=10_000)]
Cents = Annotated[int, Field(ge=0, le=10**12)]


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None


class PageQuery(Model):
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, StringConstraints(max_length=500)] | None = None


class UserOut(Out):
    id: UUID
    email: str
    phone: str | None
    display_name: str
    roles: list[str]
    seller_id: UUID | None
    created_at: datetime


class ErrorBody(Out):
    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(Out):
    error: ErrorBody
