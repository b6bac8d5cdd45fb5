-- Sign-in limits per (account, address) pair with remembered addresses, and two-factor sign-in.

-- A row is written before a password is checked (pending) and becomes a failure or goes away once it is
-- known: counting pending rows keeps concurrent attempts within the limits (storage/functions/sign_in.sql).
ALTER TABLE login_failures ADD COLUMN pending boolean NOT NULL DEFAULT false;
-- The periodic sweep of what has left the window.
CREATE INDEX login_failures_at_idx ON login_failures (failed_at);

-- (account, address) pairs that signed in successfully: the owner's usual places, never slowed down.
CREATE TABLE sign_in_known (
    account          text NOT NULL,
    address          text NOT NULL,
    last_success_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, address)
);
CREATE INDEX sign_in_known_at_idx ON sign_in_known (last_success_at);

-- One TOTP secret per account. `secret` is a Fernet token when LIVEHUB_TWO_FACTOR_KEYS is set ('fernet:...'),
-- the base32 secret itself otherwise ('plain:...'). `enabled_at` is null until a first code confirms it.
CREATE TABLE two_factor (
    user_id     uuid PRIMARY KEY REFERENCES users ON DELETE CASCADE,
    secret      text NOT NULL CHECK (secret ~ '^(fernet|plain):'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    enabled_at  timestamptz,
    -- The last 30-second step whose code signed in: a code is accepted once (no replay).
    last_step   bigint NOT NULL DEFAULT 0
);

-- Single-use recovery codes, stored as SHA-256 of the account id and the code.
CREATE TABLE recovery_codes (
    user_id    uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    code_hash  bytea NOT NULL,
    used_at    timestamptz,
    PRIMARY KEY (user_id, code_hash)
);
