"""Products and variants over REST: shape, ownership, SKUs, search and filters, paging, edits."""

import asyncio
import base64
import uuid
from datetime import datetime

import pytest

from livehub.api.cache import ListingCache
from livehub.api.catalog import ProductOut
from livehub.api.models import Page
from livehub.app import create_app
from tests.helpers import error_of

VARIANT_KEYS = {"id", "sku", "options", "price_cents", "available", "digital"}


async def create(client, seller, body: dict) -> dict:
    res = await client.post("/api/products", json=body, headers=seller.headers)
    assert res.status == 201, await res.text()
    return (await res.json())["product"]


async def detail(client, product_id: str) -> dict:
    res = await client.get(f"/api/products/{product_id}")
    assert res.status == 200, await res.text()
    return (await res.json())["product"]


async def listing(client, **params) -> list[str]:
    """Ids of the first page (limit 100) of GET /api/products with these filters."""
    params = {"limit": 100, **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}}
    res = await client.get("/api/products", params=params)
    assert res.status == 200, await res.text()
    body = await res.json()
    assert body["next_cursor"] is None
    return [p["id"] for p in body["items"]]


def forget_cookies(client) -> None:
    """Registering leaves a session cookie in the test client's jar; anonymous requests must not send it."""
    client.session.cookie_jar.clear()


async def category(client, admin, slug: str, parent: dict | None = None) -> dict:
    body = {"slug": slug, "name": slug.title(), "parent_id": parent["id"] if parent else None}
    res = await client.post("/api/admin/categories", json=body, headers=admin.headers)
    assert res.status == 201, await res.text()
    return await res.json()


# --- creating and reading ---------------------------------------------------------------------------


async def test_seller_creates_product_with_variants(make, client, db):
    seller = await make.seller(shop_name="Sneaker Barn")
    body = {
        "title": "Trail Runner",
        "description": "Grippy sole",
        "attributes": {"brand": "Acme", "tags": ["outdoor"]},
        "variants": [
            {"sku": "TR-42", "options": {"size": "42"}, "price_cents": 8999, "stock": 7},
            {"sku": "TR-43", "options": {"size": "43"}, "price_cents": 9499, "stock": 0},
            {"sku": "TR-GIFT", "price_cents": 5000, "digital": True},
        ],
    }
    res = await client.post("/api/products", json=body, headers=seller.headers)
    assert res.status == 201, await res.text()
    product = (await res.json())["product"]

    uuid.UUID(product["id"])
    assert product["title"] == "Trail Runner"
    assert product["description"] == "Grippy sole"
    assert product["attributes"] == {"brand": "Acme", "tags": ["outdoor"]}
    assert product["status"] == "active"
    assert product["category_id"] is None
    assert product["seller"] == {"id": seller.seller["id"], "shop_name": "Sneaker Barn"}
    assert all(set(v) == VARIANT_KEYS for v in product["variants"])
    by_sku = {v["sku"]: v for v in product["variants"]}
    assert set(by_sku) == {"TR-42", "TR-43", "TR-GIFT"}
    assert by_sku["TR-42"]["options"] == {"size": "42"}
    assert (by_sku["TR-42"]["price_cents"], by_sku["TR-42"]["available"], by_sku["TR-42"]["digital"]) == (
        8999,
        7,
        False,
    )
    assert (by_sku["TR-43"]["price_cents"], by_sku["TR-43"]["available"]) == (9499, 0)
    assert by_sku["TR-GIFT"]["options"] == {}
    assert (by_sku["TR-GIFT"]["available"], by_sku["TR-GIFT"]["digital"]) == (0, True)
    assert len({v["id"] for v in product["variants"]}) == 3

    # The public detail shows the same product with its available stock.
    assert await detail(client, product["id"]) == product
    rows = await db.fetch("SELECT sku, stock FROM variants WHERE product_id = $1", uuid.UUID(product["id"]))
    assert {r["sku"]: r["stock"] for r in rows} == {"TR-42": 7, "TR-43": 0, "TR-GIFT": 0}
    # Starting stock is audited; variants starting at zero have nothing to record.
    movements = await db.fetch(
        "SELECT v.sku, m.delta, m.stock_after FROM stock_movements m JOIN variants v ON v.id = m.variant_id"
    )
    assert [tuple(m) for m in movements] == [("TR-42", 7, 7)]


