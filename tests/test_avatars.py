"""Avatars: a user uploads a picture (the product images' pipeline: sniffed, resized to WebP, served under
/media/images) and wears it with PATCH /api/me {avatar_image_id}; only their own upload, and null removes it.
Choosing deletes their other uploads, files included. Through the REST API against a real PostgreSQL."""

import io
import uuid

import pytest
from PIL import Image

from conftest import settings_for
from livehub.shop.avatars import MAX_PENDING_UPLOADS
from tests.helpers import error_of
from tests.image_helpers import bomb_png, form, picture


@pytest.fixture
def settings(database_url, tmp_path):
    """The test's own media directory."""
    return settings_for(database_url).model_copy(update={"data_dir": tmp_path})


async def upload(client, user, data: bytes, status: int = 201, **kwargs):
    res = await client.post("/api/me/avatar", data=form(data, **kwargs), headers=user.headers)
    if status == 201:
        assert res.status == 201, await res.text()
        return (await res.json())["image"]
    return res


async def patch_me(client, user, body: dict, status: int = 200):
    res = await client.patch("/api/me", json=body, headers=user.headers)
    assert res.status == status, await res.text()
    return await res.json()


async def served(client, url: str) -> int:
    return (await client.get(url)).status


async def test_upload_then_wear_it_then_remove_it(client, make):
    user = await make.user()
    assert (await (await client.get("/api/me", headers=user.headers)).json())["user"]["avatar"] is None

    image = await upload(client, user, picture("JPEG", (800, 600)), filename="me.jpg")
    assert set(image) == {"id", "url", "width", "height", "sizes"}
    assert (image["width"], image["height"]) == (800, 600)
    assert [(s["width"], s["height"]) for s in image["sizes"]] == [(160, 120), (480, 360), (800, 600)]
    assert image["url"] == f"/media/images/{image['id']}/800.webp"
    res = await client.get(image["sizes"][0]["url"])
    assert res.status == 200 and res.headers["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(await res.read())).size == (160, 120)
    # Uploaded is not yet worn.
    assert (await (await client.get("/api/me", headers=user.headers)).json())["user"]["avatar"] is None

    worn = (await patch_me(client, user, {"avatar_image_id": image["id"], "display_name": "Ann"}))["user"]
    assert worn["avatar"] == image and worn["display_name"] == "Ann"
    assert (await (await client.get("/api/me", headers=user.headers)).json())["user"]["avatar"] == image

    # A new one replaces it, and the old one's files go.
    second = await upload(client, user, picture("PNG", (300, 300), color=(10, 200, 10)), filename="b.png")
    assert (await patch_me(client, user, {"avatar_image_id": second["id"]}))["user"]["avatar"] == second
    assert [await served(client, s["url"]) for s in image["sizes"]] == [404, 404, 404]
    assert await served(client, second["url"]) == 200
    # The old id cannot be worn again: it is gone.
    await error_of(await client.patch("/api/me", json={"avatar_image_id": image["id"]}, headers=user.headers), 404)

    # Null removes it (files too); leaving the field out keeps it.
    assert (await patch_me(client, user, {"display_name": "Ann B"}))["user"]["avatar"] == second
    assert (await patch_me(client, user, {"avatar_image_id": None}))["user"]["avatar"] is None
    assert await served(client, second["url"]) == 404


async def test_only_your_own_upload_can_be_worn(client, make, db):
    owner, other = await make.user(), await make.user()
    image = await upload(client, owner, picture("WEBP", (200, 200)), filename="x.webp")
    error = await error_of(
        await client.patch("/api/me", json={"avatar_image_id": image["id"]}, headers=other.headers), 404, "not_found"
    )
    assert "image" in error["message"]
    await error_of(
        await client.patch("/api/me", json={"avatar_image_id": str(uuid.uuid4())}, headers=other.headers), 404
    )
    # Refused as a whole: the name given with it is not changed either.
    before = (await (await client.get("/api/me", headers=other.headers)).json())["user"]
    await error_of(
        await client.patch(
            "/api/me", json={"avatar_image_id": image["id"], "display_name": "Thief"}, headers=other.headers
        ),
        404,
    )
    assert (await (await client.get("/api/me", headers=other.headers)).json())["user"] == before
    assert await db.fetchval("SELECT avatar_image_id FROM users WHERE id = $1", uuid.UUID(other.id)) is None
    # The owner still can.
    assert (await patch_me(client, owner, {"avatar_image_id": image["id"]}))["user"]["avatar"]["id"] == image["id"]
    await error_of(await client.patch("/api/me", json={"avatar_image_id": "not-an-id"}, headers=owner.headers), 422)


async def test_what_is_not_a_picture_is_refused(client, make, db):
    user = await make.user()
    res = await upload(client, user, b"GIF89a not really", status=422, filename="x.jpg")
    assert (await error_of(res, 422, "validation_error"))["details"]["reason"] == "unsupported_type"
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50)).save(buffer, "GIF")
    res = await upload(client, user, buffer.getvalue(), status=422, filename="x.gif", content_type="image/gif")
    assert (await error_of(res, 422))["details"]["reason"] == "unsupported_type"
    res = await upload(client, user, bomb_png(), status=422, filename="bomb.png")
    assert (await error_of(res, 422))["details"]["reason"] == "too_many_pixels"
    res = await client.post("/api/me/avatar", json={"file": "x"}, headers=user.headers)
    await error_of(res, 422, "validation_error")
    res = await client.post("/api/me/avatar", data=form(picture(), variant_id=str(uuid.uuid4())), headers=user.headers)
    await error_of(res, 422, "validation_error")
    await error_of(await client.post("/api/me/avatar", data=form(picture())), 401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM user_images") == 0


async def test_uploads_not_chosen_are_capped_and_choosing_clears_them(client, make, db):
    user = await make.user()
    pending = [await upload(client, user, picture("PNG", (40, 40))) for _ in range(MAX_PENDING_UPLOADS)]
    await error_of(await upload(client, user, picture("PNG", (40, 40)), status=409), 409, "conflict")
    chosen = pending[2]
    await patch_me(client, user, {"avatar_image_id": chosen["id"]})
    assert await db.fetchval("SELECT array_agg(id::text) FROM user_images") == [chosen["id"]]
    assert await served(client, pending[0]["url"]) == 404
    # The avatar itself does not count against the cap.
    for _ in range(MAX_PENDING_UPLOADS):
        await upload(client, user, picture("PNG", (40, 40)))
    assert (await (await client.get("/api/me", headers=user.headers)).json())["user"]["avatar"]["id"] == chosen["id"]
