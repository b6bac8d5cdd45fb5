"""Where uploaded media's bytes live: one small interface (put, get, delete bytes by key; put a file, read
a byte range), two backends.

- `LocalStore`: files under `LIVEHUB_DATA_DIR/media` (the default; one node, or nodes sharing a disk).
- `S3Store`: an S3-compatible bucket (`LIVEHUB_MEDIA_STORE=s3://bucket/prefix`), for several nodes.

Either way LiveHub serves the bytes under its own URLs (livehub/api/images.py), so cache headers and ETags
are the same whatever the backend; the bucket never needs to be public.

Keys are relative paths of safe segments (`images/<uuid>/480.webp`); nothing a client sends becomes a key.
"""

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from livehub import keys
from livehub.errors import Unavailable
from livehub.settings import Settings

log = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")


class MediaStore(Protocol):
    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None if there are none."""
        ...

    async def delete(self, key: str) -> None:
        """Removes `key`; nothing happens if it is not there."""
        ...

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Stores the file at `path` under `key` (a large file: never read into memory whole)."""
        ...

    async def read_range(self, key: str, start: int, end: int | None) -> "Chunks | None":
        """Bytes `start` to `end` (inclusive; None: to the end) of `key`, streamed; None if there is no `key`.
        The range must start before the end of the file (`size` tells; ask for `0, 0` to learn it)."""
        ...


@dataclass
class Chunks:
    """A byte range being read: `size` is the whole object's, `length` the range's; iterate for the bytes."""

    size: int
    length: int
    chunks: AsyncIterator[bytes]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.chunks


_CHUNK = 256 * 1024
# S3 objects above this go up in parts of this size (S3's parts are 5 MiB at least, 10,000 at most).
_PART = 16 * 1024 * 1024


def check_key(key: str) -> str:
    # A bug, never a client's input: keys are built from ids and sizes only.
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"not a media key: {key!r}")
    return key


class LocalStore:
    """Files in a directory. Writes go to a temporary file renamed into place, so a reader never sees half
    a file; file calls run in a thread so a slow disk never stalls the event loop (live rooms share it)."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self._write, self.path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            # mkstemp makes the file 0600; what is stored here is public, and a web server running as
            # another user (nginx's www-data, deploy/nginx/livehub.conf) serves it straight from the disk.
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def get(self, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError:
            return None

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        await asyncio.to_thread(self._copy, path, self.path(key))

    @staticmethod
    def _copy(source: Path, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f, open(source, "rb") as src:
                shutil.copyfileobj(src, f, _CHUNK)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def read_range(self, key: str, start: int, end: int | None) -> Chunks | None:
        path = self.path(key)
        try:
            f = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            return None
        size = os.fstat(f.fileno()).st_size
        last = size - 1 if end is None else min(end, size - 1)
        length = max(0, last - start + 1)

        async def chunks() -> AsyncIterator[bytes]:
            with f:
                await asyncio.to_thread(f.seek, start)
                left = length
                while left > 0:
                    data = await asyncio.to_thread(f.read, min(_CHUNK, left))
                    if not data:
                        return
                    left -= len(data)
                    yield data

        return Chunks(size, length, chunks())

    async def delete(self, key: str) -> None:
        path = self.path(key)
        await asyncio.to_thread(path.unlink, missing_ok=True)
        # An image's sizes share a directory: drop it once it is empty (not the store's root).
        with contextlib.suppress(OSError):
            if path.parent != self.root:
                await asyncio.to_thread(path.parent.rmdir)


class S3Store:
    """Objects in an S3-compatible bucket under a prefix, through one aiobotocore client per node."""

    def __init__(self, client, bucket: str, prefix: str):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes | None:
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        async with response["Body"] as body:
            return await body.read()

    async def delete(self, key: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        size = (await asyncio.to_thread(path.stat)).st_size
        if size <= _PART:
            data = await asyncio.to_thread(path.read_bytes)
            await self.put(key, data, content_type)
            return
        object_key = self.object_key(key)
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=object_key, ContentType=content_type)
        upload_id = upload["UploadId"]
        parts = []
        try:
            with open(path, "rb") as f:
                while data := await asyncio.to_thread(f.read, _PART):
                    number = len(parts) + 1
                    part = await self.client.upload_part(
                        Bucket=self.bucket, Key=object_key, UploadId=upload_id, PartNumber=number, Body=data
                    )
                    parts.append({"PartNumber": number, "ETag": part["ETag"]})
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=object_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
            raise

    async def read_range(self, key: str, start: int, end: int | None) -> Chunks | None:
        bytes_range = f"bytes={start}-" if end is None else f"bytes={start}-{end}"
        try:
            response = await self.client.get_object(Bucket=self.bucket, Key=self.object_key(key), Range=bytes_range)
        except self.client.exceptions.NoSuchKey:
            return None
        except (BotoCoreError, ClientError) as exc:
            # The bucket unreachable, missing or refusing: not the caller's fault, and maybe over soon.
            log.warning("media store: reading %s failed: %s", key, exc)
            raise Unavailable("the media store is unavailable; try again shortly") from exc
        # "bytes 0-99/1234": the whole object's size after the slash.
        size = int(response.get("ContentRange", "").rpartition("/")[2] or response["ContentLength"])
        body = response["Body"]

        async def chunks() -> AsyncIterator[bytes]:
            async with body:
                while data := await body.read(_CHUNK):
                    yield data

        return Chunks(size, response["ContentLength"], chunks())


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"LIVEHUB_MEDIA_STORE must be empty or s3://bucket[/prefix], not {url!r}")
    return parts.netloc, parts.path.strip("/")


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[MediaStore]:
    """The store the settings name, open for as long as the context lasts."""
    if not settings.media_store:
        yield LocalStore(settings.data_dir / "media")
        return
    bucket, prefix = parse_s3_url(settings.media_store)
    # Imported here: a node on the local store never loads botocore.
    from aiobotocore.session import get_session

    # Credentials and region come from the standard AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    # AWS_DEFAULT_REGION) or files, as for any AWS tool; the endpoint from LIVEHUB_S3_ENDPOINT_URL (MinIO etc.).
    async with get_session().create_client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region
    ) as client:
        yield S3Store(client, bucket, prefix)


STORE = web.AppKey("media_store", MediaStore)


async def media_store(app: web.Application):
    """cleanup_ctx: the node's media store in app[STORE]."""
    async with open_store(app[keys.SETTINGS]) as store:
        app[STORE] = store
        yield
