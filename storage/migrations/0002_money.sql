-- Money and orders: a double-entry ledger, streams' prices, orders, earnings and payouts.

-- Every movement of money is one ledger transaction whose entries sum to zero. Money enters through the
-- 'external' account (top-ups) and leaves through it (payouts), so the sum of all balances is always 0
-- and "money in = money out + balances" is the same statement seen from outside.
CREATE TABLE accounts (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind           text NOT NULL CHECK (kind IN (
                       'wallet',              -- a buyer's spendable money
                       'earnings_pending',    -- a seller's or host's earnings on orders not yet delivered
                       'earnings_available',  -- earnings that can be paid out
                       'payouts',             -- payouts requested, waiting for an admin
                       'platform',            -- fees the platform keeps
                       'external')),          -- the outside world: payment provider in and out
    user_id        uuid REFERENCES users,
    -- Kept for user accounts, each row locked by the transactions that move it. System accounts keep
    -- none (NULL): every purchase on the platform would otherwise queue on one row. Their balance is
    -- the sum of their entries.
    balance_cents  bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind IN ('platform', 'external')) = (user_id IS NULL)),
    CHECK ((user_id IS NULL) = (balance_cents IS NULL)),
    -- A wallet never goes below zero; the database enforces it whatever the application does.
    CHECK (kind NOT IN ('wallet', 'payouts') OR balance_cents >= 0)
);
CREATE UNIQUE INDEX accounts_user_kind_key ON accounts (user_id, kind) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX accounts_system_key ON accounts (kind) WHERE user_id IS NULL;

CREATE SEQUENCE ledger_txn_seq;

