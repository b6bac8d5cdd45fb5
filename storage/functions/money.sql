-- Money rules: ledger postings, top-ups, purchases (one order or a batch of in-stream buyers), the order
-- state machine, refunds, earnings and payouts. Each public function runs as one transaction.
--
-- Lock order, everywhere, so concurrent transactions never deadlock: an order row, then variants (by
-- id), then earnings rows, then accounts (by id). System accounts (platform, external) keep no balance
-- and take no lock.

-- The account of a user (or of the system when p_user is NULL), created on first use.
CREATE OR REPLACE FUNCTION account_of(p_user uuid, p_kind text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    found_id uuid;
BEGIN
    -- Two lookups rather than IS NOT DISTINCT FROM, which no index serves: this runs several times per
    -- purchase while the variant is locked.
    IF p_user IS NULL THEN
        SELECT id INTO found_id FROM accounts WHERE kind = p_kind AND user_id IS NULL;
    ELSE
        SELECT id INTO found_id FROM accounts WHERE user_id = p_user AND kind = p_kind;
    END IF;
    IF found_id IS NULL THEN
        INSERT INTO accounts (kind, user_id, balance_cents)
        VALUES (p_kind, p_user, CASE WHEN p_user IS NULL THEN NULL ELSE 0 END)
        ON CONFLICT DO NOTHING RETURNING id INTO found_id;
        IF found_id IS NULL THEN  -- created by a concurrent transaction a moment ago
            RETURN account_of(p_user, p_kind);
        END IF;
    END IF;
    RETURN found_id;
END $$;

-- Locks user accounts in id order (the global lock order); system accounts are skipped.
CREATE OR REPLACE FUNCTION lock_accounts(p_ids uuid[]) RETURNS void
LANGUAGE sql AS $$
    SELECT count(*) FROM (SELECT 1 FROM accounts WHERE id = ANY (p_ids) AND user_id IS NOT NULL
                           ORDER BY id FOR UPDATE) locked;
$$;

CREATE OR REPLACE FUNCTION balance_of(p_account uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT balance_cents FROM accounts WHERE id = p_account $$;

-- One ledger entry. The caller checks rules (a wallet's balance) first, so a CHECK violation here is a
-- bug, not a user error.
CREATE OR REPLACE FUNCTION post(
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

-- Money in from the payment provider. Returns the wallet's new balance.
CREATE OR REPLACE FUNCTION top_up(p_user uuid, p_amount bigint, p_reference text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    txn bigint := nextval('ledger_txn_seq');
    wallet uuid := account_of(p_user, 'wallet');
BEGIN
    IF p_amount <= 0 THEN
        RAISE EXCEPTION 'a top-up must be positive' USING ERRCODE = 'LH422';
    END IF;
    PERFORM lock_accounts(ARRAY[wallet]);
    PERFORM post(txn, account_of(NULL, 'external'), -p_amount, 'deposit', NULL, NULL, p_user, p_reference);
    RETURN post(txn, wallet, p_amount, 'deposit', NULL, NULL, p_user, p_reference);
END $$;

-- An admin's credit (positive) or debit (negative) of a wallet, with a reason.
CREATE OR REPLACE FUNCTION adjust_wallet(p_user uuid, p_amount bigint, p_reason text, p_admin uuid) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    txn bigint := nextval('ledger_txn_seq');
    wallet uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'LH404';
    END IF;
    IF p_amount = 0 THEN
        RAISE EXCEPTION 'an adjustment must not be zero' USING ERRCODE = 'LH422';
    END IF;
    wallet := account_of(p_user, 'wallet');
    PERFORM lock_accounts(ARRAY[wallet]);
    IF balance_of(wallet) + p_amount < 0 THEN
        RAISE EXCEPTION 'the wallet holds less than that'
            USING ERRCODE = 'LHNSF', DETAIL = jsonb_build_object('balance_cents', balance_of(wallet))::text;
    END IF;
    PERFORM post(txn, account_of(NULL, 'external'), -p_amount, 'adjustment', NULL, NULL, p_admin, p_reason);
    RETURN post(txn, wallet, p_amount, 'adjustment', NULL, NULL, p_admin, p_reason);
END $$;

-- The price a buyer pays for a variant now: the active flash sale's, else the stream's live price, else
-- the list price. Live and flash prices apply only while the stream is live. Also returns the per-buyer
-- limit that applies and how many flash-sale units remain.
CREATE OR REPLACE FUNCTION variant_price(
    p_variant uuid, p_stream uuid,
    OUT price_cents bigint, OUT flash_sale_id uuid, OUT per_buyer_limit integer, OUT flash_remaining integer
)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    live_price bigint;
    f flash_sales;
BEGIN
    SELECT v.price_cents INTO price_cents FROM variants v WHERE v.id = p_variant;
    IF p_stream IS NULL THEN
        RETURN;
    END IF;
    SELECT sp.live_price_cents, sp.per_buyer_limit INTO live_price, per_buyer_limit
      FROM stream_products sp
      JOIN variants v ON v.product_id = sp.product_id
      JOIN streams s ON s.id = sp.stream_id
     WHERE sp.stream_id = p_stream AND v.id = p_variant AND s.status = 'live';
    price_cents := coalesce(live_price, price_cents);
    SELECT fs.* INTO f
      FROM flash_sales fs JOIN streams s ON s.id = fs.stream_id
     WHERE fs.stream_id = p_stream AND fs.variant_id = p_variant AND fs.ended_at IS NULL
       AND now() >= fs.starts_at AND now() < fs.ends_at AND s.status = 'live'
     ORDER BY fs.starts_at DESC LIMIT 1;
    IF f.id IS NOT NULL THEN
        price_cents := f.price_cents;
        flash_sale_id := f.id;
        per_buyer_limit := coalesce(f.per_buyer_limit, per_buyer_limit);
        flash_remaining := f.quantity - f.sold;
    END IF;
END $$;

-- Units of a variant a buyer already holds under the limit that applies: in this flash sale, or of this
-- product in this stream. Cancelled orders do not count.
CREATE OR REPLACE FUNCTION units_bought(p_buyer uuid, p_variant uuid, p_stream uuid, p_flash uuid) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(oi.quantity), 0)::integer
      FROM order_items oi JOIN orders o ON o.id = oi.order_id
     WHERE o.buyer_id = p_buyer AND o.status <> 'cancelled'
       AND CASE WHEN p_flash IS NOT NULL THEN oi.flash_sale_id = p_flash
                ELSE o.stream_id = p_stream
                     AND oi.product_id = (SELECT product_id FROM variants WHERE id = p_variant) END;
$$;

-- Writes one order from lines already priced, checked and locked by the caller (variants and the
-- accounts involved): items, stock, digital units, ledger entries, earnings, the first event.
-- p_lines: [{variant_id, quantity, unit_price_cents, flash_sale_id}], all of one seller. p_shipping is
-- what the buyer pays on top of the items to have them shipped to p_address (NULL when nothing ships):
-- the seller earns it whole; the platform's fee and the host's commission are on the items only.
-- An order of digital goods only is delivered at once (its codes are issued here).
CREATE OR REPLACE FUNCTION create_order(
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

    PERFORM post(p_txn, account_of(p_buyer, 'wallet'), -total, 'purchase', o.id, NULL, p_buyer, o.number);
    PERFORM post(p_txn, account_of(NULL, 'platform'), fee, 'fee', o.id, NULL, p_buyer, o.number);
    PERFORM post(p_txn, account_of(seller_user, 'earnings_pending'), total - fee - commission, 'earning', o.id,
                 NULL, p_buyer, o.number);
    INSERT INTO earnings (order_id, user_id, role, amount_cents, available_after)
    VALUES (o.id, seller_user, 'seller', total - fee - commission, now() + make_interval(secs => p_hold_s));
    IF host IS NOT NULL THEN
        PERFORM post(p_txn, account_of(host, 'earnings_pending'), commission, 'earning', o.id, NULL, p_buyer,
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

-- Whether the stream's shop has banned the user (a ban covers all the shop's streams). Every purchase in a
-- stream asks here, in its own transaction, so a ban holds the moment it commits, whichever way the buyer
-- came in (REST, a websocket opened before the ban, another node).
CREATE OR REPLACE FUNCTION banned_from_stream(p_stream uuid, p_user uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM seller_bans b JOIN streams s ON s.seller_id = b.seller_id
                    WHERE s.id = p_stream AND b.user_id = p_user);
$$;

-- Places an order for a cart or a direct purchase: [{variant_id, quantity}], optionally in a stream.
-- Checks everything first and raises (out_of_stock, insufficient_funds, ...) before anything is written;
-- splits the items into one order per seller, each with its shipping. Goods that ship go to p_address (an
-- address given inline), else the buyer's saved address p_address_id, else the buyer's default address.
-- Returns the ids of the orders, in seller order.
CREATE OR REPLACE FUNCTION place_order(
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
        o := create_order(txn, checkout, p_buyer, seller, p_stream, lines->(seller::text), p_fee_bps, p_hold_s,
                          NULL, CASE WHEN lines_ship(lines->(seller::text)) THEN address END,
                          (shipping->>(seller::text))::bigint);
        order_ids := order_ids || o.id;
    END LOOP;
    RETURN order_ids;
END $$;

-- How an in-stream buy's request id is stored on its order: per variant, so a retried buy (the same
-- variant) queues on the same row lock and finds the first, while the same id reused for another variant
-- at the same moment cannot collide with it and fail a whole batch.
CREATE OR REPLACE FUNCTION buy_request_key(p_variant uuid, p_request_id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT p_variant::text || ':' || p_request_id $$;

-- The orders that in-stream buys of p_variant placed, by (buyer, request id): what buy_batch would answer
-- a retry with. Read-only, no lock: the checkout uses it for buys in a flash sale that has already ended,
-- where no new order can appear.
CREATE OR REPLACE FUNCTION orders_for_buy_requests(p_variant uuid, p_buyers uuid[], p_request_ids text[])
RETURNS TABLE (buyer_id uuid, request_id text, order_id uuid, order_number text)
LANGUAGE sql STABLE AS $$
    SELECT r.buyer_id, r.request_id, o.id, o.number
      FROM unnest(p_buyers, p_request_ids) AS r (buyer_id, request_id)
      JOIN orders o ON o.buyer_id = r.buyer_id AND o.request_id = buy_request_key(p_variant, r.request_id)
$$;

-- In-stream buying: many buyers, one variant, one transaction. p_requests, in arrival order:
-- [{request_id, buyer_id, quantity, flash_sale_id?, address_id?}] (with a flash sale named, only at its
-- price). Stock goes to requests in that order; a buyer who cannot pay, is over the limit, is banned from
-- the stream's shop ('banned') or has no address the seller ships to ('address_required', with reason
-- 'missing' or 'not_shipped') consumes nothing; a product not for sale (archived, suspended seller, or not
-- featured in the live stream) answers 'error' to everyone. Goods that ship go to the buyer's address
-- address_id, else the default one, at the seller's shipping rate. Buyer ids must be existing users.
-- Returns {results: [{request_id, buyer_id, status, order_id?, order_number?, reason?, country?}],
-- available, flash_sale: {id, remaining, ended} | null}. Concurrent batches for the same variant (other
-- processes) queue on the variant's row lock.
CREATE OR REPLACE FUNCTION buy_batch(
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
                o := create_order(nextval('ledger_txn_seq'), gen_random_uuid(), buyer, s.id, p_stream,
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
