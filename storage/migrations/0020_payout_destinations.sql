-- Payout destinations: where a seller's or guest host's payouts go. The account number (an IBAN, or an
-- account and routing number) is sealed by the application with Fernet under LIVEHUB_PAYOUT_KEYS
-- (livehub/sealing.py) before it reaches the database; only its last four characters are kept readable.
-- A payout snapshots the destination it pays to, so changing or removing the destination later does not
-- redirect a payout already asked for. The rules live in functions/orders.sql (request_payout,
-- decide_payout, fail_payout).

CREATE TABLE payout_destinations (
    -- A new id at every change: a payout names the version it snapshotted.
    id                   uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    user_id              uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    holder_name          text NOT NULL CHECK (length(holder_name) BETWEEN 1 AND 200),
    country              text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    kind                 text NOT NULL CHECK (kind IN ('iban', 'account')),
    last4                text NOT NULL CHECK (length(last4) BETWEEN 1 AND 4),
    -- 'fernet:<key fingerprint>:<token>' of {"number", "routing_number"}; never the number itself.
    sealed               text NOT NULL CHECK (sealed LIKE 'fernet:%'),
    -- A Stripe connected account (acct_...), for the stripe-connect payout provider.
    connect_account_id   text CHECK (connect_account_id ~ '^acct_[A-Za-z0-9]+$'),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE payouts
    ADD COLUMN destination_id      uuid,
    -- What the seller and the admin list see: holder_name, country, kind, last4, connect_account_id.
    ADD COLUMN destination         jsonb,
    ADD COLUMN destination_sealed  text CHECK (destination_sealed LIKE 'fernet:%'),
    -- The provider that sent it ('manual', 'instant-dev', 'stripe-connect'), and when a sent payout came
    -- back (a bank return, a reversed transfer): its amount is available earnings again.
    ADD COLUMN provider            text,
    ADD COLUMN failed_at           timestamptz;

ALTER TABLE payouts DROP CONSTRAINT payouts_status_check;
ALTER TABLE payouts ADD CONSTRAINT payouts_status_check
    CHECK (status IN ('requested', 'paid', 'rejected', 'failed'));
-- A provider's webhook names the payout by its reference.
CREATE INDEX payouts_reference_idx ON payouts (provider_reference) WHERE provider_reference IS NOT NULL;
