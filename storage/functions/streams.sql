-- Streams and their rooms: scheduling, going live and ending, what is featured and pinned, flash sales,
-- moderation, audience stats and follower notifications. Each public function is one transaction;
-- errors use SQLSTATE class LH (LH403 forbidden, LH404 not found, LH409 conflict, LH422 invalid,
-- LHOOS out of stock).
--
-- Who may do what in a stream: its host runs it; moderators (named by the host) and admins moderate
-- it (pin, flash sales, bans, timeouts, slow mode, blocked words). The host and moderators cannot be
-- moderated (forbidden). A ban is the shop's: it covers every stream of the stream's seller.
--
-- Lock order, as in money.sql: a stream row, then flash sales. Nothing here locks variants or accounts,
-- so a purchase (variant, then flash sale) never waits on a stream lock.

-- A time as its API text: RFC 3339 in UTC, whatever the session's time zone.
CREATE OR REPLACE FUNCTION utc_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') $$;

CREATE OR REPLACE FUNCTION user_is_admin(p_user uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT coalesce((SELECT 'admin' = ANY (roles) FROM users WHERE id = p_user), false) $$;

-- A featured product as the stream shows it, or NULL when the product is archived. A variant's
-- price_cents is what a buyer pays in the stream when no flash sale runs.
CREATE OR REPLACE FUNCTION stream_product_json(sp stream_products) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', p.id, 'title', p.title, 'position', sp.position, 'live_price_cents', sp.live_price_cents,
        'per_buyer_limit', sp.per_buyer_limit, 'rating', product_rating(p.id), 'images', product_images_json(p.id),
        'variants', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                                'id', v.id, 'sku', v.sku, 'options', v.options,
                                'price_cents', coalesce(sp.live_price_cents, v.price_cents), 'available', v.stock,
                                'digital', v.digital)
                            ORDER BY v.created_at, v.sku), '[]')
                       FROM variants v WHERE v.product_id = p.id))
      FROM products p WHERE p.id = sp.product_id AND p.status = 'active';
$$;

CREATE OR REPLACE FUNCTION stream_json(p_stream uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', s.id, 'title', s.title, 'status', s.status,
        'seller', jsonb_build_object('id', se.id, 'shop_name', se.shop_name),
        'host_id', s.host_id, 'host_status', s.host_status, 'scheduled_at', utc_time(s.scheduled_at), 'started_at', utc_time(s.started_at),
        'ended_at', utc_time(s.ended_at), 'pinned_product_id', s.pinned_product_id,
        'unlisted', s.unlisted, 'record', s.record,
        'products', (SELECT coalesce(jsonb_agg(j ORDER BY sp.position, sp.product_id), '[]')
                       FROM stream_products sp, stream_product_json(sp) j
                      WHERE sp.stream_id = s.id AND j IS NOT NULL))
      FROM streams s JOIN sellers se ON se.id = s.seller_id
     WHERE s.id = p_stream;
$$;

CREATE OR REPLACE FUNCTION flash_json(f flash_sales) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', f.id, 'variant_id', f.variant_id, 'product_id', v.product_id, 'price_cents', f.price_cents,
        'quantity', f.quantity, 'remaining', CASE WHEN f.ended_at IS NULL THEN f.quantity - f.sold ELSE 0 END,
        'per_buyer_limit', f.per_buyer_limit, 'starts_at', utc_time(f.starts_at), 'ends_at', utc_time(f.ends_at),
        'ended', f.ended_at IS NOT NULL, 'ended_reason', f.ended_reason)
      FROM variants v WHERE v.id = f.variant_id;
$$;

-- The flash sale buyers can use now (the one variant_price() applies), if any.
CREATE OR REPLACE FUNCTION running_flash_sale(p_stream uuid) RETURNS flash_sales
LANGUAGE sql STABLE AS $$
    SELECT f.* FROM flash_sales f JOIN streams s ON s.id = f.stream_id
     WHERE f.stream_id = p_stream AND f.ended_at IS NULL AND now() >= f.starts_at AND now() < f.ends_at
       AND s.status = 'live';
