-- Paying the difference by card at checkout (docs/MONEY.md, "Paying the difference by card"). A checkout
-- the wallet does not cover opens a card payment with purpose 'order' (open_card_payment, in
-- card_payments.sql) whose purpose_data is the order request: what to place and how, and the buyer's
-- Idempotency-Key. When the provider says the card money was captured, apply_card_payment credits the
-- wallet and calls apply_card_order below in the same transaction, so the buyer is never charged without
-- the order being tried, and the order is tried once: the payment row (locked by the caller) records the
-- outcome, and a replayed success finds it.
--
-- The order goes through place_order, with all its rules (stock, price now, the wallet, limits). If one of
-- them refuses (stock ran out, the price rose, the wallet was spent meanwhile) the money stays in the
-- wallet, the payment records why, and the buyer is notified.

-- The order request's answer as POST /api/orders and /api/cart/checkout give it (201): the first order
-- and all of them.
CREATE OR REPLACE FUNCTION placed_orders_json(p_order_ids uuid[]) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object(
        'order', order_json(p_order_ids[1], true),
        'orders', (SELECT jsonb_agg(order_json(i, true) ORDER BY n) FROM unnest(p_order_ids) WITH ORDINALITY u (i, n)));
END $$;

-- Places the order a card payment was for, right after its money was credited (the caller holds the
-- payment row's lock and the buyer's wallet lock). Does nothing for a top-up or an order already tried.
CREATE OR REPLACE FUNCTION apply_card_order(p_payment uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p card_payments;
    request jsonb;
    placed uuid[];
    failed_state text;
    failed_message text;
BEGIN
    SELECT * INTO p FROM card_payments WHERE id = p_payment;
    IF p.purpose <> 'order' OR p.outcome IS NOT NULL THEN
        RETURN;
    END IF;
    request := p.purpose_data;
    BEGIN  -- a savepoint: a refused order undoes only itself, the credit stays
        placed := place_order(p.user_id, request->'items', (request->>'stream_id')::uuid, request->'address',
                              (request->>'fee_bps')::integer, (request->>'hold_s')::integer,
                              (request->>'address_id')::uuid);
    EXCEPTION WHEN OTHERS THEN
        -- Only the shop's own refusals (SQLSTATE class LH) are an outcome; anything else is a fault that
        -- rolls the whole credit back, so the provider's retry or the reconciliation tries again.
        GET STACKED DIAGNOSTICS failed_state = RETURNED_SQLSTATE, failed_message = MESSAGE_TEXT;
        IF failed_state NOT LIKE 'LH%' THEN
            RAISE;
        END IF;
    END;

    IF placed IS NOT NULL THEN
        IF request->>'from_cart' = 'true' THEN
            -- What was bought leaves the cart; anything added since the checkout stays.
            DELETE FROM cart_items c
             USING jsonb_array_elements(request->'items') i
             WHERE c.user_id = p.user_id AND c.variant_id = (i->>'variant_id')::uuid;
        END IF;
        UPDATE card_payments SET outcome = 'ordered', order_ids = placed, updated_at = now() WHERE id = p.id;
        -- A retry of the checkout request (same Idempotency-Key) now answers with the order.
        IF request->>'idempotency_key' IS NOT NULL THEN
            UPDATE idempotency_keys SET status = 201, response = placed_orders_json(placed)
             WHERE user_id = p.user_id AND key = request->>'idempotency_key';
        END IF;
    ELSE
        UPDATE card_payments
           SET outcome = 'not_ordered', outcome_code = failed_state, outcome_message = failed_message,
               updated_at = now()
         WHERE id = p.id;
        PERFORM notify_user(p.user_id, 'card_order_failed', jsonb_build_object(
            'payment_id', p.id, 'amount_cents', p.received_cents, 'currency', p.currency,
            'reason', failed_message, 'path', '/wallet'));  -- functions/messages.sql
    END IF;
END $$;
