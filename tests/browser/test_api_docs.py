"""/api/docs in Chromium: Swagger UI loads the server's own /api/openapi.json and lists every operation of it
(a page that fetches the spec from a wrong address shows "Failed to load API definition" and no operation)."""

from playwright.async_api import expect

WAIT_MS = 15_000
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


async def test_api_docs_lists_the_spec_operations(client, open_page):
    res = await client.get("/api/openapi.json")
    assert res.status == 200
    spec = await res.json()
    operations = {(m.upper(), path) for path, item in spec["paths"].items() for m in item if m in HTTP_METHODS}
    assert len(operations) > 10

    page = await open_page("/api/docs")
    await expect(page.locator(".information-container .title")).to_contain_text(spec["info"]["title"], timeout=WAIT_MS)
    blocks = page.locator(".opblock-summary")
    await expect(blocks.first).to_be_visible(timeout=WAIT_MS)
    shown = await blocks.evaluate_all(
        """els => els.map(el => [
            el.querySelector('.opblock-summary-method').textContent.trim(),
            el.querySelector('.opblock-summary-path').getAttribute('data-path'),
        ])"""
    )
    assert {tuple(op) for op in shown} == operations

    # The spec came from the server's /api/openapi.json, and no request of the page failed.
    fetched = await page.evaluate("performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)")
    assert "/api/openapi.json" in fetched
    await expect(page.get_by_text("Failed to load API definition")).to_have_count(0)
