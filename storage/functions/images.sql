-- Product images: who may add, move and remove them, and how many a product may have. The pictures'
-- bytes live in the media store (livehub/mediastore.py); these functions only keep the rows. Each call is
-- one transaction that locks the product first (owned_product), so two uploads cannot both take the last
-- place or the same position.

-- Versioned by the image's id: the bytes behind a URL never change (livehub/api/images.py serves them).
CREATE OR REPLACE FUNCTION product_image_url(p_image uuid, p_width integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT '/media/images/' || p_image || '/' || p_width || '.webp' $$;

CREATE OR REPLACE FUNCTION product_image_json(i product_images) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', i.id, 'url', product_image_url(i.id, i.width), 'width', i.width, 'height', i.height,
        'position', i.position, 'variant_id', i.variant_id,
        'sizes', (SELECT jsonb_agg(jsonb_build_object('url', product_image_url(i.id, w), 'width', w, 'height', h)
                                   ORDER BY w)
                    FROM unnest(i.widths, i.heights) AS s(w, h)));
$$;

-- A product's images as product JSON carries them, in gallery order. Every size is listed (for srcset);
-- url, width and height are the largest.
CREATE OR REPLACE FUNCTION product_images_json(p_product uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(product_image_json(i) ORDER BY i.position, i.created_at), '[]')
      FROM product_images i WHERE i.product_id = p_product;
$$;

-- Records a stored image as the last of the caller's product's gallery; at most p_max images per product.
CREATE OR REPLACE FUNCTION add_product_image(
    p_user uuid, p_product uuid, p_variant uuid, p_image uuid, p_widths integer[], p_heights integer[], p_max integer
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    img product_images;
BEGIN
    PERFORM owned_product(p_product, approved_seller(p_user));
    IF p_variant IS NOT NULL AND NOT EXISTS (SELECT 1 FROM variants WHERE id = p_variant AND product_id = p_product) THEN
        RAISE EXCEPTION 'this variant is not one of the product''s' USING ERRCODE = 'LH422';
    END IF;
    SELECT count(*) INTO n FROM product_images WHERE product_id = p_product;
    IF n >= p_max THEN
        RAISE EXCEPTION 'a product has at most % images: delete one first', p_max USING ERRCODE = 'LH409';
    END IF;
    INSERT INTO product_images (id, product_id, variant_id, position, width, height, widths, heights)
    VALUES (p_image, p_product, p_variant, n, p_widths[cardinality(p_widths)], p_heights[cardinality(p_heights)],
            p_widths, p_heights)
    RETURNING * INTO img;
    UPDATE products SET updated_at = now() WHERE id = p_product;
    RETURN product_image_json(img);
END $$;

-- Moves an image to another place in the gallery (clamped to the last one); the others close up.
CREATE OR REPLACE FUNCTION move_product_image(p_user uuid, p_product uuid, p_image uuid, p_position integer)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    ids uuid[];
    img product_images;
BEGIN
    PERFORM owned_product(p_product, approved_seller(p_user));
    SELECT array_agg(id ORDER BY position, created_at) INTO ids
      FROM product_images WHERE product_id = p_product AND id <> p_image;
    IF NOT EXISTS (SELECT 1 FROM product_images WHERE id = p_image AND product_id = p_product) THEN
        RAISE EXCEPTION 'image not found' USING ERRCODE = 'LH404';
    END IF;
    ids := coalesce(ids, '{}');
    p_position := least(greatest(p_position, 0), cardinality(ids));
    ids := ids[1:p_position] || p_image || ids[p_position + 1:];
    UPDATE product_images i SET position = o.n - 1
      FROM unnest(ids) WITH ORDINALITY AS o(id, n) WHERE i.id = o.id AND i.position <> o.n - 1;
    UPDATE products SET updated_at = now() WHERE id = p_product;
    SELECT * INTO img FROM product_images WHERE id = p_image;
    RETURN product_image_json(img);
END $$;

-- Removes an image's row and closes up the gallery; returns the sizes whose files the caller deletes.
CREATE OR REPLACE FUNCTION delete_product_image(p_user uuid, p_product uuid, p_image uuid) RETURNS integer[]
LANGUAGE plpgsql AS $$
DECLARE
    gone product_images;
BEGIN
    PERFORM owned_product(p_product, approved_seller(p_user));
    DELETE FROM product_images WHERE id = p_image AND product_id = p_product RETURNING * INTO gone;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'image not found' USING ERRCODE = 'LH404';
    END IF;
    UPDATE product_images SET position = position - 1 WHERE product_id = p_product AND position > gone.position;
    UPDATE products SET updated_at = now() WHERE id = p_product;
    RETURN gone.widths;
END $$;