async def test_product_detail_of_unknown_or_malformed_id_is_404(make, client):
    await error_of(await client.get(f"/api/products/{uuid.uuid4()}"), 404, "not_found")
    await error_of(await client.get("/api/products/not-a-uuid"), 404, "not_found")


async def test_create_validation(make, client, db):
    seller = await make.seller()
    bad_bodies = [
        {"title": "x", "variants": []},
        {"title": "x"},
        {"title": "", "variants": [{"sku": "A", "price_cents": 1}]},
        {"title": "x", "variants": [{"sku": "A", "price_cents": -1}]},
        {"title": "x", "variants": [{"sku": "A", "price_cents": 1, "stock": -1}]},
        {"title": "x", "variants": [{"sku": "has space", "price_cents": 1}]},
        {"title": "x", "variants": [{"sku": "A", "price_cents": 1}], "unknown": 1},
        {"title": "x", "category_id": str(uuid.uuid4()), "variants": [{"sku": "A", "price_cents": 1}]},
        # A digital variant's stock is its imported codes, so it cannot start with any.
        {"title": "x", "variants": [{"sku": "A", "price_cents": 1, "stock": 3, "digital": True}]},
    ]
    for body in bad_bodies:
        res = await client.post("/api/products", json=body, headers=seller.headers)
        await error_of(res, 422, "validation_error")
    assert await db.fetchval("SELECT count(*) FROM products") == 0
    assert await db.fetchval("SELECT count(*) FROM variants") == 0


async def test_nul_characters_are_422_not_500(make, client, db):
    # Postgres text cannot hold U+0000; such input is the client's error, never a server fault.
    seller = await make.seller()
    product = await make.product(seller)
    variant = product["variants"][0]["id"]
    attempts = [
        ("POST", "/api/products", {"title": "a\x00b", "variants": [{"sku": "NUL-1", "price_cents": 1}]}),
        (
            "POST",
            "/api/products",
            {"title": "ok", "attributes": {"k": "\x00"}, "variants": [{"sku": "NUL-2", "price_cents": 1}]},
        ),
        (
            "POST",
            "/api/products",
            {"title": "ok", "variants": [{"sku": "NUL-3", "price_cents": 1, "options": {"k": "\x00"}}]},
        ),
        ("PATCH", f"/api/products/{product['id']}", {"description": "\x00"}),
        ("PATCH", f"/api/variants/{variant}", {"options": {"\x00": "v"}}),
        ("POST", f"/api/variants/{variant}/stock", {"delta": 1, "reason": "why\x00"}),
    ]
    for method, path, body in attempts:
        res = await client.request(method, path, json=body, headers=seller.headers)
        await error_of(res, 422, "validation_error")
    assert await detail(client, product["id"]) == product
    assert await db.fetchval("SELECT count(*) FROM products") == 1
    # A search for such text is refused the same way (it could match nothing anyway).
    await error_of(await client.get("/api/products", params={"q": "a\x00b"}), 422, "validation_error")


# --- who may write ----------------------------------------------------------------------------------


async def test_only_approved_sellers_create_products(make, client, db):
    body = {"title": "Lamp", "variants": [{"sku": "LAMP-1", "price_cents": 100, "stock": 1}]}
    viewer = await make.user()
    pending = await make.seller(approved=False)
    suspended = await make.seller()
    await db.execute("SELECT set_seller_status($1, 'suspended', NULL)", suspended.seller["id"])

    forget_cookies(client)
    await error_of(await client.post("/api/products", json=body), 401, "unauthorized")
    for account in (viewer, pending, suspended):
        res = await client.post("/api/products", json=body, headers=account.headers)
        await error_of(res, 403, "forbidden")
    assert await db.fetchval("SELECT count(*) FROM products") == 0

    approved = await make.seller()
    await create(client, approved, body)
    assert await db.fetchval("SELECT count(*) FROM products") == 1


