"""Replays in Chromium (docs/REPLAYS.md): a show streamed from the studio with the fake camera is recorded
and plays back at /replay/{id} with its chat and pins following the video's clock; the home page and the
storefront list replays and leave practice (unlisted) ones out; the studio's practice mode creates an
unlisted show with a link to share and discards its replay."""

import asyncio
import re
import secrets
import time

import pytest
from playwright.async_api import expect

from conftest import settings_for

WAIT_MS = 20_000
# The recording is joined and stored after the show ends: a while on a busy machine.
RECORDING_WAIT_S = 60


@pytest.fixture
def settings(database_url):
    # WebRTC on one machine: the server offers only its loopback address; the encoded relay (the
    # default) is the one that records.
    return settings_for(database_url).model_copy(update={"media_host_addresses": ["127.0.0.1"]})


async def until(page, expression: str) -> None:
    # Polled from here: wait_for_function compiles its predicate in the page, which the CSP refuses.
    deadline = time.monotonic() + WAIT_MS / 1000
    while not await page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        await asyncio.sleep(0.05)


async def video_advances(page, by: float = 0.5) -> None:
    start = await page.evaluate("document.getElementById('video').currentTime")
    await until(page, f"document.getElementById('video').currentTime > {start} + {by}")


async def replay_of(client, stream_id: str) -> dict:
    """The replay, once the node has stored the recording (it does so after the show ends)."""
    deadline = time.monotonic() + RECORDING_WAIT_S
    while True:
        res = await client.get(f"/api/streams/{stream_id}/replay")
        if res.status == 200:
            return await res.json()
        assert res.status == 404, await res.text()
        assert time.monotonic() < deadline, "the show's recording was never stored"
        await asyncio.sleep(0.2)


async def timeline(client, replay: dict) -> list[dict]:
    res = await client.get(replay["timeline_url"] + "?limit=500")
    assert res.status == 200, await res.text()
    return (await res.json())["items"]


async def studio_signed_in(open_page, seller):
    studio = await open_page("/studio", seller)
    await expect(studio.locator("#studio")).to_be_visible(timeout=WAIT_MS)
    return studio


