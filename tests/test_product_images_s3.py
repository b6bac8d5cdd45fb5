"""Product images on the S3 backend (LIVEHUB_MEDIA_STORE=s3://bucket/prefix) against a real S3-compatible
server: moto's, in server mode on 127.0.0.1, offline. Upload, serve (through LiveHub's own URL, same cache
headers) and delete go through the API; the objects are checked in the bucket itself."""

import asyncio
import socket
import urllib.request

import pytest
from aiobotocore.session import get_session

from conftest import settings_for
from livehub.app import create_app
from tests.helpers import error_of
from tests.image_helpers import picture, upload

BUCKET = "livehub-test-media"
PREFIX = "node-a/media"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch):
    from moto.server import ThreadedMotoServer

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its buckets in the process, shared by every server it starts: each test begins empty.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    try:
        yield endpoint
    finally:
        server.stop()


async def keys_in(endpoint: str) -> set[str]:
    async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        listing = await s3.list_objects_v2(Bucket=BUCKET)
        return {o["Key"] for o in listing.get("Contents", [])}


async def test_upload_serve_delete_on_s3(s3_endpoint, database_url, aiohttp_client, make, tmp_path):
    async with get_session().create_client("s3", endpoint_url=s3_endpoint, region_name="us-east-1") as s3:
        await s3.create_bucket(Bucket=BUCKET)
    settings = settings_for(database_url).model_copy(
        update={"media_store": f"s3://{BUCKET}/{PREFIX}", "s3_endpoint_url": s3_endpoint, "data_dir": tmp_path}
    )
    client = await aiohttp_client(create_app(settings))
    # `make` builds through its own client; both apps share the database.
    seller = await make.seller()
    product = await make.product(seller)

    image = await upload(client, seller, product["id"], picture("JPEG", (900, 600)))
    widths = [s["width"] for s in image["sizes"]]
    assert widths == [160, 480, 900]
    expected = {f"{PREFIX}/images/{image['id']}/{w}.webp" for w in widths}
    assert await keys_in(s3_endpoint) == expected
    # Nothing went to the local directory.
    assert not (tmp_path / "media").exists()

    res = await client.get(image["url"])
    assert res.status == 200 and res.headers["Content-Type"] == "image/webp"
    assert res.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    body = await res.read()
    assert body[:4] == b"RIFF" and body[8:12] == b"WEBP"
    res = await client.get(image["url"], headers={"If-None-Match": res.headers["ETag"]})
    assert res.status == 304

    res = await client.delete(f"/api/products/{product['id']}/images/{image['id']}", headers=seller.headers)
    assert res.status == 204, await res.text()
    assert await keys_in(s3_endpoint) == set()
    await error_of(await client.get(image["url"]), 404, "not_found")


async def test_bad_media_store_setting_is_refused(database_url):
    from livehub.mediastore import open_store

    settings = settings_for(database_url).model_copy(update={"media_store": "ftp://bucket"})
    with pytest.raises(ValueError, match="s3://bucket"):
        async with asyncio.timeout(5), open_store(settings):
            pass