async def test_another_seller_cannot_touch_a_product(make, client, db):
    owner = await make.seller()
    other = await make.seller()
    viewer = await make.user()
    product = await make.product(
        owner,
        variants=[
            {"sku": "OWN-1", "price_cents": 1000, "stock": 5},
            {"sku": "OWN-CODE", "price_cents": 500, "digital": True},
        ],
    )
    physical = next(v for v in product["variants"] if not v["digital"])
    digital = next(v for v in product["variants"] if v["digital"])
    before = await detail(client, product["id"])
    movements_before = await db.fetchval("SELECT count(*) FROM stock_movements")

    pid = product["id"]
    attempts = [
        ("PATCH", f"/api/products/{pid}", {"json": {"title": "Hijacked", "status": "archived"}}),
        ("DELETE", f"/api/products/{pid}", {}),
        ("POST", f"/api/products/{pid}/variants", {"json": {"variants": [{"sku": "EVIL-1", "price_cents": 1}]}}),
        ("PATCH", f"/api/variants/{physical['id']}", {"json": {"price_cents": 1}}),
        ("POST", f"/api/variants/{physical['id']}/stock", {"json": {"delta": -5, "reason": "theft"}}),
        (
            "POST",
            f"/api/variants/{digital['id']}/units",
            {"data": b"code\nSTOLEN-1\n", "headers": {"Content-Type": "text/csv"}},
        ),
    ]
    for method, path, kw in attempts:
        headers = {**kw.pop("headers", {}), **other.headers}
        res = await client.request(method, path, headers=headers, **kw)
        await error_of(res, 403, "forbidden")
        # A signed-in account without a shop, and nobody at all, are refused too.
        res = await client.request(method, path, headers={**headers, **viewer.headers}, **kw)
        await error_of(res, 403, "forbidden")
        forget_cookies(client)
        res = await client.request(
            method, path, headers={k: v for k, v in headers.items() if k != "Authorization"}, **kw
        )
        await error_of(res, 401, "unauthorized")

    assert await detail(client, pid) == before
    assert await db.fetchval("SELECT count(*) FROM variants") == 2
    assert await db.fetchval("SELECT count(*) FROM stock_movements") == movements_before
    assert await db.fetchval("SELECT count(*) FROM digital_units") == 0
    assert await db.fetchval("SELECT stock FROM variants WHERE sku = 'OWN-1'") == 5
    assert pid in await listing(client)

    # The owner can do what the others could not.
    res = await client.patch(f"/api/products/{pid}", json={"title": "Mine"}, headers=owner.headers)
    assert res.status == 200, await res.text()
    assert (await res.json())["product"]["title"] == "Mine"


# --- SKUs -------------------------------------------------------------------------------------------


async def test_duplicate_skus(make, client, db):
    seller = await make.seller()
    other = await make.seller()
    first = await make.product(seller, variants=[{"sku": "DUP-1", "price_cents": 100, "stock": 1}])

    # Across products, and across sellers: SKUs are unique in the whole catalog.
    for account in (seller, other):
        res = await client.post(
            "/api/products",
            headers=account.headers,
            json={
                "title": "Copy",
                "variants": [{"sku": "NEW-1", "price_cents": 1}, {"sku": "DUP-1", "price_cents": 1}],
            },
        )
        await error_of(res, 409, "conflict")
    # The whole product is refused, not just the clashing variant.
    assert await db.fetchval("SELECT count(*) FROM products") == 1
    assert await db.fetchval("SELECT count(*) FROM variants") == 1

    # Twice in one request is the client's mistake.
    res = await client.post(
        "/api/products",
        headers=seller.headers,
        json={"title": "Twice", "variants": [{"sku": "TWICE", "price_cents": 1}, {"sku": "TWICE", "price_cents": 2}]},
    )
    await error_of(res, 422, "validation_error")
    res = await client.post(
        f"/api/products/{first['id']}/variants",
        headers=seller.headers,
        json={"variants": [{"sku": "TWICE", "price_cents": 1}, {"sku": " TWICE ", "price_cents": 2}]},
    )
    await error_of(res, 422, "validation_error")

    # Adding a variant or renaming one onto a taken SKU conflicts too.
    res = await client.post(
        f"/api/products/{first['id']}/variants",
        headers=seller.headers,
        json={"variants": [{"sku": "DUP-2", "price_cents": 1}, {"sku": "DUP-1", "price_cents": 1}]},
    )
    await error_of(res, 409, "conflict")
    second = await make.product(seller, variants=[{"sku": "DUP-3", "price_cents": 1}])
    res = await client.patch(
        f"/api/variants/{second['variants'][0]['id']}", json={"sku": "DUP-1"}, headers=seller.headers
    )
    await error_of(res, 409, "conflict")
    assert sorted(await db.fetchval("SELECT array_agg(sku) FROM variants")) == ["DUP-1", "DUP-3"]


