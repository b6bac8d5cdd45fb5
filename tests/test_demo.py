"""`--demo` seeds what CONTRACT.md promises, and seeding twice changes nothing."""

from livehub import demo
from livehub.auth import PasswordHasher
from storage.db import create_pool

COUNTS = """SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM sellers) AS sellers,
                   (SELECT count(*) FROM products) AS products, (SELECT count(*) FROM variants) AS variants,
                   (SELECT sum(stock) FROM variants) AS stock, (SELECT count(*) FROM digital_units) AS units,
                   (SELECT count(*) FROM stock_movements) AS movements,
                   (SELECT count(*) FROM categories) AS categories,
                   (SELECT sum(balance_cents) FROM accounts WHERE kind = 'wallet') AS wallets"""


async def test_seed_is_complete_and_idempotent(settings, db, client):
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        hasher = PasswordHasher(settings)
        await demo.seed(pool, hasher)
        first = dict(await db.fetchrow(COUNTS))
        await demo.seed(pool, hasher)
        assert dict(await db.fetchrow(COUNTS)) == first
    finally:
        await pool.close()

    assert first["users"] == 22 and first["sellers"] == 1 and first["units"] == 50
    assert first["wallets"] == 20 * demo.VIEWER_WALLET_CENTS
    assert first["products"] == len(demo.PRODUCTS)

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
