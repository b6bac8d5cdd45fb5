-- Returns: a buyer asks to send back some or all of a delivered order within the return window; the
-- order's seller (or an admin) approves, which refunds through refund_order, or rejects with a reason.
-- One open return per order. Digital codes are never returned: they were revealed at the sale (as with
-- cancelling, the seller may still refund them). Approval does not restock: the seller adjusts stock when
-- the goods come back fit to sell. Lock order, as in orders.sql: the order row, then its return.

-- How much of each item of an order came back in approved returns.
CREATE OR REPLACE FUNCTION returned_items(p_order uuid) RETURNS TABLE (variant_id uuid, quantity bigint)
LANGUAGE sql STABLE AS $$
    SELECT ri.variant_id, sum(ri.quantity) FROM order_return_items ri JOIN order_returns r ON r.id = ri.return_id
     WHERE ri.order_id = p_order AND r.status = 'approved'
     GROUP BY ri.variant_id;
$$;

-- What approving p_return gives back: everything left of the order when, with it, every item of the order
-- has come back; otherwise the returned items' share, at most what is left to refund.
CREATE OR REPLACE FUNCTION return_refund(o orders, p_return uuid) RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH per_item AS (
        SELECT oi.quantity, oi.unit_price_cents,
               coalesce(sum(ri.quantity) FILTER (WHERE ri.return_id = p_return), 0) AS this_return,
               coalesce(sum(ri.quantity) FILTER (WHERE r.status = 'approved' OR ri.return_id = p_return), 0) AS back
          FROM order_items oi
          LEFT JOIN order_return_items ri ON ri.order_id = oi.order_id AND ri.variant_id = oi.variant_id
          LEFT JOIN order_returns r ON r.id = ri.return_id
         WHERE oi.order_id = o.id
         GROUP BY oi.variant_id, oi.quantity, oi.unit_price_cents)
    SELECT CASE WHEN bool_and(back >= quantity) THEN o.total_cents - o.refunded_cents
                ELSE least(sum(this_return * unit_price_cents), o.total_cents - o.refunded_cents) END::bigint
      FROM per_item;
$$;