# --- search and filters -----------------------------------------------------------------------------


async def test_text_search(make, client):
    seller = await make.seller()
    sneakers = await make.product(seller, title="Red Running Sneakers", description="Lightweight mesh upper")
    jacket = await make.product(seller, title="Blue Denim Jacket", description="Classic RED stitching")
    tea = await make.product(seller, title="Green Tea", description="")
    everything = {sneakers["id"], jacket["id"], tea["id"]}

    assert set(await listing(client, q="sne")) == {sneakers["id"]}
    assert set(await listing(client, q="SNEAKERS")) == {sneakers["id"]}
    assert set(await listing(client, q="red")) == {sneakers["id"], jacket["id"]}  # title or description
    assert set(await listing(client, q="mesh")) == {sneakers["id"]}
    assert set(await listing(client, q="red jack")) == {jacket["id"]}  # every word must match
    assert set(await listing(client, q="Red Sneak")) == {sneakers["id"]}
    assert set(await listing(client, q="  red,   stitch!  ")) == {jacket["id"]}
    assert await listing(client, q="red tea") == []
    assert await listing(client, q="ea") == []  # a prefix of a word, not any substring
    assert await listing(client, q="zebra") == []
    # Punctuation and tsquery syntax are not words: no filter, and no error.
    for q in ("!!!", "':*", "a & | b", "\\"):
        res = await client.get("/api/products", params={"q": q})
        assert res.status == 200, (q, await res.text())
    assert set(await listing(client, q="!!!")) == everything


async def test_category_filter_includes_subcategories(make, client):
    admin = await make.admin()
    clothing = await category(client, admin, "clothing")
    shoes = await category(client, admin, "shoes", clothing)
    running = await category(client, admin, "running", shoes)
    food = await category(client, admin, "food")
    seller = await make.seller()
    runner = await make.product(seller, category_id=running["id"])
    boot = await make.product(seller, category_id=shoes["id"])
    shirt = await make.product(seller, category_id=clothing["id"])
    tea = await make.product(seller, category_id=food["id"])
    await make.product(seller)  # uncategorised

    assert set(await listing(client, category=clothing["id"])) == {runner["id"], boot["id"], shirt["id"]}
    assert set(await listing(client, category=shoes["id"])) == {runner["id"], boot["id"]}
    assert set(await listing(client, category=running["id"])) == {runner["id"]}
    assert set(await listing(client, category=food["id"])) == {tea["id"]}
    assert await listing(client, category=str(uuid.uuid4())) == []
    await error_of(await client.get("/api/products", params={"category": "shoes"}), 422, "validation_error")

    res = await client.get("/api/categories")
    tree = (await res.json())["items"]
    by_slug = {c["slug"]: c for c in tree}
    assert set(by_slug) == {"clothing", "food"}
    assert [c["slug"] for c in by_slug["clothing"]["children"]] == ["shoes"]
    assert [c["slug"] for c in by_slug["clothing"]["children"][0]["children"]] == ["running"]


