"""Seller profiles: applying, admin review, public shop pages, follows and suspension."""

import uuid

from tests.helpers import error_of


def anonymous(client) -> None:
    # Registering through the test client leaves that account's session cookie in its jar.
    client.session.cookie_jar.clear()


async def apply(client, account, shop_name: str = "My Shop", **extra):
    return await client.post("/api/sellers/apply", json={"shop_name": shop_name, **extra}, headers=account.headers)


async def me(client, account) -> dict:
    res = await client.get("/api/me", headers=account.headers)
    assert res.status == 200
    return (await res.json())["user"]


# -- apply and approve ------------------------------------------------------------------------------


async def test_apply_creates_a_pending_profile(client, make):
    alice = await make.user()
    res = await apply(client, alice, "  Alice's Antiques ", description="Old things, lovingly kept.")
    assert res.status == 201, await res.text()
    seller = (await res.json())["seller"]
    assert seller["status"] == "pending"
    assert seller["user_id"] == alice.id
    assert seller["shop_name"] == "Alice's Antiques"
    assert seller["description"] == "Old things, lovingly kept."
    assert seller["approved_at"] is None
    assert seller["followers"] == 0 and seller["products"] == 0
    uuid.UUID(seller["id"])
    # Not a seller yet: no role, and no selling.
    assert "seller" not in (await me(client, alice))["roles"]
    res = await client.post(
        "/api/products",
        json={"title": "Lamp", "variants": [{"sku": "L-1", "price_cents": 100}]},
        headers=alice.headers,
    )
    await error_of(res, 403, "forbidden")


