-- Auctions: a host (or moderator) auctions one unit of a featured variant in a live stream; viewers bid
-- over the room's socket, the database decides every bid (storage/functions/auctions.sql).
--
-- Money: the leader's commitment is held in the ledger, in a per-user 'hold' account, moved there from the
-- wallet ('bid_hold') and back when outbid ('bid_release'). The winner's hold goes back to the wallet in
-- the closing transaction, which then pays the order from it as any in-stream purchase.

ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN (
    'wallet', 'earnings_pending', 'earnings_available', 'payouts', 'platform', 'external',
    'hold'));  -- money a bidder leads auctions with, out of the wallet until outbid or won
ALTER TABLE accounts ADD CONSTRAINT accounts_hold_not_negative CHECK (kind <> 'hold' OR balance_cents >= 0);

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_type_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_type_check CHECK (type IN (
    'deposit', 'purchase', 'refund', 'earning', 'fee', 'release', 'payout', 'adjustment',
    'bid_hold', 'bid_release'));

CREATE TABLE auctions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    stream_id          uuid NOT NULL REFERENCES streams ON DELETE CASCADE,
    variant_id         uuid NOT NULL REFERENCES variants,
    mode               text NOT NULL CHECK (mode IN ('standard', 'sudden_death')),
    start_cents        bigint NOT NULL CHECK (start_cents >= 1),
    increment_cents    bigint CHECK (increment_cents >= 1),   -- NULL: the ladder (auction_increment)
    extend_s           integer NOT NULL CHECK (extend_s BETWEEN 1 AND 600),
    starts_at          timestamptz NOT NULL,
    ends_at            timestamptz NOT NULL,
    current_cents      bigint NOT NULL,
    leader_id          uuid REFERENCES users,
    -- Never shown to anyone: the leader's maximum, and what is held for it (the maximum plus the most
    -- shipping can come to), and where the lot ships if the leader wins (the address when they took the lead).
    leader_max_cents   bigint,
    leader_hold_cents  bigint,
    leader_address     jsonb,
    bids               integer NOT NULL DEFAULT 0,
    ended_at           timestamptz,
    ended_reason       text CHECK (ended_reason IN ('time', 'stream_ended', 'out_of_stock')),
    winner_id          uuid REFERENCES users,
    order_id           uuid REFERENCES orders,
    created_by         uuid REFERENCES users,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((leader_id IS NULL) = (leader_max_cents IS NULL) AND (leader_id IS NULL) = (leader_hold_cents IS NULL))
);
-- One running auction per stream.
CREATE UNIQUE INDEX auctions_running_key ON auctions (stream_id) WHERE ended_at IS NULL;
CREATE INDEX auctions_stream_idx ON auctions (stream_id, created_at);

-- Every bid and what became of it, in the order the database decided them.
CREATE TABLE auction_bids (
    id              bigserial PRIMARY KEY,
    auction_id      uuid NOT NULL REFERENCES auctions ON DELETE CASCADE,
    bidder_id       uuid NOT NULL REFERENCES users,
    request_id      text,
    amount_cents    bigint,                 -- a plain bid
    max_cents       bigint,                 -- a proxy bid (never revealed)
    status          text NOT NULL CHECK (status IN (
                        'leading', 'outbid', 'too_low', 'insufficient_funds', 'ended', 'not_allowed')),
    current_cents   bigint NOT NULL,        -- the auction's price after it
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auction_bids_auction_idx ON auction_bids (auction_id, id);
CREATE UNIQUE INDEX auction_bids_request_key ON auction_bids (auction_id, bidder_id, request_id)
    WHERE request_id IS NOT NULL;

-- Each bidder's highest maximum in an auction (never revealed).
CREATE TABLE auction_proxies (
    auction_id  uuid NOT NULL REFERENCES auctions ON DELETE CASCADE,
    bidder_id   uuid NOT NULL REFERENCES users,
    max_cents   bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (auction_id, bidder_id)
);
