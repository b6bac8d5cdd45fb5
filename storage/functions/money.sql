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

-- Money in from outside, in transaction p_txn: what the user owes after a card refund or dispute
-- (functions/card_payments.sql) is paid first, the rest goes to the wallet. The caller has locked the
-- wallet and, if the user has one, the owed account. Returns the wallet's new balance.
CREATE OR REPLACE FUNCTION deposit(p_txn bigint, p_user uuid, p_amount bigint, p_reference text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    owed uuid := (SELECT id FROM accounts WHERE user_id = p_user AND kind = 'owed');
    settled bigint := least(p_amount, -coalesce(balance_of(owed), 0));
BEGIN
    PERFORM post(p_txn, account_of(NULL, 'external'), -p_amount, 'deposit', NULL, NULL, p_user, p_reference);
    PERFORM post(p_txn, owed, settled, 'owed_settled', NULL, NULL, p_user, p_reference);
    RETURN post(p_txn, account_of(p_user, 'wallet'), p_amount - settled, 'deposit', NULL, NULL, p_user, p_reference);
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
    -- Owed money changes only under the wallet's lock too, so an owed account made after this lookup
    -- finds the deposit in the wallet.
    PERFORM lock_accounts(ARRAY[wallet, (SELECT id FROM accounts WHERE user_id = p_user AND kind = 'owed')]);
    PERFORM queue_balance_push(ARRAY[p_user], 'wallet', 'top_up');  -- functions/notices.sql
    RETURN deposit(txn, p_user, p_amount, p_reference);
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

-- An order already decided (who buys what from whom, at what price, shipped where), as write_orders()
-- takes it. The caller has checked every rule, locked the variants and every account the orders move, and
-- created those accounts; it gives each order its id, number and ledger transaction.
CREATE TYPE order_to_write AS (
    id uuid,
    number text,
    txn bigint,
    checkout_id uuid,
    buyer_id uuid,
    seller_id uuid,
    stream_id uuid,
    host_id uuid,             -- the stream's host when it earns a commission on this order, else NULL
    commission_bps integer,   -- the host's rate (ignored without host_id)
    address jsonb,            -- where it ships (NULL when nothing in it ships)
    request_id text,
    shipping_cents bigint     -- what the buyer pays on top of the items; the seller earns it whole
);

-- One line of an order_to_write, at the unit price decided for it.
CREATE TYPE order_line_to_write AS (
    order_id uuid,
    variant_id uuid,
    quantity integer,
    unit_price_cents bigint,
    flash_sale_id uuid
);

-- The one writer of new orders (place_order and buy_batch both end here): writes p_orders with their
-- p_lines in the order given, with one statement for the orders, items, stock movements, ledger entries,
-- account balances, earnings and events together, then one each for the variants' stock, the flash sales'
-- sold units and the digital codes. Each order's ledger entries (buyer's wallet, platform fee, seller's
-- and host's pending earnings; none for a zero amount) are in its transaction, with balances before and
-- after chained per account in order. The platform's fee and the host's commission are on the items only,
-- rounded down by integer division (never against the seller). An order of digital goods only is
-- delivered at once (its codes are issued here); its earnings still wait for the hold.
CREATE OR REPLACE FUNCTION write_orders(
    p_orders order_to_write[], p_lines order_line_to_write[], p_fee_bps integer, p_hold_s integer
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    short uuid;
BEGIN
    PERFORM account_of(NULL, 'platform');
    WITH line AS MATERIALIZED (
        SELECT l.*, o.ord AS order_ord, o.buyer_id, o.number, v.product_id, v.sku, v.options, v.digital,
               p.title,
               v.stock - sum(l.quantity) OVER (PARTITION BY l.variant_id ORDER BY o.ord, l.ord) AS stock_after
          FROM unnest(p_lines) WITH ORDINALITY AS l (order_id, variant_id, quantity, unit_price_cents,
                                                     flash_sale_id, ord)
          JOIN unnest(p_orders) WITH ORDINALITY AS o (id, number, txn, checkout_id, buyer_id, seller_id,
                                                      stream_id, host_id, commission_bps, address, request_id,
                                                      shipping_cents, ord) ON o.id = l.order_id
          JOIN variants v ON v.id = l.variant_id
          JOIN products p ON p.id = v.product_id
    ), placed AS MATERIALIZED (
        SELECT o.*, s.user_id AS seller_user, o.items + o.shipping_cents AS total,
               o.items * p_fee_bps / 10000 AS fee,
               CASE WHEN o.host_id IS NULL THEN 0
                    ELSE least(o.items * o.commission_bps / 10000, o.items - o.items * p_fee_bps / 10000)
               END AS commission
          FROM (SELECT o.*,
                       (SELECT coalesce(sum(l.unit_price_cents * l.quantity), 0)::bigint
                          FROM line l WHERE l.order_ord = o.ord) AS items,
                       EXISTS (SELECT 1 FROM line l WHERE l.order_ord = o.ord AND NOT l.digital) AS ships
                  FROM unnest(p_orders) WITH ORDINALITY AS o (id, number, txn, checkout_id, buyer_id, seller_id,
                                                              stream_id, host_id, commission_bps, address,
                                                              request_id, shipping_cents, ord)) o
          JOIN sellers s ON s.id = o.seller_id
    ), new_orders AS (
        INSERT INTO orders (id, number, checkout_id, buyer_id, seller_id, stream_id, status, total_cents,
                            fee_cents, host_id, host_commission_cents, address, request_id, shipping_cents,
                            delivered_at)
        SELECT o.id, o.number, o.checkout_id, o.buyer_id, o.seller_id, o.stream_id,
               CASE WHEN o.ships THEN 'paid' ELSE 'delivered' END, o.total, o.fee, o.host_id, o.commission,
               o.address, o.request_id, o.shipping_cents, CASE WHEN NOT o.ships THEN now() END
          FROM placed o ORDER BY o.ord
    ), new_items AS (
        INSERT INTO order_items (order_id, variant_id, product_id, title, sku, options, unit_price_cents,
                                 quantity, flash_sale_id)
        SELECT l.order_id, l.variant_id, l.product_id, l.title, l.sku, l.options, l.unit_price_cents,
               l.quantity, l.flash_sale_id
          FROM line l ORDER BY l.order_ord, l.ord
    ), movements AS (
        INSERT INTO stock_movements (variant_id, delta, stock_after, reason, actor_id, reference)
        SELECT l.variant_id, -l.quantity, l.stock_after, 'sale', l.buyer_id, l.number
          FROM line l ORDER BY l.order_ord, l.ord
    ), entries AS MATERIALIZED (
        -- In order: buyer, platform, seller, host; none for nothing.
        SELECT o.ord, e.step, o.txn, e.account, e.type, e.amount, o.id AS order_id, o.buyer_id, o.number
          FROM placed o
         CROSS JOIN LATERAL (VALUES
             (1, (SELECT a.id FROM accounts a
                   WHERE a.user_id IS NOT NULL AND a.user_id = o.buyer_id AND a.kind = 'wallet'),
              -o.total, 'purchase'),
             (2, (SELECT a.id FROM accounts a WHERE a.kind = 'platform' AND a.user_id IS NULL), o.fee, 'fee'),
             (3, (SELECT a.id FROM accounts a
                   WHERE a.user_id IS NOT NULL AND a.user_id = o.seller_user AND a.kind = 'earnings_pending'),
              o.total - o.fee - o.commission, 'earning'),
             (4, (SELECT a.id FROM accounts a
                   WHERE a.user_id IS NOT NULL AND a.user_id = o.host_id AND a.kind = 'earnings_pending'),
              o.commission, 'earning')) AS e (step, account, amount, type)
         WHERE e.amount <> 0 AND (e.step <> 4 OR o.host_id IS NOT NULL)
    ), ledger AS (
        -- A user account's balance runs on from what it held (locked by the caller) entry by entry; system
        -- accounts keep none. A missing account fails on ledger_entries.account_id NOT NULL.
        INSERT INTO ledger_entries (txn_id, account_id, type, amount_cents, balance_before_cents,
                                    balance_after_cents, order_id, actor_id, memo)
        SELECT e.txn, e.account, e.type, e.amount, e.after - e.amount, e.after, e.order_id, e.buyer_id, e.number
          FROM (SELECT e.*, (a.balance_cents + sum(e.amount) OVER (PARTITION BY e.account
                                                                  ORDER BY e.ord, e.step))::bigint AS after
                  FROM entries e LEFT JOIN accounts a ON a.id = e.account) e
         ORDER BY e.ord, e.step
    ), moved_balances AS (
        UPDATE accounts a SET balance_cents = a.balance_cents + moved.amount
          FROM (SELECT e.account, sum(e.amount)::bigint AS amount FROM entries e GROUP BY e.account) moved
         WHERE a.id = moved.account AND a.balance_cents IS NOT NULL
    ), shares AS (
        INSERT INTO earnings (order_id, user_id, role, amount_cents, available_after)
        SELECT o.id, s.user_id, s.role, s.amount, now() + make_interval(secs => p_hold_s)
          FROM placed o
         CROSS JOIN LATERAL (VALUES (1, o.seller_user, 'seller', o.total - o.fee - o.commission),
                                    (2, o.host_id, 'host', o.commission)) AS s (step, user_id, role, amount)
         WHERE s.user_id IS NOT NULL
         ORDER BY o.ord, s.step
    )
    INSERT INTO order_events (order_id, from_status, to_status, actor_id, reason)
    SELECT o.id, ev.from_status, ev.to_status, ev.actor_id, ev.reason
      FROM placed o
     CROSS JOIN LATERAL (VALUES (1, NULL, 'paid', o.buyer_id, NULL),
                                (2, 'paid', 'delivered', NULL, 'digital goods are delivered with the order'))
             AS ev (step, from_status, to_status, actor_id, reason)
     WHERE ev.step = 1 OR NOT o.ships
     ORDER BY o.ord, ev.step;

    UPDATE variants v SET stock = v.stock - sold.quantity
      FROM (SELECT l.variant_id, sum(l.quantity)::integer AS quantity
              FROM unnest(p_lines) AS l GROUP BY l.variant_id) sold
     WHERE v.id = sold.variant_id;
    UPDATE flash_sales f SET sold = f.sold + sold.quantity
      FROM (SELECT l.flash_sale_id, sum(l.quantity)::integer AS quantity
              FROM unnest(p_lines) AS l WHERE l.flash_sale_id IS NOT NULL GROUP BY l.flash_sale_id) sold
     WHERE f.id = sold.flash_sale_id;

    -- Digital codes for every digital line at once, each variant's shared out in the order of its lines.
    -- SKIP LOCKED: codes being handed out by another transaction are passed over, not waited for.
    WITH line AS (
        SELECT l.order_id, l.variant_id, l.quantity, l.ord,
               sum(l.quantity) OVER (PARTITION BY l.variant_id ORDER BY o.ord, l.ord) - l.quantity AS after_n
          FROM unnest(p_lines) WITH ORDINALITY AS l (order_id, variant_id, quantity, unit_price_cents,
                                                     flash_sale_id, ord)
          JOIN unnest(p_orders) WITH ORDINALITY AS o (id, number, txn, checkout_id, buyer_id, seller_id,
                                                      stream_id, host_id, commission_bps, address, request_id,
                                                      shipping_cents, ord) ON o.id = l.order_id
          JOIN variants v ON v.id = l.variant_id AND v.digital
    ), wanted AS (
        SELECT l.variant_id, sum(l.quantity)::integer AS quantity, min(l.ord) AS first_line
          FROM line l GROUP BY l.variant_id
    ), issued AS (
        UPDATE digital_units d SET status = 'sold', order_id = l.order_id
          FROM (SELECT w.variant_id, c.id,
                       row_number() OVER (PARTITION BY w.variant_id ORDER BY c.imported_at, c.id) AS n
                  FROM wanted w
                 CROSS JOIN LATERAL (SELECT u.id, u.imported_at FROM digital_units u
                                      WHERE u.variant_id = w.variant_id AND u.status = 'available'
                                      ORDER BY u.imported_at, u.id LIMIT w.quantity FOR UPDATE SKIP LOCKED) c) code
          JOIN line l ON l.variant_id = code.variant_id AND code.n > l.after_n AND code.n <= l.after_n + l.quantity
         WHERE d.id = code.id
        RETURNING d.variant_id
    )
    SELECT w.variant_id INTO short
      FROM wanted w
     WHERE w.quantity > (SELECT count(*) FROM issued i WHERE i.variant_id = w.variant_id)
     ORDER BY w.first_line LIMIT 1;
    IF short IS NOT NULL THEN
        RAISE EXCEPTION 'not enough codes for a digital variant'
            USING ERRCODE = 'LHOOS', DETAIL = jsonb_build_object('variant_id', short)::text;
    END IF;
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
    order_id uuid;
    seller_lines jsonb;
    to_write order_to_write[] := '{}';
    lines_to_write order_line_to_write[] := '{}';
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
    PERFORM refuse_while_owed(p_buyer);  -- functions/card_payments.sql
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

    -- One order per seller, all in the checkout's ledger transaction. A host earns only on its own shop's
    -- stream (live, and everything in it featured: checked above), never as the shop's own user.
    FOR seller IN SELECT key::uuid FROM jsonb_each(lines) ORDER BY key LOOP
        order_id := gen_random_uuid();
        seller_lines := lines->(seller::text);
        to_write := to_write || ROW(
            order_id, 'LH-' || nextval('order_number_seq'), txn, checkout, p_buyer, seller, p_stream,
            (SELECT st.host_id FROM streams st JOIN sellers s ON s.id = st.seller_id
              WHERE st.id = p_stream AND st.seller_id = seller AND st.host_id <> s.user_id),
            (SELECT st.host_commission_bps FROM streams st WHERE st.id = p_stream),
            CASE WHEN lines_ship(seller_lines) THEN address END, NULL,
            (shipping->>(seller::text))::bigint)::order_to_write;
        lines_to_write := lines_to_write || ARRAY(
            SELECT ROW(order_id, (l.v->>'variant_id')::uuid, (l.v->>'quantity')::integer,
                       (l.v->>'unit_price_cents')::bigint, (l.v->>'flash_sale_id')::uuid)::order_line_to_write
              FROM jsonb_array_elements(seller_lines) WITH ORDINALITY AS l (v, ord) ORDER BY l.ord);
        order_ids := order_ids || order_id;
    END LOOP;
    PERFORM write_orders(to_write, lines_to_write, p_fee_bps, p_hold_s);
    -- The buyer's confirmations (with any digital codes) and wallet push, in this transaction (notices.sql).
    PERFORM notify_orders_placed(order_ids);
    PERFORM queue_balance_push(ARRAY[p_buyer], 'wallet', 'purchase');
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
--
-- Set-based, because a flash drop is thousands of buys a second on this one locked row: the facts of every
-- request are read with one query over the whole batch (earlier orders under its request ids, bans,
-- wallets and their balances, units bought before, addresses and shipping), a loop over those rows with no
-- SQL inside decides each outcome in arrival order (stock, each buyer's units and balance run on as the
-- batch goes), and write_orders() (place_order's writer too) writes all the orders with their items, stock
-- movements, ledger entries (one ledger transaction per order; balances before and after chained per
-- account in arrival order), earnings, events and codes, one statement for each kind of row, updating the
-- variant and each account once.
CREATE OR REPLACE FUNCTION buy_batch(
    p_variant uuid, p_stream uuid, p_requests jsonb, p_fee_bps integer, p_hold_s integer
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    variant variants;
    product products;
    shop sellers;
    price record;
    profile shipping_profiles;    -- the shop's (all NULL: none, ships free)
    remaining integer;
    for_sale boolean;
    stream_seller uuid;           -- whose bans apply: the stream's shop
    host uuid;                    -- the stream's host when it earns a commission on these orders
    stream_host uuid;             -- the stream's host unless it is the shop's own user (its account is locked)
    commission_bps integer;
    buyers uuid[];                -- distinct, for accounts
    n integer := coalesce(jsonb_array_length(p_requests), 0);
    r record;
    -- Per request, by arrival position (filled with NULLs first so that position i is element i).
    statuses text[];
    reasons text[];
    countries text[];
    order_ids uuid[];
    order_numbers text[];
    txns bigint[];
    -- ... and what an order placed for it is written with.
    buyer_ids uuid[];
    quantities integer[];
    request_keys text[];
    addresses jsonb[];
    shippings bigint[];
    -- Per buyer, by the number the facts query gives each buyer: how the batch has left them so far.
    balances bigint[];
    units integer[];
    units_sold integer := 0;
    flash_left integer;
    results jsonb;
BEGIN
    variant := variant_for_update(p_variant);
    SELECT * INTO product FROM products WHERE id = variant.product_id;
    SELECT * INTO shop FROM sellers WHERE id = product.seller_id;
    SELECT * INTO price FROM variant_price(p_variant, p_stream);
    SELECT * INTO profile FROM shipping_profiles WHERE seller_id = shop.id;
    remaining := variant.stock;
    IF price.flash_sale_id IS NOT NULL THEN
        remaining := least(remaining, price.flash_remaining);
    END IF;
    -- In a stream, only what it features and only while it is live (as place_order).
    for_sale := product.status = 'active' AND shop.status = 'approved' AND (p_stream IS NULL OR EXISTS (
        SELECT 1 FROM streams st JOIN stream_products sp ON sp.stream_id = st.id
         WHERE st.id = p_stream AND st.status = 'live' AND sp.product_id = product.id));
    -- A host earns only on its own seller's stream (place_order's rule; live and featured: for_sale).
    SELECT st.seller_id, CASE WHEN st.host_id <> shop.user_id THEN st.host_id END,
           CASE WHEN st.seller_id = shop.id AND st.host_id <> shop.user_id THEN st.host_id END,
           st.host_commission_bps
      INTO stream_seller, stream_host, host, commission_bps
      FROM streams st WHERE st.id = p_stream;

    -- Every account the batch may move exists (created in one statement), then is locked in id order.
    buyers := ARRAY(SELECT DISTINCT (e->>'buyer_id')::uuid FROM jsonb_array_elements(p_requests) e);
    INSERT INTO accounts (kind, user_id, balance_cents)
    SELECT k.kind, k.user_id, 0
      FROM (SELECT 'wallet', b FROM unnest(buyers) b
            UNION ALL SELECT 'earnings_pending', shop.user_id
            UNION ALL SELECT 'earnings_pending', stream_host WHERE stream_host IS NOT NULL) k (kind, user_id)
     WHERE NOT EXISTS (SELECT 1 FROM accounts a
                        WHERE a.user_id IS NOT NULL AND a.user_id = k.user_id AND a.kind = k.kind)
     ORDER BY k.user_id, k.kind  -- one order for every batch: see bid_batch in auctions.sql
    ON CONFLICT DO NOTHING;
    PERFORM count(*) FROM (
        SELECT 1 FROM accounts a
         WHERE a.user_id IS NOT NULL
           AND ((a.kind = 'wallet' AND a.user_id = ANY (buyers))
                OR (a.kind = 'earnings_pending' AND a.user_id IN (shop.user_id, stream_host)))
         ORDER BY a.id FOR UPDATE) locked;

    statuses := array_fill(NULL::text, ARRAY[n]);
    reasons := statuses;
    countries := statuses;
    order_numbers := statuses;
    order_ids := array_fill(NULL::uuid, ARRAY[n]);
    txns := array_fill(NULL::bigint, ARRAY[n]);
    buyer_ids := order_ids;
    request_keys := statuses;
    quantities := array_fill(NULL::integer, ARRAY[n]);
    shippings := txns;
    addresses := array_fill(NULL::jsonb, ARRAY[n]);
    balances := array_fill(NULL::bigint, ARRAY[cardinality(buyers)]);
    units := array_fill(NULL::integer, ARRAY[cardinality(buyers)]);

    FOR r IN
        WITH req AS (
            SELECT e.ord::integer AS ord, (e.v->>'buyer_id')::uuid AS buyer,
                   coalesce((e.v->>'quantity')::integer, 1) AS qty, e.v->>'request_id' AS rid,
                   -- The buyer pressed buy on a flash sale that has ended: never charge the regular price.
                   e.v ? 'flash_sale_id' AND (e.v->>'flash_sale_id')::uuid IS DISTINCT FROM price.flash_sale_id
                       AS flash_ended,
                   (e.v->>'address_id')::uuid AS address_id
              FROM jsonb_array_elements(p_requests) WITH ORDINALITY AS e (v, ord)
        ), held AS (
            -- units_bought() for every buyer of the batch at once (only when a limit applies)
            SELECT o.buyer_id, sum(oi.quantity)::integer AS units
              FROM orders o JOIN order_items oi ON oi.order_id = o.id
             WHERE price.per_buyer_limit IS NOT NULL AND o.buyer_id = ANY (buyers) AND o.status <> 'cancelled'
               AND CASE WHEN price.flash_sale_id IS NOT NULL THEN oi.flash_sale_id = price.flash_sale_id
                        ELSE o.stream_id = p_stream AND oi.product_id = product.id END
             GROUP BY o.buyer_id
        )
        SELECT req.ord, req.buyer, req.qty, req.rid, req.flash_ended,
               dense_rank() OVER (ORDER BY req.buyer)::integer AS buyer_no,
               -- The first request of the batch with this buyer's request id; later ones are duplicates.
               CASE WHEN req.rid IS NOT NULL THEN min(req.ord) OVER (PARTITION BY req.buyer, req.rid) END
                   AS first_ord,
               earlier.id AS earlier_id, earlier.number AS earlier_number,
               EXISTS (SELECT 1 FROM seller_bans b WHERE b.seller_id = stream_seller AND b.user_id = req.buyer)
                   AS banned,
               owed_by(req.buyer) AS owed,
               coalesce(held.units, 0) AS units_before,
               w.id AS wallet, w.balance_cents AS balance,
               ad.id AS address_id, ad.country, address_snapshot(ad) AS address,
               CASE WHEN variant.digital THEN 0
                    ELSE shipping_charge(profile, price.price_cents * req.qty, ad.country) END AS shipping
          FROM req
          -- Each lookup by its index, row by row (LIMIT keeps the planner from joining whole tables: it
          -- cannot know the batch is a few hundred rows).
          LEFT JOIN LATERAL (
              SELECT o.id, o.number FROM orders o
               WHERE o.buyer_id = req.buyer AND o.request_id = buy_request_key(p_variant, req.rid) LIMIT 1
          ) earlier ON true
          LEFT JOIN held ON held.buyer_id = req.buyer
          LEFT JOIN LATERAL (
              SELECT a.id, a.balance_cents FROM accounts a
               WHERE a.user_id IS NOT NULL AND a.user_id = req.buyer AND a.kind = 'wallet' LIMIT 1
          ) w ON true
          -- buyer_address(): the one named, else the default; digital goods never ship
          LEFT JOIN LATERAL (
              SELECT * FROM addresses a
               WHERE NOT variant.digital AND a.user_id = req.buyer
                 AND CASE WHEN req.address_id IS NULL THEN a.is_default ELSE a.id = req.address_id END
               LIMIT 1
          ) ad ON true
         ORDER BY req.ord
    LOOP
        IF r.first_ord < r.ord OR r.earlier_id IS NOT NULL THEN
            statuses[r.ord] := 'duplicate';
            order_ids[r.ord] := coalesce(r.earlier_id, order_ids[r.first_ord]);
            order_numbers[r.ord] := coalesce(r.earlier_number, order_numbers[r.first_ord]);
        ELSIF r.banned THEN
            -- Checked here, not only at connect: a buyer banned since (the kick still on its way) gets nothing.
            statuses[r.ord] := 'banned';
        ELSIF r.owed > 0 THEN
            statuses[r.ord] := 'payment_owed';  -- functions/card_payments.sql
        ELSIF r.qty < 1 OR r.buyer = shop.user_id OR NOT for_sale THEN
            statuses[r.ord] := 'error';
        ELSIF r.flash_ended THEN
            statuses[r.ord] := 'sold_out';
        ELSIF price.per_buyer_limit IS NOT NULL AND
              coalesce(units[r.buyer_no], r.units_before) + r.qty > price.per_buyer_limit THEN
            statuses[r.ord] := 'limit_reached';
        ELSIF remaining < r.qty THEN
            statuses[r.ord] := 'sold_out';
        ELSIF NOT variant.digital AND r.address_id IS NULL THEN
            statuses[r.ord] := 'address_required';
            reasons[r.ord] := 'missing';
        ELSIF r.shipping IS NULL THEN
            statuses[r.ord] := 'address_required';
            reasons[r.ord] := 'not_shipped';
            countries[r.ord] := r.country;
        ELSIF coalesce(balances[r.buyer_no], r.balance) < price.price_cents * r.qty + r.shipping THEN
            statuses[r.ord] := 'insufficient_funds';
        ELSE
            statuses[r.ord] := 'ok';
            -- Each order is its own ledger transaction: its entries sum to zero on their own.
            txns[r.ord] := nextval('ledger_txn_seq');
            order_ids[r.ord] := gen_random_uuid();
            order_numbers[r.ord] := 'LH-' || nextval('order_number_seq');
            buyer_ids[r.ord] := r.buyer;
            quantities[r.ord] := r.qty;
            request_keys[r.ord] := buy_request_key(p_variant, r.rid);
            addresses[r.ord] := r.address;
            shippings[r.ord] := r.shipping;
            balances[r.buyer_no] := coalesce(balances[r.buyer_no], r.balance) - (price.price_cents * r.qty + r.shipping);
            units[r.buyer_no] := coalesce(units[r.buyer_no], r.units_before) + r.qty;
            remaining := remaining - r.qty;
            units_sold := units_sold + r.qty;
        END IF;
    END LOOP;


    IF units_sold > 0 THEN
        -- The batch's orders, each of one line and its own ledger transaction, through place_order's writer.
        PERFORM write_orders(
            ARRAY(SELECT ROW(u.id, u.number, u.txn, gen_random_uuid(), u.buyer, shop.id, p_stream, host,
                             commission_bps, u.address, u.request_key, u.shipping)::order_to_write
                    FROM unnest(statuses, order_ids, order_numbers, txns, buyer_ids, request_keys, addresses,
                                shippings)
                         WITH ORDINALITY AS u (status, id, number, txn, buyer, request_key, address, shipping, ord)
                   WHERE u.status = 'ok' ORDER BY u.ord),
            ARRAY(SELECT ROW(u.id, p_variant, u.qty, price.price_cents, price.flash_sale_id)::order_line_to_write
                    FROM unnest(statuses, order_ids, quantities) WITH ORDINALITY AS u (status, id, qty, ord)
                   WHERE u.status = 'ok' ORDER BY u.ord),
            p_fee_bps, p_hold_s);
        -- The buyers' confirmations and wallet pushes: ONE job for the whole batch, not a notification per
        -- buyer on this locked row's path (its handler calls notify_orders_placed; functions/notices.sql).
        PERFORM enqueue_job('orders_placed', jsonb_build_object('order_ids', to_jsonb(ARRAY(
            SELECT u.id FROM unnest(statuses, order_ids) AS u (status, id) WHERE u.status = 'ok'))));
    END IF;

    IF price.flash_sale_id IS NOT NULL THEN
        -- A flash sale sold out (its quantity or the stock) ends here, in the same transaction.
        UPDATE flash_sales f SET ended_at = now(), ended_reason = 'sold_out'
         WHERE f.id = price.flash_sale_id AND f.ended_at IS NULL
           AND (f.sold >= f.quantity OR variant.stock - units_sold = 0);
        SELECT CASE WHEN ended_at IS NULL THEN quantity - flash_sales.sold ELSE 0 END INTO flash_left
          FROM flash_sales WHERE id = price.flash_sale_id;
    END IF;

    SELECT coalesce(jsonb_agg(
               jsonb_build_object('request_id', u.v->>'request_id', 'buyer_id', (u.v->>'buyer_id')::uuid,
                                  'status', u.status)
               || CASE WHEN u.status IN ('ok', 'duplicate')
                       THEN jsonb_build_object('order_id', u.order_id, 'order_number', u.order_number)
                       WHEN u.reason = 'not_shipped' THEN jsonb_build_object('reason', u.reason, 'country', u.country)
                       WHEN u.reason IS NOT NULL THEN jsonb_build_object('reason', u.reason)
                       ELSE '{}' END
               ORDER BY u.ord), '[]')
      INTO results
      FROM (SELECT e.v, e.ord, statuses[e.ord] AS status, order_ids[e.ord] AS order_id,
                   order_numbers[e.ord] AS order_number, reasons[e.ord] AS reason, countries[e.ord] AS country
              FROM jsonb_array_elements(p_requests) WITH ORDINALITY AS e (v, ord)) u;
    RETURN jsonb_build_object(
        'results', results,
        'available', variant.stock - units_sold,
        'flash_sale', CASE WHEN price.flash_sale_id IS NULL THEN NULL ELSE jsonb_build_object(
            'id', price.flash_sale_id, 'remaining', flash_left,
            'ended', (SELECT ended_at IS NOT NULL FROM flash_sales WHERE id = price.flash_sale_id)) END);
END $$;
