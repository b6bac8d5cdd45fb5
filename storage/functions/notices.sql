-- What happens to your orders and money, told to you: the payloads of the order, payout and earnings
-- notifications (written through functions/messages.sql's notify_user, in the transaction of their cause),
-- and the wallet and earnings pushes (job push_balances). In-stream purchases are set-based: buy_batch
-- queues one job orders_placed for the whole batch, whose handler calls notify_orders_placed().

-- Many notifications of one kind, each user its own payload (p_users[i] gets p_payloads[i]): one INSERT
-- for the rows, one for their delivery jobs.
CREATE OR REPLACE FUNCTION notify_each(p_kind text, p_users uuid[], p_payloads jsonb[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
BEGIN
    WITH sent AS (
        INSERT INTO notifications (user_id, kind, payload)
        SELECT n.user_id, p_kind, n.payload FROM unnest(p_users, p_payloads) WITH ORDINALITY AS n (user_id, payload, ord)
         ORDER BY n.ord
        RETURNING id
    )
    SELECT coalesce(array_agg(id), '{}') INTO ids FROM sent;
    PERFORM enqueue_jobs('deliver_notification',
                         ARRAY(SELECT jsonb_build_object('notification_id', i) FROM unnest(ids) i));
END $$;

-- An order as its notifications tell it: id, number, shop, totals, and its items (with the digital codes
-- issued for each, for the buyer's confirmation).
CREATE OR REPLACE FUNCTION order_notice(p_order uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'order_id', o.id, 'number', o.number, 'total_cents', o.total_cents, 'shipping_cents', o.shipping_cents,
        'seller_id', o.seller_id, 'shop_name', s.shop_name, 'stream_id', o.stream_id,
        'items', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'title', oi.title, 'sku', oi.sku, 'quantity', oi.quantity,
                      'unit_price_cents', oi.unit_price_cents,
                      'codes', (SELECT coalesce(jsonb_agg(u.code ORDER BY u.code), '[]') FROM digital_units u
                                 WHERE u.order_id = o.id AND u.variant_id = oi.variant_id))
                      ORDER BY oi.title, oi.sku), '[]')
                    FROM order_items oi WHERE oi.order_id = o.id))
      FROM orders o JOIN sellers s ON s.id = o.seller_id WHERE o.id = p_order;
$$;

-- order_placed for each of these orders not told to its buyer yet (so a job run twice tells once).
-- Returns the buyers told.
CREATE OR REPLACE FUNCTION notify_orders_placed(p_orders uuid[]) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    buyers uuid[];
    payloads jsonb[];
BEGIN
    SELECT coalesce(array_agg(o.buyer_id ORDER BY o.created_at, o.number), '{}'),
           coalesce(array_agg(order_notice(o.id) ORDER BY o.created_at, o.number), '{}')
      INTO buyers, payloads
      FROM orders o
     WHERE o.id = ANY (p_orders)
       AND NOT EXISTS (SELECT 1 FROM notifications n
                        WHERE n.user_id = o.buyer_id AND n.kind = 'order_placed'
                          AND n.payload->>'order_id' = o.id::text);
    PERFORM notify_each('order_placed', buyers, payloads);
    RETURN ARRAY(SELECT DISTINCT b FROM unnest(buyers) b);
END $$;

-- Queue a push of the users' balances: p_kind 'wallet' ({type: wallet, balance_cents, reason}) or
-- 'earnings' ({type: earnings, available_cents}). The job reads the balances when it runs, so a push
-- never shows an older figure than the one before it.
CREATE OR REPLACE FUNCTION queue_balance_push(p_users uuid[], p_kind text, p_reason text) RETURNS void
LANGUAGE sql AS $$
    SELECT enqueue_job('push_balances', jsonb_build_object(
        'user_ids', to_jsonb(p_users), 'kind', p_kind, 'reason', p_reason))
     WHERE cardinality(p_users) > 0;
$$;
