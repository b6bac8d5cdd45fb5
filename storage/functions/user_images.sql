-- Users' own pictures (avatars): uploads are rows of user_images, and users.avatar_image_id names the one in
-- use. The bytes live in the media store next to product images (same keys, same /media/images URLs, see
-- images.sql's product_image_url). Each call is one transaction that locks the user's row first, so an
-- upload and a change of avatar in two tabs cannot interleave.

CREATE OR REPLACE FUNCTION user_image_json(i user_images) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', i.id, 'url', product_image_url(i.id, i.width), 'width', i.width, 'height', i.height,
        'sizes', (SELECT jsonb_agg(jsonb_build_object('url', product_image_url(i.id, w), 'width', w, 'height', h)
                                   ORDER BY w)
                    FROM unnest(i.widths, i.heights) AS s(w, h)));
$$;

-- The user's avatar as user JSON carries it, or NULL.
CREATE OR REPLACE FUNCTION user_avatar_json(p_image uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT user_image_json(i) FROM user_images i WHERE i.id = p_image;
$$;

-- Records a stored upload as the user's; at most p_max uploads are kept that are not the avatar (choosing an
-- avatar, or none, deletes the rest), so uploads nobody uses cannot pile up.
CREATE OR REPLACE FUNCTION add_user_image(
    p_user uuid, p_image uuid, p_widths integer[], p_heights integer[], p_max integer
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    img user_images;
    avatar uuid;
BEGIN
    SELECT avatar_image_id INTO avatar FROM users WHERE id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'LH404';
    END IF;
    IF (SELECT count(*) FROM user_images WHERE user_id = p_user AND id IS DISTINCT FROM avatar) >= p_max THEN
        RAISE EXCEPTION 'at most % pictures wait to be chosen: choose one as your avatar (or none) first', p_max
            USING ERRCODE = 'LH409';
    END IF;
    INSERT INTO user_images (id, user_id, width, height, widths, heights)
    VALUES (p_image, p_user, p_widths[cardinality(p_widths)], p_heights[cardinality(p_heights)], p_widths, p_heights)
    RETURNING * INTO img;
    RETURN user_image_json(img);
END $$;

-- Makes one of the user's own uploads their avatar (NULL: none). Every other upload of theirs goes (the old
-- avatar, pictures uploaded and not chosen); returns those as {id, widths} for the caller to delete the files.
CREATE OR REPLACE FUNCTION set_avatar(p_user uuid, p_image uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    gone jsonb;
BEGIN
    PERFORM 1 FROM users WHERE id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'user not found' USING ERRCODE = 'LH404';
    END IF;
    -- Someone else's picture is as unknown as one that does not exist: its id says nothing about its owner.
    IF p_image IS NOT NULL AND NOT EXISTS (SELECT 1 FROM user_images WHERE id = p_image AND user_id = p_user) THEN
        RAISE EXCEPTION 'image not found: upload it with POST /api/me/avatar first' USING ERRCODE = 'LH404';
    END IF;
    UPDATE users SET avatar_image_id = p_image WHERE id = p_user;
    WITH deleted AS (
        DELETE FROM user_images WHERE user_id = p_user AND id IS DISTINCT FROM p_image RETURNING id, widths)
    SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'widths', widths)), '[]') INTO gone FROM deleted;
    RETURN gone;
END $$;
