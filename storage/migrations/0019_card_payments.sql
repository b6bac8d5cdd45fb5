-- Card payments through a provider (Stripe): one row per payment intent we create, and the money a card
-- payment can take back after it was credited (refunds, disputes). The rules live in
-- functions/card_payments.sql; docs/MONEY.md, "Card payments".
--
-- Money taken back that the wallet no longer holds is owed: a per-user 'owed' account whose balance is the
-- debt, negative (so the books' sum still holds). While it is below zero the user cannot buy or bid, and
-- the next deposit pays it first.

ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN (
    'wallet', 'earnings_pending', 'earnings_available', 'payouts', 'platform', 'external', 'hold',
    'owed'));  -- what a user owes the platform after a card refund or dispute took back spent money
ALTER TABLE accounts ADD CONSTRAINT accounts_owed_not_positive CHECK (kind <> 'owed' OR balance_cents <= 0);

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_type_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_type_check CHECK (type IN (
    'deposit', 'purchase', 'refund', 'earning', 'fee', 'release', 'payout', 'adjustment',
    'bid_hold', 'bid_release',
    'card_refund',    -- a card payment refunded by the provider: out of the wallet, the rest owed
    'chargeback',     -- a card payment disputed by the cardholder: the same
    'owed_settled')); -- a later deposit paying what was owed

CREATE TABLE card_payments (
    id              uuid PRIMARY KEY,                 -- ours, given before the provider is asked
    user_id         uuid NOT NULL REFERENCES users,
    -- What the money is for once it is captured. 'top_up': credit the wallet. A later purpose ('order')
    -- keeps what it needs in purpose_data and is applied in the transaction that credits the wallet.
    purpose         text NOT NULL DEFAULT 'top_up' CHECK (purpose IN ('top_up')),
    purpose_data    jsonb,
    provider        text NOT NULL,
    intent_id       text UNIQUE,                      -- the provider's id; NULL until the provider answered
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    currency        text NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    -- High-water marks of what the provider says: each is applied once, only by its growth.
    received_cents  bigint NOT NULL DEFAULT 0 CHECK (received_cents >= 0),
    refunded_cents  bigint NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0),
    disputed_cents  bigint NOT NULL DEFAULT 0 CHECK (disputed_cents >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    succeeded_at    timestamptz
);
-- The per-day limit sums a user's recent payments; reconciliation looks for old pending ones.
CREATE INDEX card_payments_user_idx ON card_payments (user_id, created_at);
CREATE INDEX card_payments_pending_idx ON card_payments (created_at) WHERE status = 'pending';

-- Each dispute takes its amount back once, whatever number of times its event arrives.
CREATE TABLE card_disputes (
    dispute_id    text PRIMARY KEY,
    payment_id    uuid NOT NULL REFERENCES card_payments,
    amount_cents  bigint NOT NULL CHECK (amount_cents > 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);
