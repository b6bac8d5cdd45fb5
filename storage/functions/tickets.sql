-- Support tickets (migration 0014): a signed-in user opens one, about one of their orders or not; the
-- order's seller answers it (without an order, the admins do), and an admin may answer any. Every write is
-- one function, one transaction, and notifies every other party of the ticket in it (notify_users,
-- messages.sql):
--   opened by the customer   -> ticket_opened to the order's seller, or to every admin without an order;
--   any reply                -> ticket_reply to the opener, the order's seller and the admins who have written
--                               in the ticket (by the opener without an order: every admin), never the author;
--                               the ticket is `open` again after the opener, `waiting` (on the customer) after
--                               the seller or an admin.
-- A closed ticket takes no reply. The opener may close or reopen it; the seller or an admin sets any status.
-- Anyone else is told the ticket does not exist, as with orders.

-- What p_actor is to the ticket: 'opener', 'seller' (of the order it is about), 'admin', or NULL (nothing:
-- they may not see it).
CREATE OR REPLACE FUNCTION ticket_role(t tickets, p_actor uuid, p_is_admin boolean) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN t.opener_id = p_actor THEN 'opener'
        WHEN EXISTS (SELECT 1 FROM sellers WHERE id = t.seller_id AND user_id = p_actor) THEN 'seller'
        WHEN p_is_admin THEN 'admin'
    END;
$$;

-- The ticket, locked, for someone who may see it; anyone else gets not_found.
CREATE OR REPLACE FUNCTION ticket_for(p_ticket uuid, p_actor uuid, p_is_admin boolean) RETURNS tickets
LANGUAGE plpgsql AS $$
DECLARE
    t tickets;
BEGIN
    SELECT * INTO t FROM tickets WHERE id = p_ticket FOR UPDATE;
    IF NOT FOUND OR ticket_role(t, p_actor, p_is_admin) IS NULL THEN
        RAISE EXCEPTION 'ticket not found' USING ERRCODE = 'LH404';
    END IF;
    RETURN t;
END $$;

