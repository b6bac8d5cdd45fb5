"""`--demo` seeds what the README's "Run it" promises, and seeding twice changes nothing."""

from uuid import UUID

from livehub import demo
from livehub.auth import PasswordHasher
from livehub.shop import streams
from storage.db import create_pool

COUNTS = """SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM sellers) AS sellers,
                   (SELECT count(*) FROM products) AS products, (SELECT count(*) FROM variants) AS variants,
                   (SELECT sum(stock) FROM variants) AS stock, (SELECT count(*) FROM digital_units) AS units,
                   (SELECT count(*) FROM stock_movements) AS movements,
                   (SELECT count(*) FROM categories) AS categories,
                   (SELECT sum(balance_cents) FROM accounts WHERE kind = 'wallet') AS wallets,
                   (SELECT count(*) FROM streams) AS streams, (SELECT count(*) FROM stream_products) AS featured,
                   (SELECT count(*) FROM streams WHERE status = 'live') AS live"""


async def test_seed_is_complete_and_idempotent(settings, db, client):
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        hasher = PasswordHasher(settings)
        await demo.seed(pool, hasher)
        first = dict(await db.fetchrow(COUNTS))
        await demo.seed(pool, hasher)
        assert dict(await db.fetchrow(COUNTS)) == first
        stream_id = await db.fetchval("SELECT id FROM streams")
        assert await db.fetchval("SELECT count(*) FROM streams WHERE id = $1 AND started_at IS NOT NULL", stream_id)

        # Once the show is over, the next seed puts a new one on.
        await streams.end_stream(db, stream_id, await db.fetchval("SELECT host_id FROM streams"))
        await demo.seed(pool, hasher)
        again = dict(await db.fetchrow(COUNTS))
        assert (again["streams"], again["live"]) == (2, 1)
        assert again["featured"] == 2 * len(demo.PRODUCTS)
    finally:
        await pool.close()

    assert first["users"] == 22 and first["sellers"] == 1 and first["units"] == 50
    # The past orders are paid out of their buyers' wallets: the rest stays there.
    assert first["wallets"] == 20 * demo.VIEWER_WALLET_CENTS - await db.fetchval("SELECT sum(total_cents) FROM orders")
    assert first["products"] == len(demo.PRODUCTS)
    assert (first["streams"], first["live"], first["featured"]) == (1, 1, len(demo.PRODUCTS))

    # The live stream as a viewer finds it: every demo product, some below their list price, sneakers pinned.
    page = await (await client.get("/api/streams?status=live")).json()
    (stream,) = page["items"]
    assert stream["title"] == demo.STREAM_TITLE and stream["status"] == "live"
    assert stream["seller"]["shop_name"] == "Demo Boutique"
    assert UUID(stream["id"]) != stream_id
    products = {p["title"]: p for p in stream["products"]}
    assert set(products) == {p["title"] for p in demo.PRODUCTS}
    assert stream["pinned_product_id"] == products[demo.PINNED]["id"]
    list_prices = {p["title"]: p["variants"][0]["price_cents"] for p in demo.PRODUCTS}
    cheaper = [t for t, p in products.items() if p["variants"][0]["price_cents"] < list_prices[t]]
    assert demo.PINNED in cheaper and 1 <= len(cheaper) < len(products)

    for email, roles in [(demo.ADMIN, {"admin"}), (demo.SELLER, {"seller"}), ("viewer20@demo.livehub", {"viewer"})]:
        res = await client.post("/api/auth/login", json={"email": email, "password": demo.PASSWORD})
        assert res.status == 200, await res.text()
        assert roles <= set((await res.json())["user"]["roles"])
    token = (await res.json())["token"]
    res = await client.get("/api/wallet", headers={"Authorization": f"Bearer {token}"})
    assert (await res.json())["balance_cents"] == demo.VIEWER_WALLET_CENTS

    page = await (await client.get("/api/products?limit=100")).json()
    gift = next(p for p in page["items"] if p["variants"][0]["digital"])
    assert gift["variants"][0]["available"] == 50


async def test_demo_seller_can_ask_for_a_payout_and_viewers_can_buy_goods_that_ship(settings, db, client, make):
    """The past demo orders are delivered with their earnings available, so the seller's payout works at
    once; every viewer has a default address and the shop a shipping profile, so an in-stream buy of
    sneakers goes through without a form."""
    from tests.conftest import Account

    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        await demo.seed(pool, PasswordHasher(settings))
    finally:
        await pool.close()

    orders = await db.fetch("SELECT status, delivered_at, shipping_cents, address FROM orders")
    assert len(orders) == len(demo.PAST_ORDERS)
    assert all(o["status"] == "delivered" and o["delivered_at"] is not None for o in orders)
    assert all(o["address"] is not None for o in orders)
    assert await db.fetchval("SELECT count(*) FROM earnings WHERE status = 'pending'") == 0

    async def sign_in(email):
        res = await client.post("/api/auth/login", json={"email": email, "password": demo.PASSWORD})
        assert res.status == 200, await res.text()
        body = await res.json()
        return Account(user=body["user"], token=body["token"], password=demo.PASSWORD)

    seller = await make.two_factor(await sign_in(demo.SELLER))
    await make.payout_destination(seller)  # the seller page asks for the bank account first
    earnings = await (await client.get("/api/seller/earnings", headers=seller.headers)).json()
    assert earnings["available_cents"] > 0 and earnings["pending_cents"] == 0
    res = await client.post(
        "/api/seller/payouts", json={"amount_cents": earnings["available_cents"]}, headers=seller.headers
    )
    assert res.status == 201, await res.text()

    res = await client.get("/api/seller/shipping", headers=seller.headers)
    assert await res.json() == {**demo.SHIPPING}

    viewer = await sign_in("viewer7@demo.livehub")
    (address,) = (await (await client.get("/api/me/addresses", headers=viewer.headers)).json())["items"]
    assert address["is_default"] and address["name"] == "Viewer 7"
    page = await (await client.get("/api/streams?status=live")).json()
    stream = page["items"][0]
    sneakers = next(p for p in stream["products"] if p["title"] == demo.PINNED)
    res = await client.post(
        "/api/orders",
        json={"items": [{"variant_id": sneakers["variants"][0]["id"], "quantity": 1}], "stream_id": stream["id"]},
        headers=viewer.headers,
    )
    assert res.status == 201, await res.text()
    (order,) = (await res.json())["orders"]
    assert order["address"]["city"] == address["city"]


def test_sign_in_help_claims_no_fixed_wallet_balance():
    """The past orders spent some viewers' money: the help names no balance, and says where the payout is."""
    text = demo.sign_in_help("http://127.0.0.1:8080")
    assert f"{demo.VIEWER_WALLET_CENTS // 100:,}" not in text and "1,000.00" not in text
    assert "http://127.0.0.1:8080/seller#earnings" in text and "default address" in text
