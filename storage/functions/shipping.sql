-- Shipping: saved addresses as the API shows them and as orders copy them, and what a seller charges to
-- ship an order where. place_order and buy_batch (money.sql) call these; digital goods never ship.

-- A saved address, as GET /api/me/addresses shows it.
CREATE OR REPLACE FUNCTION address_json(a addresses) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'id', a.id, 'name', a.name, 'line1', a.line1, 'line2', a.line2, 'city', a.city, 'region', a.region,
        'postal_code', a.postal_code, 'country', a.country, 'phone', a.phone, 'is_default', a.is_default)
$$;

-- What an order keeps of an address: the fields, not the id, so later edits change no order. NULL for
-- no address.
CREATE OR REPLACE FUNCTION address_snapshot(a addresses) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN a.id IS NOT NULL THEN jsonb_build_object(
        'name', a.name, 'line1', a.line1, 'line2', a.line2, 'city', a.city, 'region', a.region,
        'postal_code', a.postal_code, 'country', a.country, 'phone', a.phone) END
$$;

-- The buyer's address p_address, or with NULL the buyer's default one. No row (all fields NULL) when
-- there is none, or p_address is someone else's.
CREATE OR REPLACE FUNCTION buyer_address(p_buyer uuid, p_address uuid) RETURNS addresses
LANGUAGE sql STABLE AS $$
    SELECT * FROM addresses
     WHERE user_id = p_buyer AND CASE WHEN p_address IS NULL THEN is_default ELSE id = p_address END
$$;

-- What a seller with shipping profile p (all NULL: none) charges to ship an order whose items come to
-- p_subtotal to p_country: its flat rate, nothing from its free-shipping threshold on, NULL when it does not
-- ship there. A seller without a profile ships free everywhere. A bare expression, so that the planner
-- inlines it: buy_batch applies it to every request of a batch.
CREATE OR REPLACE FUNCTION shipping_charge(p shipping_profiles, p_subtotal bigint, p_country text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p.seller_id IS NULL THEN 0
                WHEN cardinality(p.countries) > 0 AND p_country <> ALL (p.countries) THEN NULL
                WHEN p.free_over_cents IS NOT NULL AND p_subtotal >= p.free_over_cents THEN 0
                ELSE p.flat_rate_cents END
$$;

-- What p_seller charges to ship an order whose items come to p_subtotal to p_country (shipping_charge).
CREATE OR REPLACE FUNCTION shipping_for(p_seller uuid, p_subtotal bigint, p_country text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT shipping_charge(sp, p_subtotal, p_country)
      FROM (SELECT p_seller AS id) s LEFT JOIN shipping_profiles sp ON sp.seller_id = s.id
$$;

-- Whether order lines ([{variant_id, quantity, unit_price_cents, ...}]) hold anything that ships.
CREATE OR REPLACE FUNCTION lines_ship(p_lines jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM jsonb_array_elements(p_lines) l JOIN variants v ON v.id = (l->>'variant_id')::uuid
                    WHERE NOT v.digital)
$$;

CREATE OR REPLACE FUNCTION lines_subtotal(p_lines jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(sum((l->>'unit_price_cents')::bigint * (l->>'quantity')::integer), 0)::bigint
      FROM jsonb_array_elements(p_lines) l
$$;

-- The shipping of one seller's order in place_order: 0 when nothing in it ships, else the seller's charge
-- to the address. Raises validation_error (details.reason address_required or not_shipped) when goods
-- that ship have no address, or one the seller does not ship to.
CREATE OR REPLACE FUNCTION order_shipping(p_seller uuid, p_lines jsonb, p_address jsonb) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    charge bigint;
    country text := p_address->>'country';
BEGIN
    IF NOT lines_ship(p_lines) THEN
        RETURN 0;
    END IF;
    IF p_address IS NULL THEN
        RAISE EXCEPTION 'physical goods need a shipping address: add one, or name one with address_id'
            USING ERRCODE = 'LH422', DETAIL = jsonb_build_object(
                'reason', 'address_required',
                'errors', jsonb_build_array(jsonb_build_object(
                    'loc', jsonb_build_array('address_id'), 'msg', 'a shipping address is required',
                    'type', 'address_required')))::text;
    END IF;
    charge := shipping_for(p_seller, lines_subtotal(p_lines), country);
    IF charge IS NULL THEN
        RAISE EXCEPTION 'this shop does not ship to %', country
            USING ERRCODE = 'LH422', DETAIL = jsonb_build_object(
                'reason', 'not_shipped', 'seller_id', p_seller, 'country', country,
                'errors', jsonb_build_array(jsonb_build_object(
                    'loc', jsonb_build_array('address_id'), 'msg', 'the shop does not ship to ' || country,
                    'type', 'not_shipped')))::text;
    END IF;
    RETURN charge;
END $$;
