-- Low-stock alerts: a variant's threshold is its own (variants.low_stock_threshold) or else its shop's
-- default (sellers.low_stock_threshold). Crossing it downward (stock before > threshold >= stock after)
-- alerts the seller once per crossing: the sales after it start at or under the threshold, so they cross
-- nothing; a restock above it re-arms the alert. No state is kept for that: the rule is the state.
--
-- Called by the trigger variants_low_stock (migration 0015) for every statement that lowers a variant's
-- stock, whatever the path: buy_batch (once per batch, from the batch's before and after), checkout,
-- write-offs, digital codes. It only queues a job (in the caller's transaction: rolled back with it); the
-- job (low_stock, livehub/shop/stock_alerts.py) stores and delivers the notification through
-- low_stock_notify(), outside the purchase's path.

-- The threshold that applies to a variant: p_own when set, else its shop's default.
CREATE OR REPLACE FUNCTION low_stock_threshold(p_own integer, p_product uuid) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce(p_own, (SELECT s.low_stock_threshold FROM products p JOIN sellers s ON s.id = p.seller_id
                             WHERE p.id = p_product));
$$;

CREATE OR REPLACE FUNCTION low_stock_crossing(
    p_variant uuid, p_product uuid, p_own_threshold integer, p_before integer, p_after integer
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    threshold integer := low_stock_threshold(p_own_threshold, p_product);
BEGIN
    IF p_before > threshold AND p_after <= threshold THEN
        -- crossing: which crossing this is (a variant crosses at most once per transaction: its row is
        -- updated in order under its lock), so a retried job stores its notification once.
        PERFORM enqueue_job('low_stock', jsonb_build_object(
            'variant_id', p_variant, 'stock', p_after, 'threshold', threshold,
            'crossing', pg_current_xact_id()::text || ':' || p_variant));
    END IF;
END $$;

-- The job's work: the seller's low_stock notification (stored, pushed, emailed per their settings), with
-- what the crossing left (p_stock) and the product's names. Once per crossing (p_crossing): a job run again
-- after it stored the notification (its node died before the queue recorded it done) stores nothing more.
-- Returns the notification's id (NULL when the variant is gone or it was stored before).
CREATE OR REPLACE FUNCTION low_stock_notify(p_variant uuid, p_stock integer, p_threshold integer, p_crossing text)
RETURNS uuid
LANGUAGE sql AS $$
    SELECT notify_user(s.user_id, 'low_stock', jsonb_build_object(
               'variant_id', v.id, 'product_id', p.id, 'title', p.title, 'sku', v.sku, 'options', v.options,
               'stock', p_stock, 'threshold', p_threshold, 'shop_name', s.shop_name, 'crossing', p_crossing))
      FROM variants v JOIN products p ON p.id = v.product_id JOIN sellers s ON s.id = p.seller_id
     WHERE v.id = p_variant
       AND (p_crossing IS NULL OR NOT EXISTS (
               SELECT 1 FROM notifications n
                WHERE n.user_id = s.user_id AND n.kind = 'low_stock' AND n.payload->>'crossing' = p_crossing));
$$;

-- The shop's variants at or under their threshold (active products), lowest stock first.
CREATE OR REPLACE FUNCTION low_stock_variants(p_seller uuid, p_limit integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(x.j ORDER BY x.stock, x.title, x.sku), '[]')
      FROM (SELECT v.stock, p.title, v.sku, jsonb_build_object(
                       'variant_id', v.id, 'product_id', p.id, 'title', p.title, 'sku', v.sku,
                       'options', v.options, 'digital', v.digital, 'stock', v.stock,
                       'threshold', coalesce(v.low_stock_threshold, s.low_stock_threshold),
                       'own_threshold', v.low_stock_threshold) AS j
              FROM sellers s
              JOIN products p ON p.seller_id = s.id AND p.status = 'active'
              JOIN variants v ON v.product_id = p.id
             WHERE s.id = p_seller AND v.stock <= coalesce(v.low_stock_threshold, s.low_stock_threshold)
             ORDER BY v.stock, p.title, v.sku
             LIMIT p_limit) x;
$$;
