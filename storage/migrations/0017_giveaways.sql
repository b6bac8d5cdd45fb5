-- Giveaways: the host gives a featured variant away to one of the viewers who entered, drawn verifiably.
-- The rules live in functions/giveaways.sql; the draw is documented in docs/PROTOCOL.md.

CREATE TABLE giveaways (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id     uuid NOT NULL REFERENCES streams,
    variant_id    uuid NOT NULL REFERENCES variants,
    eligibility   text NOT NULL CHECK (eligibility IN ('everyone', 'followers', 'buyers')),
    -- The secret made at the start; shown only as seed_hash (hex SHA-256) until the giveaway ends.
    seed          bytea NOT NULL CHECK (length(seed) = 32),
    seed_hash     text NOT NULL,
    started_by    uuid REFERENCES users,
    starts_at     timestamptz NOT NULL DEFAULT now(),
    ends_at       timestamptz NOT NULL,
    ended_at      timestamptz,
    ended_reason  text CHECK (ended_reason IN ('time', 'host', 'stream_ended')),
    winner_id     uuid REFERENCES users,
    -- The prize: a zero-price order for the winner, written in the transaction that ends the giveaway.
    order_id      uuid REFERENCES orders,
    -- 'ordered', 'no_entries' (no winner), 'unavailable' (a winner, but no unit or code left to give).
    prize_status  text CHECK (prize_status IN ('ordered', 'no_entries', 'unavailable')),
    CHECK ((ended_at IS NULL) = (prize_status IS NULL)),
    CHECK (order_id IS NULL OR winner_id IS NOT NULL)
);
-- One running giveaway per stream.
CREATE UNIQUE INDEX giveaways_one_running ON giveaways (stream_id) WHERE ended_at IS NULL;
CREATE INDEX giveaways_stream_idx ON giveaways (stream_id, starts_at DESC);
CREATE UNIQUE INDEX giveaways_order_key ON giveaways (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE giveaway_entries (
    giveaway_id  uuid NOT NULL REFERENCES giveaways,
    user_id      uuid NOT NULL REFERENCES users,
    -- Where a physical prize ships if this entry wins: the entrant's default address when they entered.
    address      jsonb,
    entered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (giveaway_id, user_id)
);
