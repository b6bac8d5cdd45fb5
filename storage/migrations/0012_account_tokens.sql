-- Accounts: email verification and password reset (docs/MESSAGES.md, "Accounts"; rules in
-- functions/account_tokens.sql).

-- When the account proved it reads its email (a verification link, or a password reset through it). Accounts
-- from before this migration start unverified: they never proved it, and can ask for a link (resend).
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- Single-use tokens mailed to an account. Only the SHA-256 of each is kept: a token is 256 random bits
-- (secrets.token_urlsafe(32)), so its hash cannot be searched back to it and needs no salt or slow hash, and
-- a token can be looked up by primary key. The raw token exists only in the job that mails it (livehub/jobs'
-- `account_email`) and in the email.
CREATE TABLE account_tokens (
    token_hash  bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    -- Set when the token was used, or voided (a newer reset link, a reset that went through).
    used_at     timestamptz
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose) WHERE used_at IS NULL;
CREATE INDEX account_tokens_expires_idx ON account_tokens (expires_at);

-- Requests for account emails, for their rate limits: `key` is what is limited ('verify user <id>',
-- 'reset email <email>', 'reset address <ip>'). Rows older than a day are swept as new ones come.
CREATE TABLE account_email_requests (
    id            bigserial PRIMARY KEY,
    key           text NOT NULL,
    requested_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_email_requests_key_idx ON account_email_requests (key, requested_at);
CREATE INDEX account_email_requests_at_idx ON account_email_requests (requested_at);
