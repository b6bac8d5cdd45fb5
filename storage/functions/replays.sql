-- Replays (docs/REPLAYS.md): a recorded show's video (stream_replays, written by the recorder,
-- livehub/shop/recordings.py), its timeline of durable events, the line-up to buy, and discarding one.
-- This file is loaded before streams.sql: what it uses from there (utc_time, user_is_admin, locked_stream)
-- is called from plpgsql bodies, which are resolved when they run.

-- A replay's line-up: the show's featured products still on sale, in the show's order, each at its
-- REGULAR catalog price (its cheapest variant's price_cents), never the show's live price or a flash sale's:
-- the show is over. image_url: the product's first image (largest size), or null. A shop that is not approved
-- (suspended, or its owner deactivated) sells nothing, as its catalog is hidden: the line-up is empty.
CREATE OR REPLACE FUNCTION replay_products_json(p_stream uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT coalesce(jsonb_agg(jsonb_build_object(
                   'id', p.id, 'title', p.title, 'position', sp.position,
                   'price_cents', (SELECT min(v.price_cents) FROM variants v WHERE v.product_id = p.id),
                   'image_url', (SELECT product_image_url(i.id, i.width) FROM product_images i
                                  WHERE i.product_id = p.id ORDER BY i.position, i.created_at LIMIT 1))
                   ORDER BY sp.position, sp.product_id), '[]')
          FROM stream_products sp JOIN products p ON p.id = sp.product_id AND p.status = 'active'
          JOIN sellers se ON se.id = p.seller_id AND se.status = 'approved'
         WHERE sp.stream_id = p_stream);
END $$;

-- The replay of a stream: {stream_id, title, seller, unlisted, media_key, content_type, duration_s, started_at,
-- products}, or NULL when it has none. With p_template (the LiveKit backend with
-- LIVEHUB_REPLAY_URL_TEMPLATE set: LiveKit Egress recorded the room, LiveHub holds no file), an ended stream
-- that was to be recorded has one without a stream_replays row: media_key null, started_at the stream's
-- and duration_s null (the API fills in the URL). A shop that is not approved (suspended, deactivated) has no
-- replays, as its catalog is hidden; a stream whose replay was discarded or expired (replay_discarded_at) has
-- none either, even if a row or the template would give one.
CREATE OR REPLACE FUNCTION replay_json(p_stream uuid, p_template boolean DEFAULT false) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s streams;
    r stream_replays;
    base jsonb;
BEGIN
    SELECT st.* INTO s FROM streams st JOIN sellers se ON se.id = st.seller_id AND se.status = 'approved'
     WHERE st.id = p_stream AND st.replay_discarded_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO r FROM stream_replays WHERE stream_id = p_stream;
    IF FOUND THEN
        base := jsonb_build_object('media_key', r.media_key, 'content_type', r.content_type,
                                   'duration_s', r.duration_s, 'started_at', utc_time(r.started_at));
    ELSIF p_template AND s.status = 'ended' AND s.record AND s.started_at IS NOT NULL THEN
        base := jsonb_build_object('media_key', NULL, 'content_type', NULL, 'duration_s', NULL,
                                   'started_at', utc_time(s.started_at));
    ELSE
        RETURN NULL;
    END IF;
    RETURN base || jsonb_build_object(
        'stream_id', s.id, 'title', s.title, 'unlisted', s.unlisted,
        'seller', (SELECT jsonb_build_object('id', se.id, 'shop_name', se.shop_name) FROM sellers se
                    WHERE se.id = s.seller_id),
        'products', replay_products_json(s.id));
END $$;

-- Offset 0 of a stream's replay as a time: the recording's started_at, or with p_template (as in
-- replay_json) the stream's started_at. NULL when the stream has no replay (or its shop is not approved).
CREATE OR REPLACE FUNCTION replay_started_at(p_stream uuid, p_template boolean DEFAULT false) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT coalesce(r.started_at, CASE WHEN p_template AND s.status = 'ended' AND s.record THEN s.started_at END)
      FROM streams s JOIN sellers se ON se.id = s.seller_id AND se.status = 'approved'
      LEFT JOIN stream_replays r ON r.stream_id = s.id
     WHERE s.id = p_stream AND s.replay_discarded_at IS NULL;
$$;

-- A page of the replay's timeline: the show's durable events after the key (p_after_at, p_after_id) in
-- (at, id) order, at most p_limit, each {id, kind, at, offset_s, ...}. id is "<kind>:<source row id>", unique
-- and stable, so (at, id) orders the events totally and a cursor continues exactly after its event.
-- offset_s = at - p_started_at in seconds, never below 0 (a pin made before the recording began is at 0).
-- Deleted chat messages and the chat of users the shop has banned are left out.
-- Each kind's branch picks only keys, its first p_limit after the cursor; the page's JSON is built for the
-- p_limit events kept, not for every event. Chat, the long part of a show, is read down its index
-- chat_messages (stream_id, created_at, id) from the cursor, as typed columns: a page reads its own rows only,
-- whatever the show's length. That gives the same order as the event ids': a uuid sorts as its text does.
CREATE OR REPLACE FUNCTION replay_timeline(
    p_stream uuid, p_started_at timestamptz, p_after_at timestamptz, p_after_id text, p_limit integer
) RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    shop uuid := (SELECT seller_id FROM streams WHERE id = p_stream);
    -- The cursor as a chat key: chat after (chat_at, chat_id). At the cursor's instant, the chat after an event
    -- whose id sorts before 'chat:' is all of it (the nil uuid is no message's), after one sorting after it none.
    chat_at timestamptz := coalesce(p_after_at, '-infinity');
    chat_id uuid := CASE WHEN p_after_id IS NULL OR p_after_id COLLATE "C" < 'chat:' THEN
                             '00000000-0000-0000-0000-000000000000'::uuid
                         WHEN p_after_id LIKE 'chat:%' THEN substr(p_after_id, 6)::uuid
                         ELSE 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid END;
BEGIN
    RETURN QUERY
    WITH keys (at, id, kind, ref, pin) AS (
        (SELECT c.created_at, 'chat:' || c.id, 'chat', c.id, NULL::bigint
           FROM chat_messages c
          WHERE c.stream_id = p_stream AND (c.created_at, c.id) > (chat_at, chat_id) AND c.deleted_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM seller_bans b WHERE b.seller_id = shop AND b.user_id = c.user_id)
          ORDER BY c.created_at, c.id LIMIT p_limit)
        UNION ALL
        -- Zero-padded: the text order of ids is then the pins' order.
        (SELECT k.at, k.id, 'pin', NULL::uuid, k.pin
           FROM (SELECT p.at, 'pin:' || lpad(p.id::text, 19, '0') AS id, p.id AS pin
                   FROM stream_pins p WHERE p.stream_id = p_stream) k
          WHERE p_after_at IS NULL OR (k.at, k.id COLLATE "C") > (p_after_at, p_after_id COLLATE "C")
          ORDER BY k.at, k.id COLLATE "C" LIMIT p_limit)
        UNION ALL
        -- The few sales, auctions and giveaways of a show: both ends of each.
        (SELECT k.at, k.kind || ':' || k.ref, k.kind, k.ref, NULL::bigint
           FROM (SELECT f.starts_at AS at, 'flash_sale_started' AS kind, f.id AS ref
                   FROM flash_sales f WHERE f.stream_id = p_stream
                 UNION ALL
                 SELECT f.ended_at, 'flash_sale_ended', f.id
                   FROM flash_sales f WHERE f.stream_id = p_stream AND f.ended_at IS NOT NULL
                 UNION ALL
                 SELECT a.starts_at, 'auction_started', a.id FROM auctions a WHERE a.stream_id = p_stream
                 UNION ALL
                 SELECT a.ended_at, 'auction_ended', a.id
                   FROM auctions a WHERE a.stream_id = p_stream AND a.ended_at IS NOT NULL
                 UNION ALL
                 SELECT g.starts_at, 'giveaway_started', g.id FROM giveaways g WHERE g.stream_id = p_stream
                 UNION ALL
                 SELECT g.ended_at, 'giveaway_ended', g.id
                   FROM giveaways g WHERE g.stream_id = p_stream AND g.ended_at IS NOT NULL) k
          WHERE p_after_at IS NULL
             OR (k.at, (k.kind || ':' || k.ref) COLLATE "C") > (p_after_at, p_after_id COLLATE "C")
          ORDER BY k.at, (k.kind || ':' || k.ref) COLLATE "C" LIMIT p_limit)
    ), page AS (
        SELECT * FROM keys ORDER BY at, id COLLATE "C" LIMIT p_limit
    )
    SELECT jsonb_build_object('id', e.id, 'kind', e.kind, 'at', utc_time(e.at),
                              'offset_s', round(greatest(0, extract(epoch FROM e.at - p_started_at)), 3))
           || CASE e.kind
                  WHEN 'chat' THEN (
                      SELECT jsonb_build_object('user', jsonb_build_object('id', u.id, 'name', u.display_name),
                                                'text', c.text)
                        FROM chat_messages c JOIN users u ON u.id = c.user_id WHERE c.id = e.ref)
                  WHEN 'pin' THEN (SELECT jsonb_build_object('product_id', p.product_id) FROM stream_pins p
                                    WHERE p.id = e.pin)
                  WHEN 'flash_sale_started' THEN (
                      SELECT jsonb_build_object('sale_id', f.id, 'product_id', v.product_id, 'variant_id', f.variant_id,
                                                'price_cents', f.price_cents, 'quantity', f.quantity)
                        FROM flash_sales f JOIN variants v ON v.id = f.variant_id WHERE f.id = e.ref)
                  WHEN 'flash_sale_ended' THEN (
                      SELECT jsonb_build_object('sale_id', f.id, 'reason', f.ended_reason, 'sold', f.sold)
                        FROM flash_sales f WHERE f.id = e.ref)
                  WHEN 'auction_started' THEN (
                      SELECT jsonb_build_object('auction_id', a.id, 'product_id', v.product_id,
                                                'variant_id', a.variant_id, 'start_cents', a.start_cents)
                        FROM auctions a JOIN variants v ON v.id = a.variant_id WHERE a.id = e.ref)
                  WHEN 'auction_ended' THEN (
                      SELECT jsonb_build_object(
                                 'auction_id', a.id, 'product_id', v.product_id, 'reason', a.ended_reason,
                                 'winning_bid_cents', CASE WHEN a.winner_id IS NOT NULL THEN a.current_cents END,
                                 'winner', (SELECT jsonb_build_object('id', u.id, 'name', u.display_name)
                                              FROM users u WHERE u.id = a.winner_id))
                        FROM auctions a JOIN variants v ON v.id = a.variant_id WHERE a.id = e.ref)
                  WHEN 'giveaway_started' THEN (
                      SELECT jsonb_build_object('giveaway_id', g.id, 'product_id', v.product_id)
                        FROM giveaways g JOIN variants v ON v.id = g.variant_id WHERE g.id = e.ref)
                  WHEN 'giveaway_ended' THEN (
                      SELECT jsonb_build_object('giveaway_id', g.id, 'product_id', v.product_id,
                                                'winner', (SELECT jsonb_build_object('id', u.id, 'name', u.display_name)
                                                             FROM users u WHERE u.id = g.winner_id))
                        FROM giveaways g JOIN variants v ON v.id = g.variant_id WHERE g.id = e.ref)
              END
      FROM page e
     ORDER BY e.at, e.id COLLATE "C";
END $$;

-- The media key of the replay p_actor may discard (the stream's host, its shop or an admin): LH404 without a
-- stream or a replay, LH403 for anyone else. The caller deletes the file, then forget_replay() the row.
-- With p_template (as in replay_json) a replay without a row (LiveKit's) gives NULL: there is no file here
-- (LiveKit Egress's file stays in its storage: discarding only stops offering it).
CREATE OR REPLACE FUNCTION replay_to_discard(p_stream uuid, p_actor uuid, p_template boolean DEFAULT false)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s streams;
    key text;
BEGIN
    SELECT * INTO s FROM streams WHERE id = p_stream;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream not found' USING ERRCODE = 'LH404';
    END IF;
    IF s.host_id <> p_actor AND NOT user_is_admin(p_actor)
       AND NOT EXISTS (SELECT 1 FROM sellers WHERE id = s.seller_id AND user_id = p_actor) THEN
        RAISE EXCEPTION 'only the host, the shop or an admin can discard the replay' USING ERRCODE = 'LH403';
    END IF;
    SELECT media_key INTO key FROM stream_replays WHERE stream_id = p_stream;
    IF NOT FOUND AND p_template AND s.status = 'ended' AND s.record AND s.started_at IS NOT NULL
       AND s.replay_discarded_at IS NULL THEN
        RETURN NULL;
    ELSIF NOT FOUND THEN
        RAISE EXCEPTION 'this stream has no replay' USING ERRCODE = 'LH404';
    END IF;
    RETURN key;
END $$;

-- Drops the replay's row once its file is gone (only the row of that file: a newer one stays), and marks the
-- stream's replay discarded (replay_discarded_at), so no replay of it comes back: not the LiveKit backend's,
-- which has no row, nor one a recorder finishing late would save. streams.record stays what the host chose.
CREATE OR REPLACE FUNCTION forget_replay(p_stream uuid, p_media_key text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE streams SET replay_discarded_at = now() WHERE id = p_stream AND replay_discarded_at IS NULL;
    DELETE FROM stream_replays WHERE stream_id = p_stream AND media_key IS NOT DISTINCT FROM p_media_key;
    RETURN FOUND;
END $$;

-- A page of replays, newest first: by when the replay was made (its row's created_at, the end of the show as
-- the recorder finished it; with p_template, as in replay_json, the stream's ended_at for those without a row),
-- then stream id, both descending, after the key (p_before_at, p_before_id). Listed streams only (a practice
-- show's replay is reached by its link, never listed) of approved shops (a suspended one's are hidden with its
-- catalog), optionally of one shop. Each row: the item
-- {stream_id, title, seller, started_at, duration_s} and its sort time (for the next page's key).
CREATE OR REPLACE FUNCTION replay_list(
    p_seller uuid, p_before_at timestamptz, p_before_id uuid, p_limit integer, p_template boolean DEFAULT false
) RETURNS TABLE (item jsonb, sort_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT p_template THEN
        -- Walks stream_replays_created_idx down from the key: the home page asks this on every load.
        RETURN QUERY
        SELECT jsonb_build_object('stream_id', s.id, 'title', s.title,
                                  'seller', jsonb_build_object('id', se.id, 'shop_name', se.shop_name),
                                  'started_at', utc_time(r.started_at), 'duration_s', r.duration_s),
               r.created_at
          FROM stream_replays r JOIN streams s ON s.id = r.stream_id
          JOIN sellers se ON se.id = s.seller_id AND se.status = 'approved'
         WHERE NOT s.unlisted AND s.replay_discarded_at IS NULL AND (p_seller IS NULL OR s.seller_id = p_seller)
           AND (p_before_at IS NULL OR (r.created_at, r.stream_id) < (p_before_at, p_before_id))
         ORDER BY r.created_at DESC, r.stream_id DESC
         LIMIT p_limit;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT jsonb_build_object('stream_id', x.id, 'title', x.title,
                              'seller', jsonb_build_object('id', se.id, 'shop_name', se.shop_name),
                              'started_at', utc_time(x.started_at), 'duration_s', x.duration_s),
           x.at
      FROM (SELECT s.id, s.title, s.seller_id, coalesce(r.started_at, s.started_at) AS started_at,
                   r.duration_s, coalesce(r.created_at, s.ended_at) AS at
              FROM streams s LEFT JOIN stream_replays r ON r.stream_id = s.id
             WHERE NOT s.unlisted AND s.replay_discarded_at IS NULL AND (p_seller IS NULL OR s.seller_id = p_seller)
               AND (r.stream_id IS NOT NULL
                    OR s.status = 'ended' AND s.record AND s.started_at IS NOT NULL)) x
      JOIN sellers se ON se.id = x.seller_id AND se.status = 'approved'
     WHERE p_before_at IS NULL OR (x.at, x.id) < (p_before_at, p_before_id)
     ORDER BY x.at DESC, x.id DESC
     LIMIT p_limit;
END $$;

-- The retention job's batch: replays created before p_before, oldest first, at most p_limit:
-- [{stream_id, media_key}]. The job deletes each file, then forget_replay() its row.
CREATE OR REPLACE FUNCTION expired_replays(p_before timestamptz, p_limit integer) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('stream_id', x.stream_id, 'media_key', x.media_key)
                              ORDER BY x.created_at, x.stream_id), '[]')
      FROM (SELECT stream_id, media_key, created_at FROM stream_replays
             WHERE created_at < p_before ORDER BY created_at, stream_id LIMIT p_limit) x;
$$;

-- With the LiveKit backend a replay has no row (LiveKit Egress wrote the file, in storage of its own): it
-- expires by its stream's replay being marked discarded (replay_discarded_at) once the stream ended before
-- p_before. Returns how many.
CREATE OR REPLACE FUNCTION expire_template_replays(p_before timestamptz, p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE streams SET replay_discarded_at = now()
     WHERE id IN (SELECT s.id FROM streams s
                   WHERE s.status = 'ended' AND s.record AND s.replay_discarded_at IS NULL AND s.ended_at < p_before
                     AND NOT EXISTS (SELECT 1 FROM stream_replays r WHERE r.stream_id = s.id)
                   ORDER BY s.ended_at LIMIT p_limit);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