async def test_apply_validates_input_and_needs_a_user(client, make, db):
    alice = await make.user()
    await error_of(await apply(client, alice, ""), 422, "validation_error")
    await error_of(await apply(client, alice, "x" * 201), 422, "validation_error")
    await error_of(await apply(client, alice, "Shop", status="approved"), 422, "validation_error")
    anonymous(client)
    res = await client.post("/api/sellers/apply", json={"shop_name": "Anon"})
    await error_of(res, 401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM sellers") == 0


async def test_applying_twice_is_a_conflict(client, make, db):
    alice = await make.user()
    assert (await apply(client, alice, "First")).status == 201
    await error_of(await apply(client, alice, "Second"), 409, "conflict")
    assert await db.fetchval("SELECT shop_name FROM sellers") == "First"


async def test_only_admins_approve(client, make):
    applicant = await make.seller(approved=False)
    seller_id = applicant.seller["id"]
    other = await make.user()
    for who in (other, applicant):
        res = await client.post(f"/api/admin/sellers/{seller_id}/approve", headers=who.headers)
        await error_of(res, 403, "forbidden")
    anonymous(client)
    await error_of(await client.post(f"/api/admin/sellers/{seller_id}/approve"), 401, "unauthorized")
    admin = await make.admin()
    res = await client.get(f"/api/sellers/{seller_id}", headers=admin.headers)
    assert (await res.json())["seller"]["status"] == "pending"


async def test_admin_approval_makes_the_account_a_seller(client, make):
    applicant = await make.seller(approved=False)
    seller_id = applicant.seller["id"]
    before = await me(client, applicant)
    assert "seller" not in before["roles"]

    admin = await make.admin()
    res = await client.post(f"/api/admin/sellers/{seller_id}/approve", headers=admin.headers)
    assert res.status == 200, await res.text()
    seller = (await res.json())["seller"]
    assert seller["id"] == seller_id
    assert seller["status"] == "approved"
    assert seller["approved_at"] is not None

    user = await me(client, applicant)
    assert sorted(user["roles"]) == ["seller", "viewer"]
    assert user["seller_id"] == seller_id
    # And the role is real: the account can now list a product.
    product = await make.product(applicant)
    assert product["seller"]["id"] == seller_id


async def test_approving_something_that_does_not_exist(client, make):
    admin = await make.admin()
    res = await client.post(f"/api/admin/sellers/{uuid.uuid4()}/approve", headers=admin.headers)
    await error_of(res, 404, "not_found")
    res = await client.post("/api/admin/sellers/not-a-uuid/approve", headers=admin.headers)
    await error_of(res, 404, "not_found")


# -- the admin review queue -------------------------------------------------------------------------


async def test_admin_lists_pending_applications(client, make):
    admin = await make.admin()
    pending = [await make.seller(approved=False) for _ in range(3)]
    approved = await make.seller(approved=True)

    res = await client.get("/api/admin/sellers?status=pending", headers=admin.headers)
    assert res.status == 200, await res.text()
    page = await res.json()
    assert {s["id"] for s in page["items"]} == {a.seller["id"] for a in pending}
    assert all(s["status"] == "pending" for s in page["items"])
    assert page["next_cursor"] is None

    res = await client.get("/api/admin/sellers?status=approved", headers=admin.headers)
    assert [s["id"] for s in (await res.json())["items"]] == [approved.seller["id"]]
    res = await client.get("/api/admin/sellers", headers=admin.headers)
    assert len((await res.json())["items"]) == 4
    res = await client.get("/api/admin/sellers?status=bogus", headers=admin.headers)
    await error_of(res, 422, "validation_error")


async def test_admin_seller_list_pages_with_a_cursor(client, make):
    admin = await make.admin()
    expected = {(await make.seller(approved=False)).seller["id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        url = "/api/admin/sellers?status=pending&limit=2" + (f"&cursor={cursor}" if cursor else "")
        res = await client.get(url, headers=admin.headers)
        assert res.status == 200, await res.text()
        page = await res.json()
        pages += 1
        assert len(page["items"]) <= 2
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == expected

    res = await client.get("/api/admin/sellers?cursor=garbage", headers=admin.headers)
    await error_of(res, 422, "validation_error")
    for limit in ("0", "101", "ten"):
        res = await client.get(f"/api/admin/sellers?limit={limit}", headers=admin.headers)
        await error_of(res, 422, "validation_error")


async def test_seller_list_is_for_admins_only(client, make):
    await make.seller(approved=False)
    user = await make.user()
    seller = await make.seller(approved=True)
    for who in (user, seller):
        res = await client.get("/api/admin/sellers?status=pending", headers=who.headers)
        await error_of(res, 403, "forbidden")
    anonymous(client)
    await error_of(await client.get("/api/admin/sellers?status=pending"), 401, "unauthorized")


# -- public shop pages ------------------------------------------------------------------------------


async def test_pending_profile_is_visible_only_to_its_owner_and_admins(client, make):
    applicant = await make.seller(approved=False)
    url = f"/api/sellers/{applicant.seller['id']}"
    other = await make.user()
    admin = await make.admin()

    await error_of(await client.get(url, headers=other.headers), 404, "not_found")
    res = await client.get(url, headers=applicant.headers)
    assert res.status == 200
    assert (await res.json())["seller"]["status"] == "pending"
    res = await client.get(url, headers=admin.headers)
    assert res.status == 200
    anonymous(client)
    await error_of(await client.get(url), 404, "not_found")
    # A bad token is just anonymous here.
    await error_of(await client.get(url, headers={"Authorization": "Bearer nope"}), 404, "not_found")


async def test_approved_profile_is_public_with_counts(client, make):
    shop = await make.seller(approved=True, shop_name="Open Shop")
    url = f"/api/sellers/{shop.seller['id']}"
    await make.product(shop)
    archived = await make.product(shop)
    await make.product(shop)
    res = await client.delete(f"/api/products/{archived['id']}", headers=shop.headers)
    assert res.status == 200, await res.text()
    fans = [await make.user() for _ in range(2)]
    for fan in fans:
        assert (await client.post(f"{url}/follow", headers=fan.headers)).status == 200

    anonymous(client)
    res = await client.get(url)
    assert res.status == 200, await res.text()
    seller = (await res.json())["seller"]
    assert seller["shop_name"] == "Open Shop"
    assert seller["status"] == "approved"
    assert seller["followers"] == 2
    assert seller["products"] == 2  # archived products are not counted


async def test_unknown_seller_is_not_found(client):
    await error_of(await client.get(f"/api/sellers/{uuid.uuid4()}"), 404, "not_found")
    await error_of(await client.get("/api/sellers/123"), 404, "not_found")


# -- follows ----------------------------------------------------------------------------------------


async def test_follow_and_unfollow(client, make):
    shop = await make.seller(approved=True)
    fan = await make.user()
    url = f"/api/sellers/{shop.seller['id']}/follow"

    res = await client.post(url, headers=fan.headers)
    assert res.status == 200, await res.text()
    assert await res.json() == {"seller_id": shop.seller["id"], "following": True, "followers": 1}

    res = await client.post(url, headers=fan.headers)
    assert res.status == 200
    assert await res.json() == {"seller_id": shop.seller["id"], "following": True, "followers": 1}

    res = await client.delete(url, headers=fan.headers)
    assert res.status == 200
    assert await res.json() == {"seller_id": shop.seller["id"], "following": False, "followers": 0}

    res = await client.delete(url, headers=fan.headers)
    assert res.status == 200
    assert (await res.json())["followers"] == 0

    res = await client.get(f"/api/sellers/{shop.seller['id']}")
    assert (await res.json())["seller"]["followers"] == 0


async def test_follows_are_per_user(client, make, db):
    shop = await make.seller(approved=True)
    url = f"/api/sellers/{shop.seller['id']}/follow"
    a, b = await make.user(), await make.user()
    assert (await (await client.post(url, headers=a.headers)).json())["followers"] == 1
    assert (await (await client.post(url, headers=b.headers)).json())["followers"] == 2
    assert (await (await client.delete(url, headers=a.headers)).json())["followers"] == 1
    assert await db.fetchval("SELECT user_id FROM follows") == uuid.UUID(b.id)


async def test_cannot_follow_what_is_not_an_approved_shop(client, make, db):
    pending = await make.seller(approved=False)
    fan = await make.user()
    res = await client.post(f"/api/sellers/{pending.seller['id']}/follow", headers=fan.headers)
    await error_of(res, 404, "not_found")
    res = await client.post(f"/api/sellers/{uuid.uuid4()}/follow", headers=fan.headers)
    await error_of(res, 404, "not_found")
    res = await client.post("/api/sellers/nope/follow", headers=fan.headers)
    await error_of(res, 404, "not_found")
    assert await db.fetchval("SELECT count(*) FROM follows") == 0


async def test_following_needs_a_signed_in_user(client, make, db):
    shop = await make.seller(approved=True)
    anonymous(client)
    url = f"/api/sellers/{shop.seller['id']}/follow"
    await error_of(await client.post(url), 401, "unauthorized")
    await error_of(await client.delete(url), 401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM follows") == 0


# -- suspension -------------------------------------------------------------------------------------


async def test_suspended_seller_can_no_longer_sell(client, make):
    shop = await make.seller(approved=True)
    product = await make.product(shop)
    admin = await make.admin()
    seller_id = shop.seller["id"]

    res = await client.post(f"/api/admin/sellers/{seller_id}/suspend", headers=shop.headers)
    await error_of(res, 403, "forbidden")

    res = await client.post(f"/api/admin/sellers/{seller_id}/suspend", headers=admin.headers)
    assert res.status == 200, await res.text()
    assert (await res.json())["seller"]["status"] == "suspended"

    assert "seller" not in (await me(client, shop))["roles"]
    res = await client.post(
        "/api/products",
        json={"title": "More", "variants": [{"sku": "MORE-1", "price_cents": 100}]},
        headers=shop.headers,
    )
    await error_of(res, 403, "forbidden")
    res = await client.patch(f"/api/products/{product['id']}", json={"title": "Renamed"}, headers=shop.headers)
    await error_of(res, 403, "forbidden")

    # The shop page disappears for the public but not for its owner or admins.
    anonymous(client)
    await error_of(await client.get(f"/api/sellers/{seller_id}"), 404, "not_found")
    res = await client.get(f"/api/sellers/{seller_id}", headers=shop.headers)
    assert (await res.json())["seller"]["status"] == "suspended"

    # Reinstating restores selling.
    res = await client.post(f"/api/admin/sellers/{seller_id}/approve", headers=admin.headers)
    assert (await res.json())["seller"]["status"] == "approved"
    await make.product(shop)
