"""A recorded show's video, from the media store, with HTTP range requests (a player seeks by asking for
the bytes it needs): `GET /api/streams/{id}/replay/video`.

The file under a replay's key never changes (a new recording gets a new key), so the ETag is the key's
and the answer may be cached; the URL itself outlives a replay only until it is discarded or expires,
hence a modest max-age rather than `immutable`. On the local store aiohttp's FileResponse sends the range
from the file (sendfile); on S3 the range is asked of the bucket and streamed through.
"""

import re

from aiohttp import web

from livehub.api.errors import error_response
from livehub.api.routing import Api, db, path_id
from livehub.errors import NotFound, RangeNotSatisfiable
from livehub.mediastore import STORE, LocalStore
from livehub.shop import recordings

api = Api("streams")

CACHE = "public, max-age=3600"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """The one byte range a `Range` header asks for, as (first, last) within `size`; None to send the whole
    file (no header, one it cannot read, or several ranges: RFC 9110 lets a server ignore those); False
    when the range starts past the end."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0:
            return False
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size:
        return False
    if end < start:
        return None
    return start, end


@api.get(
    "/api/streams/{id}/replay/video",
    errors={
        416: "the Range starts past the end of the file (Content-Range: bytes */size)",
        503: "the media store (S3) cannot be read just now",
    },
)
async def replay_video(request: web.Request) -> web.StreamResponse:
    """A show's recorded video: the whole file, or with Range one part of it (206, Content-Range)"""
    stream_id = path_id(request)
    replay = await recordings.replay_file(db(request), stream_id)
    if replay is None:
        raise NotFound("this stream has no replay (yet)")
    key, size = replay["media_key"], replay["size_bytes"]
    etag = f'"{key.rsplit("/", 1)[-1].split(".")[0]}"'
    headers = {"Accept-Ranges": "bytes", "Cache-Control": CACHE, "ETag": etag, "Content-Type": replay["content_type"]}
    wanted = parse_range(request.headers.get("Range"), size)
    if wanted is False:
        return error_response(RangeNotSatisfiable(details={"size_bytes": size}), {"Content-Range": f"bytes */{size}"})
    store = request.app[STORE]
    if isinstance(store, LocalStore):
        path = store.path(key)
        if not path.exists():
            raise NotFound("this stream's replay is gone")
        # FileResponse reads Range itself (the same way) and sends the bytes with sendfile.
        return web.FileResponse(path, headers=headers)
    start, end = wanted or (0, size - 1)
    if request.method == "HEAD":
        # From the row: asking the bucket would download the object (or the range) for nothing.
        response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
        response.content_length = end - start + 1
        if wanted:
            response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        await response.prepare(request)
        await response.write_eof()
        return response
    chunks = await store.read_range(key, start, end)
    if chunks is None:
        raise NotFound("this stream's replay is gone")
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    response.content_length = chunks.length
    if wanted:
        response.headers["Content-Range"] = f"bytes {start}-{start + chunks.length - 1}/{chunks.size}"
    await response.prepare(request)
    async for data in chunks:
        await response.write(data)
    await response.write_eof()
    return response
