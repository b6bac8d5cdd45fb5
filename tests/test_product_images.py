"""Product images: what an upload may be, what is stored, how it is served, the gallery's order, who may
touch it, and where images show up in product JSON (listing, detail, stream line-up, live room)."""

import io
import uuid

import pytest
from PIL import Image

from conftest import settings_for
from live_helpers import Viewer, live_show
from livehub.app import create_app
from livehub.mediastore import LocalStore
from livehub.shop.images import image_key
from tests.helpers import error_of
from tests.image_helpers import bomb_png, form, picture, upload


@pytest.fixture
def settings(database_url, tmp_path):
    """The test's own media directory."""
    return settings_for(database_url).model_copy(update={"data_dir": tmp_path})


def store_of(settings) -> LocalStore:
    return LocalStore(settings.data_dir / "media")


async def seller_and_product(make):
    seller = await make.seller()
    return seller, await make.product(seller)


async def fetch(client, url: str, **headers) -> tuple[int, bytes, dict]:
    res = await client.get(url, headers=headers)
    return res.status, await res.read(), res.headers


async def test_upload_stores_webp_sizes_never_upscaled(make, client, settings, tmp_path):
    seller, product = await seller_and_product(make)
    image = await upload(client, seller, product["id"], picture("PNG", (1600, 900)), filename="a.png")
    assert (image["width"], image["height"], image["position"]) == (1080, 608, 0)
    assert image["url"] == f"/media/images/{image['id']}/1080.webp"
    assert [(s["width"], s["height"]) for s in image["sizes"]] == [(160, 90), (480, 270), (1080, 608)]
    for size in image["sizes"]:
        status, body, headers = await fetch(client, size["url"])
        assert status == 200
        assert headers["Content-Type"] == "image/webp"
        stored = Image.open(io.BytesIO(body))
        assert stored.format == "WEBP" and stored.size == (size["width"], size["height"])
        assert _close(stored.convert("RGB").getpixel((5, 5)), (200, 30, 30))
    # A narrow picture keeps its own width as the largest size.
    small = await upload(client, seller, product["id"], picture("JPEG", (300, 200)))
    assert [s["width"] for s in small["sizes"]] == [160, 300]
    assert (small["width"], small["height"], small["position"]) == (300, 200, 1)
    assert (await fetch(client, f"/media/images/{small['id']}/480.webp"))[0] == 404


