"""The account page's picture: a chosen file is uploaded and shown as the server stored it, worn once the
user says so, shown again on the next visit, a file that is no picture refused with the reason, and removed."""

import re

from image_helpers import picture
from playwright.async_api import expect

WAIT_MS = 15_000


async def worn(client, account):
    res = await client.get("/api/me", headers=account.headers)
    assert res.status == 200
    return (await res.json())["user"]["avatar"]


async def test_choose_preview_wear_and_remove_a_picture(open_page, make, client):
    user = await make.user()
    page = await open_page("/account", user)
    await expect(page.locator("#avatar-note")).to_have_text("No picture yet.", timeout=WAIT_MS)
    await expect(page.get_by_role("button", name="Remove picture")).to_be_hidden()

    # A file that is no picture is refused, with the server's reason by the control.
    await page.get_by_label("Your picture (JPEG, PNG or WebP)").set_input_files(
        {"name": "notes.png", "mimeType": "image/png", "buffer": b"just some text"}
    )
    await expect(page.locator("#avatar-note")).to_contain_text("That file was not taken", timeout=WAIT_MS)
    await expect(page.locator("#avatar-note")).to_contain_text("not a JPEG, PNG or WebP image")
    await expect(page.get_by_role("button", name="Use this picture")).to_be_hidden()

    # A picture: uploaded, previewed as stored (a WebP of the server's), not worn until confirmed.
    await page.get_by_label("Your picture (JPEG, PNG or WebP)").set_input_files(
        {"name": "me.jpg", "mimeType": "image/jpeg", "buffer": picture("JPEG", (600, 400), color=(20, 120, 220))}
    )
    preview = page.get_by_role("img", name="Your new picture")
    await expect(preview).to_be_visible(timeout=WAIT_MS)
    await expect(preview).to_have_attribute("src", re.compile(r"^/media/images/[0-9a-f-]{36}/160\.webp$"))
    # Loaded (a srcset candidate reports its width in CSS pixels, so only that it has one).
    assert await preview.evaluate("img => img.complete && img.naturalWidth > 0")
    assert await worn(client, user) is None
    await page.get_by_role("button", name="Use this picture").click()
    await expect(page.locator("#avatar-note")).to_have_text("Your picture.", timeout=WAIT_MS)
    avatar = await worn(client, user)
    assert avatar is not None and (avatar["width"], avatar["height"]) == (600, 400)

    # The next visit shows it; removing it leaves none.
    again = await open_page("/account", user)
    shown = again.get_by_role("img", name="Your picture")
    await expect(shown).to_have_attribute("src", avatar["sizes"][0]["url"], timeout=WAIT_MS)
    await again.get_by_role("button", name="Remove picture").click()
    await expect(again.locator("#avatar-note")).to_have_text("No picture yet.", timeout=WAIT_MS)
    assert await worn(client, user) is None
