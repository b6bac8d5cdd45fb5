"""Demo data for `python run.py --demo`: accounts, a shop with a shipping profile, categories, products,
funded viewer wallets with a default address each, a few past orders (delivered, their earnings available,
so the seller can ask for a payout at once) and the shop's live stream. Idempotent: running it again
changes nothing that is already there (stock, balances and passwords included); if the demo stream was
ended since, a new one goes live."""

from uuid import UUID

import asyncpg

from livehub.auth import PasswordHasher
from livehub.shop import streams

PASSWORD = "demo-password"
ADMIN = "admin@demo.livehub"
SELLER = "seller@demo.livehub"
VIEWERS = [f"viewer{i}@demo.livehub" for i in range(1, 21)]
VIEWER_WALLET_CENTS = 100_000  # what each viewer's wallet is topped up with once; demo orders spend some
# The shop's shipping: a flat rate, free from a threshold on, to every country (empty: everywhere).
SHIPPING = {"flat_rate_cents": 499, "free_over_cents": 7500, "countries": []}
CITIES = [("Lisbon", "PT", "1100-148"), ("Berlin", "DE", "10115"), ("Paris", "FR", "75003"), ("Madrid", "ES", "28004")]
# Orders already delivered, so the demo seller has earnings available: (viewer number, variant SKU, quantity).
# Their tracking numbers start with DEMO- and mark them as the demo's own.
PAST_ORDERS = [(1, "DEMO-HRB-M-NAVY", 1), (2, "DEMO-AUR-RUN-42", 1), (3, "DEMO-GLOW-30", 2)]
STREAM_TITLE = "Friday night drop"
PINNED = "Aurora Runner sneakers"

CATEGORIES = [
    # slug, name, parent slug
    ("fashion", "Fashion", None),
    ("sneakers", "Sneakers", "fashion"),
    ("jackets", "Jackets", "fashion"),
    ("beauty", "Beauty", None),
    ("electronics", "Electronics", None),
    ("audio", "Audio", "electronics"),
    ("gift-cards", "Gift cards", None),
]

PRODUCTS = [
    {
        "title": "Aurora Runner sneakers",
        "description": "Lightweight knit runners with a recycled sole. The drop everyone asks about.",
        "category": "sneakers",
        "attributes": {"brand": "Aurora", "material": "recycled knit"},
        "live_price_cents": 7900,
        "variants": [
            {"sku": "DEMO-AUR-RUN-40", "options": {"size": "40"}, "price_cents": 8900, "stock": 120},
            {"sku": "DEMO-AUR-RUN-42", "options": {"size": "42"}, "price_cents": 8900, "stock": 150},
            {"sku": "DEMO-AUR-RUN-44", "options": {"size": "44"}, "price_cents": 8900, "stock": 80},
        ],
    },
    {
        "title": "Harbor rain jacket",
        "description": "Packable waterproof shell with taped seams.",
        "category": "jackets",
        "attributes": {"brand": "Harbor", "waterproof": True},
        "variants": [
            {"sku": "DEMO-HRB-S-NAVY", "options": {"size": "S", "colour": "navy"}, "price_cents": 12900, "stock": 40},
            {"sku": "DEMO-HRB-M-NAVY", "options": {"size": "M", "colour": "navy"}, "price_cents": 12900, "stock": 60},
            {"sku": "DEMO-HRB-M-OCHRE", "options": {"size": "M", "colour": "ochre"}, "price_cents": 12900, "stock": 35},
        ],
    },
    {
        "title": "Glow serum 30 ml",
        "description": "Vitamin C serum, fragrance free.",
        "category": "beauty",
        "attributes": {"volume_ml": 30},
        "variants": [{"sku": "DEMO-GLOW-30", "options": {}, "price_cents": 2400, "stock": 500}],
    },
    {
        "title": "Pulse wireless earbuds",
        "description": "Noise-cancelling earbuds with a 30-hour case.",
        "category": "audio",
        "attributes": {"brand": "Pulse", "battery_hours": 30},
        "live_price_cents": 4900,
        "variants": [
            {"sku": "DEMO-PULSE-BLK", "options": {"colour": "black"}, "price_cents": 5900, "stock": 300},
            {"sku": "DEMO-PULSE-WHT", "options": {"colour": "white"}, "price_cents": 5900, "stock": 250},
        ],
    },
    {
        "title": "LiveHub gift card 25.00",
        "description": "A digital code delivered on the order.",
        "category": "gift-cards",
        "attributes": {"delivery": "digital"},
        "variants": [{"sku": "DEMO-GIFT-25", "options": {}, "price_cents": 2500, "stock": 0, "digital": True}],
        "codes": [f"DEMO-GIFT-{n:04d}" for n in range(1, 51)],
    },
]


