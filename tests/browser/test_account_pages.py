"""The buyer's wallet and account pages in Chromium: a top-up moves the balance and shows in the history
with the balance after it; the account's profile, addresses (add, make default, edit, delete), password
change, and sessions (sign out everywhere else)."""

import re

from address_form import fill_address
from playwright.async_api import expect

from helpers import balance, top_up

WAIT_MS = 15_000


async def login(client, email: str, password: str):
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def test_wallet_top_up_updates_balance_and_history(open_page, make):
    buyer = await make.user()
    await top_up(make.client, buyer, 1_000)

    page = await open_page("/wallet", buyer)
    await expect(page.locator("#balance")).to_have_text("$10.00", timeout=WAIT_MS)
    rows = page.locator("#history tbody tr")
    await expect(rows).to_have_count(1)

    await page.get_by_label("Top up (amount)").fill("25.50")
    await page.get_by_role("button", name="Top up").click()
    await expect(page.locator("#balance")).to_have_text("$35.50", timeout=WAIT_MS)
    await expect(rows).to_have_count(2)
    newest = rows.first
    await expect(newest).to_contain_text("Top-up")
    await expect(newest.locator("td").nth(2)).to_have_text("+$25.50")
    await expect(newest.locator("td").nth(3)).to_have_text("$35.50")
    await expect(rows.nth(1).locator("td").nth(3)).to_have_text("$10.00")
    assert await balance(make.client, buyer) == 3_550

    # A refused amount says why by its field, and moves nothing.
    await page.get_by_label("Top up (amount)").fill("0")
    await page.get_by_role("button", name="Top up").click()
    await expect(page.locator("#top-up .form-error")).not_to_be_empty(timeout=WAIT_MS)
    assert await balance(make.client, buyer) == 3_550


async def test_account_addresses_add_default_edit_delete(open_page, make):
    buyer = await make.user()  # one default address, "1 Test Street"

    page = await open_page("/account", buyer)
    await expect(page.locator("#email")).to_have_text(buyer.user["email"], timeout=WAIT_MS)
    addresses = page.locator("#address-list > li")
    await expect(addresses).to_have_count(1)
    await expect(addresses.first).to_contain_text("Default")

    await page.get_by_text("Add an address").click()
    form = page.locator("#address-form")
    await fill_address(form, name="Ada at work", line1="9 Office Park", city="Paris", country="FR")
    await form.get_by_role("button", name="Save address").click()
    await expect(addresses).to_have_count(2, timeout=WAIT_MS)
    office = addresses.filter(has_text="9 Office Park")
    await expect(office).not_to_contain_text("Default")

    await office.get_by_role("button", name="Make default").click()
    await expect(office).to_contain_text("Default", timeout=WAIT_MS)
    res = await make.client.get("/api/me/addresses", headers=buyer.headers)
    items = (await res.json())["items"]
    assert [(a["line1"], a["is_default"]) for a in items] == [("9 Office Park", True), ("1 Test Street", False)]

    # A bad country is refused next to its field.
    old = addresses.filter(has_text="1 Test Street")
    await old.get_by_text("Edit…").click()
    await old.get_by_label("Country (2 letters, e.g. US)").fill("ZZ")
    await old.get_by_role("button", name="Save changes").click()
    await expect(old.locator(".field-error")).to_contain_text("country code", timeout=WAIT_MS)
    await old.get_by_label("Country (2 letters, e.g. US)").fill("DE")
    await old.get_by_label("City", exact=True).fill("Berlin")
    await old.get_by_role("button", name="Save changes").click()
    await expect(addresses.filter(has_text="Berlin")).to_contain_text("DE", timeout=WAIT_MS)

    await addresses.filter(has_text="Berlin").get_by_role("button", name="Delete").click()
    await expect(addresses).to_have_count(1, timeout=WAIT_MS)
    await expect(addresses.first).to_contain_text("9 Office Park")


async def test_account_profile_password_and_sessions(open_page, make):
    buyer = await make.user()
    # Signed in elsewhere too: a second session.
    assert (await login(make.client, buyer.user["email"], buyer.password)).status == 200
    make.client.session.cookie_jar.clear()

    page = await open_page("/account", buyer)
    sessions = page.locator("#sessions > li")
    await expect(sessions).to_have_count(2, timeout=WAIT_MS)
    await expect(sessions.first).to_contain_text("This browser")

    await page.get_by_label("Display name").fill("Ada L.")
    await page.get_by_role("button", name="Save profile").click()
    await expect(page.locator("#top")).to_contain_text("Ada L.", timeout=WAIT_MS)

    await page.get_by_label("Current password").fill("not my password")
    await page.get_by_label("New password (at least 8 characters)").fill("a much better passphrase 42")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#password .form-error")).not_to_be_empty(timeout=WAIT_MS)

    await page.get_by_label("Current password").fill(buyer.password)
    await page.get_by_label("New password (at least 8 characters)").fill("a much better passphrase 42")
    await page.get_by_role("button", name="Change password").click()
    await expect(page.locator("#toasts")).to_contain_text("Password changed", timeout=WAIT_MS)
    # Changing it signed the other session out; this one stays.
    await expect(sessions).to_have_count(1, timeout=WAIT_MS)
    assert (await login(make.client, buyer.user["email"], buyer.password)).status == 401
    assert (await login(make.client, buyer.user["email"], "a much better passphrase 42")).status == 200
    make.client.session.cookie_jar.clear()

    await page.reload()
    await expect(sessions).to_have_count(2, timeout=WAIT_MS)
    await page.get_by_role("button", name="Sign out everywhere else").click()
    await expect(sessions).to_have_count(1, timeout=WAIT_MS)
    await expect(page.locator("#toasts")).to_contain_text("Signed out 1 other session")
    await expect(page).to_have_url(re.compile(r"/account$"))


async def test_wallet_history_pages_with_show_more(open_page, make):
    buyer = await make.user()
    for n in range(1, 22):
        await top_up(make.client, buyer, n * 100)

    page = await open_page("/wallet", buyer)
    rows = page.locator("#history tbody tr")
    await expect(rows).to_have_count(20, timeout=WAIT_MS)
    # Newest first, each with the balance after it: 1 + 2 + ... + 21 dollars.
    await expect(rows.first.locator("td").nth(3)).to_have_text("$231.00")
    await page.get_by_role("button", name="Show more").click()
    await expect(rows).to_have_count(21, timeout=WAIT_MS)
    await expect(rows.last.locator("td").nth(2)).to_have_text("+$1.00")
    await expect(rows.last.locator("td").nth(3)).to_have_text("$1.00")
    await expect(page.get_by_role("button", name="Show more")).to_be_hidden()
