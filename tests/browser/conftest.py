"""Pages tested in a real Chromium, driven by Playwright against a real server on 127.0.0.1.

`playwright install` cannot download browsers here, so Playwright drives the system's Chromium (Debian's
`chromium` package, which `.ci/run` installs) or `LIVEHUB_CHROMIUM`. Without one the browser tests are
skipped on a laptop, but fail under CI (`CI` set), so they can never silently stop running there.
"""

import os
import shutil

import pytest
from playwright.async_api import async_playwright

from conftest import Account

CHROMIUM_ARGS = [
    # Root cannot use Chromium's sandbox (CI runs as root); the pages under test are our own.
    "--no-sandbox",
    # A synthetic camera and microphone, and no permission prompt, so "Go live" works headless.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # WebRTC between the browser and the server on one machine with only loopback to offer: allow
    # 127.0.0.1 candidates, and real addresses instead of mDNS names the server could not resolve.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def chromium_path() -> str | None:
    return os.environ.get("LIVEHUB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def browser():
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium not found: CI must install Debian's chromium (see .ci/run)")
        pytest.skip("Chromium not found: install Debian's chromium or set LIVEHUB_CHROMIUM")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield browser
        await browser.close()


@pytest.fixture
def base_url(client) -> str:
    """The test server's address (pytest-aiohttp serves the app on 127.0.0.1 and a free port)."""
    return str(client.make_url("")).rstrip("/")


@pytest.fixture
def open_page(browser, base_url):
    """open_page(path, account=None): a page in a fresh browser context (its own cookies), signed in as
    `account` through the session cookie when given, the way a signed-in browser would be."""
    contexts = []

    async def open_(path: str, account: Account | None = None, *, viewport=None):
        context = await browser.new_context(base_url=base_url, viewport=viewport or {"width": 1280, "height": 900})
        contexts.append(context)
        if account is not None:
            await context.add_cookies([{"name": "livehub_session", "value": account.token, "url": base_url}])
        page = await context.new_page()
        # A page's uncaught script error fails the test instead of passing unnoticed.
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # So is anything the Content-Security-Policy refused: a page must work within it.
        page.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
        page.script_errors = errors
        await page.goto(path)
        return page

    yield open_
    for page_errors in [getattr(p, "script_errors", []) for c in contexts for p in c.pages]:
        assert not page_errors, f"script errors on the page: {page_errors}"


SCREENSHOTS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "screenshots")


@pytest.fixture
def screenshot():
    """screenshot(page, name): refresh docs/screenshots/<name>.png (shown in the README) when
    LIVEHUB_SCREENSHOTS is set; otherwise nothing, so a test run leaves the tree as it was."""

    async def take(page, name: str) -> None:
        if os.environ.get("LIVEHUB_SCREENSHOTS"):
            os.makedirs(SCREENSHOTS, exist_ok=True)
            await page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"))

    return take