$$;

-- 'host', 'moderator' (named by the host, or an admin) or 'viewer' (also for no user). A guest host is the
-- host once they accepted (functions/hosts.sql); until then nobody is.
CREATE OR REPLACE FUNCTION stream_role(p_stream uuid, p_user uuid) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    host uuid;
BEGIN
    SELECT CASE WHEN host_status = 'accepted' THEN host_id END INTO host FROM streams WHERE id = p_stream;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream not found' USING ERRCODE = 'LH404';
    END IF;
    IF p_user IS NULL THEN
        RETURN 'viewer';
    ELSIF p_user = host THEN
        RETURN 'host';
    ELSIF user_is_admin(p_user)
          OR EXISTS (SELECT 1 FROM stream_moderators WHERE stream_id = p_stream AND user_id = p_user) THEN
        RETURN 'moderator';
    END IF;
    RETURN 'viewer';
END $$;

-- The stream, locked against concurrent changes of its row (not against new orders referencing it).
CREATE OR REPLACE FUNCTION locked_stream(p_stream uuid) RETURNS streams
LANGUAGE plpgsql AS $$
DECLARE
    s streams;
BEGIN
    SELECT * INTO s FROM streams WHERE id = p_stream FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream not found' USING ERRCODE = 'LH404';
    END IF;
    RETURN s;
END $$;

-- The stream, locked, for its host or a moderator; forbidden for anyone else.
CREATE OR REPLACE FUNCTION moderated_stream(p_stream uuid, p_actor uuid) RETURNS streams
LANGUAGE plpgsql AS $$
DECLARE
    s streams;
BEGIN
    s := locked_stream(p_stream);
    IF stream_role(p_stream, p_actor) = 'viewer' THEN
        RAISE EXCEPTION 'only the host and moderators can do that' USING ERRCODE = 'LH403';
    END IF;
    RETURN s;
END $$;

-- Raises unless p_user is someone moderation may act on: an existing user who is neither the host, a
-- moderator, nor the shop's own account.
CREATE OR REPLACE FUNCTION check_moderation_target(s streams, p_user uuid) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'LH404';
    END IF;
    IF stream_role(s.id, p_user) <> 'viewer' OR EXISTS (SELECT 1 FROM sellers WHERE id = s.seller_id AND user_id = p_user)
    THEN
        RAISE EXCEPTION 'the host and moderators cannot be moderated'
            USING ERRCODE = 'LH403', DETAIL = jsonb_build_object('user_id', p_user)::text;
    END IF;
END $$;

