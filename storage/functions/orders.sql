-- The order state machine, refunds, earnings release, payouts and the books check.
--   paid -> shipped -> delivered;  paid -> cancelled;  any paid state -> refunded / partially_refunded
-- (a partially refunded order can still be shipped and delivered). Every transition is an order_events
-- row with its actor. Lock order, as in money.sql: an order, its variants, its earnings rows, accounts.

-- The order locked for a transition by p_actor, or not_found when the actor may not even see it.
CREATE OR REPLACE FUNCTION order_for(p_order uuid, p_actor uuid, p_is_admin boolean) RETURNS orders
LANGUAGE plpgsql AS $$
DECLARE
    o orders;
BEGIN
    SELECT * INTO o FROM orders WHERE id = p_order FOR UPDATE;
    IF NOT FOUND OR NOT (p_is_admin OR o.buyer_id = p_actor OR
                         EXISTS (SELECT 1 FROM sellers WHERE id = o.seller_id AND user_id = p_actor)) THEN
        RAISE EXCEPTION 'order not found' USING ERRCODE = 'LH404';
    END IF;
    RETURN o;
END $$;

CREATE OR REPLACE FUNCTION is_order_seller(o orders, p_actor uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT EXISTS (SELECT 1 FROM sellers WHERE id = o.seller_id AND user_id = p_actor) $$;

CREATE OR REPLACE FUNCTION record_transition(o orders, p_to text, p_actor uuid, p_reason text, p_amount bigint)
RETURNS void
LANGUAGE sql AS $$
    UPDATE orders SET status = p_to, updated_at = now() WHERE id = o.id;
    INSERT INTO order_events (order_id, from_status, to_status, actor_id, reason, amount_cents)
    VALUES (o.id, o.status, p_to, p_actor, p_reason, p_amount);
$$;

-- Gives p_amount of an order back to its buyer and takes it back, in proportion, from the seller's and
-- host's earnings (wherever they are now: pending or available) and the platform's fee. The last refund
-- of an order takes exactly what remains, so rounding never leaves a cent behind.
CREATE OR REPLACE FUNCTION reverse_payment(o orders, p_amount bigint, p_actor uuid, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    txn bigint := nextval('ledger_txn_seq');
    final boolean := o.refunded_cents + p_amount = o.total_cents;
    e earnings;
    share bigint;
    taken bigint := 0;
    wallet uuid := account_of(o.buyer_id, 'wallet');
BEGIN
    -- The earnings rows first: release_earnings may be moving them from pending to available, and
    -- which account to take from depends on where they are once we hold them.
    PERFORM 1 FROM earnings WHERE order_id = o.id ORDER BY id FOR UPDATE;
    PERFORM lock_accounts(wallet || ARRAY(
        SELECT account_of(er.user_id, CASE er.status WHEN 'pending' THEN 'earnings_pending'
                                                     ELSE 'earnings_available' END)
          FROM earnings er WHERE er.order_id = o.id));
    PERFORM post(txn, wallet, p_amount, 'refund', o.id, NULL, p_actor, p_reason);
    FOR e IN SELECT * FROM earnings WHERE order_id = o.id ORDER BY role LOOP
        -- Rounded on the running total, not per refund, so partial refunds never drift: after each one
        -- an earner keeps exactly its share of what is left, rounded in its favour.
        share := CASE WHEN final THEN e.amount_cents - e.reversed_cents
                      ELSE (o.refunded_cents + p_amount) * e.amount_cents / nullif(o.total_cents, 0)
                           - e.reversed_cents END;
        share := coalesce(share, 0);
        PERFORM post(txn, account_of(e.user_id, CASE e.status WHEN 'pending' THEN 'earnings_pending'
                                                               ELSE 'earnings_available' END),
                     -share, 'earning', o.id, NULL, p_actor, p_reason);
        UPDATE earnings SET reversed_cents = reversed_cents + share WHERE id = e.id;
        taken := taken + share;
    END LOOP;
    PERFORM post(txn, account_of(NULL, 'platform'), -(p_amount - taken), 'fee', o.id, NULL, p_actor, p_reason);
    UPDATE orders SET refunded_cents = refunded_cents + p_amount WHERE id = o.id;
    PERFORM queue_balance_push(ARRAY[o.buyer_id], 'wallet', 'refund');  -- functions/notices.sql
END $$;

-- Cancel a paid order that has not shipped: the buyer gets everything back and physical stock returns.
-- Digital codes stay with the order: they may already have been seen.
CREATE OR REPLACE FUNCTION cancel_order(p_order uuid, p_actor uuid, p_is_admin boolean, p_reason text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o orders := order_for(p_order, p_actor, p_is_admin);
    item record;
    new_stock integer;
BEGIN
    IF o.status NOT IN ('paid', 'partially_refunded') OR o.shipped_at IS NOT NULL THEN
        RAISE EXCEPTION 'only an order that has not shipped can be cancelled'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', o.status)::text;
    END IF;
    -- Digital codes are delivered the moment the order is paid: a buyer who has seen them cannot take
    -- the money back by cancelling. The seller or an admin still can.
    IF o.buyer_id = p_actor AND NOT p_is_admin AND EXISTS (SELECT 1 FROM digital_units WHERE order_id = o.id) THEN
        RAISE EXCEPTION 'digital goods are delivered on purchase; ask the seller for a refund'
            USING ERRCODE = 'LH409';
    END IF;
    PERFORM 1 FROM variants WHERE id IN (SELECT variant_id FROM order_items WHERE order_id = o.id)
      ORDER BY id FOR UPDATE;
    FOR item IN SELECT oi.*, v.digital FROM order_items oi JOIN variants v ON v.id = oi.variant_id
                 WHERE oi.order_id = o.id ORDER BY oi.variant_id LOOP
        IF NOT item.digital THEN
            UPDATE variants SET stock = stock + item.quantity WHERE id = item.variant_id RETURNING stock INTO new_stock;
            INSERT INTO stock_movements (variant_id, delta, stock_after, reason, actor_id, reference)
            VALUES (item.variant_id, item.quantity, new_stock, 'order cancelled', p_actor, o.number);
        END IF;
        -- Units of a flash sale still running go back into it.
        UPDATE flash_sales SET sold = sold - item.quantity WHERE id = item.flash_sale_id AND ended_at IS NULL;
    END LOOP;
    IF o.total_cents > o.refunded_cents THEN
        PERFORM reverse_payment(o, o.total_cents - o.refunded_cents, p_actor, coalesce(p_reason, 'cancelled'));
    END IF;
    PERFORM record_transition(o, 'cancelled', p_actor, p_reason, o.total_cents - o.refunded_cents);
    IF p_actor IS DISTINCT FROM o.buyer_id AND o.total_cents > o.refunded_cents THEN
        PERFORM notify_user(o.buyer_id, 'order_refunded', order_notice(o.id) || jsonb_build_object(
            'amount_cents', o.total_cents - o.refunded_cents, 'reason', p_reason, 'cancelled', true));
    END IF;
END $$;

-- A refund of p_amount (NULL: everything not yet refunded), by the order's seller or an admin.
CREATE OR REPLACE FUNCTION refund_order(
    p_order uuid, p_actor uuid, p_is_admin boolean, p_amount bigint, p_reason text
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o orders := order_for(p_order, p_actor, p_is_admin);
    amount bigint;
BEGIN
    IF NOT (p_is_admin OR is_order_seller(o, p_actor)) THEN
        RAISE EXCEPTION 'only the seller or an admin can refund' USING ERRCODE = 'LH403';
    END IF;
    IF o.status NOT IN ('paid', 'shipped', 'delivered', 'partially_refunded') THEN
        RAISE EXCEPTION 'this order cannot be refunded'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', o.status)::text;
    END IF;
    amount := coalesce(p_amount, o.total_cents - o.refunded_cents);
    IF amount <= 0 OR amount > o.total_cents - o.refunded_cents THEN
        RAISE EXCEPTION 'the refund must be between 1 and what is left to refund'
            USING ERRCODE = 'LH422', DETAIL = jsonb_build_object(
                'refundable_cents', o.total_cents - o.refunded_cents)::text;
    END IF;
    PERFORM reverse_payment(o, amount, p_actor, p_reason);
    PERFORM record_transition(
        o, CASE WHEN o.refunded_cents + amount = o.total_cents THEN 'refunded' ELSE 'partially_refunded' END,
        p_actor, p_reason, amount);
    PERFORM notify_user(o.buyer_id, 'order_refunded', order_notice(o.id) || jsonb_build_object(
        'amount_cents', amount, 'reason', p_reason, 'cancelled', false));
END $$;

-- p_tracking: {carrier, tracking_number, tracking_url?}, which the buyer then sees on the order.
CREATE OR REPLACE FUNCTION ship_order(p_order uuid, p_actor uuid, p_is_admin boolean, p_tracking jsonb)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o orders := order_for(p_order, p_actor, p_is_admin);
BEGIN
    IF NOT (p_is_admin OR is_order_seller(o, p_actor)) THEN
        RAISE EXCEPTION 'only the seller ships an order' USING ERRCODE = 'LH403';
    END IF;
    IF o.status NOT IN ('paid', 'partially_refunded') OR o.shipped_at IS NOT NULL THEN
        RAISE EXCEPTION 'only a paid order that has not shipped can ship'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', o.status)::text;
    END IF;
    IF coalesce(p_tracking->>'carrier', '') = '' OR coalesce(p_tracking->>'tracking_number', '') = '' THEN
        RAISE EXCEPTION 'an order ships with its carrier and tracking number' USING ERRCODE = 'LH422';
    END IF;
    UPDATE orders SET shipped_at = now(), tracking = p_tracking WHERE id = o.id;
    PERFORM record_transition(o, 'shipped', p_actor, NULL, NULL);
    PERFORM notify_user(o.buyer_id, 'order_shipped', order_notice(o.id) || jsonb_build_object(
        'carrier', p_tracking->>'carrier', 'tracking_number', p_tracking->>'tracking_number',
        'tracking_url', p_tracking->>'tracking_url'));
END $$;

-- The buyer (or an admin) confirming delivery makes the order's earnings available at once. The seller may
-- mark its order delivered too, but the seller's word alone releases nothing: its earnings keep their hold.
CREATE OR REPLACE FUNCTION deliver_order(p_order uuid, p_actor uuid, p_is_admin boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o orders := order_for(p_order, p_actor, p_is_admin);
BEGIN
    IF o.shipped_at IS NULL OR o.delivered_at IS NOT NULL OR o.status NOT IN ('shipped', 'partially_refunded') THEN
        RAISE EXCEPTION 'only a shipped order can be delivered'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', o.status)::text;
    END IF;
    UPDATE orders SET delivered_at = now() WHERE id = o.id;
    PERFORM record_transition(o, 'delivered', p_actor, NULL, NULL);
    -- The buyer who confirmed it knows; anyone else marking it delivered tells the buyer.
    IF o.buyer_id IS DISTINCT FROM p_actor THEN
        PERFORM notify_user(o.buyer_id, 'order_delivered', order_notice(o.id));
    END IF;
    IF p_is_admin OR o.buyer_id = p_actor THEN
        PERFORM release_earnings(o.id);
    END IF;
END $$;

-- Moves earnings from pending to available: those of p_order (the buyer confirmed delivery), or with
-- p_order NULL every earning whose hold has passed. Returns how many were released.
CREATE OR REPLACE FUNCTION release_earnings(p_order uuid DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    txn bigint := nextval('ledger_txn_seq');
    due uuid[];
    e earnings;
    amount bigint;
    earners uuid[];
    notices jsonb[];
BEGIN
    SELECT array_agg(er.id) INTO due FROM (
        SELECT er.id FROM earnings er
         WHERE er.status = 'pending'
           AND (er.order_id = p_order OR (p_order IS NULL AND er.available_after <= now()))
         ORDER BY er.id
         FOR UPDATE SKIP LOCKED) er;
    IF due IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM lock_accounts(ARRAY(
        SELECT account_of(er.user_id, k) FROM earnings er, unnest(ARRAY['earnings_pending', 'earnings_available']) k
         WHERE er.id = ANY (due)));
    FOR e IN SELECT * FROM earnings WHERE id = ANY (due) LOOP
        amount := e.amount_cents - e.reversed_cents;
        PERFORM post(txn, account_of(e.user_id, 'earnings_pending'), -amount, 'release', e.order_id, NULL, NULL, NULL);
        PERFORM post(txn, account_of(e.user_id, 'earnings_available'), amount, 'release', e.order_id, NULL, NULL, NULL);
        UPDATE earnings SET status = 'available', released_at = now() WHERE id = e.id;
    END LOOP;
    -- One earnings_available per earner (not per order), with what became available and what is now;
    -- and a push of the new available figure (functions/notices.sql).
    SELECT array_agg(r.user_id ORDER BY r.user_id),
           array_agg(jsonb_build_object(
               'amount_cents', r.amount, 'orders', r.orders,
               'available_cents', balance_of(account_of(r.user_id, 'earnings_available'))) ORDER BY r.user_id)
      INTO earners, notices
      FROM (SELECT er.user_id, sum(er.amount_cents - er.reversed_cents)::bigint AS amount, count(*) AS orders
              FROM earnings er WHERE er.id = ANY (due) GROUP BY er.user_id) r
     WHERE r.amount > 0;
    IF earners IS NOT NULL THEN
        PERFORM notify_each('earnings_available', earners, notices);
        PERFORM queue_balance_push(earners, 'earnings', 'released');
    END IF;
    RETURN cardinality(due);
END $$;

-- A seller (or host) asks for p_amount of their available earnings, paid to their payout destination as
-- it is now (a copy goes on the payout: changing the destination later does not redirect it). Refused
-- without a destination, above the available earnings, or below p_min (LIVEHUB_MIN_PAYOUT_CENTS).
CREATE OR REPLACE FUNCTION request_payout(p_user uuid, p_amount bigint, p_min bigint DEFAULT 1) RETURNS payouts
LANGUAGE plpgsql AS $$
DECLARE
    txn bigint := nextval('ledger_txn_seq');
    available uuid := account_of(p_user, 'earnings_available');
    held uuid := account_of(p_user, 'payouts');
    dest payout_destinations;
    po payouts;
BEGIN
    PERFORM lock_accounts(ARRAY[available, held]);
    SELECT * INTO dest FROM payout_destinations WHERE user_id = p_user FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'add a payout destination (the bank account to pay) first'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('payout_destination_required', true)::text;
    END IF;
    IF p_amount <= 0 OR balance_of(available) < p_amount THEN
        RAISE EXCEPTION 'a payout must be positive and at most the available earnings'
            USING ERRCODE = 'LHNSF', DETAIL = jsonb_build_object('available_cents', balance_of(available))::text;
    END IF;
    IF p_amount < p_min THEN
        RAISE EXCEPTION 'a payout must be at least the minimum payout'
            USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('min_payout_cents', p_min)::text;
    END IF;
    INSERT INTO payouts (user_id, amount_cents, destination_id, destination, destination_sealed)
    VALUES (p_user, p_amount, dest.id,
            jsonb_build_object('holder_name', dest.holder_name, 'country', dest.country, 'kind', dest.kind,
                               'last4', dest.last4, 'connect_account_id', dest.connect_account_id),
            dest.sealed)
    RETURNING * INTO po;
    PERFORM post(txn, available, -p_amount, 'payout', NULL, po.id, p_user, 'payout requested');
    PERFORM post(txn, held, p_amount, 'payout', NULL, po.id, p_user, 'payout requested');
    RETURN po;
END $$;

-- An admin's decision. Approval records that the provider (p_provider) sent the money (p_reference) and
-- takes it out of the books; rejection returns it to the available earnings.
CREATE OR REPLACE FUNCTION decide_payout(
    p_payout uuid, p_admin uuid, p_approve boolean, p_reference text, p_reason text, p_provider text DEFAULT NULL
) RETURNS payouts
LANGUAGE plpgsql AS $$
DECLARE
    txn bigint := nextval('ledger_txn_seq');
    po payouts;
    held uuid;
BEGIN
    SELECT * INTO po FROM payouts WHERE id = p_payout FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payout not found' USING ERRCODE = 'LH404';
    END IF;
    IF po.status <> 'requested' THEN
        RAISE EXCEPTION 'this payout was already decided'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', po.status)::text;
    END IF;
    -- A send through a provider that moves the money itself was started and its outcome is not known
    -- (livehub/shop/payouts.py, decide): rejecting would free the amount to be asked for and sent again.
    IF NOT p_approve AND po.send_started_at IS NOT NULL THEN
        RAISE EXCEPTION 'a transfer may have been sent: approve again to learn its outcome, or check Stripe'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object(
                'transfer_may_have_been_sent', true, 'send_started_at', po.send_started_at)::text;
    END IF;
    held := account_of(po.user_id, 'payouts');
    IF p_approve THEN
        PERFORM lock_accounts(ARRAY[held]);
        PERFORM post(txn, held, -po.amount_cents, 'payout', NULL, po.id, p_admin, p_reference);
        PERFORM post(txn, account_of(NULL, 'external'), po.amount_cents, 'payout', NULL, po.id, p_admin, p_reference);
    ELSE
        PERFORM lock_accounts(ARRAY[held, account_of(po.user_id, 'earnings_available')]);
        PERFORM post(txn, held, -po.amount_cents, 'payout', NULL, po.id, p_admin, p_reason);
        PERFORM post(txn, account_of(po.user_id, 'earnings_available'), po.amount_cents, 'payout', NULL, po.id,
                     p_admin, p_reason);
    END IF;
    UPDATE payouts
       SET status = CASE WHEN p_approve THEN 'paid' ELSE 'rejected' END, provider_reference = p_reference,
           reason = p_reason, decided_at = now(), decided_by = p_admin,
           provider = CASE WHEN p_approve THEN p_provider END
     WHERE id = po.id
    RETURNING * INTO po;
    IF NOT p_approve THEN  -- back in the available earnings (functions/notices.sql)
        PERFORM queue_balance_push(ARRAY[po.user_id], 'earnings', 'payout_rejected');
    END IF;
    PERFORM notify_user(po.user_id, 'payout_decided', jsonb_build_object(
        'payout_id', po.id, 'amount_cents', po.amount_cents, 'status', po.status, 'approved', p_approve,
        'reference', po.provider_reference, 'reason', po.reason));
    RETURN po;
END $$;

-- A paid payout came back (the bank returned the transfer, a Stripe transfer was reversed): its amount
-- comes back in from outside to the earner's available earnings. Exactly once: a failed payout is
-- answered as it is (a webhook delivered twice, an admin's second click); p_actor is the admin, or NULL
-- for a provider's webhook.
CREATE OR REPLACE FUNCTION fail_payout(p_payout uuid, p_actor uuid, p_reason text) RETURNS payouts
LANGUAGE plpgsql AS $$
DECLARE
    txn bigint;
    po payouts;
    available uuid;
BEGIN
    SELECT * INTO po FROM payouts WHERE id = p_payout FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'payout not found' USING ERRCODE = 'LH404';
    END IF;
    IF po.status = 'failed' THEN
        RETURN po;
    END IF;
    IF po.status <> 'paid' THEN
        RAISE EXCEPTION 'only a paid payout can fail'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', po.status)::text;
    END IF;
    txn := nextval('ledger_txn_seq');
    available := account_of(po.user_id, 'earnings_available');
    PERFORM lock_accounts(ARRAY[available]);
    PERFORM post(txn, account_of(NULL, 'external'), -po.amount_cents, 'payout', NULL, po.id, p_actor, p_reason);
    PERFORM post(txn, available, po.amount_cents, 'payout', NULL, po.id, p_actor, p_reason);
    UPDATE payouts SET status = 'failed', failed_at = now(), reason = p_reason WHERE id = po.id RETURNING * INTO po;
    PERFORM queue_balance_push(ARRAY[po.user_id], 'earnings', 'payout_failed');
    PERFORM notify_user(po.user_id, 'payout_decided', jsonb_build_object(
        'payout_id', po.id, 'amount_cents', po.amount_cents, 'status', po.status, 'approved', false,
        'reference', po.provider_reference, 'reason', po.reason));
    RETURN po;
END $$;

-- The books: every user account's balance equals the sum of its entries, every ledger transaction sums
-- to zero, the money that came in equals the money that went out plus every balance held inside, and every
-- order agrees with the ledger: its buyer paid its total (items and shipping), got back its refunded
-- amount, and its fee and earnings share out the total to the cent.
CREATE OR REPLACE FUNCTION check_books() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH sums AS (
        SELECT a.id, a.kind, a.balance_cents, coalesce(sum(e.amount_cents), 0) AS entries
          FROM accounts a LEFT JOIN ledger_entries e ON e.account_id = a.id GROUP BY a.id
    ), figures AS (
        SELECT
            (SELECT count(*) FROM sums WHERE balance_cents IS NOT NULL AND balance_cents <> entries) AS mismatched,
            (SELECT count(*) FROM (SELECT 1 FROM ledger_entries GROUP BY txn_id HAVING sum(amount_cents) <> 0) t)
                AS unbalanced,
            (SELECT coalesce(-sum(amount_cents) FILTER (WHERE amount_cents < 0), 0)
               FROM ledger_entries e JOIN accounts a ON a.id = e.account_id WHERE a.kind = 'external') AS money_in,
            (SELECT coalesce(sum(amount_cents) FILTER (WHERE amount_cents > 0), 0)
               FROM ledger_entries e JOIN accounts a ON a.id = e.account_id WHERE a.kind = 'external') AS money_out,
            (SELECT coalesce(sum(entries), 0) FROM sums WHERE kind <> 'external') AS held,
            (SELECT coalesce(sum(entries), 0) FROM sums WHERE kind = 'wallet') AS wallets,
            (SELECT coalesce(sum(entries), 0) FROM sums WHERE kind LIKE 'earnings%') AS earnings,
            (SELECT coalesce(sum(entries), 0) FROM sums WHERE kind = 'payouts') AS payouts_requested,
            (SELECT coalesce(sum(entries), 0) FROM sums WHERE kind = 'platform') AS platform,
            -- Card money taken back that wallets no longer held (functions/card_payments.sql): owed, negative.
            (SELECT coalesce(-sum(entries), 0) FROM sums WHERE kind = 'owed') AS owed,
            -- Auction holds (functions/auctions.sql): what every hold account keeps is what the running
            -- auctions hold for their leaders, no more, no less.
            (SELECT coalesce(sum(entries), 0) FROM sums WHERE kind = 'hold') AS holds,
            (SELECT coalesce(sum(leader_hold_cents), 0) FROM auctions WHERE ended_at IS NULL) AS auction_holds,
            (SELECT count(*) FROM orders o
               LEFT JOIN (SELECT e.order_id,
                                 coalesce(-sum(e.amount_cents) FILTER (WHERE e.type = 'purchase'), 0) AS paid,
                                 coalesce(sum(e.amount_cents) FILTER (WHERE e.type = 'refund'), 0) AS refunded
                            FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
                           WHERE a.kind = 'wallet' AND e.order_id IS NOT NULL
                           GROUP BY e.order_id) w ON w.order_id = o.id
               LEFT JOIN (SELECT order_id, sum(amount_cents) AS earned FROM earnings GROUP BY order_id) er
                      ON er.order_id = o.id
              WHERE coalesce(w.paid, 0) <> o.total_cents OR coalesce(w.refunded, 0) <> o.refunded_cents
                 OR o.fee_cents + coalesce(er.earned, 0) <> o.total_cents) AS mismatched_orders,
            (SELECT coalesce(sum(shipping_cents), 0) FROM orders) AS shipping
    )
    SELECT jsonb_build_object(
        'balanced', mismatched = 0 AND unbalanced = 0 AND mismatched_orders = 0 AND money_in = money_out + held
                    AND holds = auction_holds,
        'holds_cents', holds, 'mismatched_holds_cents', holds - auction_holds,
        'mismatched_orders', mismatched_orders, 'shipping_cents', shipping,
        'mismatched_accounts', mismatched, 'unbalanced_transactions', unbalanced,
        'money_in_cents', money_in, 'money_out_cents', money_out, 'held_cents', held,
        'wallets_cents', wallets, 'earnings_cents', earnings, 'payouts_requested_cents', payouts_requested,
        'platform_cents', platform, 'owed_cents', owed)
      FROM figures;
$$;

-- An order as its API shape. Digital codes are included only when p_with_codes (the buyer asking).
CREATE OR REPLACE FUNCTION order_json(p_order uuid, p_with_codes boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', o.id, 'number', o.number, 'status', o.status, 'buyer_id', o.buyer_id, 'seller_id', o.seller_id,
        'stream_id', o.stream_id, 'checkout_id', o.checkout_id, 'total_cents', o.total_cents,
        'refunded_cents', o.refunded_cents, 'shipping_cents', o.shipping_cents, 'address', o.address,
        'tracking', o.tracking, 'created_at', o.created_at,
        'updated_at', o.updated_at, 'shipped_at', o.shipped_at, 'delivered_at', o.delivered_at,
        'items', (SELECT jsonb_agg(jsonb_build_object(
                      'variant_id', oi.variant_id, 'product_id', oi.product_id, 'title', oi.title, 'sku', oi.sku,
                      'options', oi.options, 'unit_price_cents', oi.unit_price_cents, 'quantity', oi.quantity,
                      'codes', CASE WHEN p_with_codes THEN (
                          SELECT coalesce(jsonb_agg(u.code ORDER BY u.code), '[]') FROM digital_units u
                           WHERE u.order_id = o.id AND u.variant_id = oi.variant_id) END)
                      ORDER BY oi.title, oi.sku)
                    FROM order_items oi WHERE oi.order_id = o.id),
        'events', (SELECT jsonb_agg(jsonb_build_object(
                       'from', ev.from_status, 'to', ev.to_status, 'actor_id', ev.actor_id, 'reason', ev.reason,
                       'amount_cents', ev.amount_cents, 'at', ev.created_at) ORDER BY ev.id)
                     FROM order_events ev WHERE ev.order_id = o.id),
        -- The latest return (returns.sql), written out here: that file is loaded after this one.
        'return', (SELECT jsonb_build_object(
                       'id', r.id, 'status', r.status, 'reason', r.reason, 'refund_cents', r.refund_cents,
                       'decision_reason', r.decision_reason, 'requested_at', r.requested_at,
                       'decided_at', r.decided_at,
                       'items', (SELECT jsonb_agg(jsonb_build_object('variant_id', ri.variant_id, 'quantity',
                                                                     ri.quantity) ORDER BY ri.variant_id)
                                   FROM order_return_items ri WHERE ri.return_id = r.id))
                     FROM order_returns r WHERE r.order_id = o.id
                    ORDER BY r.requested_at DESC, r.id DESC LIMIT 1))
      FROM orders o WHERE o.id = p_order;
$$;
