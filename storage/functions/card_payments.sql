-- Card payments (docs/MONEY.md, "Card payments"): a payment intent opened with the provider is credited
-- once it is captured, and money the provider takes back (refunds, disputes) leaves the wallet, the rest
-- owed. The provider is the truth: the node asks it about the intent and hands its figures here, and every
-- figure is applied only by its growth over what this row has seen, so replayed and out-of-order events,
-- two nodes at once and the reconciliation job all come to the same ledger.
--
-- Lock order (money.sql's): the card payment row, then the user's accounts by id.

-- What the user owes (positive; 0 when nothing).
CREATE OR REPLACE FUNCTION owed_by(p_user uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(-(SELECT balance_cents FROM accounts WHERE user_id = p_user AND kind = 'owed'), 0)::bigint;
$$;

-- Purchases and bids call this first: a user who owes money buys nothing until a deposit settles it.
CREATE OR REPLACE FUNCTION refuse_while_owed(p_user uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    owed bigint := owed_by(p_user);
BEGIN
    IF owed > 0 THEN
        RAISE EXCEPTION 'a card payment was taken back: top up to settle what you owe first'
            USING ERRCODE = 'LHOWE', DETAIL = jsonb_build_object('owed_cents', owed)::text;
    END IF;
END $$;

-- Money the provider took back from the user (a refund or a dispute), in transaction p_txn: what the wallet
-- holds leaves it, the rest is owed. The caller has locked the wallet and owed accounts. Returns the owed
-- part.
CREATE OR REPLACE FUNCTION take_back(p_txn bigint, p_user uuid, p_amount bigint, p_type text, p_memo text)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    wallet uuid := account_of(p_user, 'wallet');
    from_wallet bigint := least(p_amount, balance_of(wallet));
BEGIN
    PERFORM post(p_txn, account_of(NULL, 'external'), p_amount, p_type, NULL, NULL, p_user, p_memo);
    PERFORM post(p_txn, wallet, -from_wallet, p_type, NULL, NULL, p_user, p_memo);
    PERFORM post(p_txn, account_of(p_user, 'owed'), -(p_amount - from_wallet), p_type, NULL, NULL, p_user, p_memo);
    RETURN p_amount - from_wallet;
END $$;

-- A card payment before the provider is asked: checks the rolling 24-hour limit (pending and succeeded
-- card payments of the user) and records the payment as pending. p_daily_limit NULL: no limit.
CREATE OR REPLACE FUNCTION open_card_payment(
    p_id uuid, p_user uuid, p_amount bigint, p_currency text, p_provider text, p_daily_limit bigint,
    p_purpose text DEFAULT 'top_up', p_purpose_data jsonb DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    used bigint;
BEGIN
    -- One opening per user at a time, so two concurrent top-ups cannot both fit under the limit.
    PERFORM pg_advisory_xact_lock(hashtextextended('card_payment:' || p_user::text, 0));
    SELECT coalesce(sum(amount_cents), 0) INTO used FROM card_payments
     WHERE user_id = p_user AND status IN ('pending', 'succeeded') AND created_at > now() - interval '24 hours';
    IF p_daily_limit IS NOT NULL AND used + p_amount > p_daily_limit THEN
        RAISE EXCEPTION 'this would pass your card top-up limit for 24 hours'
            USING ERRCODE = 'LHTUL',
                  DETAIL = jsonb_build_object('limit_cents', p_daily_limit, 'used_cents', used)::text;
    END IF;
    INSERT INTO card_payments (id, user_id, purpose, purpose_data, provider, amount_cents, currency)
    VALUES (p_id, p_user, p_purpose, p_purpose_data, p_provider, p_amount, p_currency);
END $$;

-- The provider's intent for a payment opened above (NULL: the provider refused, the payment failed).
CREATE OR REPLACE FUNCTION attach_card_intent(p_id uuid, p_intent text) RETURNS void
LANGUAGE sql AS $$
    UPDATE card_payments
       SET intent_id = p_intent, updated_at = now(),
           status = CASE WHEN p_intent IS NULL THEN 'failed' ELSE status END
     WHERE id = p_id AND intent_id IS NULL;
$$;

-- The row's state as the API shows it.
CREATE OR REPLACE FUNCTION card_payment_json(p card_payments) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'payment_id', p.id, 'user_id', p.user_id, 'purpose', p.purpose, 'status', p.status,
        'amount_cents', p.amount_cents, 'received_cents', p.received_cents, 'refunded_cents', p.refunded_cents,
        'disputed_cents', p.disputed_cents, 'currency', p.currency, 'created_at', p.created_at,
        'succeeded_at', p.succeeded_at, 'owed_cents', owed_by(p.user_id),
        -- A checkout's payment (functions/card_checkout.sql): what came of its order.
        'outcome', p.outcome, 'outcome_code', p.outcome_code, 'outcome_message', p.outcome_message,
        'order_ids', p.order_ids);
$$;

-- What the provider says about an intent now: its status ('succeeded', 'processing', 'canceled',
-- 'requires_payment_method'...), the amount it captured and the amount refunded so far. A first
-- 'succeeded' credits p_received to the wallet (a deposit, owed paid first); a refunded amount above the
-- one seen before takes back the difference. Anything else changes nothing (a failure reported after the
-- success, a replay). NULL for an intent that is not ours.
CREATE OR REPLACE FUNCTION apply_card_payment(p_intent text, p_status text, p_received bigint, p_refunded bigint)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    p card_payments;
    txn bigint;
    credit bigint := 0;
    refund bigint := 0;
BEGIN
    SELECT * INTO p FROM card_payments WHERE intent_id = p_intent FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p_status = 'succeeded' AND p.status <> 'succeeded' THEN
        credit := greatest(coalesce(p_received, 0), 0);
    END IF;
    IF p.status = 'succeeded' OR credit > 0 THEN
        -- Never more than was captured, however the refunds add up.
        refund := least(coalesce(p_refunded, 0), p.received_cents + credit) - p.refunded_cents;
    END IF;
    IF credit > 0 OR refund > 0 THEN
        txn := nextval('ledger_txn_seq');
        PERFORM lock_accounts(ARRAY[account_of(p.user_id, 'wallet'), account_of(p.user_id, 'owed')]);
        IF credit > 0 THEN
            PERFORM deposit(txn, p.user_id, credit, 'card ' || p_intent);
        END IF;
        IF refund > 0 THEN
            PERFORM take_back(txn, p.user_id, refund, 'card_refund', 'card refund ' || p_intent);
        END IF;
        PERFORM queue_balance_push(ARRAY[p.user_id], 'wallet', CASE WHEN refund > 0 THEN 'refund' ELSE 'top_up' END);
    END IF;
    UPDATE card_payments
       SET status = CASE WHEN credit > 0 THEN 'succeeded'
                         WHEN p.status = 'pending' AND p_status = 'canceled' THEN 'canceled'
                         ELSE p.status END,
           received_cents = received_cents + credit,
           refunded_cents = refunded_cents + greatest(refund, 0),
           succeeded_at = CASE WHEN credit > 0 THEN now() ELSE succeeded_at END,
           updated_at = now()
     WHERE id = p.id
    RETURNING * INTO p;
    IF credit > 0 AND p.purpose = 'order' THEN
        -- The checkout this money was for, in this transaction (functions/card_checkout.sql).
        PERFORM apply_card_order(p.id);
        SELECT * INTO p FROM card_payments WHERE id = p.id;
    END IF;
    RETURN card_payment_json(p) || jsonb_build_object('credited_cents', credit, 'taken_back_cents', greatest(refund, 0));
END $$;

-- A dispute the cardholder opened on an intent's charge: its amount (at most what is left of the payment)
-- leaves the wallet, the rest owed, once per dispute id. NULL for an intent that is not ours or one not
-- credited yet (the caller applies the intent's state first).
CREATE OR REPLACE FUNCTION apply_card_dispute(p_intent text, p_dispute text, p_amount bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    p card_payments;
    amount bigint;
    txn bigint := nextval('ledger_txn_seq');
BEGIN
    SELECT * INTO p FROM card_payments WHERE intent_id = p_intent FOR UPDATE;
    IF NOT FOUND OR p.status <> 'succeeded' THEN
        RETURN NULL;
    END IF;
    amount := least(p_amount, p.received_cents - p.refunded_cents - p.disputed_cents);
    IF amount <= 0 THEN
        RETURN card_payment_json(p) || jsonb_build_object('taken_back_cents', 0);
    END IF;
    INSERT INTO card_disputes (dispute_id, payment_id, amount_cents) VALUES (p_dispute, p.id, amount)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN  -- this dispute was applied already
        RETURN card_payment_json(p) || jsonb_build_object('taken_back_cents', 0);
    END IF;
    PERFORM lock_accounts(ARRAY[account_of(p.user_id, 'wallet'), account_of(p.user_id, 'owed')]);
    PERFORM take_back(txn, p.user_id, amount, 'chargeback', 'card dispute ' || p_dispute);
    PERFORM queue_balance_push(ARRAY[p.user_id], 'wallet', 'refund');
    UPDATE card_payments SET disputed_cents = disputed_cents + amount, updated_at = now()
     WHERE id = p.id RETURNING * INTO p;
    RETURN card_payment_json(p) || jsonb_build_object('taken_back_cents', amount);
END $$;

-- Pending card payments old enough that their webhook may have been lost, for the reconciliation job to
-- ask the provider about: the least recently checked first, each stamped checked now, so every pending
-- payment is reached in turn however many nobody paid (and one that fails to check goes to the back).
-- Also how long each has been open, for the job to cancel the abandoned ones.
CREATE OR REPLACE FUNCTION card_payments_to_reconcile(p_older_than interval, p_newer_than interval, p_limit integer)
RETURNS TABLE (id uuid, intent_id text, age_s double precision)
LANGUAGE sql AS $$
    WITH due AS (
        SELECT c.id, coalesce(c.checked_at, c.created_at) AS last_seen FROM card_payments c
         WHERE c.status = 'pending' AND c.intent_id IS NOT NULL
           AND c.created_at < now() - p_older_than AND c.created_at > now() - p_newer_than
         ORDER BY last_seen, c.id LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), stamped AS (
        UPDATE card_payments p SET checked_at = now() FROM due WHERE p.id = due.id
        RETURNING p.id, p.intent_id, p.created_at, due.last_seen
    )
    SELECT id, intent_id, extract(epoch FROM now() - created_at)::double precision FROM stamped
     ORDER BY last_seen, id;
$$;

-- Users who owe money after card refunds or disputes, the largest debt first (the admins' list).
CREATE OR REPLACE FUNCTION users_owing(p_limit integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('user_id', u.id, 'email', u.email,
                                                 'owed_cents', -a.balance_cents) ORDER BY a.balance_cents, u.id), '[]')
      FROM (SELECT * FROM accounts WHERE kind = 'owed' AND balance_cents < 0
             ORDER BY balance_cents, user_id LIMIT p_limit) a
      JOIN users u ON u.id = a.user_id;
$$;
