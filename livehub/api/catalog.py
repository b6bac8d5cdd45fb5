"""Categories, products, variants, stock and digital-unit imports."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import pydantic
from aiohttp import web
from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

from livehub import keys
from livehub.api.images import ImageOut
from livehub.api.models import Cents, LongText, Page, PageQuery, RatingOut, Text, text_map
from livehub.api.routing import Api, Model, Out, db, path_id, principal
from livehub.errors import ValidationFailed
from livehub.jsonx import dumps
from livehub.shop import catalog, units

api = Api("catalog")

Sku = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/-]+$")
]
Options = text_map(20, 100)
_NO_NUL = {"type": "string", "pattern": r"^[^\x00]*$"}
# Numbers every JSON reader keeps exactly (and jsonb stores): JavaScript's safe integer range.
_SAFE = 2**53 - 1


def _plain_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        for item in value.values():
            _plain_numbers(item)
    elif isinstance(value, list):
        for item in value:
            _plain_numbers(item)
    elif isinstance(value, int | float) and not isinstance(value, bool) and not -_SAFE <= value <= _SAFE:
        raise ValueError(f"numbers must be between {-_SAFE} and {_SAFE}")
    return value


# Free-form product attributes: texts, numbers, flags, lists; no text may hold NUL (checked on arrival).
Attributes = Annotated[
    dict[str, Any],
    Field(max_length=50),
    AfterValidator(_plain_numbers),
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": 50,
            "propertyNames": _NO_NUL,
            "additionalProperties": {
                "anyOf": [
                    _NO_NUL,
                    {"type": "number", "minimum": -_SAFE, "maximum": _SAFE},
                    {"type": ["boolean", "null"]},
                    {"type": "array", "items": _NO_NUL},
                ]
            },
        }
    ),
]
Stock = Annotated[int, Field(ge=0, le=10_000_000)]


class CategoryOut(Out):
    id: UUID
    slug: str
    name: str
    children: list["CategoryOut"]


class CategoryTreeOut(Out):
    items: list[CategoryOut]


class VariantIn(Model):
    # A digital variant's stock is its codes, imported after it is created.
    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "if": {"properties": {"digital": {"const": True}}, "required": ["digital"]},
            "then": {"properties": {"stock": {"const": 0}}},
        }
    )

    sku: Sku
    options: Options = {}
    price_cents: Cents
    stock: Stock = 0
    digital: bool = False


class ProductIn(Model):
    title: Text
    description: LongText = ""
    category_id: UUID | None = None
    attributes: Attributes = {}
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=100)]


class ProductPatch(Model):
    # Leave a field out to keep it; only category_id may be null (no category).
    title: Text = None
    description: LongText = None
    category_id: UUID | None = None
    attributes: Attributes = None
    status: Literal["active", "archived"] = None


class VariantsIn(Model):
    variants: Annotated[list[VariantIn], Field(min_length=1, max_length=100)]


class VariantPatch(Model):
    # Leave a field out to keep it.
    sku: Sku = None
    options: Options = None
    price_cents: Cents = None
    low_stock_threshold: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        None, description="the variant's own low-stock threshold; null: the shop's default applies"
    )


class StockIn(Model):
    delta: Annotated[int, Field(ge=-10_000_000, le=10_000_000)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    reference: Annotated[str, StringConstraints(max_length=200)] | None = None


class StockOut(Out):
    variant_id: UUID
    available: int


class SellerRef(Out):
    id: UUID
    shop_name: str


class VariantOut(Out):
    id: UUID
    sku: str
    options: dict[str, str]
    price_cents: int
    available: int
    digital: bool


class ProductOut(Out):
    id: UUID
    title: str
    description: str
    category_id: UUID | None
    attributes: dict[str, Any]
    status: str
    seller: SellerRef
    variants: list[VariantOut]
    rating: RatingOut
    images: list[ImageOut] = Field(description="the gallery, in order (docs/API.md, Product images)")
    created_at: datetime
    updated_at: datetime


class ProductEnvelope(Out):
    product: ProductOut


class ProductQuery(PageQuery):
    q: Annotated[str, StringConstraints(max_length=200)] | None = None
    category: UUID | None = None
    seller: UUID | None = None
    min_price_cents: Cents | None = None
    max_price_cents: Cents | None = None
    in_stock: bool | None = None


class RejectedLine(Out):
    line: int
    error: str


class ImportOut(Out):
    imported: int
    rejected: list[RejectedLine]


@api.get("/api/categories", response=CategoryTreeOut)
async def list_categories(request: web.Request) -> CategoryTreeOut:
    """The category tree"""
    return CategoryTreeOut(items=await catalog.category_tree(request.app[keys.POOL]))


@api.get("/api/products", query=ProductQuery, response=Page[ProductOut])
async def list_products(request: web.Request, query: ProductQuery) -> web.Response:
    """Search and filter active products, newest first"""
    f = catalog.ProductFilter(
        q=query.q,
        category=query.category,
        seller=query.seller,
        min_price_cents=query.min_price_cents,
        max_price_cents=query.max_price_cents,
        in_stock=query.in_stock,
    )

    async def load() -> bytes:
        # The page as PostgreSQL built it: it already has the response's shape (tests/test_catalog.py
        # checks it against the model), so it is not validated and dumped again on the hot path.
        return dumps(await catalog.list_products(request.app[keys.POOL], f, limit=query.limit, cursor=query.cursor))

    body = await request.app[keys.LISTING_CACHE].get(query.model_dump_json(), load)
    return web.Response(body=body, content_type="application/json")


@api.get("/api/products/{id}", response=ProductEnvelope)
async def get_product(request: web.Request) -> dict:
    """A product with its variants and available stock"""
    async with request.app[keys.POOL].acquire() as conn:
        return {"product": await catalog.get_product(conn, path_id(request))}


@api.post("/api/products", auth="seller", changes_listings=True, body=ProductIn, response=ProductEnvelope, status=201)
async def create_product(request: web.Request, body: ProductIn) -> ProductEnvelope:
    """List a new product with its variants"""
    _distinct_skus(body.variants)
    product = await catalog.create_product(request.app[keys.POOL], principal(request).user_id, body.model_dump())
    return ProductEnvelope(product=product)


@api.patch("/api/products/{id}", auth="seller", changes_listings=True, body=ProductPatch, response=ProductEnvelope)
async def update_product(request: web.Request, body: ProductPatch) -> ProductEnvelope:
    """Change your product's fields"""
    changes = body.model_dump(exclude_unset=True)
    product = await catalog.update_product(
        request.app[keys.POOL], principal(request).user_id, path_id(request), changes
    )
    return ProductEnvelope(product=product)


