-- The baseline of place_order before it shared buy_batch's set-based writer (write_orders): place_order as
-- it was at commit 13ac880, under the name place_order_loop, calling create_order_loop (one order at a
-- time, some fifteen statements each), which bench/sql/buy_batch_loop.sql defines: install that file first.
-- Installed into bench/purchases.py's own database, and by tests/test_place_order_baseline.py inside a
-- transaction it rolls back (place_order must answer, raise and write what this did), never by
-- storage.db.migrate; the other helpers it calls (account_of, variant_price, order_shipping, ...) are the
-- project's own.

CREATE OR REPLACE FUNCTION place_order_loop(
    p_buyer uuid, p_items jsonb, p_stream uuid, p_address jsonb, p_fee_bps integer, p_hold_s integer,
    p_address_id uuid DEFAULT NULL
) RETURNS uuid[]
LANGUAGE plpgsql AS $$
DECLARE
    address jsonb := p_address;
    shipping jsonb := '{}';  -- seller id -> its order's shipping
    txn bigint := nextval('ledger_txn_seq');
    checkout uuid := gen_random_uuid();
    wanted uuid[];
    r record;
    price record;
    lines jsonb := '{}';   -- seller id -> [line]
    total bigint := 0;
    wallet uuid;
    involved uuid[];
    host uuid;
    seller uuid;
    order_ids uuid[] := '{}';
    o orders;