async def test_seller_price_and_stock_filters(make, client):
    alice = await make.seller()
    bob = await make.seller()
    wide = await make.product(
        alice,
        variants=[
            {"sku": "W-CHEAP", "price_cents": 500, "stock": 0},
            {"sku": "W-DEAR", "price_cents": 5000, "stock": 3},
        ],
    )
    mid = await make.product(alice, variants=[{"sku": "M-1", "price_cents": 1500, "stock": 0}])
    upper = await make.product(bob, variants=[{"sku": "U-1", "price_cents": 3000, "stock": 2}])

    assert set(await listing(client, seller=alice.seller["id"])) == {wide["id"], mid["id"]}
    assert set(await listing(client, seller=bob.seller["id"])) == {upper["id"]}
    assert await listing(client, seller=str(uuid.uuid4())) == []

    # A product matches a price range when any of its variants is in it; bounds are inclusive.
    assert set(await listing(client, min_price_cents=1000, max_price_cents=2000)) == {mid["id"]}
    assert set(await listing(client, min_price_cents=1500, max_price_cents=1500)) == {mid["id"]}
    assert set(await listing(client, min_price_cents=1000, max_price_cents=3000)) == {mid["id"], upper["id"]}
    assert set(await listing(client, min_price_cents=4000)) == {wide["id"]}
    assert set(await listing(client, max_price_cents=600)) == {wide["id"]}
    assert set(await listing(client, max_price_cents=499)) == set()
    assert set(await listing(client, min_price_cents=3001, max_price_cents=4999)) == set()

    assert set(await listing(client, in_stock=True)) == {wide["id"], upper["id"]}
    assert set(await listing(client, in_stock=True, seller=alice.seller["id"])) == {wide["id"]}
    assert set(await listing(client, in_stock=True, max_price_cents=2000)) == set()  # W-CHEAP has none

    for params in (
        {"min_price_cents": "-1"},
        {"max_price_cents": "cheap"},
        {"seller": "alice"},
        {"in_stock": "maybe"},
        {"colour": "red"},
    ):
        await error_of(await client.get("/api/products", params=params), 422, "validation_error")


async def test_archived_products_leave_listings_but_stay_readable(make, client, db):
    seller = await make.seller()
    keep = await make.product(seller)
    gone = await make.product(seller, title="Discontinued Widget")
    assert set(await listing(client)) == {keep["id"], gone["id"]}

    res = await client.delete(f"/api/products/{gone['id']}", headers=seller.headers)
    assert res.status == 200, await res.text()
    assert (await res.json())["product"]["status"] == "archived"

    assert await listing(client) == [keep["id"]]
    assert await listing(client, q="widget") == []
    assert await listing(client, seller=seller.seller["id"]) == [keep["id"]]
    archived = await detail(client, gone["id"])
    assert archived["status"] == "archived"
    assert archived["variants"] == gone["variants"]
    assert await db.fetchval("SELECT status FROM products WHERE id = $1", uuid.UUID(gone["id"])) == "archived"

    # Archiving again is harmless; the owner can bring it back.
    res = await client.delete(f"/api/products/{gone['id']}", headers=seller.headers)
    assert res.status == 200
    res = await client.patch(f"/api/products/{gone['id']}", json={"status": "active"}, headers=seller.headers)
    assert res.status == 200, await res.text()
    assert set(await listing(client)) == {keep["id"], gone["id"]}


async def test_suspended_sellers_products_leave_listings(make, client):
    admin = await make.admin()
    good = await make.seller()
    bad = await make.seller()
    kept = await make.product(good)
    hidden = await make.product(bad, title="Dodgy Watch")
    assert set(await listing(client)) == {kept["id"], hidden["id"]}

    res = await client.post(f"/api/admin/sellers/{bad.seller['id']}/suspend", headers=admin.headers)
    assert res.status == 200, await res.text()
    assert (await res.json())["seller"]["status"] == "suspended"

    assert await listing(client) == [kept["id"]]
    assert await listing(client, seller=bad.seller["id"]) == []
    assert await listing(client, q="dodgy") == []
    # A suspended seller cannot edit either.
    res = await client.patch(f"/api/products/{hidden['id']}", json={"title": "x"}, headers=bad.headers)
    await error_of(res, 403, "forbidden")

    res = await client.post(f"/api/admin/sellers/{bad.seller['id']}/approve", headers=admin.headers)
    assert res.status == 200
    assert set(await listing(client)) == {kept["id"], hidden["id"]}