def _close(a, b, tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


async def test_cache_headers_and_etag(make, client):
    seller, product = await seller_and_product(make)
    image = await upload(client, seller, product["id"], picture("WEBP", (500, 500)), filename="p.webp")
    status, body, headers = await fetch(client, image["url"])
    assert status == 200 and body
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    status, body, again = await fetch(client, image["url"], **{"If-None-Match": etag})
    assert status == 304 and body == b""
    assert again["ETag"] == etag and again["Cache-Control"] == headers["Cache-Control"]
    status, _, _ = await fetch(client, image["url"], **{"If-None-Match": '"something-else"'})
    assert status == 200
    for bad in (
        f"/media/images/{uuid.uuid4()}/480.webp",
        f"/media/images/{image['id']}/big.webp",
        "/media/images/x/1.webp",
    ):
        await error_of(await client.get(bad), 404, "not_found")


async def test_type_is_sniffed_not_trusted(make, client):
    seller, product = await seller_and_product(make)
    gif = io.BytesIO()
    Image.new("RGB", (50, 50), "blue").save(gif, "GIF")
    for data, name in ((gif.getvalue(), "photo.jpg"), (b"just some text, honestly a JPEG", "photo.jpg")):
        res = await upload(client, seller, product["id"], data, status=422, filename=name, content_type="image/jpeg")
        error = await error_of(res, 422, "validation_error")
        assert error["details"]["reason"] == "unsupported_type"
    # A JPEG cut short: its header reads, its pixels do not.
    whole = picture("JPEG", (600, 400))
    res = await upload(client, seller, product["id"], whole[: len(whole) // 2], status=422)
    assert (await error_of(res, 422, "validation_error"))["details"]["reason"] == "corrupt"
    # A real PNG sent as "text/plain" named .txt is a PNG.
    await upload(
        client, seller, product["id"], picture("PNG", (40, 40)), filename="notes.txt", content_type="text/plain"
    )
    # Not multipart, no file field, an unknown field.
    res = await client.post(
        f"/api/products/{product['id']}/images", data=picture("PNG", (40, 40)), headers=seller.headers
    )
    await error_of(res, 422, "validation_error")
    empty = form(b"")
    res = await client.post(f"/api/products/{product['id']}/images", data=empty, headers=seller.headers)
    await error_of(res, 422, "validation_error")
    res = await client.post(
        f"/api/products/{product['id']}/images",
        data=form(picture("PNG", (40, 40)), caption="hi"),
        headers=seller.headers,
    )
    await error_of(res, 422, "validation_error")


async def test_decompression_bomb_is_refused_without_decoding(make, client, db):
    seller, product = await seller_and_product(make)
    bomb = bomb_png(30_000, 30_000)
    assert len(bomb) < 200
    res = await upload(client, seller, product["id"], bomb, status=422, filename="bomb.png")
    error = await error_of(res, 422, "validation_error")
    assert error["details"]["reason"] == "too_many_pixels"
    # Under Pillow's own limit but over the deployment's (40 million pixels by default).
    res = await upload(client, seller, product["id"], bomb_png(8000, 6000), status=422, filename="b.png")
    assert (await error_of(res, 422))["details"]["reason"] == "too_many_pixels"
    assert await db.fetchval("SELECT count(*) FROM product_images") == 0


async def test_too_many_bytes_is_413(make, client, aiohttp_client, settings):
    app_client = await aiohttp_client(create_app(settings.model_copy(update={"max_image_bytes": 1000})))
    seller = await make.seller()
    product = await make.product(seller)
    data = _noise_png(400, 400)
    assert len(data) > 1000
    res = await app_client.post(f"/api/products/{product['id']}/images", data=form(data), headers=seller.headers)
    await error_of(res, 413, "payload_too_large")


def _noise_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("L", (width, height), bytes((i * 7919) % 251 for i in range(width * height))).save(buffer, "PNG")
    return buffer.getvalue()


async def test_exif_orientation_applied_and_metadata_stripped(make, client, settings):
    seller, product = await seller_and_product(make)
    # 400x200 landscape pixels: left half red, right half blue; EXIF says "rotate 90° clockwise to view".
    original = Image.new("RGB", (400, 200), (255, 0, 0))
    original.paste((0, 0, 255), (200, 0, 400, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "SpyCam"  # Make
    buffer = io.BytesIO()
    original.save(buffer, "JPEG", exif=exif.tobytes(), quality=95)
    image = await upload(client, seller, product["id"], buffer.getvalue())
    # Rotated upright: portrait now, the red half on top (Orientation 6 = rotate 90° clockwise).
    assert (image["width"], image["height"]) == (200, 400)
    _, body, _ = await fetch(client, image["url"])
    stored = Image.open(io.BytesIO(body))
    assert stored.size == (200, 400)
    assert _close(stored.convert("RGB").getpixel((100, 50)), (255, 0, 0), 40)
    assert _close(stored.convert("RGB").getpixel((100, 350)), (0, 0, 255), 40)
    assert not stored.getexif() and "exif" not in stored.info and "xmp" not in stored.info
    raw = store_of(settings).path(image_key(image["id"], 200)).read_bytes()
    assert b"EXIF" not in raw and b"SpyCam" not in raw


async def test_reorder_and_delete_remove_files(make, client, settings, db):
    seller, product = await seller_and_product(make)
    ids = [
        (await upload(client, seller, product["id"], picture("PNG", (200, 100), color=(10 * n, 0, 0))))["id"]
        for n in range(3)
    ]
    url = f"/api/products/{product['id']}/images"
    res = await client.patch(f"{url}/{ids[2]}", json={"position": 0}, headers=seller.headers)
    assert res.status == 200, await res.text()
    assert (await res.json())["image"]["position"] == 0
    detail = (await (await client.get(f"/api/products/{product['id']}")).json())["product"]
    assert [i["id"] for i in detail["images"]] == [ids[2], ids[0], ids[1]]
    # Past the end: last.
    res = await client.patch(f"{url}/{ids[2]}", json={"position": 99}, headers=seller.headers)
    assert (await res.json())["image"]["position"] == 2
    await error_of(await client.patch(f"{url}/{ids[0]}", json={"position": -1}, headers=seller.headers), 422)

    files = [store_of(settings).path(image_key(ids[0], w)) for w in (160, 200)]
    assert all(f.exists() for f in files)
    res = await client.delete(f"{url}/{ids[0]}", headers=seller.headers)
    assert res.status == 204, await res.text()
    assert not any(f.exists() for f in files)
    await error_of(await client.get(f"/media/images/{ids[0]}/200.webp"), 404, "not_found")
    detail = (await (await client.get(f"/api/products/{product['id']}")).json())["product"]
    assert [(i["id"], i["position"]) for i in detail["images"]] == [(ids[1], 0), (ids[2], 1)]
    await error_of(await client.delete(f"{url}/{ids[0]}", headers=seller.headers), 404, "not_found")


async def test_another_seller_cannot_touch(make, client, db):
    owner, product = await seller_and_product(make)
    image = await upload(client, owner, product["id"], picture("PNG", (100, 100)))
    other = await make.seller()
    url = f"/api/products/{product['id']}/images"
    await error_of(await upload(client, other, product["id"], picture("PNG"), status=403), 403, "forbidden")
    await error_of(await client.patch(f"{url}/{image['id']}", json={"position": 0}, headers=other.headers), 403)
    await error_of(await client.delete(f"{url}/{image['id']}", headers=other.headers), 403, "forbidden")
    viewer = await make.user()
    await error_of(await upload(client, viewer, product["id"], picture("PNG"), status=403), 403, "forbidden")
    await error_of(await client.post(url, data=form(picture("PNG"))), 401, "unauthorized")
    # An image of another product is not found under this one.
    own = await make.product(other)
    await error_of(await client.delete(f"/api/products/{own['id']}/images/{image['id']}", headers=other.headers), 404)
    assert await db.fetchval("SELECT count(*) FROM product_images") == 1


async def test_images_per_product_are_capped(make, client, aiohttp_client, settings):
    seller, product = await seller_and_product(make)
    capped = await aiohttp_client(create_app(settings.model_copy(update={"max_images_per_product": 2})))
    for _ in range(2):
        await upload(capped, seller, product["id"], picture("PNG", (60, 60)))
    res = await upload(capped, seller, product["id"], picture("PNG", (60, 60)), status=409)
    await error_of(res, 409, "conflict")


async def test_variant_image(make, client):
    seller, product = await seller_and_product(make)
    variant = product["variants"][0]["id"]
    image = await upload(client, seller, product["id"], picture("PNG", (60, 60)), variant_id=variant)
    assert image["variant_id"] == variant
    other = await make.product(seller)
    res = await upload(
        client, seller, product["id"], picture("PNG", (60, 60)), status=422, variant_id=other["variants"][0]["id"]
    )
    await error_of(res, 422, "validation_error")


async def test_images_in_listing_detail_and_stream(make, client):
    seller, product = await seller_and_product(make)
    bare = await make.product(seller)
    first = await upload(client, seller, product["id"], picture("PNG", (800, 400)))
    second = await upload(client, seller, product["id"], picture("JPEG", (400, 800)))
    expected = [
        {k: first[k] for k in ("id", "url", "width", "height")},
        {k: second[k] for k in ("id", "url", "width", "height")},
    ]

    def shown(images):
        return [{k: i[k] for k in ("id", "url", "width", "height")} for i in images]

    listing = (await (await client.get("/api/products")).json())["items"]
    by_id = {p["id"]: p for p in listing}
    assert shown(by_id[product["id"]]["images"]) == expected
    assert by_id[bare["id"]]["images"] == []
    detail = (await (await client.get(f"/api/products/{product['id']}")).json())["product"]
    assert shown(detail["images"]) == expected

    res = await client.post(
        "/api/streams",
        json={"title": "Show", "products": [{"product_id": product["id"]}, {"product_id": bare["id"]}]},
        headers=seller.headers,
    )
    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    assert shown(stream["products"][0]["images"]) == expected and stream["products"][1]["images"] == []
    got = (await (await client.get(f"/api/streams/{stream['id']}")).json())["stream"]
    assert shown(got["products"][0]["images"]) == expected


async def test_images_in_the_live_room(make, client):
    show = await live_show(make, products=1, start=False)
    image = await upload(client, show.seller, show.products[0]["id"], picture("PNG", (300, 300)))
    res = await client.post(f"/api/streams/{show.id}/start", headers=show.seller.headers)
    assert res.status == 200, await res.text()
    host = await Viewer.connect(client, show.id, show.seller)
    try:
        assert host.welcome["stream"]["products"][0]["images"][0]["url"] == image["url"]
        assert (await host.request("pin", product_id=show.products[0]["id"]))["type"] != "error"
        await host.wait_for(lambda v: v.of_type("pin"))
        assert host.of_type("pin")[0]["product"]["images"][0]["id"] == image["id"]
        # A picture added during the show comes with the next pin, and a later joiner's welcome has it.
        added = await upload(client, show.seller, show.products[0]["id"], picture("PNG", (200, 200)))
        assert (await host.request("unpin"))["type"] != "error"
        assert (await host.request("pin", product_id=show.products[0]["id"]))["type"] != "error"
        await host.wait_for(lambda v: len(v.of_type("pin")) == 2)
        assert [i["id"] for i in host.of_type("pin")[1]["product"]["images"]] == [image["id"], added["id"]]
        late = await Viewer.connect(client, show.id)
        try:
            assert [i["id"] for i in late.welcome["state"]["pinned"]["images"]] == [image["id"], added["id"]]
        finally:
            await late.close()
    finally:
        await host.close()


async def test_demo_products_get_drawn_pictures_once(settings, db, client):
    from livehub import demo, demo_images
    from livehub.auth import PasswordHasher
    from storage.db import create_pool

    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await demo.seed(pool, PasswordHasher(settings))
        store = store_of(settings)
        options = {"max_pixels": settings.max_image_pixels, "max_images": settings.max_images_per_product}
        stored = await demo_images.seed_images(pool, store, **options)
        assert stored == sum(len(p) for p in demo_images.PALETTES.values())
        assert await demo_images.seed_images(pool, store, **options) == 0
    finally:
        await pool.close()
    listing = (await (await client.get("/api/products")).json())["items"]
    assert listing and all(p["images"] for p in listing)
    sneakers = next(p for p in listing if p["title"] == demo.PINNED)
    assert [i["width"] for i in sneakers["images"]] == [900, 900]
    status, body, _ = await fetch(client, sneakers["images"][0]["sizes"][0]["url"])
    assert status == 200 and Image.open(io.BytesIO(body)).size == (160, 160)
