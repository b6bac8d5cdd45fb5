-- Support tickets: a signed-in user asks for help, about one of their orders or not; the order's seller (or,
-- without an order, the admins) answers, and admins see every ticket. Rules live in functions/tickets.sql.

CREATE TABLE tickets (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    opener_id      uuid NOT NULL REFERENCES users,
    -- The order it is about, if any; its seller then answers it (seller_id is the order's, copied when opened).
    order_id       uuid REFERENCES orders,
    seller_id      uuid REFERENCES sellers,
    subject        text NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 200),
    -- open: waiting on the shop or the admins; waiting: on the customer; resolved; closed (takes no replies).
    status         text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'waiting', 'resolved', 'closed')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- The latest message, and who wrote it: the opener, the order's seller, or an admin.
    last_reply_at  timestamptz NOT NULL DEFAULT now(),
    last_reply_by  text NOT NULL DEFAULT 'opener' CHECK (last_reply_by IN ('opener', 'seller', 'admin')),
    CHECK ((order_id IS NULL) = (seller_id IS NULL))
);
-- The lists: mine, my shop's, and the admin queue (by status, longest without a reply first); each pages on
-- (last_reply_at, id).
CREATE INDEX tickets_opener_idx ON tickets (opener_id, last_reply_at, id);
CREATE INDEX tickets_seller_idx ON tickets (seller_id, last_reply_at, id) WHERE seller_id IS NOT NULL;
CREATE INDEX tickets_status_idx ON tickets (status, last_reply_at, id);
CREATE INDEX tickets_last_reply_idx ON tickets (last_reply_at, id);
CREATE INDEX tickets_order_idx ON tickets (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE ticket_messages (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ticket_id   uuid NOT NULL REFERENCES tickets ON DELETE CASCADE,
    author_id   uuid NOT NULL REFERENCES users,
    -- What the author was to the ticket when writing: the opener, the order's seller, or an admin.
    author_role text NOT NULL CHECK (author_role IN ('opener', 'seller', 'admin')),
    body        text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 5000),
    -- The clock's time, not the transaction's: two messages written in one transaction (the demo's question
    -- and answer) still read back in the order they were written.
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ticket_messages_ticket_idx ON ticket_messages (ticket_id, created_at, id);
