"""The admin console's account and catalogue tools in Chromium: deactivating a seller (its shop suspended,
its live stream ended), finding that in the audit log with a filter, reactivating it; renaming, moving and
deleting a category, its product moving to another."""

import asyncio
import uuid

from playwright.async_api import expect

TIMEOUT = 15_000  # ms: generous, two busy cores


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def test_admin_deactivates_a_seller_finds_it_in_the_audit_log_and_reactivates(client, make, open_page):
    admin = await make.admin()
    seller = await make.seller(shop_name="Night <b>Market</b>")
    email = seller.user["email"]
    lamp = await make.product(seller, title="Lamp")
    body = {"title": "Late show", "products": [{"product_id": lamp["id"]}]}
    stream = (await ok(await client.post("/api/streams", json=body, headers=seller.headers), 201))["stream"]
    await ok(await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers))
    # Noise the filters must leave out: another admin action on another target.
    other = await make.user()
    body = {"amount_cents": 100, "reason": "welcome"}
    await ok(await client.post(f"/api/admin/wallets/{other.id}/adjust", json=body, headers=admin.headers))

    page = await open_page("/admin#wallets", admin)
    expect.set_options(timeout=TIMEOUT)
    await page.get_by_label("Find a user").fill(email)
    await page.get_by_role("button", name="Search").click()
    # The search's answer, not the tab's first list (which has the admin too): it redraws the rows.
    await expect(page.locator("#wallets-table tbody tr")).to_have_count(1)
    row = page.locator("#wallets-table tbody tr", has_text=email)
    await expect(row).to_have_count(1)
    await row.get_by_text("Deactivate…").click()
    await row.get_by_label(f"Reason to deactivate {email}").fill("sold <fakes>")
    await row.get_by_role("button", name=f"Deactivate {email}").click()
    await expect(row.get_by_text("Deactivated", exact=True)).to_be_visible()
    await expect(row).to_contain_text("shop suspended")
    await expect(row).to_contain_text("1 live stream ended")
    await expect(row.get_by_role("button", name=f"Reactivate {email}")).to_be_visible()
    shown = await ok(await client.get(f"/api/streams/{stream['id']}"))
    assert shown["stream"]["status"] == "ended"
    assert (await client.get("/api/me", headers=seller.headers)).status == 401  # signed out everywhere

    # The audit log, filtered on the seller as target and on user actions: only the deactivation.
    await page.get_by_role("link", name="Audit log").click()
    log = page.locator("#audit-table tbody")
    await expect(log.locator("tr", has_text="wallet.adjust")).to_have_count(1)
    await page.get_by_label("Action").fill("user.")
    await page.get_by_label("Target id").fill(seller.id)
    await page.get_by_role("button", name="Filter").click()
    await expect(log.locator("tr")).to_have_count(1)
    entry = log.locator("tr").first
    await expect(entry).to_contain_text("user.deactivate")
    await expect(entry).to_contain_text(admin.user["email"])
    await expect(entry).to_contain_text("127.0.0.1")
    await expect(entry).to_contain_text("reason: sold <fakes>")
    # The actor filter takes an email, found through the wallet search: the seller did none of it.
    await page.get_by_label("Actor").fill(email)
    await page.get_by_role("button", name="Filter").click()
    await expect(log.locator("tr")).to_have_text(["No entries match."])
    await page.get_by_label("Actor").fill(admin.user["email"])
    await page.get_by_role("button", name="Filter").click()
    await expect(log.locator("tr", has_text="user.deactivate")).to_have_count(1)
    # Dates are the browser's days, `until` included: nothing up to the day before yesterday, the entry
    # from yesterday to today (either side of a midnight passing meanwhile).
    days = await page.evaluate(
        """() => [-2, -1, 0].map((n) => {
             const d = new Date(); d.setDate(d.getDate() + n); return d.toLocaleDateString("en-CA");
           })"""
    )
    await page.get_by_label("Until").fill(days[0])
    await page.get_by_role("button", name="Filter").click()
    await expect(log.locator("tr")).to_have_text(["No entries match."])
    await page.get_by_label("Since").fill(days[1])
    await page.get_by_label("Until").fill(days[2])
    await page.get_by_role("button", name="Filter").click()
    await expect(log.locator("tr", has_text="user.deactivate")).to_have_count(1)

    # Reactivate: the badge goes and the seller can sign in again.
    await page.get_by_role("link", name="Wallets").click()
    row = page.locator("#wallets-table tbody tr", has_text=email)
    await row.get_by_role("button", name=f"Reactivate {email}").click()
    await expect(row.get_by_text("Deactivated", exact=True)).to_have_count(0)
    await expect(row.get_by_text("Deactivate…")).to_be_visible()
    body = {"email": email, "password": seller.password}
    await ok(await client.post("/api/auth/login", json=body))
    entries = await ok(await client.get("/api/admin/audit", params={"action": "user."}, headers=admin.headers))
    assert [e["action"] for e in entries["items"]] == ["user.reactivate", "user.deactivate"]


