-- Shipping: buyers' saved addresses, sellers' shipping profiles, and what an order ships: its shipping
-- charge, the address it goes to as it was when the buyer paid, and the carrier's tracking.

CREATE TABLE addresses (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    name         text NOT NULL,
    line1        text NOT NULL,
    line2        text,
    city         text NOT NULL,
    region       text,
    postal_code  text,
    -- ISO 3166-1 alpha-2; the API checks the code is assigned, this only its form.
    country      text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    phone        text,
    is_default   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- At most one default per user; the application keeps exactly one while the user has any address.
CREATE UNIQUE INDEX addresses_default_key ON addresses (user_id) WHERE is_default;
CREATE INDEX addresses_user_idx ON addresses (user_id, created_at);

-- A seller without a row ships free to every country (what every shop did before shipping existed).
CREATE TABLE shipping_profiles (
    seller_id        uuid PRIMARY KEY REFERENCES sellers ON DELETE CASCADE,
    flat_rate_cents  bigint NOT NULL CHECK (flat_rate_cents >= 0),
    -- An order whose items come to at least this ships free; NULL: never.
    free_over_cents  bigint CHECK (free_over_cents >= 0),
    -- Where the seller ships; empty: everywhere.
    countries        text[] NOT NULL DEFAULT '{}',
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- total_cents is what the buyer paid: the items plus shipping_cents. tracking is {carrier,
-- tracking_number, tracking_url}, set when the order ships. address (since 0002) is a copy, never a
-- reference: editing or deleting a saved address changes no order.
ALTER TABLE orders
    ADD COLUMN shipping_cents bigint NOT NULL DEFAULT 0 CHECK (shipping_cents >= 0),
    ADD COLUMN tracking jsonb,
    ADD CONSTRAINT orders_shipping_within_total CHECK (shipping_cents <= total_cents);