CREATE TABLE ledger_entries (
    id                    bigserial PRIMARY KEY,
    txn_id                bigint NOT NULL,
    account_id            uuid NOT NULL REFERENCES accounts,
    type                  text NOT NULL CHECK (type IN (
                              'deposit', 'purchase', 'refund', 'earning', 'fee', 'release', 'payout', 'adjustment')),
    amount_cents          bigint NOT NULL CHECK (amount_cents <> 0),
    balance_before_cents  bigint,
    balance_after_cents   bigint,
    order_id              uuid,
    payout_id             uuid,
    actor_id              uuid REFERENCES users,
    memo                  text,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_account_idx ON ledger_entries (account_id, id);
CREATE INDEX ledger_entries_txn_idx ON ledger_entries (txn_id);
CREATE INDEX ledger_entries_order_idx ON ledger_entries (order_id) WHERE order_id IS NOT NULL;

CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are immutable; post a correcting entry instead' USING ERRCODE = 'LH409';
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

-- Streams as far as money needs them: who hosts (commission) and the prices they set. The live rooms
-- add the rest.
CREATE TABLE streams (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seller_id            uuid NOT NULL REFERENCES sellers,
    host_id              uuid NOT NULL REFERENCES users,
    title                text NOT NULL,
    status               text NOT NULL DEFAULT 'scheduled' CHECK (status IN ('scheduled', 'live', 'ended')),
    host_commission_bps  integer NOT NULL DEFAULT 0 CHECK (host_commission_bps BETWEEN 0 AND 10000),
    scheduled_at         timestamptz,
    started_at           timestamptz,
    ended_at             timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stream_products (
    stream_id         uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    product_id        uuid NOT NULL REFERENCES products,
    live_price_cents  bigint CHECK (live_price_cents >= 0),
    per_buyer_limit   integer CHECK (per_buyer_limit > 0),
    position          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, product_id)
);

CREATE TABLE flash_sales (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id        uuid NOT NULL REFERENCES streams,
    variant_id       uuid NOT NULL REFERENCES variants,
    price_cents      bigint NOT NULL CHECK (price_cents >= 0),
    quantity         integer NOT NULL CHECK (quantity > 0),
    sold             integer NOT NULL DEFAULT 0 CHECK (sold BETWEEN 0 AND quantity),
    per_buyer_limit  integer CHECK (per_buyer_limit > 0),
    starts_at        timestamptz NOT NULL DEFAULT now(),
    ends_at          timestamptz NOT NULL,
    ended_at         timestamptz
);
CREATE INDEX flash_sales_active_idx ON flash_sales (stream_id, variant_id) WHERE ended_at IS NULL;

CREATE SEQUENCE order_number_seq START 100001;

CREATE TABLE orders (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    number                 text NOT NULL UNIQUE,
    -- Orders placed together (one checkout split per seller) share this.
    checkout_id            uuid NOT NULL,
    buyer_id               uuid NOT NULL REFERENCES users,
    seller_id              uuid NOT NULL REFERENCES sellers,
    stream_id              uuid REFERENCES streams,
    status                 text NOT NULL CHECK (status IN (
                               'paid', 'shipped', 'delivered', 'cancelled', 'refunded', 'partially_refunded')),
    total_cents            bigint NOT NULL CHECK (total_cents >= 0),
    refunded_cents         bigint NOT NULL DEFAULT 0,
    fee_cents              bigint NOT NULL CHECK (fee_cents >= 0),
    host_id                uuid REFERENCES users,
    host_commission_cents  bigint NOT NULL DEFAULT 0 CHECK (host_commission_cents >= 0),
    address                jsonb,
    -- The in-stream client's request id: a repeated buy is answered 'duplicate', never charged twice.
    request_id             text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    shipped_at             timestamptz,
    delivered_at           timestamptz,
    CHECK (refunded_cents BETWEEN 0 AND total_cents),
    UNIQUE (buyer_id, request_id)
);
CREATE INDEX orders_buyer_idx ON orders (buyer_id, created_at DESC, id DESC);
CREATE INDEX orders_seller_idx ON orders (seller_id, created_at DESC, id DESC);
CREATE INDEX orders_stream_idx ON orders (stream_id, buyer_id) WHERE stream_id IS NOT NULL;

-- Item snapshots: what was bought at what price, whatever the catalog says later.
CREATE TABLE order_items (
    order_id          uuid NOT NULL REFERENCES orders,
    variant_id        uuid NOT NULL REFERENCES variants,
    product_id        uuid NOT NULL REFERENCES products,
    title             text NOT NULL,
    sku               text NOT NULL,
    options           jsonb NOT NULL,
    unit_price_cents  bigint NOT NULL CHECK (unit_price_cents >= 0),
    quantity          integer NOT NULL CHECK (quantity > 0),
    -- Set when bought at a flash-sale price: per-buyer limits count these.
    flash_sale_id     uuid REFERENCES flash_sales,
    PRIMARY KEY (order_id, variant_id)
);
CREATE INDEX order_items_flash_idx ON order_items (flash_sale_id) WHERE flash_sale_id IS NOT NULL;

CREATE TABLE order_events (
    id            bigserial PRIMARY KEY,
    order_id      uuid NOT NULL REFERENCES orders,
    from_status   text,
    to_status     text NOT NULL,
    actor_id      uuid REFERENCES users,
    reason        text,
    amount_cents  bigint,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_order_idx ON order_events (order_id, id);

ALTER TABLE digital_units ADD COLUMN order_id uuid REFERENCES orders;
CREATE INDEX digital_units_order_idx ON digital_units (order_id) WHERE order_id IS NOT NULL;

-- What each sale earns whom: the seller, and a stream's host when it is someone else.
CREATE TABLE earnings (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id         uuid NOT NULL REFERENCES orders,
    user_id          uuid NOT NULL REFERENCES users,
    role             text NOT NULL CHECK (role IN ('seller', 'host')),
    amount_cents     bigint NOT NULL CHECK (amount_cents >= 0),
    reversed_cents   bigint NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'available')),
    available_after  timestamptz NOT NULL,
    released_at      timestamptz,
    CHECK (reversed_cents BETWEEN 0 AND amount_cents),
    UNIQUE (order_id, role)
);
CREATE INDEX earnings_pending_idx ON earnings (available_after) WHERE status = 'pending';
CREATE INDEX earnings_user_idx ON earnings (user_id, order_id);

CREATE TABLE payouts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id             uuid NOT NULL REFERENCES users,
    amount_cents        bigint NOT NULL CHECK (amount_cents > 0),
    status              text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'paid', 'rejected')),
    provider_reference  text,
    reason              text,
    requested_at        timestamptz NOT NULL DEFAULT now(),
    decided_at          timestamptz,
    decided_by          uuid REFERENCES users
);
CREATE INDEX payouts_user_idx ON payouts (user_id, requested_at DESC);
CREATE INDEX payouts_requested_idx ON payouts (requested_at) WHERE status = 'requested';

CREATE TABLE cart_items (
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    variant_id  uuid NOT NULL REFERENCES variants,
    quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, variant_id)
);
