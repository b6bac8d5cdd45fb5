-- The baseline of bench/purchases.py: buy_batch as it was before it became set-based (commit 266fa14),
-- under the name buy_batch_loop, with the create_order and post it called (as create_order_loop and
-- post_loop, so that later changes to those leave the baseline as it was). It loops over the requests in
-- plpgsql and runs some twenty statements per purchase. Installed into bench/purchases.py's own database,
-- and by tests/test_buy_batch_baseline.py inside a transaction it rolls back (buy_batch must answer and
-- write what this did), never by storage.db.migrate; the other helpers it calls (account_of,
-- units_bought, variant_price, ...) are the project's own.

CREATE OR REPLACE FUNCTION post_loop(
    p_txn bigint, p_account uuid, p_amount bigint, p_type text, p_order uuid, p_payout uuid, p_actor uuid,
    p_memo text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    after bigint;
BEGIN
    IF p_amount = 0 THEN
        RETURN balance_of(p_account);
    END IF;
    UPDATE accounts SET balance_cents = balance_cents + p_amount
     WHERE id = p_account AND balance_cents IS NOT NULL
    RETURNING balance_cents INTO after;
    INSERT INTO ledger_entries (txn_id, account_id, type, amount_cents, balance_before_cents,
                                balance_after_cents, order_id, payout_id, actor_id, memo)
    VALUES (p_txn, p_account, p_type, p_amount, after - p_amount, after, p_order, p_payout, p_actor, p_memo);
    RETURN after;
END $$;

CREATE OR REPLACE FUNCTION create_order_loop(
    p_txn bigint, p_checkout uuid, p_buyer uuid, p_seller uuid, p_stream uuid, p_lines jsonb,
    p_fee_bps integer, p_hold_s integer, p_request_id text, p_address jsonb, p_shipping bigint
) RETURNS orders
LANGUAGE plpgsql AS $$
DECLARE
    o orders;
    line jsonb;
    qty integer;
    vid uuid;
    items bigint;
    total bigint := 0;
    fee bigint;
    commission bigint := 0;
    host uuid;
    commission_bps integer := 0;
    seller_user uuid;
    new_stock integer;
    allocated integer;
BEGIN
    SELECT user_id INTO seller_user FROM sellers WHERE id = p_seller;
    items := lines_subtotal(p_lines);
    total := items + p_shipping;
    -- Integer division rounds the platform's fee and the host's commission down, never against the seller.
    fee := items * p_fee_bps / 10000;
    IF p_stream IS NOT NULL THEN
        -- A host earns only on what the stream features, and only while it is live.
        SELECT s.host_id, s.host_commission_bps INTO host, commission_bps
          FROM streams s
         WHERE s.id = p_stream AND s.status = 'live' AND s.seller_id = p_seller
           AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_lines) l
                            JOIN variants v ON v.id = (l->>'variant_id')::uuid
                           WHERE NOT EXISTS (SELECT 1 FROM stream_products sp
                                              WHERE sp.stream_id = s.id AND sp.product_id = v.product_id));
        IF host IS NULL OR host = seller_user THEN
            host := NULL;
        ELSE
            commission := least(items * commission_bps / 10000, items - fee);
        END IF;
    END IF;

    INSERT INTO orders (number, checkout_id, buyer_id, seller_id, stream_id, status, total_cents, fee_cents,
                        host_id, host_commission_cents, address, request_id, shipping_cents)
    VALUES ('LH-' || nextval('order_number_seq'), p_checkout, p_buyer, p_seller, p_stream, 'paid', total, fee,
            host, commission, p_address, p_request_id, p_shipping)
    RETURNING * INTO o;

    FOR line IN SELECT * FROM jsonb_array_elements(p_lines) LOOP
        vid := (line->>'variant_id')::uuid;
        qty := (line->>'quantity')::integer;
        INSERT INTO order_items (order_id, variant_id, product_id, title, sku, options, unit_price_cents,
                                 quantity, flash_sale_id)
        SELECT o.id, v.id, p.id, p.title, v.sku, v.options, (line->>'unit_price_cents')::bigint, qty,
               (line->>'flash_sale_id')::uuid
          FROM variants v JOIN products p ON p.id = v.product_id WHERE v.id = vid;
        UPDATE variants SET stock = stock - qty WHERE id = vid RETURNING stock INTO new_stock;
        INSERT INTO stock_movements (variant_id, delta, stock_after, reason, actor_id, reference)
        VALUES (vid, -qty, new_stock, 'sale', p_buyer, o.number);
        IF line->>'flash_sale_id' IS NOT NULL THEN
            UPDATE flash_sales SET sold = sold + qty WHERE id = (line->>'flash_sale_id')::uuid;
        END IF;
        IF (SELECT digital FROM variants WHERE id = vid) THEN
            -- SKIP LOCKED: codes being handed out by another transaction are passed over, not waited for.
            UPDATE digital_units SET status = 'sold', order_id = o.id
             WHERE id IN (SELECT id FROM digital_units WHERE variant_id = vid AND status = 'available'
                           ORDER BY imported_at, id LIMIT qty FOR UPDATE SKIP LOCKED);
            GET DIAGNOSTICS allocated = ROW_COUNT;
            IF allocated < qty THEN
                RAISE EXCEPTION 'not enough codes for a digital variant'
                    USING ERRCODE = 'LHOOS', DETAIL = jsonb_build_object('variant_id', vid)::text;
            END IF;
        END IF;
    END LOOP;

    PERFORM post_loop(p_txn, account_of(p_buyer, 'wallet'), -total, 'purchase', o.id, NULL, p_buyer, o.number);
    PERFORM post_loop(p_txn, account_of(NULL, 'platform'), fee, 'fee', o.id, NULL, p_buyer, o.number);
    PERFORM post_loop(p_txn, account_of(seller_user, 'earnings_pending'), total - fee - commission, 'earning', o.id,
                 NULL, p_buyer, o.number);
    INSERT INTO earnings (order_id, user_id, role, amount_cents, available_after)
    VALUES (o.id, seller_user, 'seller', total - fee - commission, now() + make_interval(secs => p_hold_s));
    IF host IS NOT NULL THEN
        PERFORM post_loop(p_txn, account_of(host, 'earnings_pending'), commission, 'earning', o.id, NULL, p_buyer,
                     o.number);
        INSERT INTO earnings (order_id, user_id, role, amount_cents, available_after)
        VALUES (o.id, host, 'host', commission, now() + make_interval(secs => p_hold_s));
    END IF;
    INSERT INTO order_events (order_id, from_status, to_status, actor_id) VALUES (o.id, NULL, 'paid', p_buyer);
    IF NOT lines_ship(p_lines) THEN
        -- Nothing to ship: the codes above are the delivery. The earnings still wait for the hold (only the
        -- buyer's own confirmation releases them early, and nobody but the seller vouched for these codes).
        UPDATE orders SET status = 'delivered', delivered_at = now() WHERE id = o.id RETURNING * INTO o;
        INSERT INTO order_events (order_id, from_status, to_status, actor_id, reason)
        VALUES (o.id, 'paid', 'delivered', NULL, 'digital goods are delivered with the order');
    END IF;
    RETURN o;
END $$;

CREATE OR REPLACE FUNCTION buy_batch_loop(
    p_variant uuid, p_stream uuid, p_requests jsonb, p_fee_bps integer, p_hold_s integer
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v variants;
    p products;
    s sellers;
    price record;
    req jsonb;
    buyer uuid;
    qty integer;
    rid text;
    rid_key text;
    remaining integer;
    results jsonb := '[]';
    seen jsonb := '{}';       -- buyer||request id -> true, within this batch
    for_sale boolean;
    existing orders;
    o orders;
    wallet uuid;
    host uuid;
    flash_left integer;
    result jsonb;
    a addresses;
    shipping bigint;
BEGIN
    v := variant_for_update(p_variant);
    SELECT * INTO p FROM products WHERE id = v.product_id;
    SELECT * INTO s FROM sellers WHERE id = p.seller_id;
    SELECT * INTO price FROM variant_price(p_variant, p_stream);
    remaining := v.stock;
    IF price.flash_sale_id IS NOT NULL THEN
        remaining := least(remaining, price.flash_remaining);
    END IF;
    -- In a stream, only what it features and only while it is live (as place_order).
    for_sale := p.status = 'active' AND s.status = 'approved' AND (p_stream IS NULL OR EXISTS (
        SELECT 1 FROM streams st JOIN stream_products sp ON sp.stream_id = st.id
         WHERE st.id = p_stream AND st.status = 'live' AND sp.product_id = p.id));

    SELECT host_id INTO host FROM streams WHERE id = p_stream AND host_id <> s.user_id;
    PERFORM lock_accounts(
        ARRAY(SELECT account_of((e->>'buyer_id')::uuid, 'wallet') FROM jsonb_array_elements(p_requests) e)
        || account_of(s.user_id, 'earnings_pending')
        || CASE WHEN host IS NULL THEN '{}'::uuid[] ELSE ARRAY[account_of(host, 'earnings_pending')] END);

    FOR req IN SELECT e FROM jsonb_array_elements(p_requests) e LOOP
        buyer := (req->>'buyer_id')::uuid;
        qty := coalesce((req->>'quantity')::integer, 1);
        rid := req->>'request_id';
        result := jsonb_build_object('request_id', rid, 'buyer_id', buyer);
        existing := NULL;
        rid_key := NULL;
        IF rid IS NOT NULL THEN
            rid_key := buy_request_key(p_variant, rid);
            SELECT * INTO existing FROM orders WHERE buyer_id = buyer AND request_id = rid_key;
        END IF;
        IF rid IS NOT NULL AND (existing.id IS NOT NULL OR seen ? (buyer::text || ':' || rid)) THEN
            result := result || jsonb_build_object('status', 'duplicate', 'order_id', existing.id,
                                                   'order_number', existing.number);
        ELSIF p_stream IS NOT NULL AND banned_from_stream(p_stream, buyer) THEN
            -- Checked here, not only at connect: a buyer banned since (the kick still on its way) gets nothing.
            result := result || jsonb_build_object('status', 'banned');
        ELSIF qty < 1 OR buyer = s.user_id OR NOT for_sale THEN
            result := result || jsonb_build_object('status', 'error');
        ELSIF req ? 'flash_sale_id' AND
              (req->>'flash_sale_id')::uuid IS DISTINCT FROM price.flash_sale_id THEN
            -- The buyer pressed buy on a flash sale that has ended: never charge the regular price instead.
            result := result || jsonb_build_object('status', 'sold_out');
        ELSIF price.per_buyer_limit IS NOT NULL AND
              -- Orders this batch already wrote are visible here, so this counts them too.
              units_bought(buyer, p_variant, p_stream, price.flash_sale_id) + qty > price.per_buyer_limit THEN
            result := result || jsonb_build_object('status', 'limit_reached');
        ELSIF remaining < qty THEN
            result := result || jsonb_build_object('status', 'sold_out');
        ELSE
            a := NULL;
            shipping := 0;
            IF NOT v.digital THEN
                a := buyer_address(buyer, (req->>'address_id')::uuid);
                shipping := shipping_for(s.id, price.price_cents * qty, a.country);
            END IF;
            wallet := account_of(buyer, 'wallet');
            IF NOT v.digital AND a.id IS NULL THEN
                result := result || jsonb_build_object('status', 'address_required', 'reason', 'missing');
            ELSIF shipping IS NULL THEN
                result := result || jsonb_build_object('status', 'address_required', 'reason', 'not_shipped',
                                                       'country', a.country);
            ELSIF balance_of(wallet) < price.price_cents * qty + shipping THEN
                result := result || jsonb_build_object('status', 'insufficient_funds');
            ELSE
                -- Each order is its own ledger transaction: its entries sum to zero on their own.
                o := create_order_loop(nextval('ledger_txn_seq'), gen_random_uuid(), buyer, s.id, p_stream,
                                  jsonb_build_array(jsonb_build_object(
                                      'variant_id', p_variant, 'quantity', qty,
                                      'unit_price_cents', price.price_cents, 'flash_sale_id', price.flash_sale_id)),
                                  p_fee_bps, p_hold_s, rid_key, address_snapshot(a), shipping);
                remaining := remaining - qty;
                result := result || jsonb_build_object('status', 'ok', 'order_id', o.id, 'order_number', o.number);
            END IF;
        END IF;
        IF rid IS NOT NULL THEN
            seen := seen || jsonb_build_object(buyer::text || ':' || rid, true);
        END IF;
        results := results || result;
    END LOOP;

    IF price.flash_sale_id IS NOT NULL THEN
        -- A flash sale sold out (its quantity or the stock) ends here, in the same transaction.
        UPDATE flash_sales f SET ended_at = now(), ended_reason = 'sold_out'
         WHERE f.id = price.flash_sale_id AND f.ended_at IS NULL
           AND (f.sold >= f.quantity OR (SELECT stock FROM variants WHERE id = p_variant) = 0);
        SELECT CASE WHEN ended_at IS NULL THEN quantity - sold ELSE 0 END INTO flash_left
          FROM flash_sales WHERE id = price.flash_sale_id;
    END IF;
    RETURN jsonb_build_object(
        'results', results,
        'available', (SELECT stock FROM variants WHERE id = p_variant),
        'flash_sale', CASE WHEN price.flash_sale_id IS NULL THEN NULL ELSE jsonb_build_object(
            'id', price.flash_sale_id, 'remaining', flash_left,
            'ended', (SELECT ended_at IS NOT NULL FROM flash_sales WHERE id = price.flash_sale_id)) END);
END $$;
