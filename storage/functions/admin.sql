-- Admin actions on accounts and the category tree; each one transaction. (The audit row of an admin action
-- is written by the REST layer in the same transaction: livehub/api/routing.py, `audit=`.)

-- Deactivate an account: its sessions end, it cannot sign in, its shop (if any) is suspended and its live
-- streams end. Returns the ended streams (their rooms are told) and the suspended seller id.
CREATE OR REPLACE FUNCTION deactivate_user(p_user uuid, p_admin uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    u users;
    shop uuid;
    ended jsonb := '[]';
    sid uuid;
BEGIN
    IF p_user = p_admin THEN
        RAISE EXCEPTION 'an admin cannot deactivate their own account' USING ERRCODE = 'LH409';
    END IF;
    SELECT * INTO u FROM users WHERE id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'LH404';
    END IF;
    IF u.deactivated_at IS NOT NULL THEN
        RAISE EXCEPTION 'the account is already deactivated' USING ERRCODE = 'LH409';
    END IF;
    UPDATE users SET deactivated_at = now() WHERE id = p_user;
    DELETE FROM sessions WHERE user_id = p_user;
    SELECT id INTO shop FROM sellers WHERE user_id = p_user;
    IF shop IS NOT NULL THEN
        PERFORM set_seller_status(shop, 'suspended', p_admin);
        FOR sid IN SELECT id FROM streams WHERE seller_id = shop AND status = 'live' LOOP
            ended := ended || jsonb_build_array(end_stream(sid, p_admin));
        END LOOP;
    END IF;
    RETURN jsonb_build_object('user_id', p_user, 'seller_id', shop, 'ended_streams', ended);
END $$;

-- Let a deactivated account sign in again. Its shop stays suspended until an admin approves it again.
CREATE OR REPLACE FUNCTION reactivate_user(p_user uuid) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users SET deactivated_at = NULL WHERE id = p_user AND deactivated_at IS NOT NULL;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM users WHERE id = p_user) THEN
            RAISE EXCEPTION 'user not found' USING ERRCODE = 'LH404';
        END IF;
        RAISE EXCEPTION 'the account is not deactivated' USING ERRCODE = 'LH409';
    END IF;
END $$;

-- Change a category's slug, name, parent or position (NULL keeps a field; p_move_to_root puts it at the
-- top). A category cannot move under itself or one of its descendants.
CREATE OR REPLACE FUNCTION update_category(
    p_category uuid, p_slug text, p_name text, p_parent uuid, p_move_to_root boolean, p_position integer
) RETURNS categories
LANGUAGE plpgsql AS $$
DECLARE
    c categories;
BEGIN
    SELECT * INTO c FROM categories WHERE id = p_category FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'category not found' USING ERRCODE = 'LH404';
    END IF;
    IF p_parent IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM categories WHERE id = p_parent) THEN
            RAISE EXCEPTION 'parent category not found' USING ERRCODE = 'LH422';
        END IF;
        IF p_parent IN (WITH RECURSIVE sub AS (
                            SELECT id FROM categories WHERE id = p_category
                            UNION ALL SELECT k.id FROM categories k JOIN sub ON k.parent_id = sub.id)
                        SELECT id FROM sub) THEN
            RAISE EXCEPTION 'a category cannot move under itself' USING ERRCODE = 'LH422';
        END IF;
    END IF;
    UPDATE categories
       SET slug = coalesce(p_slug, slug),
           name = coalesce(p_name, name),
           parent_id = CASE WHEN p_move_to_root THEN NULL ELSE coalesce(p_parent, parent_id) END,
           position = coalesce(p_position, position)
     WHERE id = p_category
    RETURNING * INTO c;
    RETURN c;
END $$;

-- Delete a category: its products move to p_move_to (or to no category), its subcategories to its parent.
-- Returns how many products moved.
CREATE OR REPLACE FUNCTION delete_category(p_category uuid, p_move_to uuid) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    c categories;
    moved integer;
BEGIN
    SELECT * INTO c FROM categories WHERE id = p_category FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'category not found' USING ERRCODE = 'LH404';
    END IF;
    IF p_move_to = p_category THEN
        RAISE EXCEPTION 'products cannot move to the category being deleted' USING ERRCODE = 'LH422';
    END IF;
    IF p_move_to IS NOT NULL AND NOT EXISTS (SELECT 1 FROM categories WHERE id = p_move_to) THEN
        RAISE EXCEPTION 'target category not found' USING ERRCODE = 'LH422';
    END IF;
    UPDATE products SET category_id = p_move_to, updated_at = now() WHERE category_id = p_category;
    GET DIAGNOSTICS moved = ROW_COUNT;
    UPDATE categories SET parent_id = c.parent_id WHERE parent_id = p_category;
    DELETE FROM categories WHERE id = p_category;
    RETURN moved;
END $$;
