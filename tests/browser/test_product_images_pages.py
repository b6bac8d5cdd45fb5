"""Product pictures in Chromium: the seller adds one in the back office (an upload control per product),
sees its preview, adds a second and moves it first, and the home page's product card shows the first
picture with its sizes in srcset, lazily loaded; the viewer page shows the pinned product's picture."""

import io

import pytest
from PIL import Image
from playwright.async_api import expect

from conftest import settings_for
from live_helpers import Viewer
from tests.image_helpers import upload

TIMEOUT = 15_000  # ms: generous, two busy cores


@pytest.fixture
def settings(database_url, tmp_path):
    """The test's own media directory."""
    return settings_for(database_url).model_copy(update={"data_dir": tmp_path})


def png(color, size=(800, 600)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


async def loaded(page, image) -> None:
    """Waits until the <img> has really loaded (a decoded picture has a natural width)."""
    await page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=await image.element_handle(), timeout=TIMEOUT
    )


async def test_seller_uploads_a_picture_and_it_shows_on_the_home_card(make, open_page):
    seller = await make.seller()
    product = await make.product(seller, title="Sunset lamp")

    page = await open_page("/seller", seller)
    expect.set_options(timeout=TIMEOUT)
    card = page.locator("article.product", has=page.get_by_role("heading", name="Sunset lamp"))
    await expect(card.get_by_text("No pictures yet.")).to_be_visible()
    upload = card.locator(f"#pictures-{product['id']}")
    await upload.set_input_files(files=[{"name": "red.png", "mimeType": "image/png", "buffer": png((220, 40, 40))}])
    gallery = card.locator(".gallery-item")
    await expect(gallery).to_have_count(1)
    preview = gallery.first.locator("img")
    await expect(preview).to_have_attribute("alt", "Picture 1 of Sunset lamp")
    # The preview really loaded (a decoded picture has a natural width).
    await loaded(page, preview)

    # A second picture, moved first.
    await card.locator(f"#pictures-{product['id']}").set_input_files(
        files=[{"name": "blue.jpg", "mimeType": "image/jpeg", "buffer": png((40, 40, 220), (600, 600))}]
    )
    await expect(gallery).to_have_count(2)
    second_id = await gallery.nth(1).get_attribute("data-image-id")
    await card.get_by_role("button", name="Move picture 2 of Sunset lamp left").click()
    await expect(gallery.first).to_have_attribute("data-image-id", second_id)

    home = await open_page("/")
    home_card = home.locator("#products li", has_text="Sunset lamp")
    image = home_card.locator("img")
    await expect(image).to_have_attribute("alt", "Sunset lamp")
    await expect(image).to_have_attribute("loading", "lazy")
    srcset = await image.get_attribute("srcset")
    assert f"/media/images/{second_id}/160.webp 160w" in srcset and "600w" in srcset
    await image.scroll_into_view_if_needed()
    await loaded(home, image)
    # The first picture is the one moved first: blue.
    colour = await image.evaluate(
        """img => { const c = document.createElement('canvas'); c.width = c.height = 4;
                    const g = c.getContext('2d'); g.drawImage(img, 0, 0, 4, 4);
                    return Array.from(g.getImageData(2, 2, 1, 1).data.slice(0, 3)); }"""
    )
    assert colour[2] > 150 and colour[0] < 100, colour


async def test_the_pinned_product_shows_its_picture_on_the_viewer_page(make, client, open_page):
    seller = await make.seller()
    lamp = await make.product(seller, title="Moon lamp")
    image = await upload(client, seller, lamp["id"], png((250, 250, 120), (500, 500)))
    res = await client.post(
        "/api/streams", json={"title": "Lamps", "products": [{"product_id": lamp["id"]}]}, headers=seller.headers
    )
    stream = (await res.json())["stream"]
    assert (await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)).status == 200
    host = await Viewer.connect(client, stream["id"], seller)
    try:
        assert (await host.request("pin", product_id=lamp["id"]))["type"] != "error"
        page = await open_page(f"/watch/{stream['id']}")
        expect.set_options(timeout=TIMEOUT)
        await expect(page.locator("#product-title")).to_have_text("Moon lamp")
        picture = page.locator("#product img.product-photo")
        await expect(picture).to_have_attribute("alt", "Moon lamp")
        assert image["sizes"][0]["url"] in await picture.get_attribute("srcset")
        await loaded(page, picture)
    finally:
        await host.close()