async def _user(conn, hasher: PasswordHasher, email: str, name: str, roles: list[str]):
    user_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", email)
    if user_id is None:
        user_id = await conn.fetchval(
            # Verified: the demo's addresses receive no mail, and the demo seller needs it to sell.
            """INSERT INTO users (email, display_name, password_hash, roles, email_verified_at)
               VALUES ($1, $2, $3, $4, now()) RETURNING id""",
            email,
            name,
            await hasher.hash(PASSWORD),
            roles,
        )
    return user_id


async def _default_address(conn, user_id, n: int) -> None:
    """A default address for a viewer who has none, so buying goods that ship works at once."""
    if await conn.fetchval("SELECT 1 FROM addresses WHERE user_id = $1", user_id):
        return
    city, country, postal_code = CITIES[(n - 1) % len(CITIES)]
    await conn.execute(
        """INSERT INTO addresses (user_id, name, line1, city, postal_code, country, is_default)
           VALUES ($1, $2, $3, $4, $5, $6, true)""",
        user_id,
        f"Viewer {n}",
        f"{n} Demo Street",
        city,
        postal_code,
        country,
    )


async def seed(
    pool: asyncpg.Pool, hasher: PasswordHasher, *, fee_bps: int = 1000, hold_s: int = 14 * 24 * 3600
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        admin_id = await _user(conn, hasher, ADMIN, "Demo Admin", ["viewer", "admin"])
        seller_user = await _user(conn, hasher, SELLER, "Demo Seller", ["viewer"])
        for n, email in enumerate(VIEWERS, start=1):
            viewer_id = await _user(conn, hasher, email, f"Viewer {n}", ["viewer"])
            await _default_address(conn, viewer_id, n)
            funded = await conn.fetchval(
                """SELECT 1 FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
                    WHERE a.user_id = $1 AND a.kind = 'wallet' AND e.memo = 'demo wallet'""",
                viewer_id,
            )
            if not funded:
                await conn.execute("SELECT top_up($1, $2, 'demo wallet')", viewer_id, VIEWER_WALLET_CENTS)

        await conn.execute(
            """INSERT INTO sellers (user_id, shop_name, description, status, approved_at, approved_by)
               VALUES ($1, 'Demo Boutique', 'Sneakers, jackets, beauty and gadgets, live every evening.',
                       'approved', now(), $2)
               ON CONFLICT (user_id) DO NOTHING""",
            seller_user,
            admin_id,
        )
        await conn.execute(
            """INSERT INTO shipping_profiles (seller_id, flat_rate_cents, free_over_cents, countries)
               SELECT id, $2, $3, $4 FROM sellers WHERE user_id = $1
               ON CONFLICT (seller_id) DO NOTHING""",
            seller_user,
            SHIPPING["flat_rate_cents"],
            SHIPPING["free_over_cents"],
            SHIPPING["countries"],
        )
        category_ids = {}
        for slug, name, parent in CATEGORIES:
            category_ids[slug] = await conn.fetchval(
                """INSERT INTO categories (slug, name, parent_id) VALUES ($1, $2, $3)
                   ON CONFLICT (slug) DO UPDATE SET slug = EXCLUDED.slug RETURNING id""",
                slug,
                name,
                category_ids.get(parent),
            )
        for product in PRODUCTS:
            first_sku = product["variants"][0]["sku"]
            if await conn.fetchval("SELECT 1 FROM variants WHERE sku = $1", first_sku):
                continue
            product_id = await conn.fetchval(
                "SELECT create_product($1, $2, $3, $4, $5, $6)",
                seller_user,
                product["title"],
                product["description"],
                category_ids[product["category"]],
                product["attributes"],
                product["variants"],
            )
            if product.get("codes"):
                variant_id = await conn.fetchval("SELECT id FROM variants WHERE product_id = $1", product_id)
                await conn.execute("SELECT * FROM import_units($1, $2, $3)", variant_id, product["codes"], seller_user)
        await _past_orders(conn, seller_user, fee_bps, hold_s)
        await _support_ticket(conn, seller_user)
        await _live_stream(conn, seller_user)


async def _past_orders(conn, seller_user, fee_bps: int, hold_s: int) -> None:
    """Orders placed, shipped and confirmed delivered by their buyers: the buyer's confirmation releases
    the seller's earnings at once (MONEY.md), so the demo seller has earnings available for a payout."""
    if await conn.fetchval("SELECT 1 FROM orders WHERE tracking->>'tracking_number' LIKE 'DEMO-%'"):
        return
    for n, sku, quantity in PAST_ORDERS:
        buyer = await conn.fetchval("SELECT id FROM users WHERE email = $1", VIEWERS[n - 1])
        variant = await conn.fetchval("SELECT id FROM variants WHERE sku = $1", sku)
        if variant is None:
            continue
        (order_id,) = await conn.fetchval(
            "SELECT place_order($1, $2, NULL, NULL, $3, $4)",
            buyer,
            [{"variant_id": str(variant), "quantity": quantity}],
            fee_bps,
            hold_s,
        )
        tracking = {"carrier": "DemoPost", "tracking_number": f"DEMO-{n:04d}", "tracking_url": None}
        await conn.execute("SELECT ship_order($1, $2, false, $3)", order_id, seller_user, tracking)
        await conn.execute("SELECT deliver_order($1, $2, false)", order_id, buyer)


async def _support_ticket(conn, seller_user) -> None:
    """viewer1 asks the shop about their past order, and the shop has answered: a conversation on /support
    for both (storage/functions/tickets.sql). Once: seeding again finds it."""
    if await conn.fetchval("SELECT 1 FROM tickets"):
        return
    buyer = await conn.fetchval("SELECT id FROM users WHERE email = $1", VIEWERS[0])
    order_id = await conn.fetchval("SELECT id FROM orders WHERE buyer_id = $1 ORDER BY created_at, id LIMIT 1", buyer)
    if order_id is None:
        return
    ticket = await conn.fetchval(
        "SELECT open_ticket($1, false, $2, $3, $4)",
        buyer,
        "Does the jacket come in a longer fit?",
        "Love the Harbor jacket! Is there a tall version, or could I swap for a size up?",
        order_id,
    )
    await conn.execute(
        "SELECT reply_ticket($1, $2, false, $3)",
        ticket,
        seller_user,
        "No tall fit yet, sorry. A size up runs about 3 cm longer: start a return and order the L.",
    )


async def _live_stream(conn, seller_user) -> None:
    """The shop's one live stream featuring every demo product, the sneakers pinned; a new one when the
    last was ended."""
    seller_id = await conn.fetchval("SELECT id FROM sellers WHERE user_id = $1", seller_user)
    if await conn.fetchval("SELECT 1 FROM streams WHERE seller_id = $1 AND status = 'live'", seller_id):
        return
    # The demo products are the ones with the demo SKUs (still on sale), whatever else the shop lists.
    featured = {}
    for product in PRODUCTS:
        product_id = await conn.fetchval(
            """SELECT v.product_id FROM variants v JOIN products p ON p.id = v.product_id
                WHERE v.sku = $1 AND p.status = 'active'""",
            product["variants"][0]["sku"],
        )
        if product_id is not None:
            featured[product["title"]] = (product_id, product.get("live_price_cents"))
    stream = await streams.create_stream(
        conn,
        seller_user,
        title=STREAM_TITLE,
        scheduled_at=None,
        products=[
            {"product_id": product_id, "live_price_cents": live_price, "per_buyer_limit": None}
            for product_id, live_price in featured.values()
        ],
        moderators=[],
    )
    stream_id = UUID(stream["id"])
    await streams.start_stream(conn, stream_id, seller_user)
    if PINNED in featured:
        await streams.pin_product(conn, stream_id, seller_user, featured[PINNED][0])


async def demo_video(app):
    """Moving video in the demo stream without a camera: a generated test pattern with a clock, published
    the way a browser publishes (an aiortc peer connection's offer, answered by the media node)."""
    from livehub import keys
    from livehub.media.synthetic import keep_publishing
    from livehub.tasks import cancel

    node, pool = app.get(keys.MEDIA), app[keys.POOL]
    if node is None:
        yield
        return

    async def find_stream():
        return await pool.fetchval(
            """SELECT s.id FROM streams s JOIN sellers se ON se.id = s.seller_id JOIN users u ON u.id = se.user_id
                WHERE u.email = $1 AND s.status = 'live' ORDER BY s.started_at DESC LIMIT 1""",
            SELLER,
        )

    async def publish() -> None:
        await keep_publishing(node, find_stream, host_addresses=node.host_addresses)

    # The supervisor starts the publisher again if it fails.
    task = app[keys.TASKS].keep_running(publish, name="demo-video")
    yield
    await cancel(task)


def sign_in_help(base_url: str) -> str:
    return "\n".join(
        [
            f"LiveHub demo is running at {base_url}",
            f"  API docs:  {base_url}/api/docs",
            f"  admin:     {ADMIN} (turn on two-factor sign-in under Security first: {base_url}/security)",
            f"  seller:    {SELLER}",
            "  viewers:   viewer1@demo.livehub … viewer20@demo.livehub",
            "             each with demo money in the wallet and a default address; viewer1-3 have past orders",
            f"  support:   viewer1 and the seller have a ticket at {base_url}/support",
            f"  the seller has earnings from those orders available: a payout at {base_url}/seller#earnings",
            "             (with two-factor sign-in on, as for the admin)",
            f"  password (every demo account): {PASSWORD}",
        ]
    )
