-- Show reminders: a viewer asks to be reminded of a scheduled stream (stream_reminders, migration 0015).
-- send_due_reminders() sends each reminder's show_reminder notification once, a lead time (15 minutes by
-- default, LIVEHUB_REMINDER_LEAD_S) before the stream's scheduled_at; start_stream notifies them, with the
-- shop's followers, when it goes live (each person once). Followers get show_scheduled when a stream is
-- scheduled (create_stream, functions/streams.sql, through scheduled_show_notice()).

-- What a show notification carries: the stream, its time (utc_time's format, written out: this file is
-- loaded before streams.sql) and its shop.
CREATE OR REPLACE FUNCTION show_notice(p_stream uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('stream_id', s.id, 'title', s.title,
                              'scheduled_at', to_char(s.scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'seller_id', se.id, 'shop_name', se.shop_name, 'path', '/watch/' || s.id)
      FROM streams s JOIN sellers se ON se.id = s.seller_id
     WHERE s.id = p_stream;
$$;

-- The shop's followers are told of a newly scheduled stream that has a time still to come.
CREATE OR REPLACE FUNCTION scheduled_show_notice(p_stream uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    s streams;
BEGIN
    SELECT * INTO s FROM streams WHERE id = p_stream;
    IF s.status = 'scheduled' AND s.scheduled_at > now() THEN
        PERFORM notify_users(ARRAY(SELECT f.user_id FROM follows f WHERE f.seller_id = s.seller_id),
                             'show_scheduled', show_notice(p_stream));
    END IF;
END $$;

-- How many asked to be reminded of the stream, and whether p_user did (false for NULL: signed out).
CREATE OR REPLACE FUNCTION stream_reminders_json(p_stream uuid, p_user uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'stream_id', p_stream,
        'reminders', (SELECT count(*) FROM stream_reminders WHERE stream_id = p_stream),
        'reminded', EXISTS (SELECT 1 FROM stream_reminders WHERE stream_id = p_stream AND user_id = p_user));
$$;

-- Ask (p_on) or stop asking to be reminded. Asking needs a scheduled stream (conflict once it is live or
-- ended); both are idempotent. Returns stream_reminders_json().
CREATE OR REPLACE FUNCTION set_stream_reminder(p_stream uuid, p_user uuid, p_on boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    status text;
BEGIN
    IF p_on THEN
        -- FOR SHARE: a reminder set while the stream goes live either commits first (start_stream, which
        -- locks the stream, then tells it too) or finds the stream live. Forgetting needs no lock (a live
        -- stream's row is its room's, and busy).
        SELECT s.status INTO status FROM streams s WHERE s.id = p_stream FOR SHARE;
    ELSE
        SELECT s.status INTO status FROM streams s WHERE s.id = p_stream;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'stream not found' USING ERRCODE = 'LH404';
    END IF;
    IF p_on THEN
        IF status <> 'scheduled' THEN
            RAISE EXCEPTION 'reminders are for scheduled streams; this one is %', status
                USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', status)::text;
        END IF;
        INSERT INTO stream_reminders (stream_id, user_id) VALUES (p_stream, p_user) ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM stream_reminders WHERE stream_id = p_stream AND user_id = p_user;
    END IF;
    RETURN stream_reminders_json(p_stream, p_user);
END $$;

-- The sweep, every minute on one node (a pgqueuer schedule, livehub/shop/reminders.py): every reminder of a
-- still scheduled stream due by p_now + p_lead is marked sent and its show_reminder notification stored and
-- queued, in one transaction. Two sweeps at once send each reminder once: rows another sweep holds are
-- skipped (SKIP LOCKED), rows it marked no longer match (sent_at IS NULL, re-checked under the lock).
-- Returns how many were sent.
CREATE OR REPLACE FUNCTION send_due_reminders(p_now timestamptz, p_lead interval DEFAULT '15 minutes')
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    sent integer;
BEGIN
    WITH due AS (
        SELECT r.stream_id, r.user_id
          FROM stream_reminders r JOIN streams s ON s.id = r.stream_id
         WHERE r.sent_at IS NULL AND s.status = 'scheduled' AND s.scheduled_at <= p_now + p_lead
         ORDER BY r.stream_id, r.user_id
           FOR UPDATE OF r SKIP LOCKED
    ), marked AS (
        UPDATE stream_reminders r SET sent_at = p_now
          FROM due WHERE r.stream_id = due.stream_id AND r.user_id = due.user_id AND r.sent_at IS NULL
        RETURNING r.stream_id, r.user_id
    )
    -- A practice (unlisted) show's reminders are sent too: only someone with its link could ask for one, and
    -- they asked (docs/REPLAYS.md); its followers, who did not, are told nothing.
    SELECT count(notify_user(m.user_id, 'show_reminder', show_notice(m.stream_id))) INTO sent FROM marked m;
    RETURN sent;
END $$;
