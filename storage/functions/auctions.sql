-- Auctions (tables: migrations/0016_auctions.sql). Each public function is one transaction; errors use
-- SQLSTATE class LH as everywhere. Written in plpgsql only: this file loads before streams.sql and
-- money.sql, whose functions it calls (a plpgsql body is resolved when it runs, an SQL one when created).
--
-- Bids: bid_batch() takes the bids of a moment for one auction, in arrival order, and decides each one
-- with eBay-style proxy rules (a plain bid is a maximum that also sets the price to itself when it leads).
-- The leader's maximum plus the most shipping can come to is held out of their wallet (account 'hold');
-- when someone else takes the lead it goes back. close_auction() ends it once, however many nodes call it,
-- and turns the winner's hold into an order at the winning price through write_orders().
--
-- Lock order: the auction row, then variants, then accounts by id (as money.sql).

-- The default increment at a price, when the host gave none: a ladder (in cents).
--   under 1.00: 0.05 | under 5.00: 0.25 | under 25.00: 0.50 | under 100.00: 1.00 | under 250.00: 2.50
--   under 500.00: 5.00 | under 1,000.00: 10.00 | under 2,500.00: 25.00 | under 5,000.00: 50.00 | else 100.00
CREATE OR REPLACE FUNCTION auction_increment(p_increment bigint, p_price bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_increment IS NOT NULL THEN
        RETURN p_increment;
    END IF;
    RETURN CASE WHEN p_price < 100 THEN 5 WHEN p_price < 500 THEN 25 WHEN p_price < 2500 THEN 50
                WHEN p_price < 10000 THEN 100 WHEN p_price < 25000 THEN 250 WHEN p_price < 50000 THEN 500
                WHEN p_price < 100000 THEN 1000 WHEN p_price < 250000 THEN 2500 WHEN p_price < 500000 THEN 5000
                ELSE 10000 END;
END $$;

-- The least a new bid may be now: the start price for the first bid, else the price plus the increment.
CREATE OR REPLACE FUNCTION auction_min_bid(a auctions) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF a.leader_id IS NULL THEN
        RETURN a.start_cents;
    END IF;
    RETURN a.current_cents + auction_increment(a.increment_cents, a.current_cents);
END $$;

-- An auction as the room shows it (the `auction` event). Never a maximum or a hold.
CREATE OR REPLACE FUNCTION auction_json(a auctions) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    shown jsonb;
BEGIN
    SELECT jsonb_build_object(
        'id', a.id, 'stream_id', a.stream_id, 'variant_id', a.variant_id,
        'product', jsonb_build_object('id', p.id, 'title', p.title, 'sku', v.sku, 'options', v.options),
        'start_cents', a.start_cents, 'current_cents', a.current_cents,
        'increment_cents', auction_increment(a.increment_cents, a.current_cents),
        'min_bid_cents', auction_min_bid(a),
        'leader', (SELECT jsonb_build_object('id', u.id, 'name', u.display_name) FROM users u WHERE u.id = a.leader_id),
        'bids', a.bids, 'starts_at', utc_time(a.starts_at), 'ends_at', utc_time(a.ends_at), 'mode', a.mode,
        'extend_s', a.extend_s, 'ended', a.ended_at IS NOT NULL)
        || CASE WHEN a.ended_at IS NULL THEN '{}'::jsonb ELSE jsonb_build_object(
               'ended_reason', a.ended_reason,
               'winner', (SELECT jsonb_build_object('id', u.id, 'name', u.display_name) FROM users u
                           WHERE u.id = a.winner_id),
               'order_id', a.order_id) END
      INTO shown
      FROM variants v JOIN products p ON p.id = v.product_id WHERE v.id = a.variant_id;
    RETURN shown;
END $$;

-- The stream's running auction (not ended), as auction_json, or NULL.
CREATE OR REPLACE FUNCTION running_auction_json(p_stream uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    a auctions;
BEGIN
    SELECT * INTO a FROM auctions WHERE stream_id = p_stream AND ended_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN auction_json(a);
END $$;

-- Starts an auction of one unit of a featured variant in a live stream (the host or a moderator). One
-- auction or flash sale at a time per stream. p_increment NULL: the ladder.
CREATE OR REPLACE FUNCTION start_auction(
    p_stream uuid, p_actor uuid, p_variant uuid, p_start bigint, p_increment bigint, p_duration_s integer,
    p_mode text, p_extend_s integer, p_now timestamptz DEFAULT now()
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
    in_stock integer;
    a auctions;
BEGIN
    IF p_duration_s IS NULL OR p_duration_s NOT BETWEEN 5 AND 600 THEN
        RAISE EXCEPTION 'an auction lasts 5 to 600 seconds' USING ERRCODE = 'LH422';
    END IF;
    IF p_mode IS NULL OR p_mode NOT IN ('standard', 'sudden_death') THEN
        RAISE EXCEPTION 'mode is standard or sudden_death' USING ERRCODE = 'LH422';
    END IF;
    IF p_start IS NULL OR p_start < 1 OR p_increment < 1 OR p_extend_s NOT BETWEEN 1 AND 600 THEN
        RAISE EXCEPTION 'start price and increment at least 1 cent, extend_s 1 to 600' USING ERRCODE = 'LH422';
    END IF;
    IF s.status <> 'live' THEN
        RAISE EXCEPTION 'the stream is not live' USING ERRCODE = 'LH409';
    END IF;
    in_stock := (featured_variant(p_stream, p_variant)).stock;
    IF in_stock < 1 THEN
        RAISE EXCEPTION 'not enough stock'
            USING ERRCODE = 'LHOOS', DETAIL = jsonb_build_object('variant_id', p_variant, 'available', in_stock)::text;
    END IF;
    PERFORM refuse_while_a_sale_or_auction_runs(p_stream, p_now);
    INSERT INTO auctions (stream_id, variant_id, mode, start_cents, increment_cents, extend_s, starts_at, ends_at,
                          current_cents, created_by)
    VALUES (p_stream, p_variant, p_mode, p_start, p_increment, coalesce(p_extend_s, 10), p_now,
            p_now + make_interval(secs => p_duration_s), p_start, p_actor)
    RETURNING * INTO a;
    RETURN auction_json(a);
END $$;

-- Decides a batch of bids on one auction, in arrival order. p_bids:
--   [{request_id?, bidder_id, amount_cents? | max_cents?}, ...]
-- Returns {results: [{request_id, bidder_id, status, current_cents}], auction: auction_json, changed: bool}.
-- status: leading | outbid | too_low | insufficient_funds | ended | not_allowed.
--
-- Rules (v = amount_cents or max_cents):
-- - not_allowed: the shop's own user or the stream's host, a user the shop banned or the stream timed out,
--   or goods that ship with no default address the shop ships to (reason in the result).
-- - ended: the auction ended, or p_now is past its end.
-- - too_low: v below the start price (first bid) or the price plus the increment; or the leader bidding
--   no more than their own maximum.
-- - insufficient_funds: the wallet (plus what this auction holds for the bidder already) is below v plus
--   the most shipping can come to.
-- - The leader raising their own maximum: leading, the price stays.
-- - No leader yet: leading at the start price (a plain bid: at v).
-- - v above the leader's maximum: the bidder leads at min(v, leader's max + increment) (a plain bid: at v).
-- - Otherwise the leader stays, at min(leader's max, v + increment): the bid is outbid (ties: the earlier).
-- - Standard mode: a valid bid (leading or outbid) within extend_s of the end moves the end to p_now + extend_s.
-- A retried request id (same bidder and auction) is answered with where the bidder stands now, not re-applied.
-- The leader's hold (their maximum plus the most shipping can come to) moves wallet -> hold; the previous
-- leader's goes back; intermediate leaders within one batch move no money (their holds would net to zero).
CREATE OR REPLACE FUNCTION bid_batch(p_auction uuid, p_bids jsonb, p_now timestamptz DEFAULT now()) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    a auctions;
    st streams;
    shop sellers;
    digital boolean;
    profile shipping_profiles;
    first_leader uuid;
    first_hold bigint;
    first_max bigint;
    r record;
    bid bigint;
    inc bigint;
    outcome text;
    reason text;
    need bigint;
    ship_max bigint;
    statuses text[] := '{}';
    reasons text[] := '{}';
    currents bigint[] := '{}';
    is_open boolean;
    changed boolean := false;
    txn bigint;
    results jsonb;
    bidders uuid[];
BEGIN
    SELECT * INTO a FROM auctions WHERE id = p_auction FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'auction not found' USING ERRCODE = 'LH404';
    END IF;
    SELECT * INTO st FROM streams WHERE id = a.stream_id;
    SELECT se.* INTO shop FROM sellers se WHERE se.id = st.seller_id;
    SELECT vv.digital INTO digital FROM variants vv WHERE vv.id = a.variant_id;
    SELECT * INTO profile FROM shipping_profiles WHERE seller_id = shop.id;
    first_leader := a.leader_id;
    first_hold := a.leader_hold_cents;
    first_max := a.leader_max_cents;
    is_open := a.ended_at IS NULL AND st.status = 'live';

    -- Every wallet and hold the batch may move exists, then all are locked in id order. New ones are
    -- inserted in (user, kind) order: two batches inserting the same new accounts wait on each other's
    -- uncommitted rows, and in opposite orders (two auctions, the same first-time bidders) would deadlock.
    bidders := ARRAY(SELECT DISTINCT (e->>'bidder_id')::uuid FROM jsonb_array_elements(p_bids) e
                     UNION SELECT a.leader_id WHERE a.leader_id IS NOT NULL);
    INSERT INTO accounts (kind, user_id, balance_cents)
    SELECT k.kind, b, 0 FROM unnest(bidders) b CROSS JOIN (VALUES ('wallet'), ('hold')) k (kind)
     ORDER BY b, k.kind
    ON CONFLICT DO NOTHING;
    PERFORM count(*) FROM (SELECT 1 FROM accounts WHERE user_id = ANY (bidders) AND kind IN ('wallet', 'hold')
                            ORDER BY id FOR UPDATE) locked;

    FOR r IN
        SELECT e.ord, (e.v->>'bidder_id')::uuid AS bidder, e.v->>'request_id' AS rid,
               (e.v->>'amount_cents')::bigint AS amount, (e.v->>'max_cents')::bigint AS max,
               (SELECT w.balance_cents FROM accounts w WHERE w.user_id = (e.v->>'bidder_id')::uuid
                   AND w.kind = 'wallet') AS wallet,
               owed_by((e.v->>'bidder_id')::uuid) AS owed,
               EXISTS (SELECT 1 FROM seller_bans b WHERE b.seller_id = st.seller_id
                        AND b.user_id = (e.v->>'bidder_id')::uuid)
               OR EXISTS (SELECT 1 FROM stream_timeouts t WHERE t.stream_id = st.id
                           AND t.user_id = (e.v->>'bidder_id')::uuid AND t.until > p_now) AS barred,
               -- Those who run the show (moderators and admins) do not bid in it: no shill bids.
               EXISTS (SELECT 1 FROM stream_moderators m WHERE m.stream_id = st.id
                        AND m.user_id = (e.v->>'bidder_id')::uuid)
               OR user_is_admin((e.v->>'bidder_id')::uuid) AS staff,
               (SELECT ad FROM addresses ad WHERE ad.user_id = (e.v->>'bidder_id')::uuid AND ad.is_default
                 LIMIT 1) AS address,
               EXISTS (SELECT 1 FROM auction_bids ab WHERE ab.auction_id = a.id
                        AND ab.bidder_id = (e.v->>'bidder_id')::uuid AND ab.request_id = e.v->>'request_id')
                   AS repeated,
               min(e.ord) OVER (PARTITION BY e.v->>'bidder_id', coalesce(e.v->>'request_id', e.ord::text)) AS first_ord
          FROM jsonb_array_elements(p_bids) WITH ORDINALITY AS e (v, ord)
         ORDER BY e.ord
    LOOP
        outcome := NULL;
        reason := NULL;
        bid := coalesce(r.max, r.amount);
        ship_max := 0;
        IF NOT digital THEN
            -- The most shipping can come to: the charge on the smallest order (the free-over threshold only lowers it).
            ship_max := shipping_charge(profile, 0, (r.address).country);
        END IF;
        IF r.repeated OR r.first_ord < r.ord THEN
            outcome := CASE WHEN a.leader_id = r.bidder THEN 'leading' ELSE 'outbid' END;
            statuses[r.ord] := outcome;
            currents[r.ord] := a.current_cents;
            CONTINUE;  -- answered, not recorded again
        ELSIF r.bidder = shop.user_id OR r.bidder = st.host_id OR r.staff THEN
            outcome := 'not_allowed';
            reason := 'own_lot';
        ELSIF r.barred THEN
            outcome := 'not_allowed';
            reason := 'banned';
        ELSIF r.owed > 0 THEN
            outcome := 'not_allowed';
            reason := 'payment_owed';  -- functions/card_payments.sql
        ELSIF NOT is_open OR p_now >= a.ends_at THEN
            outcome := 'ended';
        ELSIF bid IS NULL OR (r.max IS NOT NULL AND r.amount IS NOT NULL) THEN
            outcome := 'too_low';
        ELSIF NOT digital AND (r.address).id IS NULL THEN
            outcome := 'not_allowed';
            reason := 'address_required';
        ELSIF ship_max IS NULL THEN
            outcome := 'not_allowed';
            reason := 'not_shipped';
        ELSIF bid < auction_min_bid(a) OR (a.leader_id = r.bidder AND bid <= a.leader_max_cents) THEN
            outcome := 'too_low';
        ELSE
            need := bid + ship_max;
            IF coalesce(r.wallet, 0) + (CASE WHEN r.bidder = first_leader THEN first_hold ELSE 0 END) < need THEN
                outcome := 'insufficient_funds';
            ELSIF a.leader_id = r.bidder THEN
                outcome := 'leading';
                a.leader_max_cents := bid;
                a.leader_hold_cents := need;
                a.leader_address := address_snapshot(r.address);
            ELSIF a.leader_id IS NULL THEN
                outcome := 'leading';
                a.leader_id := r.bidder;
                a.leader_max_cents := bid;
                a.leader_hold_cents := need;
                a.leader_address := address_snapshot(r.address);
                a.current_cents := CASE WHEN r.amount IS NOT NULL THEN bid ELSE a.start_cents END;
            ELSIF bid > a.leader_max_cents THEN
                outcome := 'leading';
                inc := auction_increment(a.increment_cents, a.leader_max_cents);
                a.current_cents := CASE WHEN r.amount IS NOT NULL THEN bid ELSE least(bid, a.leader_max_cents + inc) END;
                a.leader_id := r.bidder;
                a.leader_max_cents := bid;
                a.leader_hold_cents := need;
                a.leader_address := address_snapshot(r.address);
            ELSE
                outcome := 'outbid';
                inc := auction_increment(a.increment_cents, bid);
                a.current_cents := greatest(a.current_cents, least(a.leader_max_cents, bid + inc));
            END IF;
            IF outcome IN ('leading', 'outbid') THEN
                changed := true;
                a.bids := a.bids + 1;
                IF a.mode = 'standard' AND p_now >= a.ends_at - make_interval(secs => a.extend_s) THEN
                    a.ends_at := greatest(a.ends_at, p_now + make_interval(secs => a.extend_s));
                END IF;
                IF r.max IS NOT NULL THEN
                    INSERT INTO auction_proxies (auction_id, bidder_id, max_cents, updated_at)
                    VALUES (a.id, r.bidder, bid, p_now)
                    ON CONFLICT (auction_id, bidder_id) DO UPDATE
                       SET max_cents = greatest(auction_proxies.max_cents, EXCLUDED.max_cents), updated_at = p_now;
                END IF;
            END IF;
        END IF;
        statuses[r.ord] := outcome;
        reasons[r.ord] := reason;
        currents[r.ord] := a.current_cents;
        INSERT INTO auction_bids (auction_id, bidder_id, request_id, amount_cents, max_cents, status, current_cents,
                                  created_at)
        VALUES (a.id, r.bidder, r.rid, r.amount, r.max, outcome, a.current_cents, p_now)
        ON CONFLICT DO NOTHING;
    END LOOP;

    IF changed THEN
        -- The money: the first leader's hold back, the final leader's held (or the difference, same leader).
        txn := nextval('ledger_txn_seq');
        IF first_leader IS NOT NULL AND (first_leader IS DISTINCT FROM a.leader_id) THEN
            PERFORM post(txn, account_of(first_leader, 'hold'), -first_hold, 'bid_release', NULL, NULL, first_leader,
                         'auction ' || a.id);
            PERFORM post(txn, account_of(first_leader, 'wallet'), first_hold, 'bid_release', NULL, NULL, first_leader,
                         'auction ' || a.id);
            first_hold := 0;
        END IF;
        IF a.leader_hold_cents - coalesce(first_hold, 0) > 0 THEN
            PERFORM post(txn, account_of(a.leader_id, 'wallet'), -(a.leader_hold_cents - coalesce(first_hold, 0)),
                         'bid_hold', NULL, NULL, a.leader_id, 'auction ' || a.id);
            PERFORM post(txn, account_of(a.leader_id, 'hold'), a.leader_hold_cents - coalesce(first_hold, 0),
                         'bid_hold', NULL, NULL, a.leader_id, 'auction ' || a.id);
        ELSIF a.leader_hold_cents - coalesce(first_hold, 0) < 0 THEN
            PERFORM post(txn, account_of(a.leader_id, 'hold'), a.leader_hold_cents - first_hold,
                         'bid_release', NULL, NULL, a.leader_id, 'auction ' || a.id);
            PERFORM post(txn, account_of(a.leader_id, 'wallet'), first_hold - a.leader_hold_cents,
                         'bid_release', NULL, NULL, a.leader_id, 'auction ' || a.id);
        END IF;
        UPDATE auctions SET current_cents = a.current_cents, leader_id = a.leader_id,
                            leader_max_cents = a.leader_max_cents, leader_hold_cents = a.leader_hold_cents,
                            leader_address = a.leader_address, bids = a.bids, ends_at = a.ends_at
         WHERE id = a.id;
    END IF;

    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'request_id', e.v->>'request_id', 'bidder_id', (e.v->>'bidder_id')::uuid,
               'status', statuses[e.ord], 'current_cents', currents[e.ord])
               || CASE WHEN reasons[e.ord] IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('reason', reasons[e.ord]) END
               ORDER BY e.ord), '[]')
      INTO results
      FROM jsonb_array_elements(p_bids) WITH ORDINALITY AS e (v, ord);
    RETURN jsonb_build_object('results', results, 'auction', auction_json(a), 'changed', changed);