async def test_listing_items_have_the_detail_shape(make, client):
    seller = await make.seller()
    product = await make.product(
        seller,
        variants=[
            {"sku": "S-1", "options": {"colour": "red"}, "price_cents": 100, "stock": 2},
            {"sku": "S-2", "options": {"colour": "blue"}, "price_cents": 150, "stock": 0},
        ],
    )
    res = await client.get("/api/products")
    body = await res.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["items"] == [await detail(client, product["id"])]


# --- paging -----------------------------------------------------------------------------------------


async def test_cursor_pagination(make, client):
    seller = await make.seller()
    created = [(await make.product(seller))["id"] for _ in range(25)]

    pages, cursor = [], None
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        res = await client.get("/api/products", params=params)
        assert res.status == 200, await res.text()
        body = await res.json()
        pages.append([p["id"] for p in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
        if len(pages) == 1:
            # A product listed while paging is newer than every cursor: it shows on no later page.
            late = (await make.product(seller))["id"]
        assert len(pages) < 5

    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [i for page in pages for i in page]
    assert len(seen) == len(set(seen)) == 25
    assert seen == created[::-1]  # newest first
    assert late not in seen

    # A page that ends exactly at the last product has no next page; the default limit is 20.
    res = await client.get("/api/products", params={"limit": "26"})
    body = await res.json()
    assert len(body["items"]) == 26 and body["next_cursor"] is None
    res = await client.get("/api/products")
    body = await res.json()
    assert len(body["items"]) == 20 and body["next_cursor"] is not None


async def test_pagination_with_filters(make, client):
    seller = await make.seller()
    other = await make.seller()
    mine = []
    for n in range(7):
        mine.append((await make.product(seller, title=f"Lamp {n}"))["id"])
        await make.product(other, title=f"Lamp other {n}")
    seen, cursor = [], None
    for _ in range(4):
        params = {"limit": "3", "seller": seller.seller["id"], "q": "lamp", **({"cursor": cursor} if cursor else {})}
        body = await (await client.get("/api/products", params=params)).json()
        seen += [p["id"] for p in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert cursor is None
    assert seen == mine[::-1]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "bm90IGpzb24",  # "not json"
        _b64(b"null"),
        _b64(b'{"a": 1, "b": 2}'),
        _b64(b'["2024-01-01T00:00:00+00:00"]'),
        _b64(b'["yesterday", "0b7a1b6e-6f6c-4b52-9d5a-6a4f7d7f0c11"]'),
        _b64(b'["2024-01-01T00:00:00+00:00", "not-a-uuid"]'),
        _b64(b'["2024-01-01T00:00:00+00:00", 7]'),
        _b64(b'["2024-01-01T00:00:00+00:00", {"a": 1}]'),
        _b64(b'["9999-12-31T23:59:59-14:00", "0b7a1b6e-6f6c-4b52-9d5a-6a4f7d7f0c11"]'),
        _b64(b'["0001-01-01T00:00:00+14:00", "0b7a1b6e-6f6c-4b52-9d5a-6a4f7d7f0c11"]'),
        "x" * 501,
    ],
)
async def test_invalid_cursor_is_422(make, client, cursor):
    seller = await make.seller()
    await make.product(seller)
    res = await client.get("/api/products", params={"cursor": cursor})
    await error_of(res, 422, "validation_error")


@pytest.mark.parametrize("limit", ["0", "-1", "101", "1000", "ten", ""])
async def test_invalid_limit_is_422(client, limit):
    res = await client.get("/api/products", params={"limit": limit})
    await error_of(res, 422, "validation_error")


# --- editing ----------------------------------------------------------------------------------------


async def test_patch_product_fields(make, client, db):
    admin = await make.admin()
    toys = await category(client, admin, "toys")
    seller = await make.seller()
    product = await make.product(seller, title="Wooden Horse", description="Hand carved", attributes={"age": "3+"})
    pid = product["id"]

    changes = {
        "title": "Rocking Horse",
        "description": "Painted oak",
        "category_id": toys["id"],
        "attributes": {"age": "5+", "material": "oak"},
    }
    res = await client.patch(f"/api/products/{pid}", json=changes, headers=seller.headers)
    assert res.status == 200, await res.text()
    updated = (await res.json())["product"]
    for key, value in changes.items():
        assert updated[key] == value, key
    assert updated["variants"] == product["variants"]
    assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(product["updated_at"])
    assert updated["created_at"] == product["created_at"]
    assert await detail(client, pid) == updated
    # Search follows the new text; the old words no longer find it.
    assert await listing(client, q="rocking oak") == [pid]
    assert await listing(client, q="wooden") == []
    assert await listing(client, category=toys["id"]) == [pid]

    # Only what is sent changes; category can be cleared.
    res = await client.patch(f"/api/products/{pid}", json={"category_id": None}, headers=seller.headers)
    body = (await res.json())["product"]
    assert body["category_id"] is None and body["title"] == "Rocking Horse"

    for bad in (
        {"title": None},
        {"title": ""},
        {"attributes": None},
        {"status": "deleted"},
        {"price": 1},
        {"category_id": str(uuid.uuid4())},
    ):
        res = await client.patch(f"/api/products/{pid}", json=bad, headers=seller.headers)
        await error_of(res, 422, "validation_error")
    assert (await detail(client, pid))["title"] == "Rocking Horse"

    res = await client.patch(f"/api/products/{uuid.uuid4()}", json={"title": "x"}, headers=seller.headers)
    await error_of(res, 404, "not_found")


async def test_patch_variant(make, client, db):
    seller = await make.seller()
    product = await make.product(
        seller,
        variants=[
            {"sku": "MUG-S", "options": {"size": "S"}, "price_cents": 1200, "stock": 4},
            {"sku": "MUG-L", "options": {"size": "L"}, "price_cents": 1500, "stock": 2},
        ],
    )
    small = next(v for v in product["variants"] if v["sku"] == "MUG-S")
    res = await client.patch(f"/api/variants/{small['id']}", json={"price_cents": 999}, headers=seller.headers)
    assert res.status == 200, await res.text()
    variants = {v["sku"]: v for v in (await res.json())["product"]["variants"]}
    assert variants["MUG-S"]["price_cents"] == 999
    assert variants["MUG-S"]["available"] == 4  # price edits leave stock alone
    assert variants["MUG-L"]["price_cents"] == 1500
    assert await listing(client, max_price_cents=1000) == [product["id"]]

    res = await client.patch(
        f"/api/variants/{small['id']}",
        json={"sku": "MUG-SMALL", "options": {"size": "S", "colour": "white"}},
        headers=seller.headers,
    )
    assert res.status == 200, await res.text()
    renamed = next(v for v in (await res.json())["product"]["variants"] if v["id"] == small["id"])
    assert renamed == {**small, "sku": "MUG-SMALL", "options": {"size": "S", "colour": "white"}, "price_cents": 999}

    # Stock is not a field of a variant edit; it moves only through the audited stock endpoint.
    for bad in ({"stock": 100}, {"available": 100}, {"price_cents": -5}, {"price_cents": None}, {"sku": ""}):
        res = await client.patch(f"/api/variants/{small['id']}", json=bad, headers=seller.headers)
        await error_of(res, 422, "validation_error")
    assert await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(small["id"])) == 4

    await error_of(
        await client.patch(f"/api/variants/{uuid.uuid4()}", json={"price_cents": 1}, headers=seller.headers),
        404,
        "not_found",
    )
    await error_of(
        await client.patch("/api/variants/nope", json={"price_cents": 1}, headers=seller.headers), 404, "not_found"
    )


