"""Sellers' shipping profiles: a flat rate per order, an optional free-shipping threshold, the countries
shipped to.

What an order is charged is decided in storage/functions/shipping.sql (`shipping_for`), which checkout,
in-stream buys and the cart's quote all call, so a quote is what the checkout charges.
"""

from uuid import UUID

from storage.db import DB

# What a seller who never set a profile has: free shipping everywhere.
DEFAULT = {"flat_rate_cents": 0, "free_over_cents": None, "countries": []}


async def profile(db: DB, seller_id: UUID) -> dict:
    row = await db.fetchrow(
        "SELECT flat_rate_cents, free_over_cents, countries FROM shipping_profiles WHERE seller_id = $1", seller_id
    )
    return dict(row) if row is not None else dict(DEFAULT)


async def set_profile(
    db: DB, seller_id: UUID, flat_rate_cents: int, free_over_cents: int | None, countries: list[str]
) -> dict:
    """Replaces the seller's profile; `countries` empty means everywhere. Orders already placed keep the
    shipping they were charged."""
    row = await db.fetchrow(
        """INSERT INTO shipping_profiles (seller_id, flat_rate_cents, free_over_cents, countries)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (seller_id) DO UPDATE
              SET flat_rate_cents = EXCLUDED.flat_rate_cents, free_over_cents = EXCLUDED.free_over_cents,
                  countries = EXCLUDED.countries, updated_at = now()
           RETURNING flat_rate_cents, free_over_cents, countries""",
        seller_id,
        flat_rate_cents,
        free_over_cents,
        sorted(set(countries)),
    )
    return dict(row)
