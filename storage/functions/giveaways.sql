-- Giveaways: a host (or moderator) gives one unit of a featured variant away to one of the viewers who
-- entered, with a draw anyone can check. Each public function is one transaction; errors use SQLSTATE
-- class LH like streams.sql.
--
-- The draw (docs/PROTOCOL.md, "Giveaways"): at the start a 32-byte random seed is stored and only its hex
-- SHA-256 shown; at the end the entrants' user ids, as lower-case text, sorted bytewise, are joined with
-- "\n", and the winner is sorted_ids[int(SHA-256(seed || joined)) mod n] (big-endian, 0-based). The
-- seed is revealed in the ended giveaway.
--
-- The prize is a zero-price order for the winner written by write_orders() (money.sql) in the transaction
-- that ends the giveaway: one unit, stock moves, a digital prize's code is issued, no money moves (the
-- books stay balanced: every share of a zero total is zero). Shipping is free to the winner: the seller
-- bears the postage off the platform. A physical prize ships to the address the winner had as default
-- when entering (an entry needs one the seller ships to). With no unit or code left at the end, the winner
-- is still drawn and told nothing was left (prize_status 'unavailable').
--
-- Lock order: a stream row (start, by moderated_stream), then the giveaway row, then the variant (as
-- money.sql: an order row, variants, accounts). Entering takes the giveaway row FOR SHARE, ending it FOR
-- UPDATE: no entry lands after the draw.
--
-- (plpgsql throughout: these files load in name order, and a LANGUAGE sql body is checked at creation
-- against functions that streams.sql and money.sql create later.)

-- A giveaway as the room shows it. The seed only once it has ended.
CREATE OR REPLACE FUNCTION giveaway_json(g giveaways) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    shown jsonb;
BEGIN
    SELECT jsonb_build_object(
        'id', g.id, 'stream_id', g.stream_id, 'variant_id', g.variant_id,
        'product', jsonb_build_object('id', p.id, 'title', p.title, 'sku', v.sku, 'options', v.options,
                                      'digital', v.digital),
        'eligibility', g.eligibility,
        'entries', (SELECT count(*) FROM giveaway_entries e WHERE e.giveaway_id = g.id),
        'seed_hash', g.seed_hash, 'starts_at', utc_time(g.starts_at), 'ends_at', utc_time(g.ends_at),
        'ended', g.ended_at IS NOT NULL, 'ended_reason', g.ended_reason,
        'seed', CASE WHEN g.ended_at IS NOT NULL THEN encode(g.seed, 'hex') END,
        'winner', (SELECT jsonb_build_object('id', u.id, 'name', u.display_name) FROM users u WHERE u.id = g.winner_id),
        'order_id', g.order_id, 'prize_status', g.prize_status)
      INTO shown
      FROM variants v JOIN products p ON p.id = v.product_id
     WHERE v.id = g.variant_id;
    RETURN shown;
END $$;

