-- Catalog and stock rules. Each function is one transaction; errors use SQLSTATE class LH
-- (livehub/errors.py maps them): LH403 forbidden, LH404 not found, LH409 conflict, LH422 invalid.

-- The product a seller may change, locked; raises unless it exists and belongs to that seller.
CREATE OR REPLACE FUNCTION owned_product(p_product uuid, p_seller uuid) RETURNS products
LANGUAGE plpgsql AS $$
DECLARE
    p products;
BEGIN
    SELECT * INTO p FROM products WHERE id = p_product FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'product not found' USING ERRCODE = 'LH404';
    END IF;
    IF p.seller_id IS DISTINCT FROM p_seller THEN
        RAISE EXCEPTION 'this product belongs to another seller' USING ERRCODE = 'LH403';
    END IF;
    RETURN p;
END $$;

-- The one variant a function restocks, imports codes into or sells, locked (lock order: money.sql); raises
-- not_found when there is none.
CREATE OR REPLACE FUNCTION variant_for_update(p_variant uuid) RETURNS variants
LANGUAGE plpgsql AS $$
DECLARE
    v variants;
BEGIN
    SELECT * INTO v FROM variants WHERE id = p_variant FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'variant not found' USING ERRCODE = 'LH404';
    END IF;
    RETURN v;
END $$;

-- The seller of an approved shop, or an error saying why the account cannot sell.
CREATE OR REPLACE FUNCTION approved_seller(p_user uuid) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    s sellers;
BEGIN
    SELECT * INTO s FROM sellers WHERE user_id = p_user;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this account has no seller profile' USING ERRCODE = 'LH403';
    END IF;
    IF s.status <> 'approved' THEN
        RAISE EXCEPTION 'seller profile is %', s.status USING ERRCODE = 'LH403';
    END IF;
    RETURN s.id;
END $$;

-- Adds variants to a product, recording each starting stock as a movement. p_variants is a JSON array
-- of {sku, options, price_cents, stock, digital}.
CREATE OR REPLACE FUNCTION add_variants(p_product uuid, p_variants jsonb, p_actor uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
    new_id uuid;
    qty integer;
BEGIN
    FOR v IN SELECT * FROM jsonb_array_elements(p_variants) LOOP
        qty := coalesce((v->>'stock')::integer, 0);
        IF coalesce((v->>'digital')::boolean, false) AND qty <> 0 THEN
            RAISE EXCEPTION 'a digital variant starts with no stock; import its codes'
                USING ERRCODE = 'LH422', DETAIL = jsonb_build_object('sku', v->>'sku')::text;
        END IF;
        INSERT INTO variants (product_id, sku, options, price_cents, stock, digital)
        VALUES (p_product, v->>'sku', coalesce(v->'options', '{}'), (v->>'price_cents')::bigint, qty,
                coalesce((v->>'digital')::boolean, false))
        RETURNING id INTO new_id;
        IF qty > 0 THEN
            INSERT INTO stock_movements (variant_id, delta, stock_after, reason, actor_id)
            VALUES (new_id, qty, qty, 'initial stock', p_actor);
        END IF;
    END LOOP;
END $$;

CREATE OR REPLACE FUNCTION create_product(
    p_user uuid, p_title text, p_description text, p_category uuid, p_attributes jsonb, p_variants jsonb
) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    new_id uuid;
BEGIN
    INSERT INTO products (seller_id, category_id, title, description, attributes)
    VALUES (approved_seller(p_user), p_category, p_title, p_description, p_attributes)
    RETURNING id INTO new_id;
    PERFORM add_variants(new_id, p_variants, p_user);
    RETURN new_id;
END $$;

-- Moves a physical variant's stock by p_delta (positive restock, negative write-off), audited.
-- Returns the new stock. Concurrent calls serialise on the variant row; stock never goes below zero.
CREATE OR REPLACE FUNCTION adjust_stock(
    p_variant uuid, p_delta integer, p_reason text, p_user uuid, p_reference text DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v variants;
    new_stock integer;
BEGIN
    v := variant_for_update(p_variant);
    PERFORM owned_product(v.product_id, approved_seller(p_user));
    IF v.digital THEN
        RAISE EXCEPTION 'stock of a digital variant follows its imported codes' USING ERRCODE = 'LH409';
    END IF;
    IF v.stock + p_delta < 0 THEN
        RAISE EXCEPTION 'stock cannot go below zero'
            USING ERRCODE = 'LH409', DETAIL = jsonb_build_object('stock', v.stock)::text;
    END IF;
    UPDATE variants SET stock = stock + p_delta WHERE id = p_variant RETURNING stock INTO new_stock;
    INSERT INTO stock_movements (variant_id, delta, stock_after, reason, actor_id, reference)
    VALUES (p_variant, p_delta, new_stock, p_reason, p_user, p_reference);
    RETURN new_stock;
END $$;

-- Imports digital codes for a variant. Codes already imported for it are skipped and reported back;
-- the rest become available units and the variant's stock grows by their number, in one movement.
CREATE OR REPLACE FUNCTION import_units(p_variant uuid, p_codes text[], p_user uuid)
RETURNS TABLE (code text, imported boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v variants;
    new_codes text[];
    added integer;
    new_stock integer;
BEGIN
    v := variant_for_update(p_variant);
    PERFORM owned_product(v.product_id, approved_seller(p_user));
    IF NOT v.digital THEN
        RAISE EXCEPTION 'codes can only be imported into a digital variant' USING ERRCODE = 'LH409';
    END IF;

    WITH ins AS (
        INSERT INTO digital_units (variant_id, code, imported_by)
        SELECT p_variant, c, p_user FROM unnest(p_codes) AS c
        ON CONFLICT (variant_id, code) DO NOTHING
        RETURNING digital_units.code
    )
    SELECT coalesce(array_agg(ins.code), '{}') INTO new_codes FROM ins;
    added := cardinality(new_codes);

    IF added > 0 THEN
        UPDATE variants SET stock = stock + added WHERE id = p_variant RETURNING stock INTO new_stock;
        INSERT INTO stock_movements (variant_id, delta, stock_after, reason, actor_id)
        VALUES (p_variant, added, new_stock, 'digital codes imported', p_user);
    END IF;

    RETURN QUERY
        SELECT c, n.code IS NOT NULL
          FROM unnest(p_codes) AS c LEFT JOIN unnest(new_codes) AS n (code) ON n.code = c;
END $$;

-- Deciding a pending application (approved, or suspended: refused) tells the applicant.
CREATE OR REPLACE FUNCTION set_seller_status(p_seller uuid, p_status text, p_admin uuid) RETURNS sellers
LANGUAGE plpgsql AS $$
DECLARE
    s sellers;
    was text;
BEGIN
    SELECT status INTO was FROM sellers WHERE id = p_seller FOR UPDATE;
    UPDATE sellers
       SET status = p_status,
           approved_at = CASE WHEN p_status = 'approved' THEN now() ELSE approved_at END,
           approved_by = CASE WHEN p_status = 'approved' THEN p_admin ELSE approved_by END
     WHERE id = p_seller
    RETURNING * INTO s;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'seller not found' USING ERRCODE = 'LH404';
    END IF;
    IF was = 'pending' AND s.status <> 'pending' THEN
        PERFORM notify_user(s.user_id, 'seller_application_decided', jsonb_build_object(
            'seller_id', s.id, 'shop_name', s.shop_name, 'status', s.status, 'approved', s.status = 'approved'));
    END IF;
    RETURN s;
END $$;