-- The buyer's request. p_items: [{"variant_id", "quantity"}], or NULL for every physical item not yet
-- returned. p_window_s: how long after delivery a return may be asked for. Returns the return's id.
CREATE OR REPLACE FUNCTION request_return(
    p_order uuid, p_buyer uuid, p_reason text, p_items jsonb, p_window_s integer
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    o orders := order_for(p_order, p_buyer, false);
    closes timestamptz;
    ret uuid;
    wanted jsonb;
    bad record;
BEGIN
    IF o.buyer_id <> p_buyer THEN
        RAISE EXCEPTION 'only the buyer asks to return an order' USING ERRCODE = 'LH403';
    END IF;
    IF o.delivered_at IS NULL OR o.status NOT IN ('delivered', 'partially_refunded') THEN
        RAISE EXCEPTION 'only a delivered order with something left to refund can be returned'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('status', o.status)::text;
    END IF;
    closes := o.delivered_at + make_interval(secs => p_window_s);
    IF now() > closes THEN
        RAISE EXCEPTION 'the return window of this order has closed'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('return_window_closed_at', utc_time(closes))::text;
    END IF;
    SELECT id INTO ret FROM order_returns WHERE order_id = o.id AND status = 'requested';
    IF FOUND THEN
        RAISE EXCEPTION 'this order has a return waiting for the seller already'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('return_id', ret)::text;
    END IF;

    IF p_items IS NULL THEN
        SELECT jsonb_agg(jsonb_build_object('variant_id', w.variant_id, 'quantity', w.quantity)) INTO wanted
          FROM (SELECT oi.variant_id, oi.quantity - coalesce(back.quantity, 0) AS quantity
                  FROM order_items oi JOIN variants v ON v.id = oi.variant_id
                  LEFT JOIN returned_items(o.id) back ON back.variant_id = oi.variant_id
                 WHERE oi.order_id = o.id AND NOT v.digital) w
         WHERE w.quantity > 0;
        IF wanted IS NULL THEN
            RAISE EXCEPTION 'nothing of this order can be returned: its goods are digital or came back already'
                USING ERRCODE = 'LH409';
        END IF;
    ELSE
        -- The same variant named twice is one line.
        SELECT jsonb_agg(jsonb_build_object('variant_id', w.variant_id, 'quantity', w.quantity)) INTO wanted
          FROM (SELECT (i ->> 'variant_id')::uuid AS variant_id, sum((i ->> 'quantity')::integer) AS quantity
                  FROM jsonb_array_elements(p_items) i GROUP BY 1) w;
        IF wanted IS NULL THEN
            RAISE EXCEPTION 'name at least one item, or none for the whole order' USING ERRCODE = 'LH422';
        END IF;
        SELECT w.variant_id, oi.quantity AS ordered, v.digital INTO bad
          FROM jsonb_to_recordset(wanted) w (variant_id uuid, quantity integer)
          LEFT JOIN order_items oi ON oi.order_id = o.id AND oi.variant_id = w.variant_id
          LEFT JOIN variants v ON v.id = oi.variant_id
         WHERE oi.variant_id IS NULL OR v.digital
         LIMIT 1;
        IF FOUND AND bad.ordered IS NULL THEN
            RAISE EXCEPTION 'that is not an item of this order'
                USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('variant_id', bad.variant_id)::text;
        ELSIF FOUND THEN
            RAISE EXCEPTION 'digital codes cannot be returned once revealed; ask the seller for a refund'
                USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('variant_id', bad.variant_id)::text;
        END IF;
        SELECT w.variant_id, oi.quantity - coalesce(back.quantity, 0) AS returnable INTO bad
          FROM jsonb_to_recordset(wanted) w (variant_id uuid, quantity integer)
          JOIN order_items oi ON oi.order_id = o.id AND oi.variant_id = w.variant_id
          LEFT JOIN returned_items(o.id) back ON back.variant_id = w.variant_id
         WHERE w.quantity > oi.quantity - coalesce(back.quantity, 0)
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'more than was bought, or than is left after earlier returns'
                USING ERRCODE = 'LH422', DETAIL = jsonb_build_object(
                    'variant_id', bad.variant_id, 'returnable', bad.returnable)::text;
        END IF;
    END IF;

    INSERT INTO order_returns (order_id, reason, refund_cents) VALUES (o.id, p_reason, 0) RETURNING id INTO ret;
    INSERT INTO order_return_items (return_id, order_id, variant_id, quantity)
    SELECT ret, o.id, w.variant_id, w.quantity FROM jsonb_to_recordset(wanted) w (variant_id uuid, quantity integer);
    UPDATE order_returns SET refund_cents = return_refund(o, ret) WHERE id = ret;
    RETURN ret;
END $$;

-- The order's open return, locked, for its seller or an admin to decide.
CREATE OR REPLACE FUNCTION open_return(o orders, p_actor uuid, p_is_admin boolean) RETURNS order_returns
LANGUAGE plpgsql AS $$
DECLARE
    r order_returns;
BEGIN
    IF NOT (p_is_admin OR is_order_seller(o, p_actor)) THEN
        RAISE EXCEPTION 'only the seller or an admin decides a return' USING ERRCODE = 'LH403';
    END IF;
    SELECT * INTO r FROM order_returns WHERE order_id = o.id AND status = 'requested' FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this order has no return waiting for a decision' USING ERRCODE = 'LH409';
    END IF;
    RETURN r;
END $$;

-- Approves the order's open return and refunds it to the buyer's wallet (refund_order: the seller's, host's
-- and platform's shares taken back in proportion). Returns what was refunded.
CREATE OR REPLACE FUNCTION approve_return(p_order uuid, p_actor uuid, p_is_admin boolean) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    o orders := order_for(p_order, p_actor, p_is_admin);
    r order_returns := open_return(o, p_actor, p_is_admin);
    amount bigint := return_refund(o, r.id);
BEGIN
    UPDATE order_returns SET status = 'approved', refund_cents = amount, decided_at = now(), decided_by = p_actor
     WHERE id = r.id;
    -- Nothing left to refund (the seller refunded it all meanwhile): the goods still came back.
    IF amount > 0 THEN
        PERFORM refund_order(o.id, p_actor, p_is_admin, amount, 'return: ' || r.reason);
    END IF;
    PERFORM notify_user(o.buyer_id, 'return_decided', order_notice(o.id) || jsonb_build_object(
        'return_id', r.id, 'approved', true, 'refund_cents', amount, 'reason', NULL));
    RETURN amount;
END $$;

CREATE OR REPLACE FUNCTION reject_return(p_order uuid, p_actor uuid, p_is_admin boolean, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o orders := order_for(p_order, p_actor, p_is_admin);
    r order_returns := open_return(o, p_actor, p_is_admin);
BEGIN
    UPDATE order_returns SET status = 'rejected', decision_reason = p_reason, decided_at = now(), decided_by = p_actor
     WHERE id = r.id;
    PERFORM notify_user(o.buyer_id, 'return_decided', order_notice(o.id) || jsonb_build_object(
        'return_id', r.id, 'approved', false, 'refund_cents', 0, 'reason', p_reason));
END $$;