BEGIN
    SELECT array_agg(DISTINCT (e->>'variant_id')::uuid) INTO wanted FROM jsonb_array_elements(p_items) e;
    IF wanted IS NULL THEN
        RAISE EXCEPTION 'an order needs at least one item' USING ERRCODE = 'LH422';
    END IF;
    IF p_stream IS NOT NULL AND NOT EXISTS (SELECT 1 FROM streams WHERE id = p_stream) THEN
        RAISE EXCEPTION 'stream not found' USING ERRCODE = 'LH404';
    END IF;
    IF p_stream IS NOT NULL AND NOT EXISTS (SELECT 1 FROM streams WHERE id = p_stream AND status = 'live') THEN
        RAISE EXCEPTION 'the stream is not live' USING ERRCODE = 'LH409';
    END IF;
    IF p_stream IS NOT NULL AND banned_from_stream(p_stream, p_buyer) THEN
        RAISE EXCEPTION 'banned from this seller''s streams' USING ERRCODE = 'LH403';
    END IF;
    -- Buying "in a stream" is for what it features: anything else would hand its host a commission.
    IF p_stream IS NOT NULL AND EXISTS (
        SELECT 1 FROM jsonb_array_elements(p_items) e JOIN variants v ON v.id = (e->>'variant_id')::uuid
         WHERE NOT EXISTS (SELECT 1 FROM stream_products sp WHERE sp.stream_id = p_stream AND sp.product_id = v.product_id)
    ) THEN
        RAISE EXCEPTION 'that product is not featured in this stream' USING ERRCODE = 'LH422';
    END IF;
    IF address IS NOT NULL AND coalesce(address->>'country', '') !~ '^[A-Z]{2}$' THEN
        RAISE EXCEPTION 'an address needs its country (ISO 3166-1 alpha-2)' USING ERRCODE = 'LH422';
    END IF;
    IF address IS NULL THEN
        address := address_snapshot(buyer_address(p_buyer, p_address_id));
        IF p_address_id IS NOT NULL AND address IS NULL THEN
            RAISE EXCEPTION 'address not found' USING ERRCODE = 'LH404';
        END IF;
    END IF;
    PERFORM 1 FROM variants WHERE id = ANY (wanted) ORDER BY id FOR UPDATE;

    FOR r IN
        SELECT i.variant_id, i.quantity, v.id AS found, v.stock, p.seller_id, p.status AS product_status,
               s.status AS seller_status, s.user_id AS seller_user,
               -- A stream product's per-buyer limit covers all its variants in this order together.
               sum(i.quantity) OVER (PARTITION BY v.product_id) AS product_quantity
          FROM (SELECT (e->>'variant_id')::uuid AS variant_id, sum((e->>'quantity')::integer) AS quantity
                  FROM jsonb_array_elements(p_items) e GROUP BY 1) i
          LEFT JOIN variants v ON v.id = i.variant_id
          LEFT JOIN products p ON p.id = v.product_id
          LEFT JOIN sellers s ON s.id = p.seller_id
         ORDER BY p.seller_id, i.variant_id
    LOOP
        IF r.quantity < 1 THEN
            RAISE EXCEPTION 'quantities must be at least 1' USING ERRCODE = 'LH422';
        END IF;
        IF r.found IS NULL THEN
            RAISE EXCEPTION 'variant not found'
                USING ERRCODE = 'LH404', DETAIL = jsonb_build_object('variant_id', r.variant_id)::text;
        END IF;
        IF r.product_status <> 'active' OR r.seller_status <> 'approved' THEN
            RAISE EXCEPTION 'this product is not for sale'
                USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('variant_id', r.variant_id)::text;
        END IF;
        IF r.seller_user = p_buyer THEN
            RAISE EXCEPTION 'sellers cannot buy their own products' USING ERRCODE = 'LH403';
        END IF;
        SELECT * INTO price FROM variant_price(r.variant_id, p_stream);
        IF r.stock < r.quantity OR (price.flash_sale_id IS NOT NULL AND price.flash_remaining < r.quantity) THEN
            RAISE EXCEPTION 'not enough stock'
                USING ERRCODE = 'LHOOS', DETAIL = jsonb_build_object(
                    'variant_id', r.variant_id,
                    'available', CASE WHEN price.flash_sale_id IS NULL THEN r.stock
                                      ELSE least(r.stock, price.flash_remaining) END)::text;
        END IF;
        IF price.per_buyer_limit IS NOT NULL AND p_stream IS NOT NULL AND
           units_bought(p_buyer, r.variant_id, p_stream, price.flash_sale_id)
           -- (parenthesised: a bare CASE's THEN would end plpgsql's IF condition)
           + (CASE WHEN price.flash_sale_id IS NULL THEN r.product_quantity ELSE r.quantity END)
           > price.per_buyer_limit THEN
            RAISE EXCEPTION 'over the per-buyer limit'
                USING ERRCODE = 'LH409', DETAIL = jsonb_build_object(
                    'variant_id', r.variant_id, 'reason', 'limit_reached', 'limit', price.per_buyer_limit)::text;
        END IF;
        lines := jsonb_set(lines, ARRAY[r.seller_id::text],
                           coalesce(lines->(r.seller_id::text), '[]') || jsonb_build_object(
                               'variant_id', r.variant_id, 'quantity', r.quantity,
                               'unit_price_cents', price.price_cents, 'flash_sale_id', price.flash_sale_id));
        total := total + price.price_cents * r.quantity;
        involved := involved || account_of(r.seller_user, 'earnings_pending');
    END LOOP;

    FOR seller IN SELECT key::uuid FROM jsonb_each(lines) ORDER BY key LOOP
        shipping := shipping || jsonb_build_object(seller, order_shipping(seller, lines->(seller::text), address));
        total := total + (shipping->>(seller::text))::bigint;
    END LOOP;

    wallet := account_of(p_buyer, 'wallet');
    SELECT host_id INTO host FROM streams WHERE id = p_stream;
    IF host IS NOT NULL THEN
        involved := involved || account_of(host, 'earnings_pending');
    END IF;
    PERFORM lock_accounts(involved || wallet);
    IF balance_of(wallet) < total THEN
        RAISE EXCEPTION 'not enough money in the wallet'
            USING ERRCODE = 'LHNSF',
                  DETAIL = jsonb_build_object('balance_cents', balance_of(wallet), 'total_cents', total)::text;
    END IF;

    FOR seller IN SELECT key::uuid FROM jsonb_each(lines) ORDER BY key LOOP
        o := create_order_loop(txn, checkout, p_buyer, seller, p_stream, lines->(seller::text), p_fee_bps, p_hold_s,
                               NULL, CASE WHEN lines_ship(lines->(seller::text)) THEN address END,
                               (shipping->>(seller::text))::bigint);
        order_ids := order_ids || o.id;
    END LOOP;
    RETURN order_ids;
END $$;
