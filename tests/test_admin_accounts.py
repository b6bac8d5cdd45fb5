"""Admin tools for accounts and the category tree, and the audit log every admin action writes."""

import uuid

import asyncpg
import pytest

from helpers import error_of, top_up
from live_helpers import Viewer, live_show


async def audit(client, admin, **params) -> dict:
    res = await client.get("/api/admin/audit", params=params, headers=admin.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def test_admin_actions_are_audited_with_who_what_and_from_where(client, make, db):
    admin = await make.admin()
    pending = await make.seller(approved=False)
    user = await make.user()
    headers = {**admin.headers, "User-Agent": "audit-test/1.0"}
    res = await client.post(f"/api/admin/sellers/{pending.seller['id']}/approve", headers=headers)
    assert res.status == 200, await res.text()
    res = await client.post(
        f"/api/admin/wallets/{user.id}/adjust", json={"amount_cents": 250, "reason": "goodwill"}, headers=headers
    )
    assert res.status == 200, await res.text()
    # A failed action leaves no row: the row is written in the action's own transaction.
    await error_of(await client.post(f"/api/admin/sellers/{uuid.uuid4()}/approve", headers=headers), 404)

    # (The factory's admin turned two-factor sign-in on first: admins act only with it.)
    log = [e for e in (await audit(client, admin))["items"] if not e["action"].startswith("two_factor.")]
    assert [e["action"] for e in log] == ["wallet.adjust", "seller.approve"]
    adjust, approve = log
    assert adjust["actor_id"] == admin.id and adjust["actor_email"] == admin.user["email"]
    assert (adjust["target_type"], adjust["target_id"]) == ("wallet", user.id)
    assert adjust["details"] == {"amount_cents": 250, "reason": "goodwill"}
    assert adjust["address"] == "127.0.0.1" and adjust["user_agent"] == "audit-test/1.0"
    assert approve["target_id"] == pending.seller["id"]

    assert [e["action"] for e in (await audit(client, admin, action="seller."))["items"]] == ["seller.approve"]
    assert (await audit(client, admin, target=user.id))["items"] == [adjust]
    assert (await audit(client, admin, actor=str(uuid.uuid4())))["items"] == []
    first = await audit(client, admin, limit=1)
    assert first["items"] == [adjust] and first["next_cursor"] == str(adjust["id"])
    assert (await audit(client, admin, limit=1, cursor=first["next_cursor"]))["items"] == [approve]
    paged, cursor = [], None
    while True:
        page = await audit(client, admin, limit=1, **({"cursor": cursor} if cursor else {}))
        paged += page["items"]
        if (cursor := page["next_cursor"]) is None:
            break
    assert paged == (await audit(client, admin))["items"]

    await error_of(await client.get("/api/admin/audit", headers=user.headers), 403, "forbidden")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db.execute("UPDATE audit_log SET action = 'nothing'")
    with pytest.raises(asyncpg.PostgresError, match="append-only"):
        await db.execute("DELETE FROM audit_log")


async def test_a_deactivated_account_is_out_everywhere_until_reactivated(client, make, db):
    admin = await make.admin()
    show = await live_show(make, products=1)
    seller = show.seller
    fan = await Viewer.connect(client, show.id)
    res = await client.post(f"/api/admin/users/{seller.id}/deactivate", json={"reason": "fraud"}, headers=admin.headers)
    assert res.status == 200, await res.text()
    assert (await res.json()) == {"user_id": seller.id, "seller_id": seller.seller["id"], "ended_streams": 1}

    await error_of(await client.get("/api/me", headers=seller.headers), 401, "unauthorized")  # sessions ended
    body = {"email": seller.user["email"], "password": seller.password}
    await error_of(await client.post("/api/auth/login", json=body), 403, "forbidden")
    await error_of(await client.post("/api/auth/login", json={**body, "password": "wrong pass"}), 401)
    await fan.wait_for(lambda v: any(e["stream"]["status"] == "ended" for e in v.of_type("stream_status")))
    listing = await (await client.get("/api/products")).json()
    assert listing["items"] == []  # the suspended shop's products left the listings
    entry = (await audit(client, admin, action="user.deactivate"))["items"][0]
    assert entry["target_id"] == seller.id and entry["details"] == {"reason": "fraud"}

    await error_of(
        await client.post(f"/api/admin/users/{seller.id}/deactivate", json={"reason": "x"}, headers=admin.headers),
        409,
        "conflict",
    )
    await error_of(
        await client.post(f"/api/admin/users/{admin.id}/deactivate", json={"reason": "x"}, headers=admin.headers),
        409,
        "conflict",
    )
    res = await client.post(f"/api/admin/users/{seller.id}/reactivate", headers=admin.headers)
    assert res.status == 204, await res.text()
    res = await client.post("/api/auth/login", json=body)
    assert res.status == 200, await res.text()
    # The shop stays suspended until an admin approves it again.
    assert await db.fetchval("SELECT status FROM sellers WHERE id = $1", uuid.UUID(seller.seller["id"])) == "suspended"
    wallets = await (await client.get("/api/admin/wallets", params={"q": seller.id}, headers=admin.headers)).json()
    assert wallets["items"][0]["deactivated_at"] is None


async def test_admins_rename_move_and_delete_categories(client, make, db):
    admin = await make.admin()

    async def create(slug: str, parent: str | None = None) -> dict:
        res = await client.post(
            "/api/admin/categories",
            json={"slug": slug, "name": slug.title(), "parent_id": parent},
            headers=admin.headers,
        )
        assert res.status == 201, await res.text()
        return await res.json()

    shoes = await create("shoes")
    boots = await create("boots", shoes["id"])
    hats = await create("hats")
    seller = await make.seller()
    product = await make.product(seller, category_id=boots["id"])

    res = await client.patch(f"/api/admin/categories/{shoes['id']}", json={"name": "Footwear"}, headers=admin.headers)
    assert res.status == 200 and (await res.json())["name"] == "Footwear"
    # A category cannot move under its own subcategory.
    res = await client.patch(
        f"/api/admin/categories/{shoes['id']}", json={"parent_id": boots["id"]}, headers=admin.headers
    )
    await error_of(res, 422, "validation_error")
    res = await client.patch(f"/api/admin/categories/{boots['id']}", json={"parent_id": None}, headers=admin.headers)
    assert res.status == 200
    assert await db.fetchval("SELECT parent_id FROM categories WHERE id = $1", uuid.UUID(boots["id"])) is None
    await error_of(
        await client.delete(
            f"/api/admin/categories/{boots['id']}", params={"move_to": str(uuid.uuid4())}, headers=admin.headers
        ),
        422,
    )
    res = await client.delete(
        f"/api/admin/categories/{boots['id']}", params={"move_to": hats["id"]}, headers=admin.headers
    )
    assert res.status == 200 and await res.json() == {"moved_products": 1}
    assert await db.fetchval("SELECT category_id FROM products WHERE id = $1", uuid.UUID(product["id"])) == uuid.UUID(
        hats["id"]
    )
    tree = await (await client.get("/api/categories")).json()
    assert {c["slug"] for c in tree["items"]} == {"shoes", "hats"}
    entries = (await audit(client, admin, action="category."))["items"]
    actions = [e["action"] for e in entries]
    assert actions == ["category.delete", "category.update", "category.update", *["category.create"] * 3]
    assert entries[0]["details"] == {"move_to": hats["id"]}  # where the products went
    await top_up(client, admin, 1)  # nothing else: an unaudited route writes no row
    assert (await audit(client, admin, action="wallet."))["items"] == []


async def test_sign_ins_failures_sign_outs_and_two_factor_changes_are_audited(client, make):
    admin = await make.admin()
    user = await make.user(email="audited@example.test")
    agent = {"User-Agent": "phone-browser/2"}
    wrong = {"email": "Audited@Example.test", "password": "not the password"}
    await error_of(await client.post("/api/auth/login", json=wrong, headers=agent), 401, "unauthorized")
    res = await client.post(
        "/api/auth/login", json={"email": "audited@example.test", "password": user.password}, headers=agent
    )
    assert res.status == 200, await res.text()
    token = (await res.json())["token"]
    res = await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}", **agent})
    assert res.status == 204
    await make.two_factor(user)
    # With two-factor on, the password alone asks for the code: the first step of a sign-in, no failure.
    res = await client.post("/api/auth/login", json={"email": "audited@example.test", "password": user.password})
    assert res.status == 401 and (await res.json())["error"]["details"] == {"two_factor_required": True}

    log = (await audit(client, admin, target="audited@example.test"))["items"]
    assert [e["action"] for e in log] == ["sign_in", "sign_in_failed"]
    signed_in, failed = log
    assert signed_in["actor_id"] == user.id and signed_in["user_agent"] == "phone-browser/2"
    assert failed["actor_id"] is None and failed["details"] == {"why": "wrong email or password"}
    assert failed["address"] == "127.0.0.1"
    mine = [e["action"] for e in (await audit(client, admin, actor=user.id))["items"]]
    assert mine[:2] == ["two_factor.enable", "sign_out"]
    enable = (await audit(client, admin, action="two_factor.enable", actor=user.id))["items"][0]
    assert enable["details"] == {"code": "[redacted]"}
