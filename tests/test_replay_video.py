"""Serving a replay's video with range requests (GET /api/streams/{id}/replay/video) from both media
stores: the local directory and an S3 bucket (moto's server, as in tests/test_product_images_s3.py). The
file is put with the store's own put_file (as the recorder does) and its row written by
livehub/shop/recordings.py; the bytes are random, what matters here is which of them come back."""

import os
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from aiobotocore.session import get_session
from test_product_images_s3 import BUCKET, s3_endpoint  # noqa: F401  (a fixture: moto's S3 server)

from conftest import settings_for
from helpers import error_of
from livehub.app import create_app
from livehub.mediastore import STORE, S3Store
from livehub.shop import recordings

SIZE = 300_000
# Above one S3 part, to go up as a multipart upload.
LARGE = 17 * 1024 * 1024 + 123


@pytest.fixture(params=["local", "s3"])
async def client(request, aiohttp_client, database_url, db, tmp_path):
    update = {"data_dir": tmp_path, "jobs_enabled": False}
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
            await s3.create_bucket(Bucket=BUCKET)
        update |= {"media_store": f"s3://{BUCKET}/replays-test", "s3_endpoint_url": endpoint}
    return await aiohttp_client(create_app(settings_for(database_url).model_copy(update=update)))


async def new_stream(client, make) -> str:
    seller = await make.seller()
    product = await make.product(seller)
    res = await client.post(
        "/api/streams", json={"title": "Recorded", "products": [{"product_id": product["id"]}]}, headers=seller.headers
    )
    assert res.status == 201, await res.text()
    return (await res.json())["stream"]["id"]


async def save_row(db, stream_id: str, key: str, size: int) -> bool:
    """The stream_replays row of a file at `key`, written as the recorder writes it."""
    return await recordings.save_replay(
        db,
        UUID(stream_id),
        media_key=key,
        content_type="video/webm",
        duration_s=12.5,
        size_bytes=size,
        started_at=datetime.now(UTC),
    )


async def replay_of(client, make, db, tmp_path, size=SIZE) -> tuple[str, bytes]:
    stream_id = await new_stream(client, make)
    data = os.urandom(size)
    path = tmp_path / "replay.webm"
    path.write_bytes(data)
    key = f"replays/{stream_id}/{uuid4().hex}.webm"
    await client.app[STORE].put_file(key, path, "video/webm")
    assert await save_row(db, stream_id, key, size)
    # Once only: a second row for the stream is refused.
    again = {"media_key": key, "content_type": "video/webm", "duration_s": 1, "size_bytes": 1}
    assert not await recordings.save_replay(db, UUID(stream_id), **again, started_at=datetime.now(UTC))
    return stream_id, data


async def test_the_whole_file_then_ranges_of_it(client, make, db, tmp_path):
    stream_id, data = await replay_of(client, make, db, tmp_path)
    url = f"/api/streams/{stream_id}/replay/video"

    res = await client.get(url)
    assert res.status == 200
    assert res.headers["Content-Type"] == "video/webm" and res.headers["Accept-Ranges"] == "bytes"
    assert res.headers["Cache-Control"] == "public, max-age=3600" and res.headers["ETag"]
    assert await res.read() == data

    res = await client.get(url, headers={"Range": "bytes=1000-1999"})
    assert res.status == 206
    assert res.headers["Content-Range"] == f"bytes 1000-1999/{SIZE}"
    assert await res.read() == data[1000:2000]

    res = await client.get(url, headers={"Range": f"bytes={SIZE - 10}-"})
    assert res.status == 206 and res.headers["Content-Range"] == f"bytes {SIZE - 10}-{SIZE - 1}/{SIZE}"
    assert await res.read() == data[-10:]

    res = await client.get(url, headers={"Range": "bytes=-500"})
    assert res.status == 206 and await res.read() == data[-500:]

    res = await client.get(url, headers={"Range": f"bytes=5-{SIZE + 1000}"})  # the end is clipped to the file's
    assert res.status == 206 and await res.read() == data[5:]

    res = await client.get(url, headers={"Range": f"bytes={SIZE}-"})
    body = await error_of(res, 416, "range_not_satisfiable")
    assert body["details"] == {"size_bytes": SIZE}
    assert res.headers["Content-Range"] == f"bytes */{SIZE}"


