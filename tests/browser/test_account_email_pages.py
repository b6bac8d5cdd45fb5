"""The emailed account links in Chromium: "Forgot your password?" on the sign-in page asks for a reset link,
the link read from the real SMTP server's mail opens the reset page, the new password is set there, and the
sign-in page signs in with it; the verification link verifies on load."""

import re

from playwright.async_api import expect

from smtp_server import body_text

WAIT_MS = 15_000
NEW_PASSWORD = "lantern orbit pickle 42"
LINK = re.compile(r"https?://\S+/(?:reset-password|verify-email)\?token=[A-Za-z0-9_-]+")


async def emailed_link(smtp_server, to: str, subject: str) -> str:
    msg = await smtp_server.wait_for(to, subject=subject)
    links = LINK.findall(body_text(msg))
    assert len(links) == 1, body_text(msg)
    return links[0]


async def test_reset_the_password_from_the_emailed_link(
    smtp_server, client, make, open_page, base_url, settings, screenshot
):
    # The node's links point at this test server (settings are read as each email is made).
    settings.public_url = base_url
    account = await make.user(email="forgetful@example.test")
    expect.set_options(timeout=WAIT_MS)

    page = await open_page("/signin")
    await page.get_by_role("link", name="Forgot your password?").click()
    await expect(page).to_have_url(f"{base_url}/reset-password")
    await page.get_by_label("Email").fill("forgetful@example.test")
    await page.get_by_role("button", name="Email me a link").click()
    await expect(page.get_by_role("status")).to_contain_text("is on its way")

    link = await emailed_link(smtp_server, "forgetful@example.test", "Reset your")
    assert link.startswith(f"{base_url}/reset-password?token=")
    await page.goto(link)
    await expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    await page.get_by_label("New password (at least 8 characters)").fill(NEW_PASSWORD)
    await page.get_by_label("The new password again").fill(NEW_PASSWORD)
    await screenshot(page, "reset-password")
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_text("Your password is changed")).to_be_visible()
    # The old session is signed out.
    assert (await client.get("/api/me", headers=account.headers)).status == 401

    await page.get_by_role("link", name="Sign in with your new password").click()
    await expect(page).to_have_url(f"{base_url}/signin")
    await page.get_by_label("Email or phone").fill("forgetful@example.test")
    await page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page).to_have_url(f"{base_url}/")

    # The same link again is refused, and the page offers to send a new one.
    await page.goto(link)
    await page.get_by_label("New password (at least 8 characters)").fill("another good passphrase")
    await page.get_by_label("The new password again").fill("another good passphrase")
    await page.get_by_role("button", name="Set new password").click()
    await expect(page.get_by_role("alert")).to_contain_text("used already")
    await expect(page.get_by_role("button", name="Email me a link")).to_be_visible()


async def test_the_verification_link_verifies_on_load(smtp_server, client, make, open_page, base_url, settings):
    settings.public_url = base_url
    account = await make.user(email="fresh@example.test", verified=False)
    expect.set_options(timeout=WAIT_MS)
    link = await emailed_link(smtp_server, "fresh@example.test", "Verify your email")
    page = await open_page(link.removeprefix(base_url), account)
    await expect(page.get_by_role("status")).to_have_text("Thank you: your email address is verified.")
    res = await client.get("/api/me", headers=account.headers)
    assert (await res.json())["user"]["email_verified"] is True
    page = await open_page("/account", account)
    await expect(page.locator("#email-verified")).to_have_text("(verified)")

    # Opened again: the link is used, and the signed-in account is told it is verified already.
    page = await open_page(link.removeprefix(base_url), account)
    await expect(page.get_by_role("status")).to_contain_text("is verified already")


async def test_an_unverified_account_is_shown_the_way_to_verify_before_selling(client, make, open_page, base_url):
    user = await make.user(verified=False)
    expect.set_options(timeout=WAIT_MS)
    page = await open_page("/account", user)
    await expect(page.locator("#email-verified")).to_have_text("(not verified: verify it)")
    await expect(page.locator("#email-verified").get_by_role("link", name="verify it")).to_have_attribute(
        "href", "/verify-email"
    )
    page = await open_page("/seller", user)
    await expect(page.get_by_text("First verify your email address")).to_be_visible()
    await page.get_by_label("Shop name").fill("Too Early")
    await page.get_by_role("button", name="Apply to sell").click()
    await expect(page.get_by_role("alert")).to_contain_text("verify your email address before applying")
    await page.get_by_role("link", name="Get a new verification link").click()
    await expect(page).to_have_url(f"{base_url}/verify-email")
    await expect(page.get_by_role("button", name="Send me a new link")).to_be_visible()
