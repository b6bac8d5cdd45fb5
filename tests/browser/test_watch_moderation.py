"""Moderation from the studio as the viewer sees it: slow mode, a timeout, a ban; and reactions."""

import re

from playwright.async_api import expect

from live_helpers import live_show

WAIT_MS = 20_000


async def test_studio_moderation_reaches_the_viewer(open_page, make):
    show = await live_show(make, products=1)
    viewer = await make.user()
    studio = await open_page(f"/studio?stream={show.id}", show.seller)
    watch = await open_page(f"/watch/{show.id}", viewer)
    await expect(watch.locator("body")).to_have_attribute("data-room", "open", timeout=WAIT_MS)

    # Reactions count up for everyone in the room.
    heart = watch.get_by_role("button", name="React heart")
    await heart.click()
    await heart.click()
    await expect(heart.locator(".count")).to_have_text("2", timeout=WAIT_MS)

    await watch.get_by_label("Message").fill("first!")
    await watch.get_by_label("Message").press("Enter")
    await expect(studio.locator("#chat-list")).to_contain_text("first!", timeout=WAIT_MS)

    await studio.get_by_label("Slow mode").select_option("10")
    await expect(watch.locator("#chat-mode")).to_have_text("Slow mode: one message every 10 s", timeout=WAIT_MS)

    await studio.get_by_role("button", name=re.compile(r"^Timeout .*first!")).click()
    await expect(watch.locator("#chat-list")).to_contain_text("A moderator paused your chat until", timeout=WAIT_MS)
    await watch.get_by_label("Message").fill("am I muted?")
    await watch.get_by_label("Message").press("Enter")
    await expect(watch.locator("#toasts")).to_contain_text(re.compile("timed out|slow", re.I), timeout=WAIT_MS)
    await expect(studio.locator("#chat-list")).not_to_contain_text("am I muted?")

    await studio.get_by_role("button", name=re.compile(r"^Ban .*first!")).click()
    await expect(watch.locator("#chat-list")).to_contain_text("You are banned", timeout=WAIT_MS)
    await expect(watch.locator("#connection")).to_have_text("Disconnected")