async def test_no_replay_is_a_404(client, make, db, tmp_path):
    stream_id = await new_stream(client, make)
    await error_of(await client.get(f"/api/streams/{stream_id}/replay/video"), 404, "not_found")
    await error_of(await client.get(f"/api/streams/{uuid4()}/replay/video"), 404, "not_found")
    await error_of(await client.get("/api/streams/not-an-id/replay/video"), 404, "not_found")


async def test_a_large_file_goes_to_s3_in_parts(client, make, db, tmp_path):
    if not isinstance(client.app[STORE], S3Store):
        pytest.skip("the local store copies the file whole")
    stream_id, data = await replay_of(client, make, db, tmp_path, size=LARGE)
    res = await client.get(f"/api/streams/{stream_id}/replay/video", headers={"Range": f"bytes={LARGE - 100}-"})
    assert res.status == 206 and await res.read() == data[-100:]
    res = await client.get(f"/api/streams/{stream_id}/replay/video")
    assert res.status == 200 and await res.read() == data


async def test_head_answers_from_the_replays_row(client, make, db, tmp_path):
    stream_id, data = await replay_of(client, make, db, tmp_path)
    res = await client.head(f"/api/streams/{stream_id}/replay/video")
    assert res.status == 200 and res.headers["Content-Length"] == str(SIZE)
    assert res.headers["Accept-Ranges"] == "bytes" and res.headers["Content-Type"] == "video/webm"
    res = await client.head(f"/api/streams/{stream_id}/replay/video", headers={"Range": "bytes=100-199"})
    assert res.status == 206 and res.headers["Content-Range"] == f"bytes 100-199/{SIZE}"
    assert res.headers["Content-Length"] == "100"


async def test_a_bucket_that_cannot_be_read_is_503_and_head_never_asks_it(
    s3_endpoint,  # noqa: F811
    aiohttp_client,
    database_url,
    make,
    db,
    tmp_path,
):
    """The media store's bucket is not there (as when S3 is away or refuses): GET says 503 unavailable in
    the API's error shape (it was a 500); HEAD answers from the replay's row without asking the bucket."""
    update = {
        "data_dir": tmp_path,
        "jobs_enabled": False,
        "media_store": "s3://no-such-bucket/replays-test",
        "s3_endpoint_url": s3_endpoint,
    }
    client = await aiohttp_client(create_app(settings_for(database_url).model_copy(update=update)))
    stream_id = await new_stream(client, make)
    assert await save_row(db, stream_id, f"replays/{stream_id}/{uuid4().hex}.webm", SIZE)
    await error_of(await client.get(f"/api/streams/{stream_id}/replay/video"), 503, "unavailable")
    ranged = await client.get(f"/api/streams/{stream_id}/replay/video", headers={"Range": "bytes=0-9"})
    await error_of(ranged, 503, "unavailable")
    res = await client.head(f"/api/streams/{stream_id}/replay/video")
    assert res.status == 200 and res.headers["Content-Length"] == str(SIZE)


async def test_a_discarded_or_hidden_replay_is_not_served(client, make, db, tmp_path):
    """The video goes with the replay: not once it is discarded (whatever a late finish left in the table),
    nor while its shop is suspended, as GET /api/streams/{id}/replay."""
    stream_id, _ = await replay_of(client, make, db, tmp_path)
    url = f"/api/streams/{stream_id}/replay/video"
    seller_id = await db.fetchval("SELECT seller_id FROM streams WHERE id = $1", UUID(stream_id))
    await db.execute("SELECT set_seller_status($1, 'suspended', NULL)", seller_id)
    await error_of(await client.get(url), 404, "not_found")
    await db.execute("SELECT set_seller_status($1, 'approved', NULL)", seller_id)
    assert (await client.get(url)).status == 200
    await db.execute("UPDATE streams SET replay_discarded_at = now() WHERE id = $1", UUID(stream_id))
    await error_of(await client.get(url), 404, "not_found")
