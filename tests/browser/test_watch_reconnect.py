"""The viewer page after its websocket drops: it reconnects by itself with ?since=&epoch= and shows the
chat it missed, once, with no reload."""

from playwright.async_api import expect

from live_helpers import Viewer, live_show

WAIT_MS = 20_000


async def test_viewer_page_reconnects_and_recovers_missed_chat(open_page, make, client):
    show = await live_show(make, products=1)
    host = await Viewer.connect(client, show.id, show.seller)
    await host.request("chat", text="Welcome, everyone")
    viewer = await make.user()

    page = await open_page(f"/watch/{show.id}", viewer)
    chat = page.locator("#chat-list")
    await expect(chat).to_contain_text("Welcome, everyone", timeout=WAIT_MS)
    await expect(page.locator("body")).to_have_attribute("data-room", "open", timeout=WAIT_MS)
    await expect(page.locator("body")).to_have_attribute("data-recovered", "false")

    # The connection drops (as on a flaky network); the host goes on chatting meanwhile.
    await page.evaluate("window.livehubRoom.ws.close(4000)")
    await host.request("chat", text="You missed this one")
    await host.request("pin", product_id=show.products[0]["id"])

    await expect(page.locator("body")).to_have_attribute("data-recovered", "true", timeout=WAIT_MS)
    await expect(chat).to_contain_text("You missed this one", timeout=WAIT_MS)
    await expect(page.get_by_text("You missed this one")).to_have_count(1)
    await expect(page.get_by_text("Welcome, everyone")).to_have_count(1)
    await expect(page.locator("#product-title")).to_have_text(show.products[0]["title"], timeout=WAIT_MS)

    # It keeps working on the new connection.
    await page.get_by_label("Message").fill("Back again")
    await page.get_by_label("Message").press("Enter")
    await host.wait_for(lambda v: any(e.get("text") == "Back again" for e in v.of_type("chat")))
    await host.close()
