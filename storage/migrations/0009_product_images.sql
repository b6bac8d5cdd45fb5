-- Product images (livehub/shop/images.py): each upload is stored as a few WebP sizes in the media store
-- (livehub/mediastore.py) under `images/{id}/{width}.webp`; the row says which sizes exist. An image never
-- changes once stored (a new picture is a new id), which is what lets its URLs be cached for a year.
CREATE TABLE product_images (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id  uuid NOT NULL REFERENCES products ON DELETE CASCADE,
    -- Optionally the variant it shows (a colour); the image still belongs to the product's gallery.
    variant_id  uuid REFERENCES variants ON DELETE SET NULL,
    -- 0-based place in the product's gallery; the functions keep positions dense (0..n-1).
    position    integer NOT NULL CHECK (position >= 0),
    -- The largest stored size (what `url` points at).
    width       integer NOT NULL CHECK (width > 0),
    height      integer NOT NULL CHECK (height > 0),
    -- Every stored size, ascending by width; widths[i] goes with heights[i].
    widths      integer[] NOT NULL CHECK (cardinality(widths) > 0),
    heights     integer[] NOT NULL CHECK (cardinality(heights) = cardinality(widths)),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX product_images_product_idx ON product_images (product_id, position);