-- Tells every other party of the ticket about a message p_author (as p_role) just wrote: its opener, the
-- seller of the order it is about, and the admins who have written in it (and are admins still), so that
-- an admin's answer reaches the shop too and a buyer's reaches the admin working on it. A ticket without an
-- order is the admins' to answer: a message by its opener goes to every admin. Never to the author (an
-- admin who opened a ticket of their own is not told about it). One notification each, one payload.
CREATE OR REPLACE FUNCTION notify_ticket(t tickets, p_kind text, p_author uuid, p_role text, p_body text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    payload jsonb := jsonb_build_object(
        'ticket_id', t.id, 'subject', t.subject, 'status', t.status,
        'order_id', t.order_id, 'order_number', (SELECT number FROM orders WHERE id = t.order_id),
        'shop_name', (SELECT shop_name FROM sellers WHERE id = t.seller_id),
        'from', jsonb_build_object('id', p_author, 'role', p_role,
                                   'display_name', (SELECT display_name FROM users WHERE id = p_author)),
        -- Enough of the message for a notification line or an email; the rest is on the ticket's page.
        'excerpt', CASE WHEN char_length(p_body) > 300 THEN left(p_body, 299) || '…' ELSE p_body END,
        'path', '/support/' || t.id);
    recipients uuid[] := ARRAY(
        SELECT DISTINCT party FROM (
            SELECT t.opener_id
            UNION ALL
            SELECT user_id FROM sellers WHERE id = t.seller_id
            UNION ALL
            SELECT m.author_id FROM ticket_messages m JOIN users u ON u.id = m.author_id
             WHERE m.ticket_id = t.id AND m.author_role = 'admin' AND 'admin' = ANY (u.roles)
            UNION ALL
            SELECT id FROM users WHERE t.seller_id IS NULL AND p_role = 'opener' AND 'admin' = ANY (roles)
        ) AS parties (party)
         WHERE party <> p_author
         ORDER BY party);
BEGIN
    IF cardinality(recipients) > 0 THEN
        PERFORM notify_users(recipients, p_kind, payload);
    END IF;
END $$;

-- Opens a ticket with its first message. p_order: one of p_opener's orders, or NULL; an order the caller
-- may not see is not_found, one they see but did not buy (their shop's, or any as an admin) forbidden.
-- Returns the ticket's id.
CREATE OR REPLACE FUNCTION open_ticket(
    p_opener uuid, p_is_admin boolean, p_subject text, p_body text, p_order uuid
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    o orders;
    t tickets;
BEGIN
    IF p_order IS NOT NULL THEN
        SELECT * INTO o FROM orders WHERE id = p_order;
        IF NOT FOUND OR NOT (p_is_admin OR o.buyer_id = p_opener OR is_order_seller(o, p_opener)) THEN
            RAISE EXCEPTION 'order not found' USING ERRCODE = 'LH404';
        END IF;
        IF o.buyer_id <> p_opener THEN
            RAISE EXCEPTION 'a ticket can be about one of your own orders only' USING ERRCODE = 'LH403';
        END IF;
    END IF;
    INSERT INTO tickets (opener_id, order_id, seller_id, subject)
    VALUES (p_opener, o.id, o.seller_id, p_subject)
    RETURNING * INTO t;
    INSERT INTO ticket_messages (ticket_id, author_id, author_role, body) VALUES (t.id, p_opener, 'opener', p_body);
    PERFORM notify_ticket(t, 'ticket_opened', p_opener, 'opener', p_body);
    RETURN t.id;
END $$;

-- A reply by anyone who may see the ticket. It moves the ticket: `open` after the opener writes (the shop or
-- the admins owe an answer), `waiting` after the seller or an admin does (the customer does). Returns the
-- message's id.
CREATE OR REPLACE FUNCTION reply_ticket(p_ticket uuid, p_actor uuid, p_is_admin boolean, p_body text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    t tickets := ticket_for(p_ticket, p_actor, p_is_admin);
    who text := ticket_role(t, p_actor, p_is_admin);
    msg_id uuid;
BEGIN
    IF t.status = 'closed' THEN
        RAISE EXCEPTION 'this ticket is closed: reopen it, or open a new one'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', t.status)::text;
    END IF;
    IF (SELECT count(*) FROM ticket_messages WHERE ticket_id = t.id) >= 500 THEN
        RAISE EXCEPTION 'this ticket has as many messages as it can take: open a new one'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('max_messages', 500)::text;
    END IF;
    INSERT INTO ticket_messages (ticket_id, author_id, author_role, body)
    VALUES (t.id, p_actor, who, p_body) RETURNING id INTO msg_id;
    UPDATE tickets SET status = CASE WHEN who = 'opener' THEN 'open' ELSE 'waiting' END,
                       updated_at = now(), last_reply_at = now(), last_reply_by = who
     WHERE id = t.id
    RETURNING * INTO t;
    PERFORM notify_ticket(t, 'ticket_reply', p_actor, who, p_body);
    RETURN msg_id;
END $$;

-- Sets the ticket's status: the opener may close it or reopen it (to `open`), the seller or an admin set any.
-- Setting the status it has changes nothing.
CREATE OR REPLACE FUNCTION set_ticket_status(p_ticket uuid, p_actor uuid, p_is_admin boolean, p_status text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t tickets := ticket_for(p_ticket, p_actor, p_is_admin);
BEGIN
    IF p_status NOT IN ('open', 'waiting', 'resolved', 'closed') THEN
        RAISE EXCEPTION 'no such status' USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('status', p_status)::text;
    END IF;
    IF t.status = p_status THEN
        RETURN;
    END IF;
    IF ticket_role(t, p_actor, p_is_admin) = 'opener' AND p_status NOT IN ('open', 'closed') THEN
        RAISE EXCEPTION 'you may close your ticket or reopen it; the shop or an admin sets the rest'
            USING ERRCODE = 'LH403', DETAIL = jsonb_build_object('status', p_status)::text;
    END IF;
    UPDATE tickets SET status = p_status, updated_at = now() WHERE id = t.id;
END $$;

-- The ticket's API shape; with its messages (oldest first) when p_with_messages.
CREATE OR REPLACE FUNCTION ticket_json(p_ticket uuid, p_with_messages boolean) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'subject', t.subject, 'status', t.status,
        'opener', jsonb_build_object('id', u.id, 'display_name', u.display_name),
        'order', CASE WHEN o.id IS NOT NULL THEN jsonb_build_object('id', o.id, 'number', o.number) END,
        'seller', CASE WHEN s.id IS NOT NULL THEN jsonb_build_object('id', s.id, 'shop_name', s.shop_name) END,
        'created_at', t.created_at, 'updated_at', t.updated_at,
        'last_reply_at', t.last_reply_at, 'last_reply_by', t.last_reply_by,
        'message_count', (SELECT count(*) FROM ticket_messages m WHERE m.ticket_id = t.id),
        'messages', CASE WHEN p_with_messages THEN (
            SELECT coalesce(jsonb_agg(jsonb_build_object(
                       'id', m.id, 'body', m.body, 'role', m.author_role, 'created_at', m.created_at,
                       'author', jsonb_build_object('id', a.id, 'display_name', a.display_name))
                       ORDER BY m.created_at, m.id), '[]')
              FROM ticket_messages m JOIN users a ON a.id = m.author_id
             WHERE m.ticket_id = t.id) END)
      FROM tickets t JOIN users u ON u.id = t.opener_id
      LEFT JOIN orders o ON o.id = t.order_id
      LEFT JOIN sellers s ON s.id = t.seller_id
     WHERE t.id = p_ticket;
$$;
