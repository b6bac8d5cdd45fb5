-- Figures for the admin pages: read-only, no rules. Money figures come from the same rows the ledger was
-- written with (orders' totals and refunds, the platform account's entries), so they reconcile with it:
-- an order's total is its buyer's purchase entry, its refunded_cents the refund entries (cancellations
-- included), and the fees the platform account's entries for it.

-- The platform over the last p_days UTC days (today included): orders placed, their gross value, what
-- has been refunded of them since (cancellations included), what is left, the platform's fees kept on
-- them, one row per day (days without orders too), and the streams whose orders brought in most.
CREATE OR REPLACE FUNCTION platform_stats(p_days integer, p_top integer DEFAULT 5) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    WITH bounds AS (
        SELECT (now() AT TIME ZONE 'UTC')::date AS last_day,
               (now() AT TIME ZONE 'UTC')::date - (p_days - 1) AS first_day
    ), placed AS (
        SELECT o.id, o.buyer_id, o.stream_id, o.status, o.total_cents, o.refunded_cents,
               (o.created_at AT TIME ZONE 'UTC')::date AS day
          FROM orders o, bounds b
         WHERE o.created_at >= b.first_day::timestamp AT TIME ZONE 'UTC'
    ), per_day AS (
        SELECT d::date AS day, count(p.id) AS orders,
               coalesce(sum(p.total_cents), 0)::bigint AS gmv_cents,
               coalesce(sum(p.total_cents - p.refunded_cents), 0)::bigint AS net_cents
          FROM bounds b
         CROSS JOIN generate_series(b.first_day, b.last_day, interval '1 day') d
          LEFT JOIN placed p ON p.day = d::date
         GROUP BY d
    ), top AS (
        -- Revenue as GET /api/streams/{id}/stats counts it: what its orders kept after refunds.
        SELECT p.stream_id, count(*) FILTER (WHERE p.status <> 'cancelled') AS orders,
               sum(p.total_cents - p.refunded_cents)::bigint AS revenue_cents
          FROM placed p WHERE p.stream_id IS NOT NULL
         GROUP BY p.stream_id
         ORDER BY revenue_cents DESC, orders DESC, p.stream_id
         LIMIT p_top
    )
    SELECT jsonb_build_object(
        'days', p_days,
        'first_day', (SELECT to_char(first_day, 'YYYY-MM-DD') FROM bounds),
        'last_day', (SELECT to_char(last_day, 'YYYY-MM-DD') FROM bounds),
        'orders', (SELECT count(*) FROM placed),
        'cancelled_orders', (SELECT count(*) FROM placed WHERE status = 'cancelled'),
        'buyers', (SELECT count(DISTINCT buyer_id) FROM placed),
        'gmv_cents', (SELECT coalesce(sum(total_cents), 0)::bigint FROM placed),
        'refunded_cents', (SELECT coalesce(sum(refunded_cents), 0)::bigint FROM placed),
        'net_cents', (SELECT coalesce(sum(total_cents - refunded_cents), 0)::bigint FROM placed),
        'fees_cents', (SELECT coalesce(sum(e.amount_cents), 0)::bigint
                         FROM ledger_entries e JOIN accounts a ON a.id = e.account_id
                        WHERE a.kind = 'platform' AND e.order_id IN (SELECT id FROM placed)),
        'series', (SELECT jsonb_agg(jsonb_build_object(
                              'day', to_char(day, 'YYYY-MM-DD'), 'orders', orders, 'gmv_cents', gmv_cents,
                              'net_cents', net_cents) ORDER BY day)
                     FROM per_day),
        'top_streams', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                   'stream_id', s.id, 'title', s.title, 'status', s.status,
                                   'seller_id', s.seller_id, 'shop_name', se.shop_name, 'orders', t.orders,
                                   'revenue_cents', t.revenue_cents) ORDER BY t.revenue_cents DESC, t.orders DESC, s.id),
                                   '[]')
                          FROM top t JOIN streams s ON s.id = t.stream_id JOIN sellers se ON se.id = s.seller_id));
$$;
