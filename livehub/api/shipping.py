"""Shipping: a buyer's saved addresses (/api/me/addresses) and a seller's shipping profile
(/api/seller/shipping). The address shape here is also what checkout takes inline (api/orders.py)."""

from typing import Annotated, Any
from uuid import UUID

import iso3166
from aiohttp import web
from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

from livehub.api.models import Cents, Phone, Text
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.shop import addresses, shipping

api = Api("shipping")

COUNTRIES = tuple(sorted(iso3166.countries_by_alpha2))
_ASSIGNED = frozenset(COUNTRIES)


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _assigned(value: str) -> str:
    if value not in _ASSIGNED:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return value


Country = Annotated[
    str,
    BeforeValidator(_upper),
    AfterValidator(_assigned),
    WithJsonSchema(
        {
            "type": "string",
            "enum": list(COUNTRIES),
            "description": "ISO 3166-1 alpha-2 country code (lower case is accepted too)",
        }
    ),
]


def _blank_is_none(value: Any) -> Any:
    # A form's empty optional field means "none", as leaving it out does.
    return None if isinstance(value, str) and not value.strip() else value


OptionalLine = Annotated[Text | None, BeforeValidator(_blank_is_none)]
PostalCode = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=20, pattern=r"^[0-9A-Za-z \-]+$")] | None,
    BeforeValidator(_blank_is_none),
]
OptionalPhone = Annotated[Phone | None, BeforeValidator(_blank_is_none)]


class AddressIn(Model):
    """An address: saved (POST /api/me/addresses) or given inline at checkout."""

    name: Text = Field(description="who receives the parcel")
    line1: Text
    line2: OptionalLine = None
    city: Text
    region: OptionalLine = Field(default=None, description="state, province or county, where the country has them")
    postal_code: PostalCode = None
    country: Country
    phone: OptionalPhone = Field(default=None, description="for the carrier")


class NewAddressIn(AddressIn):
    is_default: bool = Field(default=False, description="make it the default (the first address always is)")


class AddressPatch(Model):
    # Leave a field out to keep it; the optional ones (line2, region, postal_code, phone) may be null.
    name: Text = None
    line1: Text = None
    line2: OptionalLine = None
    city: Text = None
    region: OptionalLine = None
    postal_code: PostalCode = None
    country: Country = None
    phone: OptionalPhone = None
    is_default: bool = Field(
        default=None, description="true makes it the default; false is refused for the default (name another)"
    )


class AddressOut(Out):
    id: UUID
    name: str
    line1: str
    line2: str | None
    city: str
    region: str | None
    postal_code: str | None
    country: str
    phone: str | None
    is_default: bool


class AddressEnvelope(Out):
    address: AddressOut


class AddressList(Out):
    items: list[AddressOut] = Field(description="the default first, then in the order they were added")


class ShippingIn(Model):
    flat_rate_cents: Cents = Field(description="charged once per order of goods that ship")
    free_over_cents: Cents | None = Field(
        default=None, description="orders whose items come to at least this ship free; null: never"
    )
    countries: Annotated[list[Country], Field(max_length=len(COUNTRIES))] = Field(
        description="where the shop ships (repeats are dropped); empty: everywhere"
    )


class ShippingOut(Out):
    flat_rate_cents: int
    free_over_cents: int | None
    countries: list[str] = Field(description="where the shop ships; empty: everywhere")


@api.get("/api/me/addresses", auth="user", response=AddressList)
async def list_addresses(request: web.Request) -> AddressList:
    """Your saved shipping addresses"""
    return AddressList.model_validate(
        {"items": await addresses.list_addresses(db(request), principal(request).user_id)}
    )


@api.post("/api/me/addresses", auth="user", body=NewAddressIn, response=AddressEnvelope, status=201)
async def add_address(request: web.Request, body: NewAddressIn) -> AddressEnvelope:
    """Save a shipping address (at most 20); your first one becomes the default"""
    fields = body.model_dump(exclude={"is_default"})
    address = await addresses.add(db(request), principal(request).user_id, fields, body.is_default)
    return AddressEnvelope.model_validate({"address": address})


@api.patch("/api/me/addresses/{id}", auth="user", body=AddressPatch, response=AddressEnvelope)
async def update_address(request: web.Request, body: AddressPatch) -> AddressEnvelope:
    """Change a saved address, or make it the default; orders placed already keep their copy"""
    sent = body.model_fields_set
    changes = {name: getattr(body, name) for name in addresses.FIELDS if name in sent}
    address = await addresses.update(
        db(request),
        principal(request).user_id,
        path_id(request),
        changes,
        body.is_default if "is_default" in sent else None,
    )
    return AddressEnvelope.model_validate({"address": address})


@api.delete("/api/me/addresses/{id}", auth="user", status=204)
async def delete_address(request: web.Request) -> None:
    """Delete a saved address; if it was the default, your most recently added other one becomes it"""
    await addresses.delete(db(request), principal(request).user_id, path_id(request))


@api.get("/api/seller/shipping", auth="seller", response=ShippingOut)
async def get_shipping(request: web.Request) -> ShippingOut:
    """Your shop's shipping profile (free everywhere until you set one)"""
    return ShippingOut.model_validate(await shipping.profile(db(request), principal(request).seller_id))


@api.route("PUT", "/api/seller/shipping", auth="seller", body=ShippingIn, response=ShippingOut)
async def set_shipping(request: web.Request, body: ShippingIn) -> ShippingOut:
    """Set your shop's shipping: a flat rate per order, an optional free-shipping threshold, where you ship"""
    profile = await shipping.set_profile(
        db(request), principal(request).seller_id, body.flat_rate_cents, body.free_over_cents, body.countries
    )
    return ShippingOut.model_validate(profile)