async def test_recorded_show_plays_back_with_chat_and_pins(open_page, make, client, screenshot):
    seller = await make.seller(shop_name="Lamp Corner")
    lamp = await make.product(seller, title="Glow lamp", variants=[{"sku": "LAMP-1", "price_cents": 2500, "stock": 20}])
    shade = await make.product(
        seller, title="Paper shade", variants=[{"sku": "SHADE-1", "price_cents": 900, "stock": 5}]
    )
    viewer = await make.user()

    # The host plans a show of the lamp and the shade, goes live with the fake camera.
    studio = await studio_signed_in(open_page, seller)
    await studio.get_by_label("Title").fill("Evening lamps")
    await studio.get_by_role("checkbox", name="Glow lamp").check()
    await studio.get_by_role("checkbox", name="Paper shade").check()
    await studio.get_by_role("button", name="Create show").click()
    await studio.get_by_role("button", name="Go live").click()
    await expect(studio.locator("#on-air")).to_be_visible(timeout=WAIT_MS)
    stream_id = await studio.evaluate("document.body.dataset.streamId")

    # A viewer watches (the relay carries the camera, and so the recording has frames); chat, then a pin,
    # then more chat.
    watch = await open_page(f"/watch/{stream_id}", viewer)
    await until(watch, "document.getElementById('video').videoWidth > 0")
    await video_advances(watch, 1.0)
    await watch.get_by_label("Message").fill("Is it warm light?")
    await watch.get_by_label("Message").press("Enter")
    await expect(studio.locator("#chat-list")).to_contain_text("Is it warm light?", timeout=WAIT_MS)
    await studio.locator(f"#pin-{lamp['id']}").click()
    await expect(watch.locator("#product-title")).to_have_text("Glow lamp", timeout=WAIT_MS)
    sale = studio.get_by_role("form", name="Flash sale of Glow lamp")
    await sale.get_by_label("Flash price").fill("15.00")
    await sale.get_by_label("Units").fill("5")
    await sale.get_by_label("Seconds").fill("300")
    await sale.get_by_role("button", name="Start flash sale").click()
    await expect(watch.locator("#price")).to_have_text("$15.00", timeout=WAIT_MS)
    await studio.get_by_label("Message to viewers").fill("Yes, 2700 K and dimmable")
    await studio.get_by_role("button", name="Send").click()
    await expect(watch.locator("#chat-list")).to_contain_text("Yes, 2700 K and dimmable", timeout=WAIT_MS)
    await video_advances(watch, 1.0)

    # The host ends the show; the node stores its recording, and the ended watch page links to it.
    await studio.get_by_role("button", name="End show").click()
    replay = await replay_of(client, stream_id)
    assert replay["video_url"] == f"/api/streams/{stream_id}/replay/video"
    await expect(watch.get_by_role("link", name="Watch the replay")).to_be_visible(timeout=WAIT_MS)
    await expect(studio.locator("#replay-status")).to_contain_text("The replay is saved", timeout=WAIT_MS)
    await expect(studio.get_by_role("link", name="Open the replay")).to_have_attribute("href", f"/replay/{stream_id}")
    await expect(studio.get_by_role("button", name="Discard replay")).to_be_hidden()
    events = await timeline(client, replay)
    pin = next(e for e in events if e["kind"] == "pin" and e["product_id"] == lamp["id"])
    after = next(e for e in events if e["kind"] == "chat" and e["text"] == "Yes, 2700 K and dimmable")
    assert after["offset_s"] > pin["offset_s"]

    # A viewer opens the replay: the video plays and its clock moves.
    page = await open_page(f"/replay/{stream_id}", viewer)
    await expect(page.locator("#stream-title")).to_have_text("Evening lamps", timeout=WAIT_MS)
    await expect(page.locator("#lineup li")).to_have_count(2)
    await expect(page.locator(f'#lineup li[data-product-id="{lamp["id"]}"]')).to_contain_text("$25.00")
    await until(page, "document.getElementById('video').readyState >= 1")
    await page.evaluate("document.getElementById('video').play()")
    await until(page, "document.getElementById('video').videoWidth > 0")
    await video_advances(page)
    await page.evaluate("document.getElementById('video').pause()")

    # Seeking to the pin's moment (its button under the video) shows the lamp at its regular price, the
    # chat up to then and not the message after it.
    await expect(page.locator("body")).to_have_attribute("data-timeline", "loaded", timeout=WAIT_MS)
    await page.get_by_role("button", name=re.compile(r"^Jump to .*: pinned Glow lamp$")).click()
    await until(page, f"Math.abs(document.getElementById('video').currentTime - {pin['offset_s']}) < 0.01")
    card = page.locator("#product")
    await expect(card.locator("#product-title")).to_have_text("Glow lamp", timeout=WAIT_MS)
    await expect(card.locator("#price")).to_have_text("$25.00")
    await expect(page.locator("#chat-list")).to_contain_text("Is it warm light?")
    await expect(page.locator("#chat-list")).not_to_contain_text("Yes, 2700 K and dimmable")
    await expect(page.locator('#lineup li[aria-current="true"]')).to_contain_text("Glow lamp")

    # The flash sale is a moment of the show, told on the card, but the replay sells at the regular price.
    await page.get_by_role("button", name=re.compile(r"^Jump to .*: flash sale Glow lamp$")).click()
    await expect(card.locator(".sale-moment")).to_contain_text("Flash sale", timeout=WAIT_MS)
    await expect(card.locator("#price")).to_have_text("$25.00")
    await expect(page.locator("main")).not_to_contain_text("$15.00")

    # A moment later the host's answer is in the chat; at the start nothing is pinned.
    await page.evaluate(f"document.getElementById('video').currentTime = {after['offset_s']}")
    await expect(page.locator("#chat-list")).to_contain_text("Yes, 2700 K and dimmable", timeout=WAIT_MS)
    await page.evaluate("document.getElementById('video').currentTime = 0")
    await expect(page.locator("#no-product")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#chat-list")).not_to_contain_text("Is it warm light?")
    # A native seek (the video's own clock, as its controls set it, not a moment button) to just after the
    # pin shows the pinned lamp's card; back at the start, nothing is pinned again.
    await page.evaluate(f"document.getElementById('video').currentTime = {pin['offset_s'] + 0.2}")
    await expect(card.locator("#product-title")).to_have_text("Glow lamp", timeout=WAIT_MS)
    await expect(card.locator("#price")).to_have_text("$25.00")
    await expect(page.locator("#no-product")).to_have_count(0)
    await expect(page.locator("#chat-list")).to_contain_text("Is it warm light?")
    await page.evaluate("document.getElementById('video').currentTime = 0")
    await expect(page.locator("#no-product")).to_be_visible(timeout=WAIT_MS)
    # Played from there, the chat fills in as the video reaches each message.
    await page.evaluate("document.getElementById('video').play()")
    await expect(page.locator("#chat-list")).to_contain_text("Is it warm light?", timeout=WAIT_MS)
    await expect(page.locator("#chat-list")).not_to_contain_text("No chat yet")
    await page.evaluate("document.getElementById('video').pause()")

    # The pinned lamp goes into the cart at its regular price from the replay.
    await page.get_by_role("button", name=re.compile(r"^Jump to .*: pinned Glow lamp$")).click()
    await expect(page.locator("#product-title")).to_have_text("Glow lamp", timeout=WAIT_MS)
    # (The picture for the README once the video shows the frame it jumped to.)
    await until(page, "!document.getElementById('video').seeking && document.getElementById('video').readyState >= 2")
    await screenshot(page, "replay")
    await page.get_by_role("button", name="Add Glow lamp to cart · $25.00").first.click()
    await expect(page.locator("#purchase-result")).to_contain_text("Added to your cart", timeout=WAIT_MS)
    cart = await (await client.get("/api/cart", headers=viewer.headers)).json()
    assert [(i["quantity"], i["variant_id"]) for i in cart["items"]] == [(1, lamp["variants"][0]["id"])]
    assert shade["id"]  # listed above, at its own regular price
    await expect(page.locator(f'#lineup li[data-product-id="{shade["id"]}"]')).to_contain_text("$9.00")

    # On a phone the page fits: the video, the pinned product and the chat.
    phone = await open_page(f"/replay/{stream_id}", viewport={"width": 390, "height": 844})
    await expect(phone.locator("body")).to_have_attribute("data-timeline", "loaded", timeout=WAIT_MS)
    await phone.get_by_role("button", name=re.compile(r"^Jump to .*: pinned Glow lamp$")).click()
    await expect(phone.locator("#product-title")).to_have_text("Glow lamp", timeout=WAIT_MS)
    await expect(phone.get_by_role("link", name="Sign in to buy").first).to_be_visible()
    box = await phone.locator("#video").bounding_box()
    assert box["width"] <= 390


async def ended_show(make, client, seller, product, *, unlisted: bool = False, title: str = "A show") -> str:
    """A show started and ended through the API, with no camera: nothing of it is recorded."""
    body = {"title": title, "products": [{"product_id": product["id"]}], "unlisted": unlisted}
    res = await client.post("/api/streams", json=body, headers=seller.headers)
    assert res.status == 201, await res.text()
    stream_id = (await res.json())["stream"]["id"]
    for step in ("start", "end"):
        res = await client.post(f"/api/streams/{stream_id}/{step}", headers=seller.headers)
        assert res.status == 200, await res.text()
    return stream_id


async def stored_replay(client, db, stream_id: str, data: bytes = b"") -> str:
    """A replay row of an ended show, as the recorder writes it, with `data` as its file in the media store."""
    from livehub.mediastore import STORE

    key = f"replays/{stream_id}/{secrets.token_hex(8)}.webm"
    await client.app[STORE].put(key, data, "video/webm")
    await db.execute(
        """INSERT INTO stream_replays (stream_id, media_key, content_type, duration_s, size_bytes, started_at)
           SELECT id, $2, 'video/webm', 95, $3, started_at FROM streams WHERE id = $1
           ON CONFLICT (stream_id) DO NOTHING""",
        stream_id,
        key,
        len(data),
    )
    return key


async def test_home_and_storefront_list_replays_but_not_practice_ones(open_page, make, client, db):
    seller = await make.seller(shop_name="Tea Cart")
    tea = await make.product(seller, title="Sencha")
    listed = await ended_show(make, client, seller, tea, title="Sunday tasting")
    practice = await ended_show(make, client, seller, tea, title="Camera check", unlisted=True)
    for stream_id in (listed, practice):
        await stored_replay(client, db, stream_id)

    home = await open_page("/")
    replays = home.locator("#replays")
    await expect(replays.locator("li")).to_have_count(1, timeout=WAIT_MS)
    await expect(replays).to_contain_text("Sunday tasting")
    await expect(replays).to_contain_text("Tea Cart")
    await expect(replays.get_by_role("link", name="Sunday tasting", exact=True)).to_have_attribute(
        "href", f"/replay/{listed}"
    )

    shop = await open_page(f"/shops/{seller.seller['id']}")
    await expect(shop.locator("#replays li")).to_have_count(1, timeout=WAIT_MS)
    await expect(shop.locator("#replays")).to_contain_text("Sunday tasting")
    await expect(shop.locator("#replays")).not_to_contain_text("Camera check")

    # The practice show's replay is there for whoever has its link.
    page = await open_page(f"/replay/{practice}")
    await expect(page.locator("#stream-title")).to_have_text("Camera check", timeout=WAIT_MS)
    await expect(page.locator("#unlisted-badge")).to_be_visible()

    # A show without a replay says so instead of a broken player.
    res = await client.delete(f"/api/streams/{listed}/replay", headers=seller.headers)
    assert res.status == 204, await res.text()
    gone = await open_page(f"/replay/{listed}")
    await expect(gone.locator("#video-note")).to_contain_text("This show has no replay", timeout=WAIT_MS)
    await expect(gone.get_by_role("link", name="Open the show")).to_have_attribute("href", f"/watch/{listed}")


async def test_studio_practice_show_is_unlisted_and_its_replay_discarded(open_page, make, client, db):
    seller = await make.seller(shop_name="Tea Cart")
    await make.product(seller, title="Sencha")
    studio = await studio_signed_in(open_page, seller)
    await studio.get_by_label("Title").fill("Camera check")
    await studio.get_by_role("checkbox", name="Sencha").check()
    await studio.get_by_role("checkbox", name=re.compile(r"^Practice \(unlisted\)")).check()
    await expect(studio.get_by_role("checkbox", name=re.compile(r"^Record this show"))).to_be_checked()
    await studio.get_by_role("button", name="Create show").click()
    await expect(studio.locator("#practice-box")).to_be_visible(timeout=WAIT_MS)
    stream_id = await studio.evaluate("document.body.dataset.streamId")
    await expect(studio.get_by_label("Link to share")).to_have_value(re.compile(rf"/watch/{stream_id}$"))
    res = await client.get(f"/api/streams/{stream_id}")
    stream = (await res.json())["stream"]
    assert (stream["unlisted"], stream["record"]) == (True, True)
    res = await client.get("/api/streams")
    assert stream_id not in [s["id"] for s in (await res.json())["items"]]

    # The show runs and ends (without a camera here); its replay is stored; the studio offers to keep or
    # discard it, and discarding deletes it.
    for step in ("start", "end"):
        res = await client.post(f"/api/streams/{stream_id}/{step}", headers=seller.headers)
        assert res.status == 200, await res.text()
    await stored_replay(client, db, stream_id, b"not really a video")
    await studio.reload()
    await expect(studio.get_by_role("button", name="Keep replay")).to_be_visible(timeout=WAIT_MS)
    await studio.get_by_role("button", name="Discard replay").click()
    await expect(studio.locator("#replay-status")).to_have_text(re.compile("Replay discarded"), timeout=WAIT_MS)
    assert (await client.get(f"/api/streams/{stream_id}/replay")).status == 404


async def test_with_livekit_the_studio_says_a_discarded_replays_file_stays_in_livekit(
    browser, aiohttp_client, settings, db
):
    """With the LiveKit backend the file is LiveKit Egress's: discarding hides the replay, and the studio must
    not claim the recording is deleted."""
    from conftest import Factory
    from livehub.app import create_app

    livekit = {
        "media_backend": "livekit",
        "livekit_api_key": "devkey",
        "livekit_api_secret": "s" * 32,
        "replay_url_template": "https://cdn.example.test/egress/{room}.mp4",
    }
    client = await aiohttp_client(create_app(settings.model_copy(update=livekit)))
    make = Factory(client, db)
    seller = await make.seller(shop_name="Tea Cart")
    item = await make.product(seller, title="Sencha")
    res = await client.post(
        "/api/streams",
        json={"title": "Camera check", "products": [{"product_id": item["id"]}], "unlisted": True},
        headers=seller.headers,
    )
    assert res.status == 201, await res.text()
    stream_id = (await res.json())["stream"]["id"]
    for step in ("start", "end"):
        res = await client.post(f"/api/streams/{stream_id}/{step}", headers=seller.headers)
        assert res.status == 200, await res.text()

    base_url = str(client.make_url("")).rstrip("/")
    context = await browser.new_context(base_url=base_url)
    try:
        await context.add_cookies([{"name": "livehub_session", "value": seller.token, "url": base_url}])
        studio = await context.new_page()
        errors: list[str] = []
        studio.on("pageerror", lambda exc: errors.append(str(exc)))
        await studio.goto("/studio")
        await expect(studio.get_by_role("button", name="Discard replay")).to_be_visible(timeout=WAIT_MS)
        await studio.get_by_role("button", name="Discard replay").click()
        status = studio.locator("#replay-status")
        await expect(status).to_have_text(re.compile("stays in LiveKit's storage"), timeout=WAIT_MS)
        assert "deleted" not in await status.text_content()
        assert not errors, errors
    finally:
        await context.close()
    assert (await client.get(f"/api/streams/{stream_id}/replay")).status == 404


async def test_a_long_shows_chat_is_read_page_by_page_and_follows_a_jump(open_page, make, client, db):
    """1,200 messages (the timeline's pages hold 500): a jump to a pin a minute in shows the chat up to then."""
    seller = await make.seller(shop_name="Tea Cart")
    tea = await make.product(seller, title="Sencha")
    viewer = await make.user()
    stream_id = await ended_show(make, client, seller, tea, title="Long tasting")
    await stored_replay(client, db, stream_id)
    # A message every tenth of a second from the start, and the tea pinned at 60.05 s.
    await db.execute(
        """INSERT INTO chat_messages (stream_id, "offset", user_id, text, created_at)
           SELECT s.id, i, $2, 'message ' || i, s.started_at + make_interval(secs => i * 0.1)
             FROM streams s, generate_series(0, 1199) i WHERE s.id = $1""",
        stream_id,
        viewer.id,
    )
    await db.execute(
        """INSERT INTO stream_pins (stream_id, product_id, at)
           SELECT id, $2, started_at + interval '60.05 seconds' FROM streams WHERE id = $1""",
        stream_id,
        tea["id"],
    )

    page = await open_page(f"/replay/{stream_id}")
    await expect(page.locator("body")).to_have_attribute("data-timeline", "loaded", timeout=WAIT_MS)
    await page.get_by_role("button", name="Jump to 1:00: pinned Sencha").click()
    await expect(page.locator("#product-title")).to_have_text("Sencha", timeout=WAIT_MS)
    await expect(page.locator("#chat-count")).to_have_text("601 of 1200 messages")
    chat = page.locator("#chat-list li")
    await expect(chat.last).to_contain_text("message 600")
    await expect(chat).to_have_count(200)  # the latest 200, as on the live page
    # Its stored file here is empty: the page says the video cannot play, instead of a blank player.
    await expect(page.locator("#video-note")).to_contain_text("The video cannot be played", timeout=WAIT_MS)
