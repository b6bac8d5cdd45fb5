"""Catalog: categories, products, variants, stock and digital units.

Reads build their JSON in Postgres (one round trip per page); writes call the storage functions in
storage/functions/catalog.sql, which own every rule about stock and ownership.
"""

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from livehub.errors import NotFound
from storage.db import DB, long_statements


def utc(column: str) -> str:
    """SQL for a timestamptz as the API writes times (RFC 3339 in UTC, `Z`, microseconds only when not
    zero): the JSON built here goes to clients as it is, without a round trip through Python objects."""
    return f"""replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '.000000Z', 'Z')"""


PRODUCT_JSON = f"""
    json_build_object(
        'id', p.id, 'title', p.title, 'description', p.description, 'category_id', p.category_id,
        'attributes', p.attributes, 'status', p.status,
        'created_at', {utc("p.created_at")}, 'updated_at', {utc("p.updated_at")},
        'seller', json_build_object('id', s.id, 'shop_name', s.shop_name), 'rating', product_rating(p.id),
        'images', product_images_json(p.id),
        'variants', (
            SELECT coalesce(json_agg(json_build_object(
                       'id', v.id, 'sku', v.sku, 'options', v.options, 'price_cents', v.price_cents,
                       'available', v.stock, 'digital', v.digital) ORDER BY v.created_at, v.sku), '[]')
              FROM variants v WHERE v.product_id = p.id))
"""

_WORD = re.compile(r"\w+")


@dataclass
class ProductFilter:
    q: str | None = None
    category: UUID | None = None
    seller: UUID | None = None
    min_price_cents: int | None = None
    max_price_cents: int | None = None
    in_stock: bool | None = None


def prefix_query(text: str) -> str | None:
    """Words of a search box as a tsquery where each word may be a prefix: 'red sne' finds 'red sneakers'."""
    words = _WORD.findall(text.lower())[:10]
    return " & ".join(f"{w}:*" for w in words) or None


async def list_products(pool: asyncpg.Pool, f: ProductFilter, *, limit: int, cursor: UUID | None) -> dict:
    """A page of active products, newest first, with `next_cursor` for the page after."""
    where = ["p.status = 'active'", "s.status = 'approved'"]
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.q and (tsq := prefix_query(f.q)):
        where.append(f"p.search @@ to_tsquery('simple', {arg(tsq)})")
    if f.category:
        # A category includes everything filed under its subcategories.
        where.append(
            f"""p.category_id IN (WITH RECURSIVE sub AS (
                    SELECT id FROM categories WHERE id = {arg(f.category)}
                    UNION ALL SELECT c.id FROM categories c JOIN sub ON c.parent_id = sub.id)
                SELECT id FROM sub)"""
        )
    if f.seller:
        where.append(f"p.seller_id = {arg(f.seller)}")
    variant_conditions = []
    if f.min_price_cents is not None:
        variant_conditions.append(f"v.price_cents >= {arg(f.min_price_cents)}")
    if f.max_price_cents is not None:
        variant_conditions.append(f"v.price_cents <= {arg(f.max_price_cents)}")
    if f.in_stock:
        variant_conditions.append("v.stock > 0")
    if variant_conditions:
        where.append(
            "EXISTS (SELECT 1 FROM variants v WHERE v.product_id = p.id AND " + " AND ".join(variant_conditions) + ")"
        )
    if cursor:
        # After the previous page's last product, wherever it now stands (archived, or gone: no rows).
        where.append(f"(p.created_at, p.id) < (SELECT c.created_at, c.id FROM products c WHERE c.id = {arg(cursor)})")

    rows = await pool.fetch(
        f"""SELECT {PRODUCT_JSON} AS product, p.created_at, p.id
              FROM products p JOIN sellers s ON s.id = p.seller_id
             WHERE {" AND ".join(where)}
             ORDER BY p.created_at DESC, p.id DESC
             LIMIT {arg(limit + 1)}""",
        *args,
    )
    items = [r["product"] for r in rows[:limit]]
    next_cursor = str(rows[limit - 1]["id"]) if len(rows) > limit else None
    return {"items": items, "next_cursor": next_cursor}


async def get_product(conn, product_id: UUID) -> dict:
    """A product with its variants. Archived products stay readable so old orders can link to them."""
    product = await conn.fetchval(
        f"SELECT {PRODUCT_JSON} FROM products p JOIN sellers s ON s.id = p.seller_id WHERE p.id = $1",
        product_id,
    )
    if product is None:
        raise NotFound("product not found")
    return product


async def _check_owner(conn, product_id: UUID, user_id: UUID) -> None:
    """Locks the caller's product; raises unless it exists and belongs to the caller's approved shop."""
    # Selected FROM so only its id comes back: asyncpg cannot decode the `products` row itself (tsvector).
    await conn.execute("SELECT id FROM owned_product($1, approved_seller($2))", product_id, user_id)


