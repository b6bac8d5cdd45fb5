"""Avatars: a user's own picture, uploaded and then chosen with `PATCH /api/me {avatar_image_id}`.

An upload goes through the product images' pipeline (livehub/shop/images.py: sniffed, pixel-capped,
EXIF-oriented, stripped, stored as WebP sizes in the media store, served under /media/images) and is recorded
as the uploader's (storage/functions/user_images.sql), so only they can choose it. Choosing an avatar, or none,
deletes every other upload of theirs, files included.
"""

import asyncio
import uuid
from uuid import UUID

import asyncpg

from livehub.mediastore import MediaStore
from livehub.shop import images

# Uploads kept while none of them is chosen (a user trying a few pictures); the avatar itself not counted.
MAX_PENDING_UPLOADS = 5


async def upload(pool: asyncpg.Pool, store: MediaStore, user_id: UUID, data: bytes, *, max_pixels: int) -> dict:
    """Checks, renders and stores a picture as the user's; returns its image JSON (not yet their avatar)."""
    sizes = await asyncio.to_thread(images.renditions, data, max_pixels=max_pixels)
    image_id = uuid.uuid4()
    # Files first, then the row (a row never names missing files); if recording fails, the files go again.
    await asyncio.gather(*(store.put(images.image_key(image_id, s.width), s.data, images.CONTENT_TYPE) for s in sizes))
    try:
        return await pool.fetchval(
            "SELECT add_user_image($1, $2, $3, $4, $5)",
            user_id,
            image_id,
            [s.width for s in sizes],
            [s.height for s in sizes],
            MAX_PENDING_UPLOADS,
        )
    except BaseException:
        await images.delete_files(store, image_id, [s.width for s in sizes])
        raise


async def choose(conn: asyncpg.Connection, user_id: UUID, image_id: UUID | None) -> list[dict]:
    """Makes one of the user's uploads their avatar (None: no avatar), in the caller's transaction; NotFound for
    any other id. Returns the uploads that went ({id, widths}): delete_files them once that commits."""
    return await conn.fetchval("SELECT set_avatar($1, $2)", user_id, image_id)


async def delete_files(store: MediaStore, gone: list[dict]) -> None:
    # After their rows are gone nothing links to these files; one that fails to go is only wasted space.
    for image in gone:
        await images.delete_files(store, UUID(image["id"]), image["widths"])