-- The stream's giveaway for a room's welcome: the running one, else the last one that ended (its winner
-- stays on show), else NULL.
CREATE OR REPLACE FUNCTION stream_giveaway(p_stream uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    g giveaways;
BEGIN
    SELECT * INTO g FROM giveaways WHERE stream_id = p_stream
     ORDER BY ended_at IS NULL DESC, starts_at DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN giveaway_json(g);
END $$;

-- Whether one unit of the variant can be given now: in stock, and for a digital variant a code available.
CREATE OR REPLACE FUNCTION giveaway_prize_left(v variants) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN v.stock >= 1 AND (NOT v.digital OR EXISTS (
        SELECT 1 FROM digital_units d WHERE d.variant_id = v.id AND d.status = 'available'));
END $$;

-- Starts a giveaway of a featured variant in a live stream, by its host or a moderator: for p_duration_s
-- (5-3600) seconds, open to p_eligibility ('everyone', 'followers' of the shop, 'buyers' in this stream).
-- p_seed: 32 random bytes (the caller's CSPRNG). One runs at a time per stream.
CREATE OR REPLACE FUNCTION start_giveaway(
    p_stream uuid, p_actor uuid, p_variant uuid, p_duration_s integer, p_eligibility text, p_seed bytea
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
    v variants;
    g giveaways;
    running uuid;
BEGIN
    IF p_duration_s IS NULL OR p_duration_s NOT BETWEEN 5 AND 3600 THEN
        RAISE EXCEPTION 'a giveaway lasts 5 to 3600 seconds' USING ERRCODE = 'LH422';
    END IF;
    IF p_eligibility IS NULL OR p_eligibility NOT IN ('everyone', 'followers', 'buyers') THEN
        RAISE EXCEPTION 'eligibility is everyone, followers or buyers' USING ERRCODE = 'LH422';
    END IF;
    IF p_seed IS NULL OR length(p_seed) <> 32 THEN
        RAISE EXCEPTION 'a giveaway''s seed is 32 bytes' USING ERRCODE = 'LH422';
    END IF;
    IF s.status <> 'live' THEN
        RAISE EXCEPTION 'the stream is not live' USING ERRCODE = 'LH409';
    END IF;
    v := featured_variant(p_stream, p_variant);
    IF NOT giveaway_prize_left(v) THEN
        RAISE EXCEPTION 'nothing left to give away'
            USING ERRCODE = 'LHOOS', DETAIL = jsonb_build_object('variant_id', p_variant, 'available', 0)::text;
    END IF;
    SELECT id INTO running FROM giveaways WHERE stream_id = p_stream AND ended_at IS NULL;
    IF running IS NOT NULL THEN
        RAISE EXCEPTION 'a giveaway is already running'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('giveaway_id', running)::text;
    END IF;
    INSERT INTO giveaways (stream_id, variant_id, eligibility, seed, seed_hash, started_by, starts_at, ends_at)
    VALUES (p_stream, p_variant, p_eligibility, p_seed, encode(sha256(p_seed), 'hex'), p_actor, now(),
            now() + make_interval(secs => p_duration_s))
    RETURNING * INTO g;
    RETURN giveaway_json(g);
END $$;

-- p_user enters the giveaway (once: entering again changes nothing). Refused (LH403 with details.reason)
-- for the stream's host, moderators and the shop's own user ('staff'), a user the shop banned ('banned'),
-- one timed out in the stream ('timed_out'), and one outside its eligibility ('not_eligible', with
-- 'eligibility'); a physical prize needs a default address the shop ships to (LH422, reason
-- 'address_required' or 'not_shipped'). LH409 once it has ended. Returns {giveaway, entered: true when this
-- call entered}.
CREATE OR REPLACE FUNCTION enter_giveaway(p_giveaway uuid, p_user uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    g giveaways;
    s streams;
    v variants;
    shop sellers;
    address jsonb;
    new_entry boolean;
BEGIN
    SELECT * INTO g FROM giveaways WHERE id = p_giveaway FOR SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'giveaway not found' USING ERRCODE = 'LH404';
    END IF;
    SELECT * INTO s FROM streams WHERE id = g.stream_id;
    IF g.ended_at IS NOT NULL OR now() >= g.ends_at OR s.status <> 'live' THEN
        RAISE EXCEPTION 'the giveaway has ended'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('reason', 'ended')::text;
    END IF;
    IF EXISTS (SELECT 1 FROM giveaway_entries WHERE giveaway_id = g.id AND user_id = p_user) THEN
        RETURN jsonb_build_object('giveaway', giveaway_json(g), 'entered', false);
    END IF;
    SELECT * INTO shop FROM sellers WHERE id = s.seller_id;
    IF shop.user_id = p_user OR stream_role(s.id, p_user) <> 'viewer' THEN
        RAISE EXCEPTION 'the shop, the host and moderators cannot enter their own giveaway'
            USING ERRCODE = 'LH403', DETAIL = jsonb_build_object('reason', 'staff')::text;
    END IF;
    IF banned_from_stream(s.id, p_user) THEN
        RAISE EXCEPTION 'banned from this seller''s streams'
            USING ERRCODE = 'LH403', DETAIL = jsonb_build_object('reason', 'banned')::text;
    END IF;
    IF EXISTS (SELECT 1 FROM stream_timeouts t WHERE t.stream_id = s.id AND t.user_id = p_user AND t.until > now()) THEN
        RAISE EXCEPTION 'timed out in this stream'
            USING ERRCODE = 'LH403', DETAIL = jsonb_build_object('reason', 'timed_out')::text;
    END IF;
    IF g.eligibility = 'followers'
       AND NOT EXISTS (SELECT 1 FROM follows f WHERE f.user_id = p_user AND f.seller_id = s.seller_id) THEN
        RAISE EXCEPTION 'this giveaway is for the shop''s followers'
            USING ERRCODE = 'LH403',
                  DETAIL = jsonb_build_object('reason', 'not_eligible', 'eligibility', g.eligibility)::text;
    END IF;
    -- Bought in this show: an order of the stream that is not cancelled and not a giveaway's prize.
    IF g.eligibility = 'buyers' AND NOT EXISTS (
        SELECT 1 FROM orders o
         WHERE o.stream_id = s.id AND o.buyer_id = p_user AND o.status <> 'cancelled'
           AND NOT EXISTS (SELECT 1 FROM giveaways pg WHERE pg.order_id = o.id)) THEN
        RAISE EXCEPTION 'this giveaway is for those who bought in this show'
            USING ERRCODE = 'LH403',
                  DETAIL = jsonb_build_object('reason', 'not_eligible', 'eligibility', g.eligibility)::text;
    END IF;
    SELECT * INTO v FROM variants WHERE id = g.variant_id;
    IF NOT v.digital THEN
        address := address_snapshot(buyer_address(p_user, NULL));
        IF address IS NULL THEN
            RAISE EXCEPTION 'this prize ships: add a default shipping address to enter'
                USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('reason', 'address_required')::text;
        END IF;
        IF shipping_for(shop.id, 0, address->>'country') IS NULL THEN
            RAISE EXCEPTION 'this shop does not ship to %', address->>'country'
                USING ERRCODE = 'LH422',
                      DETAIL = jsonb_build_object('reason', 'not_shipped', 'country', address->>'country')::text;
        END IF;
    END IF;
    INSERT INTO giveaway_entries (giveaway_id, user_id, address) VALUES (g.id, p_user, address)
    ON CONFLICT DO NOTHING;
    new_entry := FOUND;
    RETURN jsonb_build_object('giveaway', giveaway_json(g), 'entered', new_entry);
END $$;

-- The draw: the index of the winner among n entries sorted by user id (as text, bytewise), 0-based.
CREATE OR REPLACE FUNCTION giveaway_draw_index(p_seed bytea, p_sorted_ids text[]) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    digest bytea := sha256(p_seed || convert_to(array_to_string(p_sorted_ids, E'\n'), 'UTF8'));
    acc numeric := 0;
BEGIN
    FOR i IN 0 .. length(digest) - 1 LOOP
        acc := acc * 256 + get_byte(digest, i);
    END LOOP;
    RETURN mod(acc, cardinality(p_sorted_ids))::integer;
END $$;

-- Ends the giveaway if it still runs: draws the winner, writes the prize order and notifies the winner
-- (giveaway_won), all in this transaction. NULL when it had already ended (or does not exist), so of many
-- nodes racing to end it exactly one gets it back. p_reason: 'time', 'host' or 'stream_ended'.
CREATE OR REPLACE FUNCTION end_giveaway(p_giveaway uuid, p_reason text, p_hold_s integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    g giveaways;
    v variants;
    shop sellers;
    ids text[];
    winner uuid;
    entry giveaway_entries;
    new_order uuid;
    order_number text;
    status text;
BEGIN
    IF p_reason IS NULL OR p_reason NOT IN ('time', 'host', 'stream_ended') THEN
        RAISE EXCEPTION 'unknown reason for ending a giveaway' USING ERRCODE = 'LH422';
    END IF;
    SELECT * INTO g FROM giveaways WHERE id = p_giveaway FOR UPDATE;
    IF NOT FOUND OR g.ended_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    ids := ARRAY(SELECT e.user_id::text FROM giveaway_entries e WHERE e.giveaway_id = g.id
                  ORDER BY e.user_id::text COLLATE "C");
    IF cardinality(ids) = 0 THEN
        status := 'no_entries';
    ELSE
        winner := ids[giveaway_draw_index(g.seed, ids) + 1]::uuid;
        SELECT * INTO entry FROM giveaway_entries WHERE giveaway_id = g.id AND user_id = winner;
        v := variant_for_update(g.variant_id);
        SELECT se.* INTO shop FROM sellers se JOIN products p ON p.seller_id = se.id WHERE p.id = v.product_id;
        IF giveaway_prize_left(v) THEN
            status := 'ordered';
            new_order := gen_random_uuid();
            order_number := 'LH-' || nextval('order_number_seq');
            -- Zero price, free shipping, no host commission: no ledger entry moves money, every share is 0.
            PERFORM write_orders(
                ARRAY[ROW(new_order, order_number, nextval('ledger_txn_seq'), gen_random_uuid(), winner, shop.id,
                          g.stream_id, NULL, 0, CASE WHEN NOT v.digital THEN entry.address END,
                          'giveaway:' || g.id, 0)::order_to_write],
                ARRAY[ROW(new_order, v.id, 1, 0, NULL)::order_line_to_write],
                0, p_hold_s);
        ELSE
            status := 'unavailable';
        END IF;
    END IF;
    UPDATE giveaways
       SET ended_at = now(), ended_reason = p_reason, winner_id = winner, order_id = new_order, prize_status = status
     WHERE id = g.id
    RETURNING * INTO g;
    IF winner IS NOT NULL THEN
        PERFORM notify_user(winner, 'giveaway_won', jsonb_build_object(
            'giveaway_id', g.id, 'stream_id', g.stream_id, 'order_id', new_order, 'number', order_number,
            'prize_status', status, 'shop_name', shop.shop_name,
            'title', (SELECT p.title FROM products p WHERE p.id = v.product_id)));
    END IF;
    RETURN giveaway_json(g);
END $$;

-- The host or a moderator draws the stream's running giveaway now; NULL when none runs.
CREATE OR REPLACE FUNCTION end_giveaway_by_host(p_stream uuid, p_actor uuid, p_hold_s integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
    running uuid;
BEGIN
    SELECT id INTO running FROM giveaways WHERE stream_id = s.id AND ended_at IS NULL;
    IF running IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN end_giveaway(running, 'host', p_hold_s);
END $$;