@api.delete("/api/products/{id}", auth="seller", changes_listings=True, response=ProductEnvelope)
async def archive_product(request: web.Request) -> ProductEnvelope:
    """Archive your product: it leaves listings, its orders keep their links"""
    product = await catalog.update_product(
        request.app[keys.POOL], principal(request).user_id, path_id(request), {"status": "archived"}
    )
    return ProductEnvelope(product=product)


@api.post(
    "/api/products/{id}/variants",
    auth="seller",
    changes_listings=True,
    body=VariantsIn,
    response=ProductEnvelope,
    status=201,
)
async def add_variants(request: web.Request, body: VariantsIn) -> ProductEnvelope:
    """Add variants to your product"""
    _distinct_skus(body.variants)
    product = await catalog.add_variants(
        request.app[keys.POOL], principal(request).user_id, path_id(request), body.model_dump()["variants"]
    )
    return ProductEnvelope(product=product)


@api.patch("/api/variants/{id}", auth="seller", changes_listings=True, body=VariantPatch, response=ProductEnvelope)
async def update_variant(request: web.Request, body: VariantPatch) -> ProductEnvelope:
    """Change your variant's SKU, options, price or low-stock threshold"""
    changes = body.model_dump(exclude_unset=True)
    product = await catalog.update_variant(
        request.app[keys.POOL], principal(request).user_id, path_id(request), changes
    )
    return ProductEnvelope(product=product)


@api.post(
    "/api/variants/{id}/stock", auth="seller", changes_listings=True, body=StockIn, response=StockOut, idempotent=True
)
async def adjust_stock(request: web.Request, body: StockIn) -> StockOut:
    """Restock or write off units of your variant; every change is audited"""
    result = await catalog.adjust_stock(
        db(request),
        principal(request).user_id,
        path_id(request),
        body.delta,
        body.reason,
        body.reference,
    )
    return StockOut.model_validate(result)


@api.post(
    "/api/variants/{id}/units",
    auth="seller",
    changes_listings=True,
    response=ImportOut,
    content_type="text/csv",
    idempotent=True,
)
async def import_units(request: web.Request, data: bytes) -> ImportOut:
    """Import digital codes (CSV, one code per row) into your digital variant"""
    report = await units.import_csv(
        db(request),
        principal(request).user_id,
        path_id(request),
        data,
        max_codes=request.app[keys.SETTINGS].max_units_per_import,
    )
    return ImportOut.model_validate(report)


def _distinct_skus(variants: list[VariantIn]) -> None:
    # A rule the OpenAPI document cannot state (unique by one field), so it is checked here, not by the model.
    seen: set[str] = set()
    for variant in variants:
        if variant.sku in seen:
            raise ValidationFailed("each variant needs its own sku", {"sku": variant.sku})
        seen.add(variant.sku)
