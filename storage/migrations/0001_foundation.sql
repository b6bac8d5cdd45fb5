-- Accounts, sellers, catalog and stock. Forward-only: never edit after it has shipped; add 0002_…

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL,
    phone         text,
    display_name  text NOT NULL,
    password_hash text NOT NULL,
    -- 'viewer' for every account, 'admin' when granted. 'seller' is derived from an approved seller row.
    roles         text[] NOT NULL DEFAULT '{viewer}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (email = lower(email) AND email <> ''),
    CHECK (roles <@ '{viewer,admin}')
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE UNIQUE INDEX users_phone_key ON users (phone) WHERE phone IS NOT NULL;

-- Only a hash of each token is stored: a leaked table does not leak sessions.
CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE login_failures (
    id         bigserial PRIMARY KEY,
    account    text NOT NULL,
    address    text NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_account_idx ON login_failures (account, failed_at);
CREATE INDEX login_failures_address_idx ON login_failures (address, failed_at);

CREATE TABLE sellers (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL UNIQUE REFERENCES users ON DELETE RESTRICT,
    shop_name    text NOT NULL,
    description  text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'suspended')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    approved_at  timestamptz,
    approved_by  uuid REFERENCES users
);

CREATE TABLE follows (
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    seller_id   uuid NOT NULL REFERENCES sellers ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seller_id)
);
CREATE INDEX follows_seller_idx ON follows (seller_id);

CREATE TABLE categories (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    parent_id  uuid REFERENCES categories ON DELETE RESTRICT,
    slug       text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    name       text NOT NULL,
    position   integer NOT NULL DEFAULT 0
);

CREATE TABLE products (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seller_id    uuid NOT NULL REFERENCES sellers,
    category_id  uuid REFERENCES categories,
    title        text NOT NULL,
    description  text NOT NULL DEFAULT '',
    attributes   jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    search       tsvector GENERATED ALWAYS AS (to_tsvector('simple', title || ' ' || description)) STORED
);
CREATE INDEX products_listing_idx ON products (created_at DESC, id DESC) WHERE status = 'active';
CREATE INDEX products_seller_idx ON products (seller_id);
CREATE INDEX products_category_idx ON products (category_id);
CREATE INDEX products_search_idx ON products USING gin (search);

CREATE TABLE variants (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id   uuid NOT NULL REFERENCES products,
    sku          text NOT NULL UNIQUE,
    options      jsonb NOT NULL DEFAULT '{}',
    price_cents  bigint NOT NULL CHECK (price_cents >= 0),
    -- The database, not the application, is what guarantees no oversell.
    stock        integer NOT NULL DEFAULT 0 CHECK (stock >= 0),
    -- Digital variants sell codes: their stock is the count of available units and moves only with them.
    digital      boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX variants_product_idx ON variants (product_id);

CREATE TABLE digital_units (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    variant_id   uuid NOT NULL REFERENCES variants,
    code         text NOT NULL,
    status       text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'reserved', 'sold')),
    imported_at  timestamptz NOT NULL DEFAULT now(),
    imported_by  uuid REFERENCES users,
    UNIQUE (variant_id, code)
);
CREATE INDEX digital_units_available_idx ON digital_units (variant_id) WHERE status = 'available';

-- Every change of a variant's stock, by whom and why: the audit trail stock is reconciled against.
CREATE TABLE stock_movements (
    id           bigserial PRIMARY KEY,
    variant_id   uuid NOT NULL REFERENCES variants,
    delta        integer NOT NULL,
    stock_after  integer NOT NULL,
    reason       text NOT NULL,
    actor_id     uuid REFERENCES users,
    reference    text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_movements_variant_idx ON stock_movements (variant_id, id);

-- Writes that move money or stock accept an Idempotency-Key; the first response is kept for replays.
CREATE TABLE idempotency_keys (
    user_id       uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    status        integer,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
