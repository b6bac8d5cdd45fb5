"""Sign-in's return address (?next=) in Chromium: whatever `next` says, the browser stays on this server.
The browser's own URL parser decides where a string leads ("/\t/evil" is "//evil" once the tab is
stripped), so the test signs in through the page and looks at where the browser ended up."""

import re
from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import expect

WAIT_MS = 15_000


async def sign_in(page, account) -> None:
    # Anything that leaves this server is answered by the test, so an escape shows as the page's URL
    # instead of a DNS error.
    origin = urlsplit(page.url)

    async def elsewhere(route):
        if urlsplit(route.request.url).netloc == origin.netloc:
            await route.continue_()
        else:
            await route.fulfill(status=200, content_type="text/html", body="<h1>phished</h1>")

    await page.context.route("**/*", elsewhere)
    await page.get_by_label("Email or phone").fill(account.user["email"])
    await page.get_by_label("Password", exact=True).fill(account.password)
    await page.get_by_role("button", name="Sign in", exact=True).click()


@pytest.mark.parametrize(
    "next_",
    [
        "/\t/example.invalid/phish",
        "/\n/example.invalid/phish",
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example/",
        "\\/evil.example/",
        "/.//evil.example/",
        "javascript:alert(document.domain)",
        " https://evil.example/",
    ],
    ids=[
        "tab",
        "newline",
        "scheme-relative",
        "absolute",
        "backslash",
        "backslash-first",
        "dot-segment",
        "javascript",
        "leading-space",
    ],
)
async def test_next_never_leaves_the_site(open_page, make, base_url, next_):
    account = await make.user()
    page = await open_page("/signin?next=" + quote(next_, safe=""))
    dialogs = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await sign_in(page, account)
    # Wherever it goes after signing in, it is a page of this server ("/.//evil.example/" is the path
    # "//evil.example/" here, which is harmless as long as it is not handed to the browser as a path).
    await expect(page).to_have_url(re.compile("^" + re.escape(base_url) + "/(?!signin)"), timeout=WAIT_MS)
    assert not dialogs


async def test_next_on_this_site_keeps_its_query_and_fragment(open_page, make, base_url):
    account = await make.user()
    page = await open_page("/signin?next=" + quote("/seller?tab=orders#list", safe=""))
    await sign_in(page, account)
    await expect(page).to_have_url(base_url + "/seller?tab=orders#list", timeout=WAIT_MS)
