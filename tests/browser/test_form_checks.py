"""Forms in Chromium: every `pattern` attribute in the pages compiles as current Chromium compiles it (with
the regular expression `v` flag, under which a pattern it cannot compile silently checks nothing), and
the server's validation details appear next to the field they are about, not as "invalid request"."""

import json
import pathlib
import re

from playwright.async_api import expect

TIMEOUT = 15_000  # ms
STATIC = pathlib.Path(__file__).resolve().parents[2] / "static"
# pattern="..." in the HTML, and `pattern: "..."` (a JavaScript string literal) where scripts build forms.
HTML_PATTERN = re.compile(r'\spattern="([^"]*)"')
JS_PATTERN = re.compile(r'\bpattern:\s*("(?:[^"\\]|\\.)*")')


def page_patterns() -> dict[str, str]:
    found = {}
    for path in sorted(STATIC.rglob("*")):
        if path.suffix == ".html":
            for m in HTML_PATTERN.finditer(path.read_text()):
                found[f"{path.name}: {m.group(1)}"] = m.group(1).replace("&quot;", '"').replace("&amp;", "&")
        elif path.suffix == ".js":
            for m in JS_PATTERN.finditer(path.read_text()):
                found[f"{path.name}: {m.group(1)}"] = json.loads(m.group(1))
    return found


async def test_every_pattern_in_the_pages_compiles_in_chromium(open_page, make):
    patterns = page_patterns()
    assert len(patterns) >= 4, patterns  # the SKU fields, the category slug, the audit action
    page = await open_page("/signin")
    # How the HTML standard compiles a pattern attribute: anchored, with the `v` flag.
    refused = await page.evaluate(
        """(patterns) => Object.entries(patterns).flatMap(([where, p]) => {
             try { new RegExp(`^(?:${p})$`, "v"); return []; } catch (e) { return [`${where}: ${e.message}`]; }
           })""",
        patterns,
    )
    assert refused == []


async def test_the_sku_fields_check_what_they_should(open_page, make):
    seller = await make.seller()
    await make.product(seller, title="Plain tee", variants=[{"sku": "TEE-M", "price_cents": 1500, "stock": 5}])
    page = await open_page("/seller", seller)
    expect.set_options(timeout=TIMEOUT)
    await page.locator("#new-product > summary").click()
    new_sku = page.locator("#product-form").get_by_label("SKU", exact=True)
    tee = page.locator("article.product", has=page.get_by_role("heading", name="Plain tee"))
    await tee.locator("summary", has_text="Add variant").click()
    variant_sku = tee.get_by_label("SKU", exact=True)
    for field in (new_sku, variant_sku):
        for bad in ("TEE M", "TEE#1", "tée"):
            await field.fill(bad)
            assert await field.evaluate("el => el.validity.patternMismatch"), bad
        for good in ("TEE-L", "tee/l.2_b", "A-B-C"):
            await field.fill(good)
            assert await field.evaluate("el => el.validity.valid"), good


async def test_a_refused_field_shows_the_servers_reason_next_to_it(open_page, make):
    seller = await make.seller()
    page = await open_page("/seller", seller)
    expect.set_options(timeout=TIMEOUT)
    # A shop without products opens the new product form by itself.
    form = page.locator("#product-form")
    await expect(form).to_be_visible()
    await form.get_by_label("Title", exact=True).fill("Gold bar")
    await form.get_by_label("SKU", exact=True).fill("GOLD-1")
    price = form.get_by_label("Price", exact=True)
    await price.fill("20000000000")  # 2 * 10^12 cents: over the API's highest price
    await form.get_by_role("button", name="Create product").click()

    # The reason sits next to the price and is tied to it for screen readers; the form says which field.
    await expect(price).to_have_attribute("aria-invalid", "true")
    reason = form.locator(".field-error")
    await expect(reason).to_have_count(1)
    await expect(reason).to_contain_text("less than or equal to 1000000000000")
    described = await price.get_attribute("aria-describedby")
    assert await reason.get_attribute("id") in described.split()
    summary = form.locator(".form-error")
    await expect(summary).to_contain_text("Price")
    await expect(summary).not_to_contain_text("invalid request")
    # Fixing the field clears its mark; the product is created.
    await price.fill("24.50")
    await expect(price).not_to_have_attribute("aria-invalid", "true")
    await expect(reason).to_have_count(0)
    await form.get_by_role("button", name="Create product").click()
    await expect(page.get_by_role("heading", name="Gold bar")).to_be_visible()


async def test_the_sign_up_form_shows_which_field_is_wrong(open_page):
    page = await open_page("/signin")
    expect.set_options(timeout=TIMEOUT)
    form = page.locator("#register")
    await form.get_by_label("Your name").fill("Ada")
    await form.get_by_label("Email").fill("ada@example.test")
    phone = form.get_by_label("Phone (optional)")
    await phone.fill("12345")
    await form.get_by_label("Password (at least 8 characters)").fill("a long and unusual passphrase")
    await form.get_by_role("button", name="Create account").click()
    await expect(phone).to_have_attribute("aria-invalid", "true")
    reason = form.locator(".field-error")
    await expect(reason).to_have_text("6 to 15 digits, optionally starting with +")
    await expect(form.locator(".form-error")).to_contain_text("Phone")
