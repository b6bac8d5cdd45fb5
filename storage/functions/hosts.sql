-- Guest hosts: a seller's stream run by another user for a commission (streams.host_id,
-- streams.host_commission_bps, streams.host_status). Each public function is one transaction; errors use
-- SQLSTATE class LH as in streams.sql.
--
-- - The seller invites a host (at create_stream, or later with set_stream_host) with a commission of 0 to
--   5,000 basis points of the items sold in the stream; the host must be another existing user. The
--   stream is then 'invited' and cannot start until the host accepts (start_stream); the host is notified
--   (notify_user kind host_invited). While the stream is scheduled the seller may change the host or the
--   commission (a new invitation, to be accepted again) or take the stream back (host = the seller's own
--   user, no commission); the host may accept or decline (also after accepting, until the stream starts).
-- - Once accepted the host is the stream's host for everything streams.sql checks (stream_role,
--   start_stream, end_stream, set_moderator, the publish routes): pin, flash sales and the other formats,
--   moderation. The seller does not run a hosted room unless named a moderator (by the host, or by the
--   seller naming their own user among the moderators at create_stream); the seller may end it (as an
--   admin may) and sees its numbers. The catalog stays the seller's (products belong to the shop).
-- - The commission is paid by write_orders (functions/money.sql) into the host's earnings_pending account,
--   only when the host is not the shop's own user.

-- Raises unless p_host may host a stream of the shop whose user is p_seller_user at p_bps.
CREATE OR REPLACE FUNCTION check_host_invite(p_seller_user uuid, p_host uuid, p_bps integer) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_bps IS NULL OR p_bps NOT BETWEEN 0 AND 5000 THEN
        RAISE EXCEPTION 'a host''s commission is 0 to 5000 basis points'
            USING ERRCODE = 'LH422', DETAIL = jsonb_build_object(
                'errors', jsonb_build_array(jsonb_build_object(
                    'loc', jsonb_build_array('host_commission_bps'), 'type', 'commission_range',
                    'msg', 'must be 0 to 5000')))::text;
    END IF;
    IF p_host = p_seller_user THEN
        RAISE EXCEPTION 'the host must be another user than the shop''s own'
            USING ERRCODE = 'LH422', DETAIL = jsonb_build_object(
                'errors', jsonb_build_array(jsonb_build_object(
                    'loc', jsonb_build_array('host_id'), 'type', 'host_is_seller',
                    'msg', 'must be another user')))::text;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_host) THEN
        RAISE EXCEPTION 'host not found'
            USING ERRCODE = 'LH404', DETAIL = jsonb_build_object('host_id', p_host)::text;
    END IF;
END $$;

-- The invitation as the host and the seller see it: the stream, the shop, the commission and its state.
CREATE OR REPLACE FUNCTION host_invitation_json(p_stream uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT jsonb_build_object(
                'stream', stream_json(s.id), 'host_status', s.host_status,
                'host_commission_bps', s.host_commission_bps,
                'host', jsonb_build_object('id', u.id, 'name', u.display_name))
              FROM streams s JOIN users u ON u.id = s.host_id WHERE s.id = p_stream);
END $$;