async def test_add_variants(make, client, db):
    seller = await make.seller()
    product = await make.product(seller, variants=[{"sku": "TEE-M", "price_cents": 2000, "stock": 3}])
    res = await client.post(
        f"/api/products/{product['id']}/variants",
        headers=seller.headers,
        json={
            "variants": [
                {"sku": "TEE-L", "options": {"size": "L"}, "price_cents": 2100, "stock": 6},
                {"sku": "TEE-CODE", "price_cents": 1000, "digital": True},
            ]
        },
    )
    assert res.status == 201, await res.text()
    body = (await res.json())["product"]
    by_sku = {v["sku"]: v for v in body["variants"]}
    assert set(by_sku) == {"TEE-M", "TEE-L", "TEE-CODE"}
    assert (by_sku["TEE-L"]["available"], by_sku["TEE-L"]["options"], by_sku["TEE-L"]["price_cents"]) == (
        6,
        {"size": "L"},
        2100,
    )
    assert by_sku["TEE-CODE"]["digital"] is True and by_sku["TEE-CODE"]["available"] == 0
    assert await detail(client, product["id"]) == body
    # The new variant's starting stock is audited like a new product's.
    assert await db.fetchval(
        "SELECT array_agg(delta) FROM stock_movements WHERE variant_id = $1", uuid.UUID(by_sku["TEE-L"]["id"])
    ) == [6]
    assert set(await listing(client, min_price_cents=2100)) == {product["id"]}

    res = await client.post(f"/api/products/{product['id']}/variants", headers=seller.headers, json={"variants": []})
    await error_of(res, 422, "validation_error")
    res = await client.post(
        f"/api/products/{uuid.uuid4()}/variants",
        headers=seller.headers,
        json={"variants": [{"sku": "ORPHAN", "price_cents": 1}]},
    )
    await error_of(res, 404, "not_found")
    assert await db.fetchval("SELECT count(*) FROM variants") == 3


