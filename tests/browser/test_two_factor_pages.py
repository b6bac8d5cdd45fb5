"""Two-factor sign-in in Chromium: turning it on from the Security page (QR code and key, a first code,
the recovery codes shown once), signing in with a code when the page is asked for one, an admin's money
action confirmed with a code in a dialog, and turning it off."""

import re
import time

import pyotp
from playwright.async_api import expect

WAIT_MS = 15_000


async def test_a_user_turns_it_on_then_signs_in_with_a_code_and_turns_it_off(open_page, make, db):
    user = await make.user()
    page = await open_page("/", user)
    await page.get_by_role("link", name="Security").click()
    await expect(page).to_have_url(re.compile(r"/security$"))
    await expect(page.locator("#two-factor-state")).to_have_text("Off.", timeout=WAIT_MS)

    await page.get_by_label("Your password").fill(user.password)
    await page.get_by_role("button", name="Set up two-factor sign-in").click()
    qr = page.get_by_role("img", name="QR code for your authenticator app")
    await expect(qr).to_be_visible(timeout=WAIT_MS)
    assert (await qr.bounding_box())["width"] >= 150
    assert await qr.locator("path").get_attribute("d")
    totp = pyotp.TOTP(await page.locator("#secret").inner_text())
    await page.get_by_label("Code from the app").fill(totp.now())
    await page.get_by_role("button", name="Turn on two-factor sign-in").click()
    await expect(page.locator("#two-factor-state")).to_contain_text("Recovery codes left: 10", timeout=WAIT_MS)
    codes = page.locator("#codes-list li")
    await expect(codes).to_have_count(10)
    recovery = await codes.first.inner_text()

    # Signed out, the sign-in page asks for a code once the password was right.
    signin = await open_page("/signin?next=/security")
    await signin.get_by_label("Email or phone").fill(user.user["email"])
    await signin.get_by_label("Password", exact=True).fill(user.password)
    code_field = signin.get_by_label("Code from your authenticator app, or a recovery code")
    await expect(code_field).to_be_hidden()
    await signin.get_by_role("button", name="Sign in", exact=True).click()
    await expect(code_field).to_be_visible(timeout=WAIT_MS)
    await expect(code_field).to_be_focused()
    await expect(signin.locator("#signin .form-error")).to_contain_text("authenticator app")
    await code_field.fill("000000" if totp.now() != "000000" else "111111")
    await signin.get_by_role("button", name="Sign in", exact=True).click()
    await expect(signin.locator("#signin .form-error")).to_contain_text("wrong", timeout=WAIT_MS)
    # The code of the next 30 seconds: the one that turned it on cannot sign in again.
    await code_field.fill(totp.at(time.time() + 30))
    await signin.get_by_role("button", name="Sign in", exact=True).click()
    await expect(signin).to_have_url(re.compile(r"/security$"), timeout=WAIT_MS)
    await expect(signin.locator("#two-factor-state")).to_contain_text("Recovery codes left: 10", timeout=WAIT_MS)

    # Turned off with a recovery code; signing in takes the password alone again.
    await signin.get_by_label("Code from your app or a recovery code, to turn it off").fill(recovery)
    await signin.get_by_role("button", name="Turn off two-factor sign-in").click()
    await expect(signin.locator("#two-factor-state")).to_have_text("Off.", timeout=WAIT_MS)
    assert await db.fetchval("SELECT count(*) FROM two_factor") == 0
    res = await make.client.post("/api/auth/login", json={"email": user.user["email"], "password": user.password})
    assert res.status == 200, await res.text()


async def test_new_recovery_codes_are_shown_once(open_page, make):
    user = await make.two_factor(await make.user())
    page = await open_page("/security", user)
    await expect(page.locator("#two-factor-state")).to_contain_text("Recovery codes left: 10", timeout=WAIT_MS)
    await page.get_by_label("Code from your app, for new recovery codes").fill(
        "123456" if user.totp.now() != "123456" else "654321"
    )
    await page.get_by_role("button", name="Make new recovery codes").click()
    await expect(page.locator("#regenerate .form-error")).to_contain_text("wrong", timeout=WAIT_MS)
    await page.get_by_label("Code from your app, for new recovery codes").fill(await user.sign_in_code())
    await page.get_by_role("button", name="Make new recovery codes").click()
    await expect(page.locator("#codes-list li")).to_have_count(10, timeout=WAIT_MS)
    shown = set(await page.locator("#codes-list li").all_inner_texts())
    assert not shown & set(user.recovery_codes)


async def test_an_admin_confirms_a_wallet_adjustment_with_a_code(open_page, make):
    admin = await make.admin()
    await make.user(email="carol@example.test")
    page = await open_page("/admin#wallets", admin)
    await page.get_by_label("Find a user").fill("carol@")
    await page.get_by_role("button", name="Search").click()
    # The search's answer, not the tab's first list (which has the admin too): it redraws the rows.
    await expect(page.locator("#wallets-table tbody tr")).to_have_count(1, timeout=WAIT_MS)
    row = page.locator("#wallets-table tbody tr", has_text="carol@example.test")
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    await row.get_by_text("Adjust…").click()
    await row.get_by_label("Adjustment for carol@example.test").fill("2.50")
    await row.get_by_label("Adjustment reason for carol@example.test").fill("goodwill credit")
    await row.get_by_role("button", name="Apply adjustment to carol@example.test").click()
    # The server asks for a code: a dialog does, and a wrong one is asked again.
    dialog = page.get_by_role("dialog", name="Confirm with your authenticator app")
    await expect(dialog).to_contain_text("authenticator app is needed", timeout=WAIT_MS)
    await dialog.get_by_label("Code from your authenticator app").fill(
        "000000" if admin.totp.now() != "000000" else "111111"
    )
    await dialog.get_by_role("button", name="Confirm").click()
    await expect(dialog).to_contain_text("wrong two-factor code", timeout=WAIT_MS)
    await dialog.get_by_label("Code from your authenticator app").fill(admin.totp.now())
    await dialog.get_by_role("button", name="Confirm").click()
    await expect(dialog).to_have_count(0, timeout=WAIT_MS)
    await expect(row.locator("td").nth(1)).to_have_text("$2.50", timeout=WAIT_MS)