async def test_audit_log_pages_with_show_more(client, db, make, open_page):
    admin = await make.admin()
    # 55 sign-outs of one user, the newest entries: more than the tab's page of 50, less than two pages.
    user = await make.user(email="dora@example.test")
    await db.executemany(
        "INSERT INTO audit_log (actor_id, action, details) VALUES ($1, 'sign_out', $2)",
        [(uuid.UUID(user.id), {"n": i}) for i in range(55)],
    )
    total = await db.fetchval("SELECT count(*) FROM audit_log")  # with what making the accounts wrote
    page = await open_page("/admin#audit", admin)
    expect.set_options(timeout=TIMEOUT)
    rows = page.locator("#audit-table tbody tr")
    await expect(rows).to_have_count(50)
    await expect(rows.first).to_contain_text("n: 54")
    await expect(rows.first).to_contain_text("dora@example.test")
    await page.get_by_role("button", name="Show more").click()
    await expect(rows).to_have_count(total)
    await expect(rows.filter(has_text="n: 0")).to_have_count(1)
    await expect(page.get_by_role("button", name="Show more")).to_be_hidden()


async def test_admin_renames_moves_and_deletes_a_category(client, make, open_page):
    admin = await make.admin()

    async def create(slug: str, name: str, parent: str | None = None, position: int = 0) -> dict:
        body = {"slug": slug, "name": name, "parent_id": parent, "position": position}
        return await ok(await client.post("/api/admin/categories", json=body, headers=admin.headers), 201)

    home = await create("home", "Home")
    lamps = await create("lamps", "Lamps", home["id"], position=7)
    garden = await create("garden", "Garden")
    await create("alpha", "Alpha", garden["id"], position=1)
    seller = await make.seller()
    lamp = await make.product(seller, title="Desk lamp", category_id=lamps["id"])

    page = await open_page("/admin#categories", admin)
    expect.set_options(timeout=TIMEOUT)
    tree = page.locator("#category-tree")
    item = tree.locator(f'li[data-category-id="{lamps["id"]}"]')
    await expect(tree.locator(f'li[data-category-id="{home["id"]}"] li')).to_contain_text("Lamps")

    # Rename it and move it to the top level.
    await item.get_by_label("Edit Lamps").click()
    form = item.locator("form.category-edit")
    await form.get_by_label("Name").fill("Lights & <lamps>")
    await form.get_by_label("Slug").fill("lights")
    await form.get_by_label("Parent").select_option(label="None (top level)")
    await form.get_by_role("button", name="Save").click()
    moved = tree.locator(f':scope > ul > li[data-category-id="{lamps["id"]}"]')
    await expect(moved).to_contain_text("Lights & <lamps>")
    await expect(moved).to_contain_text("lights")
    tree_json = await ok(await client.get("/api/categories"))
    assert {c["slug"]: c["name"] for c in tree_json["items"]} == {
        "home": "Home",
        "lights": "Lights & <lamps>",
        "garden": "Garden",
    }

    # Move it under Garden, first among its subcategories.
    item = tree.locator(f'li[data-category-id="{lamps["id"]}"]')
    await item.get_by_label("Edit Lights & <lamps>").click()
    form = item.locator("form.category-edit")
    await form.get_by_label("Parent").select_option(label="Garden")
    await form.get_by_label("Position").fill("0")
    await form.get_by_role("button", name="Save").click()
    under_garden = tree.locator(f'li[data-category-id="{garden["id"]}"] li > div > span')
    await expect(under_garden).to_have_text(["Lights & <lamps>", "Alpha"])

    # Delete it, its products moving to Home; the admin confirms first (a refusal changes nothing).
    item = tree.locator(f'li[data-category-id="{lamps["id"]}"]')
    await item.get_by_label("Delete Lights & <lamps>").click()
    form = item.locator("form.category-delete")
    await form.get_by_label("Move its products to").select_option(label="Home")
    asked: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def refuse(dialog):
        asked.set_result(dialog.message)
        await dialog.dismiss()

    page.once("dialog", refuse)
    await form.get_by_role("button", name="Delete").click()
    question = await asyncio.wait_for(asked, TIMEOUT / 1000)
    assert "Lights & <lamps>" in question and "Home" in question
    product = await ok(await client.get(f"/api/products/{lamp['id']}"))
    assert product["product"]["category_id"] == lamps["id"]  # refused: nothing deleted

    async def accept(dialog):
        await dialog.accept()

    page.once("dialog", accept)
    await form.get_by_role("button", name="Delete").click()
    await expect(tree.locator(f'li[data-category-id="{lamps["id"]}"]')).to_have_count(0)
    product = await ok(await client.get(f"/api/products/{lamp['id']}"))
    assert product["product"]["category_id"] == home["id"]
    log = await ok(await client.get("/api/admin/audit", params={"action": "category.delete"}, headers=admin.headers))
    assert [e["target_id"] for e in log["items"]] == [lamps["id"]]  # deleted once, after the admin agreed
