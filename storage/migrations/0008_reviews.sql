-- Returns, reviews, and sessions their owner can see and end. Rules live in functions/returns.sql and
-- functions/reviews.sql.

-- A session's token hash is its key and never leaves the server: the owner lists and ends sessions by this
-- public id instead. The device it was opened on, and when it was last used (at a minute's grain).
ALTER TABLE sessions
    ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN user_agent text,
    ADD COLUMN address text,
    ADD COLUMN last_seen_at timestamptz;
CREATE UNIQUE INDEX sessions_id_key ON sessions (id);

-- A buyer's request to send back some (or all) of a delivered order, and the seller's decision.
CREATE TABLE order_returns (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id         uuid NOT NULL REFERENCES orders,
    status           text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'approved', 'rejected')),
    reason           text NOT NULL,
    -- What the return gives back: the items' share, or everything left of the order when this return
    -- completes it. Estimated at the request, what was refunded once approved.
    refund_cents     bigint NOT NULL CHECK (refund_cents >= 0),
    decision_reason  text,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    decided_at       timestamptz,
    decided_by       uuid REFERENCES users,
    CHECK ((status = 'requested') = (decided_at IS NULL))
);
-- One open return per order; decided ones stay as the order's history.
CREATE UNIQUE INDEX order_returns_one_open ON order_returns (order_id) WHERE status = 'requested';
CREATE INDEX order_returns_order_idx ON order_returns (order_id, requested_at DESC);

CREATE TABLE order_return_items (
    return_id   uuid NOT NULL REFERENCES order_returns,
    -- With order_id, one of the order's items (order_items' key).
    order_id    uuid NOT NULL,
    variant_id  uuid NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (return_id, variant_id),
    FOREIGN KEY (order_id, variant_id) REFERENCES order_items (order_id, variant_id)
);
CREATE INDEX order_return_items_item_idx ON order_return_items (order_id, variant_id);

-- A buyer's review of a product they received: one per product and order.
CREATE TABLE reviews (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id     uuid NOT NULL REFERENCES products,
    order_id       uuid NOT NULL REFERENCES orders,
    author_id      uuid NOT NULL REFERENCES users,
    rating         smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    text           text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- The seller's one public answer.
    reply          text,
    replied_at     timestamptz,
    replied_by     uuid REFERENCES users,
    -- Hidden by an admin: out of listings and of the product's rating, kept for the record.
    hidden_at      timestamptz,
    hidden_by      uuid REFERENCES users,
    hidden_reason  text,
    UNIQUE (order_id, product_id),
    CHECK ((reply IS NULL) = (replied_at IS NULL)),
    CHECK ((hidden_at IS NULL) = (hidden_by IS NULL))
);
-- A product's listed reviews, newest first, and its rating.
CREATE INDEX reviews_product_idx ON reviews (product_id, created_at DESC, id DESC) INCLUDE (rating)
    WHERE hidden_at IS NULL;
