-- Sign-in limits (docs/OPERATIONS.md, "Sign-in limits"). An attempt is decided here before its password
-- is checked, recorded as pending, then settled: a failure, a success, or neither (a code is still needed).
--
-- `account` is the account's id when the login names one (its email or phone), else the login as typed
-- (lowercased; a phone without punctuation); `address` is the client's. One (account, address) pair gets
-- `per_pair` failures per window, then 429 until they leave it. An account with `account_after` failures in
-- the window is slowed down for addresses it has not signed in from: each attempt waits for the last one
-- plus a delay doubling per further failure, up to `max_delay_s`. An address with `address_after` failures
-- (on any accounts) is slowed down the same way on accounts it has not signed in to. A pair that signed in
-- successfully within `known_ttl_s` is never slowed down, only held to its own limit: an attacker cannot
-- lock the owner out, and nobody is refused outright for what others behind the same address did.

-- Decide one attempt: attempt_id (recorded, pending) or retry_after_s (nothing recorded).
CREATE OR REPLACE FUNCTION sign_in_attempt(
    p_account text, p_address text, p_window_s integer, p_per_pair integer,
    p_account_after integer, p_address_after integer, p_delay_s double precision,
    p_max_delay_s double precision, p_known_ttl_s bigint,
    OUT attempt_id bigint, OUT retry_after_s integer)
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
    since timestamptz;
    n bigint;
    last_at timestamptz;
    known boolean;
BEGIN
    -- One decision at a time per account and per address (always in this order: no deadlock). The rows a
    -- decision counts, pending ones included, were committed by the decisions before it.
    PERFORM pg_advisory_xact_lock(hashtextextended('sign-in account ' || p_account, 0));
    PERFORM pg_advisory_xact_lock(hashtextextended('sign-in address ' || p_address, 0));
    -- The clock after the locks: now() is when this transaction started, maybe long before.
    t := clock_timestamp();
    since := t - make_interval(secs => p_window_s);

    SELECT count(*) INTO n FROM login_failures
     WHERE account = p_account AND address = p_address AND failed_at > since;
    IF n >= p_per_pair THEN
        -- After the window every failure of the pair has left it.
        retry_after_s := p_window_s;
        RETURN;
    END IF;

    known := EXISTS (SELECT 1 FROM sign_in_known
                      WHERE account = p_account AND address = p_address
                        AND last_success_at > t - make_interval(secs => p_known_ttl_s));
    IF NOT known THEN
        -- Settled failures decide whether the account is slowed down (people signing in together are not
        -- failures); pending attempts count for when the next one may go, so only one at a time passes.
        SELECT count(*) FILTER (WHERE NOT pending), max(failed_at) INTO n, last_at FROM login_failures
         WHERE account = p_account AND failed_at > since;
        retry_after_s := sign_in_wait(n, last_at, t, p_account_after, p_delay_s, p_max_delay_s);
        IF retry_after_s IS NULL THEN
            SELECT count(*) FILTER (WHERE NOT pending), max(failed_at) INTO n, last_at FROM login_failures
             WHERE address = p_address AND failed_at > since;
            retry_after_s := sign_in_wait(n, last_at, t, p_address_after, p_delay_s, p_max_delay_s);
        END IF;
        IF retry_after_s IS NOT NULL THEN
            RETURN;
        END IF;
    END IF;

    INSERT INTO login_failures (account, address, failed_at, pending)
    VALUES (p_account, p_address, t, true) RETURNING id INTO attempt_id;
END $$;

-- Seconds still to wait after `failures` failures, the last at `last_at`; null when none.
CREATE OR REPLACE FUNCTION sign_in_wait(
    failures bigint, last_at timestamptz, t timestamptz, after integer,
    delay_s double precision, max_delay_s double precision) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN w > 0 THEN ceil(w)::integer END
      FROM (SELECT extract(epoch FROM last_at - t)
                   + least(delay_s * 2.0::double precision ^ least(failures - after, 60)::double precision, max_delay_s) AS w) d
     WHERE failures >= after
$$;

-- Settle an attempt. 'failed': it counts from now on. 'neutral': forgotten (the password was right and a
-- second factor is asked for). 'passed': a code was right; the pair's failures are forgotten. 'signed_in':
-- the same, and the pair is remembered as one of the account's own for `p_known_ttl_s`.
CREATE OR REPLACE FUNCTION sign_in_settle(p_attempt bigint, p_outcome text, p_known_ttl_s bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    a login_failures;
BEGIN
    IF p_outcome = 'failed' THEN
        UPDATE login_failures SET pending = false, failed_at = clock_timestamp() WHERE id = p_attempt;
        RETURN;
    END IF;
    DELETE FROM login_failures WHERE id = p_attempt RETURNING * INTO a;
    IF a.id IS NULL OR p_outcome = 'neutral' THEN
        RETURN;
    END IF;
    DELETE FROM login_failures WHERE account = a.account AND address = a.address AND NOT pending;
    IF p_outcome = 'signed_in' THEN
        PERFORM sign_in_remember(a.account, a.address, p_known_ttl_s);
    END IF;
END $$;

-- Remember a pair that signed in (or registered), and forget the account's pairs past their time.
CREATE OR REPLACE FUNCTION sign_in_remember(p_account text, p_address text, p_known_ttl_s bigint) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM sign_in_known
     WHERE account = p_account AND last_success_at < now() - make_interval(secs => p_known_ttl_s);
    INSERT INTO sign_in_known (account, address) VALUES (p_account, p_address)
        ON CONFLICT (account, address) DO UPDATE SET last_success_at = now();
$$;

-- Forget failures that have left the window and pairs not seen for `p_known_ttl_s` (a periodic job).
CREATE OR REPLACE FUNCTION sign_in_sweep(p_window_s integer, p_known_ttl_s bigint) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM login_failures WHERE failed_at < now() - make_interval(secs => p_window_s);
    DELETE FROM sign_in_known WHERE last_success_at < now() - make_interval(secs => p_known_ttl_s);
$$;