END $$;

-- Ends an auction that is due (p_now at or past its end, or p_force), exactly once: NULL when it had
-- already ended, does not exist, or is not due yet (a bid moved its end: the caller's timer re-arms from the
-- event). The winner's hold goes back to the wallet and pays an order at the winning price through
-- write_orders() (stock, the platform's fee, the host's commission, the seller's earning, shipped to the
-- address the winner had when they took the lead, at the shop's rate for that price, never more than was
-- held for it), in this transaction; the winner is notified ('auction_won'). If the variant has no stock
-- left (sold meanwhile by other means), the auction ends without a sale ('out_of_stock') and the hold goes back.
CREATE OR REPLACE FUNCTION close_auction(
    p_auction uuid, p_fee_bps integer, p_hold_s integer, p_now timestamptz DEFAULT now(),
    p_reason text DEFAULT 'time'
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    a auctions;
    st streams;
    shop sellers;
    variant variants;
    profile shipping_profiles;
    shipping bigint := 0;
    host uuid;
    txn bigint;
    new_order uuid;
    new_number text;
    product_title text;
BEGIN
    SELECT * INTO a FROM auctions WHERE id = p_auction FOR UPDATE;
    IF NOT FOUND OR a.ended_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF p_reason = 'time' AND p_now < a.ends_at THEN
        RETURN NULL;
    END IF;
    SELECT * INTO st FROM streams WHERE id = a.stream_id;
    SELECT * INTO shop FROM sellers WHERE id = st.seller_id;
    IF a.leader_id IS NULL THEN
        UPDATE auctions SET ended_at = least(p_now, ends_at), ended_reason = p_reason WHERE id = a.id RETURNING * INTO a;
        RETURN auction_json(a);
    END IF;
    IF p_reason = 'time' THEN
        variant := variant_for_update(a.variant_id);  -- (not for a stream's end: no sale, and its stream is locked)
    END IF;
    host := CASE WHEN st.host_id <> shop.user_id THEN st.host_id END;
    PERFORM account_of(shop.user_id, 'earnings_pending');
    IF host IS NOT NULL THEN
        PERFORM account_of(host, 'earnings_pending');
    END IF;
    PERFORM lock_accounts(ARRAY(SELECT id FROM accounts WHERE (user_id = a.leader_id AND kind IN ('wallet', 'hold'))
                                  OR (user_id IN (shop.user_id, host) AND kind = 'earnings_pending')));
    -- The hold goes back to the wallet whatever happens next.
    txn := nextval('ledger_txn_seq');
    PERFORM post(txn, account_of(a.leader_id, 'hold'), -a.leader_hold_cents, 'bid_release', NULL, NULL, a.leader_id,
                 'auction ' || a.id);
    PERFORM post(txn, account_of(a.leader_id, 'wallet'), a.leader_hold_cents, 'bid_release', NULL, NULL, a.leader_id,
                 'auction ' || a.id);
    IF p_reason <> 'time' OR variant.stock < 1 THEN
        UPDATE auctions SET ended_at = p_now, ended_reason = CASE WHEN p_reason = 'time' THEN 'out_of_stock' ELSE p_reason END
         WHERE id = a.id RETURNING * INTO a;
        RETURN auction_json(a);
    END IF;
    IF NOT variant.digital THEN
        SELECT * INTO profile FROM shipping_profiles WHERE seller_id = shop.id;
        shipping := least(coalesce(shipping_charge(profile, a.current_cents, a.leader_address->>'country'),
                                   a.leader_hold_cents - a.current_cents),
                          a.leader_hold_cents - a.current_cents);
    END IF;
    new_order := gen_random_uuid();
    new_number := 'LH-' || nextval('order_number_seq');
    PERFORM write_orders(
        ARRAY[ROW(new_order, new_number, nextval('ledger_txn_seq'), gen_random_uuid(), a.leader_id, shop.id, st.id,
                  host, st.host_commission_bps, CASE WHEN variant.digital THEN NULL ELSE a.leader_address END,
                  'auction:' || a.id, shipping)::order_to_write],
        ARRAY[ROW(new_order, a.variant_id, 1, a.current_cents, NULL)::order_line_to_write],
        p_fee_bps, p_hold_s);
    UPDATE auctions SET ended_at = least(p_now, ends_at), ended_reason = 'time', winner_id = a.leader_id,
                        order_id = new_order
     WHERE id = a.id RETURNING * INTO a;
    SELECT p.title INTO product_title FROM products p WHERE p.id = variant.product_id;
    PERFORM notify_user(a.winner_id, 'auction_won', jsonb_build_object(
        'auction_id', a.id, 'order_id', new_order, 'order_number', new_number, 'stream_id', st.id,
        'shop_name', shop.shop_name,
        'title', product_title, 'price_cents', a.current_cents, 'shipping_cents', shipping));
    PERFORM enqueue_job('orders_placed', jsonb_build_object('order_ids', jsonb_build_array(new_order)));
    RETURN auction_json(a);
END $$;

-- The stream's running auction ends with the stream: no sale, the leader's hold goes back.
CREATE OR REPLACE FUNCTION end_stream_auctions(p_stream uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM close_auction(id, 0, 0, now(), 'stream_ended') FROM auctions WHERE stream_id = p_stream AND ended_at IS NULL;
END $$;