async def test_listing_json_is_the_models_own_form(make, client, db):
    """Listings go out as PostgreSQL builds them (no pydantic round trip on the hot path), so that JSON
    must be exactly what the response model would write: same fields, times as RFC 3339 UTC with `Z`."""
    seller = await make.seller()
    whole = await make.product(seller)
    fraction = await make.product(seller)
    await db.execute("UPDATE products SET created_at = '2026-01-02 03:04:05+00' WHERE id = $1", whole["id"])
    await db.execute("UPDATE products SET updated_at = '2026-01-02 03:04:05.5+00' WHERE id = $1", fraction["id"])
    body = await (await client.get("/api/products")).json()
    assert Page[ProductOut].model_validate(body).model_dump(mode="json") == body
    by_id = {p["id"]: p for p in body["items"]}
    assert by_id[whole["id"]]["created_at"] == "2026-01-02T03:04:05Z"
    assert by_id[fraction["id"]]["updated_at"] == "2026-01-02T03:04:05.500000Z"
    product = await detail(client, fraction["id"])
    assert ProductOut.model_validate(product).model_dump(mode="json") == product


async def test_listing_cache_serves_a_page_until_this_node_writes(aiohttp_client, settings, make, db):
    """With the cache on, a listing page is served from memory: a change made behind the node's back
    (another node, SQL) shows only after the cache's lifetime, while the node's own catalog write shows
    at once."""
    cached = await aiohttp_client(create_app(settings.model_copy(update={"catalog_cache_ms": 60_000})))
    seller = await make.seller()
    product = await make.product(seller, title="Old title")

    async def titles() -> list[str]:
        res = await cached.get("/api/products")
        assert res.status == 200
        return [p["title"] for p in (await res.json())["items"]]

    assert await titles() == ["Old title"]
    await db.execute("UPDATE products SET title = 'Changed elsewhere' WHERE id = $1", product["id"])
    assert await titles() == ["Old title"]
    res = await cached.patch(f"/api/products/{product['id']}", json={"title": "New title"}, headers=seller.headers)
    assert res.status == 200, await res.text()
    assert await titles() == ["New title"]
    # Every route declared `changes_listings` drops the pages, an admin's as well as the seller's.
    admin = await make.admin()
    res = await cached.post(f"/api/admin/sellers/{seller.seller['id']}/suspend", headers=admin.headers)
    assert res.status == 200, await res.text()
    assert await titles() == []


async def test_listing_cache_shares_one_load_and_does_not_keep_failures():
    cache = ListingCache(ttl_s=60)
    loads = 0

    async def load() -> bytes:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return b"page"

    assert await asyncio.gather(*(cache.get("k", load) for _ in range(10))) == [b"page"] * 10
    assert loads == 1

    async def fail() -> bytes:
        raise ConnectionError("database away")

    with pytest.raises(ConnectionError):
        await cache.get("other", fail)
    assert await cache.get("other", load) == b"page"
    assert loads == 2