-- A new scheduled stream of the caller's shop, hosted by the caller, or by p_host (another user, invited
-- at p_host_bps: functions/hosts.sql). p_products, in the order shown:
-- [{product_id, live_price_cents?, per_buyer_limit?}], each an active product of the shop, once.
-- p_unlisted: a practice show (docs/REPLAYS.md), watched only through its link, never listed, no follower
-- told; p_record: false opts this show out of recording.
CREATE OR REPLACE FUNCTION create_stream(
    p_user uuid, p_title text, p_scheduled_at timestamptz, p_products jsonb, p_moderators uuid[],
    p_host uuid DEFAULT NULL, p_host_bps integer DEFAULT 0, p_unlisted boolean DEFAULT false,
    p_record boolean DEFAULT true
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    seller uuid := approved_seller(p_user);
    new_id uuid;
    item record;
    pid uuid;
    p products;
    live_price bigint;
    buyer_limit integer;
BEGIN
    IF p_title IS NULL OR btrim(p_title) = '' OR length(p_title) > 200 THEN
        RAISE EXCEPTION 'a title of 1 to 200 characters is required' USING ERRCODE = 'LH422';
    END IF;
    p_products := coalesce(p_products, '[]');
    IF jsonb_typeof(p_products) <> 'array' OR jsonb_array_length(p_products) > 100 THEN
        RAISE EXCEPTION 'products must be a list of at most 100' USING ERRCODE = 'LH422';
    END IF;
    INSERT INTO streams (seller_id, host_id, title, scheduled_at, unlisted, record)
    VALUES (seller, p_user, p_title, p_scheduled_at, coalesce(p_unlisted, false), coalesce(p_record, true))
    RETURNING id INTO new_id;

    FOR item IN SELECT e, n FROM jsonb_array_elements(p_products) WITH ORDINALITY AS x (e, n) LOOP
        pid := (item.e->>'product_id')::uuid;
        live_price := (item.e->>'live_price_cents')::bigint;
        buyer_limit := (item.e->>'per_buyer_limit')::integer;
        SELECT * INTO p FROM products WHERE id = pid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'product not found'
                USING ERRCODE = 'LH404', DETAIL = jsonb_build_object('product_id', pid)::text;
        END IF;
        IF p.seller_id <> seller THEN
            RAISE EXCEPTION 'a stream features only its own shop''s products'
                USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('product_id', pid)::text;
        END IF;
        IF p.status <> 'active' THEN
            RAISE EXCEPTION 'that product is archived'
                USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('product_id', pid)::text;
        END IF;
        IF live_price < 0 OR buyer_limit < 1 THEN
            RAISE EXCEPTION 'live prices are at least 0 and per-buyer limits at least 1'
                USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('product_id', pid)::text;
        END IF;
        INSERT INTO stream_products (stream_id, product_id, live_price_cents, per_buyer_limit, position)
        VALUES (new_id, pid, live_price, buyer_limit, item.n - 1)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a product is featured once'
                USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('product_id', pid)::text;
        END IF;
    END LOOP;

    IF EXISTS (SELECT 1 FROM unnest(p_moderators) m WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = m)) THEN
        RAISE EXCEPTION 'moderator not found' USING ERRCODE = 'LH404';
    END IF;
    -- The host runs the stream; with a guest host the seller may name their own user a moderator.
    INSERT INTO stream_moderators (stream_id, user_id)
    SELECT DISTINCT new_id, m FROM unnest(p_moderators) m WHERE m <> coalesce(p_host, p_user);
    IF p_host IS NOT NULL AND p_host <> p_user OR coalesce(p_host_bps, 0) <> 0 THEN
        PERFORM put_stream_host((SELECT st FROM streams st WHERE st.id = new_id), p_user, p_host, p_host_bps);
    END IF;
    -- The shop's followers get show_scheduled (functions/reminders.sql); not of a practice show.
    IF NOT coalesce(p_unlisted, false) THEN
        PERFORM scheduled_show_notice(new_id);
    END IF;
    RETURN stream_json(new_id);
END $$;

