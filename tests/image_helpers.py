"""Pictures made with Pillow for the image tests, and uploading them through the API."""

import io
import struct
import zlib

import aiohttp
from PIL import Image


def picture(fmt: str = "PNG", size: tuple[int, int] = (1600, 900), color=(200, 30, 30), **save) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt, **save)
    return buffer.getvalue()


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (its pixel data is a few bytes of nothing):
    decoding it would need gigabytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def form(data: bytes, filename: str = "picture.jpg", content_type: str = "image/jpeg", **fields) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename=filename, content_type=content_type)
    for name, value in fields.items():
        body.add_field(name, value)
    return body


async def upload(client, seller, product_id: str, data: bytes, *, status: int = 201, **kwargs):
    res = await client.post(f"/api/products/{product_id}/images", data=form(data, **kwargs), headers=seller.headers)
    if status == 201:
        assert res.status == 201, await res.text()
        return (await res.json())["image"]
    return res
