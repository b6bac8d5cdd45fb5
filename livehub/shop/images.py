"""Product images: checking an upload, making its sizes, storing them, and the gallery's rows.

An upload is trusted for nothing: its type is sniffed from its bytes (JPEG, PNG or WebP, whatever its name
or Content-Type say), its pixel count is checked from the header before anything is decoded (a few KB of
PNG can claim 30000x30000 pixels), EXIF orientation is applied and then every piece of metadata dropped
(camera, GPS), and what is stored is re-encoded WebP in a few widths, never upscaled. Decoding and encoding
run in a thread: a big JPEG takes tens of milliseconds, which the event loop (live rooms) must not wait for.

Rows and their rules (ownership, the per-product cap, dense positions) are storage/functions/images.sql's.
"""

import asyncio
import io
import logging
import uuid
from dataclasses import dataclass
from uuid import UUID

import asyncpg
from PIL import Image, ImageOps, UnidentifiedImageError

from livehub.errors import ValidationFailed
from livehub.mediastore import MediaStore

log = logging.getLogger(__name__)

# Widths stored for every image (narrower originals stop at their own width): a card, a page, a zoom.
WIDTHS = (160, 480, 1080)
FORMATS = ("JPEG", "PNG", "WEBP")
CONTENT_TYPE = "image/webp"
WEBP_QUALITY = 82


class UnsupportedImage(ValidationFailed):
    """Not a picture LiveHub takes (422 validation_error, details.reason says why)."""


@dataclass(frozen=True)
class Rendition:
    width: int
    height: int
    data: bytes


def image_key(image_id: UUID | str, width: int) -> str:
    return f"images/{image_id}/{width}.webp"


def renditions(data: bytes, *, max_pixels: int) -> list[Rendition]:
    """The stored sizes of an uploaded picture, narrowest first; UnsupportedImage if it is not one we take.
    Blocking (decodes and encodes): call it in a thread."""
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UnsupportedImage("not a JPEG, PNG or WebP image", {"reason": "unsupported_type"}) from None
    with image:
        # Checked from the header, before load() decodes anything (Pillow's own bomb check, at its global
        # Image.MAX_IMAGE_PIXELS, is a second line; this cap is the deployment's).
        if image.width * image.height > max_pixels:
            raise _too_many_pixels(max_pixels)
        try:
            image.load()
            # The camera's "rotate me" flag applied to the pixels, since the flag itself is about to go.
            upright = ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels(max_pixels) from None
        except Exception as exc:
            # Pillow's decoders and EXIF parser raise many kinds (OSError, ValueError, SyntaxError, struct.error,
            # KeyError...) on bytes that only look like a picture: all of them are the upload's fault.
            raise UnsupportedImage("the image could not be read", {"reason": "corrupt"}) from exc
        mode = "RGBA" if upright.has_transparency_data else "RGB"
        upright = upright.convert(mode)
        widths = sorted({w for w in WIDTHS if w < upright.width} | {min(upright.width, WIDTHS[-1])})
        out = []
        for width in widths:
            height = max(1, round(upright.height * width / upright.width))
            sized = upright if width == upright.width else upright.resize((width, height), Image.Resampling.LANCZOS)
            # Nothing of the original's metadata (EXIF, XMP, ICC, comments) goes into what is stored.
            sized.info = {}
            buffer = io.BytesIO()
            sized.save(buffer, "WEBP", quality=WEBP_QUALITY, method=4)
            out.append(Rendition(width, height, buffer.getvalue()))
        return out


def _too_many_pixels(max_pixels: int) -> UnsupportedImage:
    return UnsupportedImage(
        f"the image has too many pixels (at most {max_pixels})", {"reason": "too_many_pixels", "max": max_pixels}
    )


async def add_image(
    pool: asyncpg.Pool,
    store: MediaStore,
    user_id: UUID,
    product_id: UUID,
    data: bytes,
    *,
    variant_id: UUID | None = None,
    max_pixels: int,
    max_images: int,
) -> dict:
    """Checks, renders and stores an upload, then records it last in the product's gallery."""
    # Ownership first, cheaply: another seller's upload is refused before any decoding.
    await pool.fetchval("SELECT id FROM owned_product($1, approved_seller($2))", product_id, user_id)
    sizes = await asyncio.to_thread(renditions, data, max_pixels=max_pixels)
    image_id = uuid.uuid4()
    # Files first, then the row: a row never names missing files. If recording fails (the cap reached
    # meanwhile, the product gone), the files go again.
    await asyncio.gather(*(store.put(image_key(image_id, s.width), s.data, CONTENT_TYPE) for s in sizes))
    try:
        return await pool.fetchval(
            "SELECT add_product_image($1, $2, $3, $4, $5, $6, $7)",
            user_id,
            product_id,
            variant_id,
            image_id,
            [s.width for s in sizes],
            [s.height for s in sizes],
            max_images,
        )
    except BaseException:
        await delete_files(store, image_id, [s.width for s in sizes])
        raise


async def move_image(pool: asyncpg.Pool, user_id: UUID, product_id: UUID, image_id: UUID, position: int) -> dict:
    return await pool.fetchval("SELECT move_product_image($1, $2, $3, $4)", user_id, product_id, image_id, position)


async def delete_image(pool: asyncpg.Pool, store: MediaStore, user_id: UUID, product_id: UUID, image_id: UUID) -> None:
    widths = await pool.fetchval("SELECT delete_product_image($1, $2, $3)", user_id, product_id, image_id)
    await delete_files(store, image_id, widths)


async def delete_files(store: MediaStore, image_id: UUID, widths: list[int]) -> None:
    # After the row is gone nothing links to these files; one that fails to go is only wasted space.
    results = await asyncio.gather(*(store.delete(image_key(image_id, w)) for w in widths), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("could not delete a file of image %s: %r", image_id, result)


async def stored_widths(pool: asyncpg.Pool, image_id: UUID) -> list[int] | None:
    """The widths stored for an image, or None if there is no such image."""
    return await pool.fetchval("SELECT widths FROM product_images WHERE id = $1", image_id)
