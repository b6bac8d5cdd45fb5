-- Avatars (livehub/shop/avatars.py): a user uploads a picture (stored like a product image, as a few WebP
-- sizes under `images/{id}/{width}.webp` in the media store) and then names it as their avatar. An upload
-- belongs to its uploader, so nobody can wear someone else's picture by knowing its id.
CREATE TABLE user_images (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users ON DELETE CASCADE,
    -- The largest stored size (what `url` points at).
    width       integer NOT NULL CHECK (width > 0),
    height      integer NOT NULL CHECK (height > 0),
    -- Every stored size, ascending by width; widths[i] goes with heights[i].
    widths      integer[] NOT NULL CHECK (cardinality(widths) > 0),
    heights     integer[] NOT NULL CHECK (cardinality(heights) = cardinality(widths)),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_images_user_idx ON user_images (user_id);

-- The avatar in use, one of the user's own uploads (set_avatar checks that).
ALTER TABLE users ADD COLUMN avatar_image_id uuid REFERENCES user_images ON DELETE SET NULL;