-- scheduled -> live, by its host. Notifies every follower of the shop and everyone who asked to be reminded
-- (notify_users: a notifications row each and its delivery job, in this transaction); of an unlisted show
-- (practice) only those who asked to be reminded, who had its link. Returns {stream, followers: [user id]}
-- (everyone told).
CREATE OR REPLACE FUNCTION start_stream(p_stream uuid, p_actor uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams;
    se sellers;
    other uuid;
    followers uuid[];
BEGIN
    s := locked_stream(p_stream);
    IF s.host_id <> p_actor THEN
        RAISE EXCEPTION 'only the host can start the stream' USING ERRCODE = 'LH403';
    END IF;
    -- A guest host starts only what they accepted (functions/hosts.sql).
    IF s.status = 'scheduled' AND s.host_status <> 'accepted' THEN
        RAISE EXCEPTION 'the host has not accepted the invitation to host this stream'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('host_status', s.host_status)::text;
    END IF;
    IF s.status <> 'scheduled' THEN
        RAISE EXCEPTION 'the stream is %', s.status
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', s.status)::text;
    END IF;
    SELECT * INTO se FROM sellers WHERE id = s.seller_id;
    IF se.status <> 'approved' THEN
        RAISE EXCEPTION 'seller profile is %', se.status USING ERRCODE = 'LH403';
    END IF;
    -- (The unique index streams_one_live_per_seller settles two starts racing past this check.)
    SELECT id INTO other FROM streams WHERE seller_id = s.seller_id AND status = 'live';
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'this shop is already live in another stream'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('stream_id', other)::text;
    END IF;
    UPDATE streams SET status = 'live', started_at = now() WHERE id = p_stream;
    -- Stored and their delivery queued (functions/messages.sql): the job pushes and emails them.
    -- Those who asked to be reminded of it (functions/reminders.sql) too; notify_users() tells each once.
    followers := notify_users(
        ARRAY(SELECT f.user_id FROM follows f WHERE f.seller_id = s.seller_id AND NOT s.unlisted
              UNION SELECT r.user_id FROM stream_reminders r WHERE r.stream_id = s.id), 'stream_live',
        jsonb_build_object('stream_id', s.id, 'title', s.title, 'seller_id', se.id, 'shop_name', se.shop_name));
    RETURN jsonb_build_object('stream', stream_json(p_stream), 'followers', to_jsonb(followers));
END $$;

-- live -> ended, by its host, its shop (of a guest-hosted stream) or an admin. A running flash sale ends
-- with it; nothing stays pinned (an unpin in the pin history, if something was).
CREATE OR REPLACE FUNCTION end_stream(p_stream uuid, p_actor uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams;
BEGIN
    s := locked_stream(p_stream);
    IF s.host_id <> p_actor AND NOT user_is_admin(p_actor)
       AND NOT EXISTS (SELECT 1 FROM sellers WHERE id = s.seller_id AND user_id = p_actor) THEN
        RAISE EXCEPTION 'only the host, the shop or an admin can end the stream' USING ERRCODE = 'LH403';
    END IF;
    IF s.status <> 'live' THEN
        RAISE EXCEPTION 'the stream is %', s.status
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', s.status)::text;
    END IF;
    -- A sale already past its end (its timer had not fired yet) ended on time.
    UPDATE flash_sales
       SET ended_at = least(now(), ends_at),
           ended_reason = CASE WHEN now() >= ends_at THEN 'time' ELSE 'stream_ended' END
     WHERE stream_id = p_stream AND ended_at IS NULL;
    PERFORM end_stream_auctions(p_stream);  -- functions/auctions.sql: no sale, holds released
    UPDATE streams SET status = 'ended', ended_at = now(), pinned_product_id = NULL WHERE id = p_stream;
    IF s.pinned_product_id IS NOT NULL THEN
        INSERT INTO stream_pins (stream_id, product_id, at) VALUES (p_stream, NULL, now());
    END IF;
    RETURN stream_json(p_stream);
END $$;

-- Everything a room needs when it loads, in one call.
CREATE OR REPLACE FUNCTION room_snapshot(p_stream uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'stream', stream_json(s.id),
        'flash_sale', (SELECT flash_json(f) FROM running_flash_sale(s.id) f WHERE f.id IS NOT NULL),
        'auction', running_auction_json(s.id),  -- functions/auctions.sql
        'giveaway', stream_giveaway(s.id),  -- functions/giveaways.sql
        'moderators', (SELECT coalesce(jsonb_agg(m.user_id ORDER BY m.user_id), '[]')
                         FROM stream_moderators m WHERE m.stream_id = s.id),
        'slow_mode_s', s.slow_mode_s,
        'blocked_words', to_jsonb(s.blocked_words),
        'timeouts', (SELECT coalesce(jsonb_object_agg(t.user_id, utc_time(t.until)), '{}')
                       FROM stream_timeouts t WHERE t.stream_id = s.id AND t.until > now()))
      FROM streams s WHERE s.id = p_stream;
$$;

-- Pins a featured product (NULL unpins) in a live stream, and adds it to the pin history (stream_pins,
-- the replay's timeline). Returns the product as the stream shows it.
CREATE OR REPLACE FUNCTION pin_product(p_stream uuid, p_actor uuid, p_product uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
    shown jsonb;
BEGIN
    IF s.status <> 'live' THEN
        RAISE EXCEPTION 'the stream is not live' USING ERRCODE = 'LH409';
    END IF;
    IF p_product IS NOT NULL THEN
        SELECT stream_product_json(sp) INTO shown FROM stream_products sp
         WHERE sp.stream_id = p_stream AND sp.product_id = p_product;
        IF shown IS NULL THEN
            RAISE EXCEPTION 'that product is not featured in this stream' USING ERRCODE = 'LH404';
        END IF;
    END IF;
    UPDATE streams SET pinned_product_id = p_product WHERE id = p_stream;
    INSERT INTO stream_pins (stream_id, product_id, at) VALUES (p_stream, p_product, now());
    RETURN shown;
END $$;

-- Starts a flash sale of a featured variant in a live stream: p_quantity units (at most the stock now)
-- at p_price for p_duration_s seconds. One runs at a time per stream.
CREATE OR REPLACE FUNCTION start_flash_sale(
    p_stream uuid, p_actor uuid, p_variant uuid, p_price bigint, p_quantity integer, p_duration_s integer,
    p_per_buyer_limit integer
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
    in_stock integer;
    stream_price bigint;
    v variants;
    f flash_sales;
BEGIN
    IF p_duration_s IS NULL OR p_duration_s NOT BETWEEN 5 AND 3600 THEN
        RAISE EXCEPTION 'a flash sale lasts 5 to 3600 seconds' USING ERRCODE = 'LH422';
    END IF;
    IF p_price IS NULL OR p_price < 0 OR p_quantity IS NULL OR p_quantity < 1 OR p_per_buyer_limit < 1 THEN
        RAISE EXCEPTION 'price at least 0, quantity and per-buyer limit at least 1' USING ERRCODE = 'LH422';
    END IF;
    IF s.status <> 'live' THEN
        RAISE EXCEPTION 'the stream is not live' USING ERRCODE = 'LH409';
    END IF;
    v := featured_variant(p_stream, p_variant);
    in_stock := v.stock;
    SELECT coalesce(sp.live_price_cents, v.price_cents) INTO stream_price
      FROM stream_products sp WHERE sp.stream_id = p_stream AND sp.product_id = v.product_id;
    -- Viewers see the sale's price against the stream's, struck through: one that is not below it would
    -- be a discount that is not there.
    IF p_price >= stream_price THEN
        RAISE EXCEPTION 'a flash sale''s price must be below the price in the stream'
            USING ERRCODE = 'LH422', DETAIL = jsonb_build_object(
                'price_cents', stream_price,
                'errors', jsonb_build_array(jsonb_build_object(
                    'loc', jsonb_build_array('price_cents'), 'type', 'flash_price_not_below',
                    'msg', 'must be below the price in the stream')))::text;
    END IF;
    -- A sale past its end whose timer has not fired yet is over: it does not block the next one.
    UPDATE flash_sales SET ended_at = ends_at, ended_reason = 'time'
     WHERE stream_id = p_stream AND ended_at IS NULL AND now() >= ends_at;
    PERFORM refuse_while_a_sale_or_auction_runs(p_stream, now());
    IF p_quantity > in_stock THEN
        RAISE EXCEPTION 'not enough stock'
            USING ERRCODE = 'LHOOS', DETAIL = jsonb_build_object('variant_id', p_variant, 'available', in_stock)::text;
    END IF;
    INSERT INTO flash_sales (stream_id, variant_id, price_cents, quantity, per_buyer_limit, starts_at, ends_at)
    VALUES (p_stream, p_variant, p_price, p_quantity, p_per_buyer_limit, now(),
            now() + make_interval(secs => p_duration_s))
    RETURNING * INTO f;
    RETURN flash_json(f);
END $$;

-- The variant p_variant of a product featured in stream p_stream and still active: what a flash sale, an
-- auction or a giveaway is started on. LH404 otherwise.
CREATE OR REPLACE FUNCTION featured_variant(p_stream uuid, p_variant uuid) RETURNS variants
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v variants;
BEGIN
    SELECT v2.* INTO v
      FROM variants v2
      JOIN stream_products sp ON sp.product_id = v2.product_id AND sp.stream_id = p_stream
      JOIN products p ON p.id = v2.product_id AND p.status = 'active'
     WHERE v2.id = p_variant;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'that variant is not featured in this stream' USING ERRCODE = 'LH404';
    END IF;
    RETURN v;
END $$;

-- One flash sale or auction at a time per stream: starting either refuses (409, naming the running one) while
-- a sale before its end or an auction not yet closed runs. (An auction past its end whose timer has not fired
-- yet still counts: its timer closes it in a moment and settles its winner.)
CREATE OR REPLACE FUNCTION refuse_while_a_sale_or_auction_runs(p_stream uuid, p_now timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    running uuid;
BEGIN
    SELECT id INTO running FROM flash_sales WHERE stream_id = p_stream AND ended_at IS NULL AND p_now < ends_at;
    IF running IS NOT NULL THEN
        RAISE EXCEPTION 'a flash sale is running'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('flash_sale_id', running)::text;
    END IF;
    SELECT id INTO running FROM auctions WHERE stream_id = p_stream AND ended_at IS NULL;
    IF running IS NOT NULL THEN
        RAISE EXCEPTION 'an auction is running'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('auction_id', running)::text;
    END IF;
END $$;

-- Ends a flash sale if it is still running; NULL when it had already ended (or does not exist), so of
-- many nodes racing to end it exactly one gets the sale back.
CREATE OR REPLACE FUNCTION end_flash_sale(p_sale uuid, p_reason text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    f flash_sales;
BEGIN
    IF p_reason IS NULL OR p_reason NOT IN ('sold_out', 'time', 'host', 'stream_ended') THEN
        RAISE EXCEPTION 'unknown reason for ending a flash sale' USING ERRCODE = 'LH422';
    END IF;
    UPDATE flash_sales SET ended_at = now(), ended_reason = p_reason
     WHERE id = p_sale AND ended_at IS NULL
    RETURNING * INTO f;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN flash_json(f);
END $$;

-- The host or a moderator ends the stream's running flash sale; NULL when none runs.
CREATE OR REPLACE FUNCTION end_flash_sale_by_host(p_stream uuid, p_actor uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
    f flash_sales;
BEGIN
    UPDATE flash_sales SET ended_at = now(), ended_reason = 'host'
     WHERE stream_id = s.id AND ended_at IS NULL
    RETURNING * INTO f;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN flash_json(f);
END $$;

CREATE OR REPLACE FUNCTION ban_user(p_stream uuid, p_actor uuid, p_user uuid, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
BEGIN
    PERFORM check_moderation_target(s, p_user);
    IF length(p_reason) > 500 THEN
        RAISE EXCEPTION 'a reason is at most 500 characters' USING ERRCODE = 'LH422';
    END IF;
    INSERT INTO seller_bans (seller_id, user_id, banned_by, reason)
    VALUES (s.seller_id, p_user, p_actor, p_reason)
    ON CONFLICT (seller_id, user_id) DO UPDATE SET banned_by = EXCLUDED.banned_by, reason = EXCLUDED.reason;
END $$;

CREATE OR REPLACE FUNCTION unban_user(p_stream uuid, p_actor uuid, p_user uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
BEGIN
    DELETE FROM seller_bans WHERE seller_id = s.seller_id AND user_id = p_user;
END $$;

-- Keeps a user from chatting in the stream for p_seconds from now (replacing any earlier timeout).
CREATE OR REPLACE FUNCTION timeout_user(p_stream uuid, p_actor uuid, p_user uuid, p_seconds integer)
RETURNS timestamptz
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
    until_at timestamptz;
BEGIN
    IF p_seconds IS NULL OR p_seconds NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'a timeout lasts 1 to 86400 seconds' USING ERRCODE = 'LH422';
    END IF;
    PERFORM check_moderation_target(s, p_user);
    INSERT INTO stream_timeouts (stream_id, user_id, until)
    VALUES (s.id, p_user, now() + make_interval(secs => p_seconds))
    ON CONFLICT (stream_id, user_id) DO UPDATE SET until = EXCLUDED.until
    RETURNING until INTO until_at;
    RETURN until_at;
END $$;

CREATE OR REPLACE FUNCTION set_slow_mode(p_stream uuid, p_actor uuid, p_seconds integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
BEGIN
    IF p_seconds IS NULL OR p_seconds NOT BETWEEN 0 AND 3600 THEN
        RAISE EXCEPTION 'slow mode is 0 (off) to 3600 seconds' USING ERRCODE = 'LH422';
    END IF;
    UPDATE streams SET slow_mode_s = p_seconds WHERE id = s.id;
END $$;

-- Replaces the stream's blocked words: lower-cased, trimmed, without blanks or repeats, sorted.
-- At most 200 words of at most 50 characters. Returns the list as stored.
CREATE OR REPLACE FUNCTION set_blocked_words(p_stream uuid, p_actor uuid, p_words text[]) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    s streams := moderated_stream(p_stream, p_actor);
    words text[];
BEGIN
    words := ARRAY(
        SELECT DISTINCT w FROM (SELECT lower(regexp_replace(raw, '^\s+|\s+$', '', 'g')) AS w
                                  FROM unnest(p_words) raw) n
         WHERE w <> '' ORDER BY w);
    IF cardinality(words) > 200 THEN
        RAISE EXCEPTION 'at most 200 blocked words' USING ERRCODE = 'LH422';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(words) w WHERE length(w) > 50) THEN
        RAISE EXCEPTION 'a blocked word is at most 50 characters' USING ERRCODE = 'LH422';
    END IF;
    UPDATE streams SET blocked_words = words WHERE id = s.id;
    RETURN words;
END $$;

-- The host names or removes a moderator.
CREATE OR REPLACE FUNCTION set_moderator(p_stream uuid, p_actor uuid, p_user uuid, p_on boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s streams;
BEGIN
    s := locked_stream(p_stream);
    IF s.host_id <> p_actor OR s.host_status <> 'accepted' THEN
        RAISE EXCEPTION 'only the host names moderators' USING ERRCODE = 'LH403';
    END IF;
    IF NOT p_on THEN
        DELETE FROM stream_moderators WHERE stream_id = p_stream AND user_id = p_user;
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'LH404';
    END IF;
    IF p_user = s.host_id THEN
        RAISE EXCEPTION 'the host runs the stream already' USING ERRCODE = 'LH422';
    END IF;
    INSERT INTO stream_moderators (stream_id, user_id) VALUES (p_stream, p_user) ON CONFLICT DO NOTHING;
END $$;

-- Adds a room's audience figures: the viewer count now (kept if a new peak), viewer keys seen
-- (counted once each), and click and reaction deltas ({product id: n}, {kind: n}). Clicks on products
-- the stream does not feature are dropped. A stream that does not exist is ignored.
CREATE OR REPLACE FUNCTION record_presence(
    p_stream uuid, p_viewers integer, p_keys text[], p_clicks jsonb, p_reactions jsonb
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- The stream's row lock first: rooms on several nodes reporting at once queue here instead of
    -- deadlocking on each other's counter rows.
    UPDATE streams SET peak_viewers = greatest(peak_viewers, coalesce(p_viewers, 0)) WHERE id = p_stream;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO stream_viewers (stream_id, viewer_key)
    SELECT DISTINCT p_stream, k FROM unnest(p_keys) k WHERE k IS NOT NULL
    ON CONFLICT DO NOTHING;
    INSERT INTO stream_product_clicks (stream_id, product_id, clicks)
    SELECT p_stream, sp.product_id, c.value::bigint
      FROM jsonb_each_text(coalesce(p_clicks, '{}')) c
      JOIN stream_products sp ON sp.stream_id = p_stream AND sp.product_id::text = lower(c.key)
     WHERE c.value::bigint > 0
    ON CONFLICT (stream_id, product_id) DO UPDATE SET clicks = stream_product_clicks.clicks + EXCLUDED.clicks;
    INSERT INTO stream_reactions (stream_id, kind, count)
    SELECT p_stream, r.key, r.value::bigint FROM jsonb_each_text(coalesce(p_reactions, '{}')) r
     WHERE r.value::bigint > 0
    ON CONFLICT (stream_id, kind) DO UPDATE SET count = stream_reactions.count + EXCLUDED.count;
END $$;

-- A stream's numbers for its host or an admin. Orders count unless cancelled; revenue is what they
-- kept (total less refunds). Per product, an order's refunds are shared among its items in proportion
-- to their amounts (rounded down), so products' revenue can sum to a little more than the total.
CREATE OR REPLACE FUNCTION stream_stats(p_stream uuid, p_actor uuid, p_is_admin boolean) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s streams;
BEGIN
    SELECT * INTO s FROM streams WHERE id = p_stream;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream not found' USING ERRCODE = 'LH404';
    END IF;
    IF s.host_id <> p_actor AND NOT (p_is_admin OR user_is_admin(p_actor))
       AND NOT EXISTS (SELECT 1 FROM sellers WHERE id = s.seller_id AND user_id = p_actor) THEN
        RAISE EXCEPTION 'only the host, the shop or an admin can see the stream''s numbers' USING ERRCODE = 'LH403';
    END IF;
    RETURN jsonb_build_object(
        'stream_id', s.id, 'status', s.status, 'started_at', utc_time(s.started_at),
        'ended_at', utc_time(s.ended_at), 'peak_viewers', s.peak_viewers,
        'unique_viewers', (SELECT count(*) FROM stream_viewers WHERE stream_id = s.id),
        'chat_messages', (SELECT count(*) FROM chat_messages WHERE stream_id = s.id AND deleted_at IS NULL),
        'reactions', (SELECT coalesce(jsonb_object_agg(kind, count), '{}') FROM stream_reactions
                       WHERE stream_id = s.id),
        'orders', (SELECT count(*) FROM orders WHERE stream_id = s.id AND status <> 'cancelled'),
        'revenue_cents', (SELECT coalesce(sum(total_cents - refunded_cents), 0) FROM orders
                           WHERE stream_id = s.id AND status <> 'cancelled'),
        'products', (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'product_id', sp.product_id, 'title', p.title, 'clicks', coalesce(c.clicks, 0),
                       'orders', sold.orders, 'units', sold.units, 'revenue_cents', sold.revenue)
                       ORDER BY sp.position, sp.product_id), '[]')
              FROM stream_products sp
              JOIN products p ON p.id = sp.product_id
              LEFT JOIN stream_product_clicks c ON c.stream_id = sp.stream_id AND c.product_id = sp.product_id
              CROSS JOIN LATERAL (
                  SELECT count(DISTINCT o.id) AS orders, coalesce(sum(oi.quantity), 0) AS units,
                         coalesce(sum(oi.unit_price_cents::numeric * oi.quantity
                                      - floor(o.refunded_cents::numeric * oi.unit_price_cents * oi.quantity
                                              / nullif(o.total_cents, 0))), 0)::bigint AS revenue
                    FROM orders o JOIN order_items oi ON oi.order_id = o.id
                   WHERE o.stream_id = s.id AND o.status <> 'cancelled' AND oi.product_id = sp.product_id
              ) sold
             WHERE sp.stream_id = s.id));
END $$;
