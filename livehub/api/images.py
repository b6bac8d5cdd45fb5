"""Product images over REST: upload (multipart), reorder, delete; and serving the stored sizes.

Images are served by LiveHub under `/media/images/{id}/{width}.webp` whatever the media store (a directory
or an S3 bucket): an image never changes once stored, so those URLs are cached for a year (`immutable`)
and answer `If-None-Match` with 304 without reading the store.
"""

import re
from typing import Annotated
from uuid import UUID

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import Field

from livehub import keys
from livehub.api.routing import MULTIPART, Api, Model, Out, path_id, principal
from livehub.errors import NotFound, PayloadTooLarge, ValidationFailed
from livehub.mediastore import STORE
from livehub.shop import images

api = Api("catalog")

CACHE_FOREVER = "public, max-age=31536000, immutable"
_FILE_NAME = re.compile(r"^([1-9][0-9]{0,4})\.webp$")
_CHUNK = 64 * 1024

UPLOAD_SCHEMA = {
    "type": "object",
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "a JPEG, PNG or WebP picture (the type is read from the bytes)",
        },
        "variant_id": {"type": "string", "format": "uuid", "description": "the variant it shows, if one"},
    },
    "required": ["file"],
    "additionalProperties": False,
}


class ImageSizeOut(Out):
    url: str
    width: int
    height: int


class ImageOut(Out):
    id: UUID
    url: str = Field(description="the largest stored size (at most 1080 px wide)")
    width: int
    height: int
    position: int
    variant_id: UUID | None
    sizes: list[ImageSizeOut] = Field(description="every stored size, narrowest first (for srcset)")


class ImageEnvelope(Out):
    image: ImageOut


class ImageMove(Model):
    position: Annotated[int, Field(ge=0, le=1000)]


@api.post(
    "/api/products/{id}/images",
    auth="seller",
    changes_listings=True,
    content_type=MULTIPART,
    body_schema=UPLOAD_SCHEMA,
    response=ImageEnvelope,
    status=201,
    errors={409: "the product has as many images as it may (LIVEHUB_MAX_IMAGES_PER_PRODUCT)"},
)
async def upload_image(request: web.Request) -> dict:
    """Add a picture to your product's gallery (multipart, field `file`); stored as WebP in a few widths"""
    settings = request.app[keys.SETTINGS]
    product_id = path_id(request)
    data, variant_id = await read_upload(request)
    image = await images.add_image(
        request.app[keys.POOL],
        request.app[STORE],
        principal(request).user_id,
        product_id,
        data,
        variant_id=variant_id,
        max_pixels=settings.max_image_pixels,
        max_images=settings.max_images_per_product,
    )
    return {"image": image}


async def read_upload(request: web.Request) -> tuple[bytes, UUID | None]:
    """A picture upload's form (field `file`, optional `variant_id`), under the body and image size limits;
    shared by product images and avatars so both refuse the same things the same way."""
    settings = request.app[keys.SETTINGS]
    if request.content_length is not None and request.content_length > settings.max_upload_bytes:
        raise PayloadTooLarge(f"body larger than {settings.max_upload_bytes} bytes")
    return await _read_form(request, min(settings.max_image_bytes, settings.max_upload_bytes))


async def _read_form(request: web.Request, limit: int) -> tuple[bytes, UUID | None]:
    if request.content_type != MULTIPART:
        raise ValidationFailed("send the picture as multipart/form-data, in the field `file`")
    data: bytes | None = None
    variant_id: UUID | None = None
    try:
        reader = await request.multipart()
        async for part in reader:
            name = getattr(part, "name", None)
            if name == "file" and data is None and hasattr(part, "read_chunk"):
                data = await _read_part(part, limit, too_large=PayloadTooLarge(f"the image is over {limit} bytes"))
            elif name == "variant_id" and variant_id is None and hasattr(part, "read_chunk"):
                text = (await _read_part(part, 100, too_large=ValidationFailed("variant_id is not an id"))).decode()
                try:
                    variant_id = UUID(text.strip())
                except ValueError:
                    raise ValidationFailed("variant_id is not an id", {"field": "variant_id"}) from None
            else:
                raise ValidationFailed("unexpected form field", {"field": name})
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body larger than {request.app[keys.SETTINGS].max_upload_bytes} bytes") from None
    except (ValueError, RuntimeError, LookupError, TypeError, HttpProcessingError) as exc:
        # A malformed form (boundary, headers, encodings): the client's mistake.
        raise ValidationFailed("the form could not be read", {"reason": str(exc)[:200]}) from None
    if not data:
        raise ValidationFailed("a picture is required in the field `file`", {"field": "file"})
    return data, variant_id


async def _read_part(part, limit: int, *, too_large: Exception) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


@api.patch(
    "/api/products/{id}/images/{image_id}",
    auth="seller",
    changes_listings=True,
    body=ImageMove,
    response=ImageEnvelope,
)
async def move_image(request: web.Request, body: ImageMove) -> dict:
    """Move a picture of your product to another place in its gallery (0 is first)"""
    image = await images.move_image(
        request.app[keys.POOL],
        principal(request).user_id,
        path_id(request),
        path_id(request, "image_id"),
        body.position,
    )
    return {"image": image}


@api.delete("/api/products/{id}/images/{image_id}", auth="seller", changes_listings=True, status=204)
async def delete_image(request: web.Request) -> None:
    """Remove a picture from your product's gallery (its files go too)"""
    await images.delete_image(
        request.app[keys.POOL],
        request.app[STORE],
        principal(request).user_id,
        path_id(request),
        path_id(request, "image_id"),
    )


async def serve_image(request: web.Request) -> web.Response:
    """GET /media/images/{id}/{width}.webp: one stored size of an image."""
    try:
        image_id = UUID(request.match_info["id"])
    except ValueError:
        raise NotFound("no such image") from None
    match = _FILE_NAME.match(request.match_info["name"])
    if match is None:
        raise NotFound("no such image")
    width = int(match.group(1))
    # The id and width name these bytes for good (an image is never changed, only deleted).
    etag = f'"{image_id}-{width}"'
    headers = {"Cache-Control": CACHE_FOREVER, "ETag": etag}
    if _matches(request.headers.get("If-None-Match", ""), etag):
        return web.Response(status=304, headers=headers)
    data = await request.app[STORE].get(images.image_key(image_id, width))
    if data is None:
        raise NotFound("no such image")
    return web.Response(body=data, content_type=images.CONTENT_TYPE, headers=headers)


def _matches(if_none_match: str, etag: str) -> bool:
    # Weak comparison, as RFC 9110 has it for If-None-Match.
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return etag in tags or "*" in tags


# Not under /api (not JSON, no auth): mounted by app.py next to the API routes.
serving = [web.get("/media/images/{id}/{name}", serve_image)]
