-- Accounts: email verification and password reset (docs/MESSAGES.md, "Accounts"). Tokens are minted by the
-- `account_email` job as it mails them (the raw token never reaches the database, only its SHA-256), used
-- once here, and refused with SQLSTATE LHTOK (`invalid_token`, details.reason: unknown, used or expired).

-- Rate limit of one kind of account email: at most one request per p_min_interval_s and p_max per
-- p_window_s for `p_key`. Returns NULL and records the request when it may go, else the seconds to wait
-- (recording nothing).
CREATE OR REPLACE FUNCTION account_email_throttle(p_key text, p_min_interval_s integer, p_max integer,
                                                  p_window_s integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    n bigint;
    first_at timestamptz;
    last_at timestamptz;
BEGIN
    -- One decision at a time per key: two requests at once cannot both pass a limit of one.
    PERFORM pg_advisory_xact_lock(hashtextextended('account email ' || p_key, 0));
    t := clock_timestamp();
    DELETE FROM account_email_requests WHERE key = p_key AND requested_at <= t - make_interval(secs => p_window_s);
    -- Keys never seen again (an address, an email that has no account) are swept as other requests come.
    DELETE FROM account_email_requests WHERE requested_at < t - interval '7 days';
    SELECT count(*), min(requested_at), max(requested_at) INTO n, first_at, last_at
      FROM account_email_requests WHERE key = p_key;
    IF last_at > t - make_interval(secs => p_min_interval_s) THEN
        RETURN greatest(1, ceil(extract(epoch FROM last_at + make_interval(secs => p_min_interval_s) - t)))::integer;
    END IF;
    IF n >= p_max THEN
        RETURN greatest(1, ceil(extract(epoch FROM first_at + make_interval(secs => p_window_s) - t)))::integer;
    END IF;
    INSERT INTO account_email_requests (key, requested_at) VALUES (p_key, t);
    RETURN NULL;
END $$;

-- Queue a verification email for p_user (at registration, in its transaction, and on resend). Returns NULL
-- when queued, else the seconds to wait (rate limited). 409 when the email is verified already.
CREATE OR REPLACE FUNCTION queue_verify_email(p_user uuid, p_min_interval_s integer, p_max integer,
                                              p_window_s integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    verified timestamptz;
    wait integer;
BEGIN
    SELECT email_verified_at INTO verified FROM users WHERE id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'LH404';
    END IF;
    IF verified IS NOT NULL THEN
        RAISE EXCEPTION 'your email address is verified already' USING ERRCODE = 'LH409';
    END IF;
    wait := account_email_throttle('verify user ' || p_user, p_min_interval_s, p_max, p_window_s);
    IF wait IS NULL THEN
        PERFORM enqueue_job('account_email', jsonb_build_object('user_id', p_user, 'kind', 'verify_email'));
    END IF;
    RETURN wait;
END $$;

-- Queue a password reset email for the account with this email, if there is one (not deactivated) and
-- neither the email nor the address asking is over its limit. Says nothing either way: the caller answers
-- the same whether or not anything was queued, and both cases do the same statements but the last INSERT.
CREATE OR REPLACE FUNCTION queue_password_reset(
    p_email text, p_address text, p_email_min_interval_s integer, p_email_max integer,
    p_address_max integer, p_window_s integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    account uuid;
BEGIN
    IF account_email_throttle('reset address ' || p_address, 0, p_address_max, p_window_s) IS NOT NULL THEN
        RETURN;
    END IF;
    IF account_email_throttle('reset email ' || lower(p_email), p_email_min_interval_s, p_email_max,
                              p_window_s) IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT id INTO account FROM users WHERE email = lower(p_email) AND deactivated_at IS NULL;
    IF account IS NOT NULL THEN
        PERFORM enqueue_job('account_email', jsonb_build_object('user_id', account, 'kind', 'password_reset'));
    END IF;
END $$;

-- Store a token (its hash) the `account_email` job is about to mail; called in the job's own transaction,
-- committed before the email goes. NULL when there is nothing to mail any more (the account is gone or
-- deactivated, or its email was verified meanwhile), else the token's expiry. A new reset token voids the
-- account's older unused ones: only the newest reset email works.
CREATE OR REPLACE FUNCTION account_token_mint(p_user uuid, p_purpose text, p_hash bytea, p_ttl_s integer)
RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    u users;
    expires timestamptz := now() + make_interval(secs => p_ttl_s);
BEGIN
    SELECT * INTO u FROM users WHERE id = p_user FOR UPDATE;
    IF NOT FOUND OR u.deactivated_at IS NOT NULL
       OR (p_purpose = 'verify_email' AND u.email_verified_at IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    IF p_purpose = 'password_reset' THEN
        UPDATE account_tokens SET used_at = now()
         WHERE user_id = p_user AND purpose = 'password_reset' AND used_at IS NULL;
    END IF;
    -- Tokens a week past their expiry are forgotten (until then a late click is told "expired").
    DELETE FROM account_tokens WHERE expires_at < now() - interval '7 days';
    INSERT INTO account_tokens (token_hash, user_id, purpose, expires_at) VALUES (p_hash, p_user, p_purpose, expires);
    RETURN expires;
END $$;

-- The token of this hash and purpose, locked, if it may be used now; else LHTOK with details.reason.
CREATE OR REPLACE FUNCTION account_token_usable(p_hash bytea, p_purpose text) RETURNS account_tokens
LANGUAGE plpgsql AS $$
DECLARE
    tok account_tokens;
BEGIN
    SELECT t.* INTO tok FROM account_tokens t JOIN users u ON u.id = t.user_id
     WHERE t.token_hash = p_hash AND t.purpose = p_purpose AND u.deactivated_at IS NULL
       FOR UPDATE OF t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this link is not valid: ask for a new one'
            USING ERRCODE = 'LHTOK', DETAIL = '{"reason": "unknown"}';
    END IF;
    IF tok.used_at IS NOT NULL THEN
        RAISE EXCEPTION 'this link has been used already (or a newer one replaced it): ask for a new one'
            USING ERRCODE = 'LHTOK', DETAIL = '{"reason": "used"}';
    END IF;
    IF tok.expires_at <= clock_timestamp() THEN
        RAISE EXCEPTION 'this link has expired: ask for a new one'
            USING ERRCODE = 'LHTOK', DETAIL = '{"reason": "expired"}';
    END IF;
    RETURN tok;
END $$;

-- Verify the email of the token's account (the token is used up). Another unused link of an account verified
-- already verifies again harmlessly. Returns the account.
CREATE OR REPLACE FUNCTION verify_email(p_hash bytea) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    tok account_tokens := account_token_usable(p_hash, 'verify_email');
BEGIN
    UPDATE account_tokens SET used_at = now() WHERE token_hash = p_hash;
    UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = tok.user_id;
    RETURN tok.user_id;
END $$;

-- Set a new password with a reset token: the token and every other reset token of the account are used up,
-- every session ends, and the email counts as verified (the link reached its inbox). Two-factor sign-in
-- stays as it was. Returns the account and how many sessions ended.
CREATE OR REPLACE FUNCTION reset_password(p_hash bytea, p_password_hash text,
                                          OUT user_id uuid, OUT ended_sessions integer)
LANGUAGE plpgsql AS $$
DECLARE
    tok account_tokens := account_token_usable(p_hash, 'password_reset');
BEGIN
    user_id := tok.user_id;
    UPDATE account_tokens t SET used_at = now()
     WHERE t.user_id = tok.user_id AND t.purpose = 'password_reset' AND t.used_at IS NULL;
    UPDATE users SET password_hash = p_password_hash, email_verified_at = coalesce(email_verified_at, now())
     WHERE id = tok.user_id;
    WITH ended AS (DELETE FROM sessions s WHERE s.user_id = tok.user_id RETURNING 1)
    SELECT count(*) INTO ended_sessions FROM ended;
END $$;
