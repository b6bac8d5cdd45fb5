-- Reviews: a buyer whose order of a product was delivered rates it (1 to 5) and may say why, once per
-- product and order; the product's seller answers each review once; an admin hides a review, which takes
-- it out of the listing and of the product's rating. A product's rating is computed when read (an index
-- holds the listed reviews' ratings), so it is never out of step with its reviews.
--
-- stream_product_json (streams.sql) calls product_rating: this file is loaded before that one.

-- {"average": 4.25 (two decimals; null without reviews), "count": 8}, over the listed reviews.
CREATE OR REPLACE FUNCTION product_rating(p_product uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('average', round(avg(r.rating), 2), 'count', count(*))
      FROM reviews r WHERE r.product_id = p_product AND r.hidden_at IS NULL;
$$;

CREATE OR REPLACE FUNCTION review_json(r reviews) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'product_id', r.product_id, 'rating', r.rating, 'text', r.text, 'created_at', r.created_at,
        'author', jsonb_build_object('id', u.id, 'display_name', u.display_name),
        'reply', CASE WHEN r.reply IS NOT NULL THEN jsonb_build_object('text', r.reply, 'at', r.replied_at) END,
        'hidden_at', r.hidden_at)
      FROM users u WHERE u.id = r.author_id;
$$;

-- A review by p_author of p_product, bought in p_order. Returns its id.
CREATE OR REPLACE FUNCTION write_review(p_product uuid, p_author uuid, p_order uuid, p_rating integer, p_text text)
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid;
BEGIN
    PERFORM 1 FROM products WHERE id = p_product;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not found' USING ERRCODE = 'LH404';
    END IF;
    -- Someone else's order, one that never reached the buyer, or one without this product: the same
    -- answer, so a review cannot probe which orders exist.
    IF NOT EXISTS (SELECT 1 FROM orders o JOIN order_items oi ON oi.order_id = o.id
                    WHERE o.id = p_order AND o.buyer_id = p_author AND o.delivered_at IS NOT NULL
                      AND oi.product_id = p_product) THEN
        RAISE EXCEPTION 'only a buyer whose order of this product was delivered can review it'
            USING ERRCODE = 'LH403';
    END IF;
    INSERT INTO reviews (product_id, order_id, author_id, rating, text)
    VALUES (p_product, p_order, p_author, p_rating, p_text)
    ON CONFLICT (order_id, product_id) DO NOTHING
    RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        RAISE EXCEPTION 'this order''s product has been reviewed already' USING ERRCODE = 'LH409',
            DETAIL = jsonb_build_object(
                'review_id', (SELECT id FROM reviews WHERE order_id = p_order AND product_id = p_product))::text;
    END IF;
    RETURN new_id;
END $$;

-- The product's seller answers a review of it, once.
CREATE OR REPLACE FUNCTION reply_to_review(p_product uuid, p_review uuid, p_user uuid, p_text text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rv reviews;
BEGIN
    PERFORM 1 FROM products WHERE id = p_product;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not found' USING ERRCODE = 'LH404';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM products p JOIN sellers s ON s.id = p.seller_id
                    WHERE p.id = p_product AND s.user_id = p_user) THEN
        RAISE EXCEPTION 'only the product''s seller answers its reviews' USING ERRCODE = 'LH403';
    END IF;
    SELECT * INTO rv FROM reviews WHERE id = p_review AND product_id = p_product FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'review not found' USING ERRCODE = 'LH404';
    END IF;
    IF rv.reply IS NOT NULL THEN
        RAISE EXCEPTION 'this review has an answer already' USING ERRCODE = 'LH409';
    END IF;
    UPDATE reviews SET reply = p_text, replied_at = now(), replied_by = p_user WHERE id = p_review;
    PERFORM notify_user(rv.author_id, 'review_reply', (
        SELECT jsonb_build_object('review_id', rv.id, 'product_id', p.id, 'title', p.title,
                                  'shop_name', s.shop_name, 'rating', rv.rating, 'reply', p_text)
          FROM products p JOIN sellers s ON s.id = p.seller_id WHERE p.id = p_product));
END $$;

CREATE OR REPLACE FUNCTION hide_review(p_review uuid, p_admin uuid, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    rv reviews;
BEGIN
    SELECT * INTO rv FROM reviews WHERE id = p_review FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'review not found' USING ERRCODE = 'LH404';
    END IF;
    IF rv.hidden_at IS NOT NULL THEN
        RAISE EXCEPTION 'this review is hidden already' USING ERRCODE = 'LH409';
    END IF;
    UPDATE reviews SET hidden_at = now(), hidden_by = p_admin, hidden_reason = p_reason WHERE id = p_review;
END $$;