async def create_product(pool: asyncpg.Pool, user_id: UUID, data: dict) -> dict:
    async with pool.acquire() as conn, conn.transaction():
        product_id = await conn.fetchval(
            "SELECT create_product($1, $2, $3, $4, $5, $6)",
            user_id,
            data["title"],
            data["description"],
            data["category_id"],
            data["attributes"],
            data["variants"],
        )
        return await get_product(conn, product_id)


async def update_product(pool: asyncpg.Pool, user_id: UUID, product_id: UUID, changes: dict) -> dict:
    """Changes the given fields of the caller's product."""
    columns = {k: v for k, v in changes.items() if k in ("title", "description", "category_id", "attributes", "status")}
    async with pool.acquire() as conn, conn.transaction():
        await _check_owner(conn, product_id, user_id)
        if columns:
            sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
            await conn.execute(
                f"UPDATE products SET {sets}, updated_at = now() WHERE id = $1", product_id, *columns.values()
            )
        return await get_product(conn, product_id)


async def add_variants(pool: asyncpg.Pool, user_id: UUID, product_id: UUID, variants: list[dict]) -> dict:
    async with pool.acquire() as conn, conn.transaction():
        await _check_owner(conn, product_id, user_id)
        await conn.execute("SELECT add_variants($1, $2, $3)", product_id, variants, user_id)
        return await get_product(conn, product_id)


async def update_variant(pool: asyncpg.Pool, user_id: UUID, variant_id: UUID, changes: dict) -> dict:
    """Changes price, options, SKU or low-stock threshold (None: the shop's) of the caller's variant. Stock
    moves only through adjust_stock."""
    columns = {k: v for k, v in changes.items() if k in ("sku", "options", "price_cents", "low_stock_threshold")}
    async with pool.acquire() as conn, conn.transaction():
        # Variant before product, the order adjust_stock and import_units lock in: the other way round
        # a price edit and a stock adjustment of the same variant deadlock.
        product_id = await conn.fetchval("SELECT product_id FROM variants WHERE id = $1 FOR UPDATE", variant_id)
        if product_id is None:
            raise NotFound("variant not found")
        await _check_owner(conn, product_id, user_id)
        if columns:
            sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
            await conn.execute(f"UPDATE variants SET {sets} WHERE id = $1", variant_id, *columns.values())
        return await get_product(conn, product_id)


async def adjust_stock(db: DB, user_id: UUID, variant_id: UUID, delta: int, reason: str, reference: str | None) -> dict:
    stock = await db.fetchval("SELECT adjust_stock($1, $2, $3, $4, $5)", variant_id, delta, reason, user_id, reference)
    return {"variant_id": variant_id, "available": stock}


async def import_units(db: DB, user_id: UUID, variant_id: UUID, codes: list[str]) -> set[str]:
    """Imports codes; returns those that were new (the rest were imported before)."""
    # Up to LIVEHUB_MAX_UNITS_PER_IMPORT codes in one statement: the long budget, not a request's.
    async with long_statements(db) as conn:
        rows = await conn.fetch("SELECT code, imported FROM import_units($1, $2, $3)", variant_id, codes, user_id)
    return {r["code"] for r in rows if r["imported"]}


async def category_tree(pool: asyncpg.Pool) -> list[dict]:
    rows = await pool.fetch("SELECT id, parent_id, slug, name FROM categories ORDER BY position, name")
    nodes = {r["id"]: {"id": r["id"], "slug": r["slug"], "name": r["name"], "children": []} for r in rows}
    roots = []
    for r in rows:
        (nodes[r["parent_id"]]["children"] if r["parent_id"] else roots).append(nodes[r["id"]])
    return roots


async def create_category(db: DB, slug: str, name: str, parent_id: UUID | None, position: int) -> dict:
    row = await db.fetchrow(
        """INSERT INTO categories (slug, name, parent_id, position) VALUES ($1, $2, $3, $4)
           RETURNING id, slug, name""",
        slug,
        name,
        parent_id,
        position,
    )
    return {**dict(row), "children": []}


async def update_category(db: DB, category_id: UUID, changes: dict) -> dict:
    """Change a category's slug, name, position or parent (`parent_id: None` moves it to the top)."""
    row = await db.fetchrow(
        "SELECT id, slug, name FROM update_category($1, $2, $3, $4, $5, $6)",
        category_id,
        changes.get("slug"),
        changes.get("name"),
        changes.get("parent_id"),
        "parent_id" in changes and changes["parent_id"] is None,
        changes.get("position"),
    )
    return {**dict(row), "children": []}


async def delete_category(db: DB, category_id: UUID, move_to: UUID | None) -> int:
    """Delete a category; its products move to `move_to` (or none), its subcategories to its parent.
    Returns how many products moved."""
    return await db.fetchval("SELECT delete_category($1, $2)", category_id, move_to)
