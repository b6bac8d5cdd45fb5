"""Embedding in Chromium: with LIVEHUB_FRAME_ANCESTORS naming a site, that site's pages can frame the
viewer page and nothing else; a site it does not name can frame nothing. The embedding site is a second
server on this machine (another port is another origin; "localhost" instead of 127.0.0.1 another still)."""

import asyncio
import html
import time

from aiohttp import web
from playwright.async_api import expect

from live_helpers import live_show
from livehub.app import create_app

WAIT_S = 15


async def until_refused(refused: list[str], count: int) -> None:
    """Chromium says in the embedding page's console each frame the policy refused (naming its origin
    only, so they are counted)."""
    deadline = time.monotonic() + WAIT_S
    while len(refused) < count:
        assert time.monotonic() < deadline, f"{count} frames should be refused; refusals: {refused}"
        await asyncio.sleep(0.05)


async def test_only_the_viewer_page_and_only_for_the_configured_site(
    browser, aiohttp_server, aiohttp_client, settings, make
):
    frames: dict[str, str] = {}

    async def embedding_page(request):
        body = "".join(f'<iframe name="{n}" src="{html.escape(u)}"></iframe>' for n, u in frames.items())
        return web.Response(text=f"<!doctype html><body>{body}</body>", content_type="text/html")

    site = web.Application()
    site.router.add_get("/", embedding_page)
    embedder = await aiohttp_server(site)
    allowed = f"http://127.0.0.1:{embedder.port}"
    node = await aiohttp_client(create_app(settings.model_copy(update={"frame_ancestors": [allowed]})))
    base = str(node.make_url("")).rstrip("/")

    show = await live_show(make, products=1, start=False)
    watch = f"{base}/watch/{show.id}"
    others = [base + "/", base + "/studio", base + "/signin", base + "/api/docs"]
    frames.update({"watch": watch} | {f"other{i}": u for i, u in enumerate(others)})

    context = await browser.new_context()
    try:
        page = await context.new_page()
        refused: list[str] = []
        page.on("console", lambda m: "frame-ancestors" in m.text and refused.append(m.text))
        await page.goto(allowed + "/")
        watching = page.frame_locator('iframe[name="watch"]').locator("#stream-title")
        await expect(watching).to_have_text("Live now", timeout=WAIT_S * 1000)
        await until_refused(refused, len(others))
        assert len(refused) == len(others), refused

        # The same page from an origin the setting does not name frames nothing.
        refused.clear()
        await page.goto(f"http://localhost:{embedder.port}/")
        await until_refused(refused, 1 + len(others))
    finally:
        await context.close()