-- Sets the stream's host (the stream locked, its seller's row checked by the caller). p_host NULL or the
-- shop's own user: the shop hosts it again, with no commission. Another user: invited at p_bps and
-- notified, unless this very invitation stands already (same host, same commission, not declined).
CREATE OR REPLACE FUNCTION put_stream_host(s streams, p_seller_user uuid, p_host uuid, p_bps integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    shop text;
BEGIN
    IF p_host IS NULL OR p_host = p_seller_user THEN
        IF coalesce(p_bps, 0) <> 0 THEN
            PERFORM check_host_invite(p_seller_user, p_seller_user, p_bps);  -- names what is wrong
        END IF;
        UPDATE streams SET host_id = p_seller_user, host_commission_bps = 0, host_status = 'accepted'
         WHERE id = s.id;
        RETURN;
    END IF;
    p_bps := coalesce(p_bps, 0);
    PERFORM check_host_invite(p_seller_user, p_host, p_bps);
    IF s.host_id = p_host AND s.host_commission_bps = p_bps AND s.host_status <> 'declined' THEN
        RETURN;
    END IF;
    UPDATE streams SET host_id = p_host, host_commission_bps = p_bps, host_status = 'invited' WHERE id = s.id;
    -- The host runs the stream: not also one of its moderators.
    DELETE FROM stream_moderators WHERE stream_id = s.id AND user_id = p_host;
    SELECT shop_name INTO shop FROM sellers WHERE id = s.seller_id;
    PERFORM notify_user(p_host, 'host_invited', jsonb_build_object(
        'stream_id', s.id, 'title', s.title, 'seller_id', s.seller_id, 'shop_name', shop,
        'host_commission_bps', p_bps, 'scheduled_at', utc_time(s.scheduled_at), 'path', '/studio#hosting'));
END $$;

-- The seller changes or cancels the invitation of a scheduled stream of their shop. Returns
-- host_invitation_json.
CREATE OR REPLACE FUNCTION set_stream_host(p_stream uuid, p_actor uuid, p_host uuid, p_bps integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams;
    seller_user uuid;
BEGIN
    s := locked_stream(p_stream);
    SELECT user_id INTO seller_user FROM sellers WHERE id = s.seller_id;
    IF seller_user <> p_actor THEN
        RAISE EXCEPTION 'only the stream''s shop chooses its host' USING ERRCODE = 'LH403';
    END IF;
    IF s.status <> 'scheduled' THEN
        RAISE EXCEPTION 'the stream is %: its host is settled', s.status
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', s.status)::text;
    END IF;
    PERFORM put_stream_host(s, seller_user, p_host, p_bps);
    RETURN host_invitation_json(p_stream);
END $$;

-- The invited host accepts (p_accept) or declines, while the stream is scheduled; the shop is told
-- (host_answered) when the answer changes. Returns host_invitation_json. Accepting names the commission the
-- host saw (p_bps): when the shop changed it meanwhile, the acceptance is refused (409 with the current one),
-- so nobody is held to terms they never saw.
CREATE OR REPLACE FUNCTION answer_host_invitation(p_stream uuid, p_actor uuid, p_accept boolean,
                                                  p_bps integer DEFAULT NULL) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s streams;
    answer text := CASE WHEN p_accept THEN 'accepted' ELSE 'declined' END;
BEGIN
    s := locked_stream(p_stream);
    IF s.host_id <> p_actor OR EXISTS (SELECT 1 FROM sellers WHERE id = s.seller_id AND user_id = p_actor)
       OR (s.host_status = 'declined') THEN
        RAISE EXCEPTION 'no invitation to host this stream' USING ERRCODE = 'LH404';
    END IF;
    IF s.status <> 'scheduled' THEN
        RAISE EXCEPTION 'the stream is %', s.status
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', s.status)::text;
    END IF;
    IF p_accept AND p_bps IS DISTINCT FROM s.host_commission_bps THEN
        RAISE EXCEPTION 'the invitation changed: the commission is now % basis points', s.host_commission_bps
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('host_commission_bps', s.host_commission_bps)::text;
    END IF;
    IF s.host_status <> answer THEN
        UPDATE streams SET host_status = answer WHERE id = p_stream;
        PERFORM notify_user(se.user_id, 'host_answered', jsonb_build_object(
                    'stream_id', s.id, 'title', s.title, 'accepted', p_accept,
                    'host', jsonb_build_object('id', u.id, 'name', u.display_name),
                    'path', '/studio?stream=' || s.id))
           FROM sellers se, users u WHERE se.id = s.seller_id AND u.id = p_actor;
    END IF;
    RETURN host_invitation_json(p_stream);
END $$;

-- What p_user hosts for other shops: invitations waiting and accepted ones, of streams not ended
-- (live ones first, then by when they are scheduled), at most 100.
CREATE OR REPLACE FUNCTION hosting_of(p_user uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT coalesce(jsonb_agg(host_invitation_json(x.id) ORDER BY x.live DESC, x.scheduled_at, x.id), '[]')
              FROM (SELECT s.id, s.status = 'live' AS live, s.scheduled_at
                      FROM streams s JOIN sellers se ON se.id = s.seller_id
                     WHERE s.host_id = p_user AND se.user_id <> p_user AND s.status <> 'ended'
                       AND s.host_status IN ('invited', 'accepted')
                     ORDER BY s.status = 'live' DESC, s.scheduled_at, s.id
                     LIMIT 100) x);
END $$;
