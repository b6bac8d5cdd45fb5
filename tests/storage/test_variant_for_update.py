"""variant_for_update(): the one way the functions lock a variant, and the not-found every caller answers."""

import re
import uuid

import asyncpg
import pytest

from storage.db import FUNCTIONS


async def a_variant(db) -> uuid.UUID:
    user = await db.fetchval(
        "INSERT INTO users (email, display_name, password_hash) VALUES ('s@example.test', 'S', 'x') RETURNING id"
    )
    seller = await db.fetchval(
        "INSERT INTO sellers (user_id, shop_name, status) VALUES ($1, 'Shop', 'approved') RETURNING id", user
    )
    product = await db.fetchval("INSERT INTO products (seller_id, title) VALUES ($1, 'P') RETURNING id", seller)
    return await db.fetchval(
        "INSERT INTO variants (product_id, sku, price_cents, stock) VALUES ($1, 'V-1', 100, 5) RETURNING id", product
    )


async def test_it_returns_the_variant_locked(db, database_url):
    variant = await a_variant(db)
    other = await asyncpg.connect(database_url)
    try:
        async with db.transaction():
            row = await db.fetchrow("SELECT * FROM variant_for_update($1)", variant)
            assert (row["id"], row["sku"], row["stock"]) == (variant, "V-1", 5)
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.execute("SELECT 1 FROM variants WHERE id = $1 FOR UPDATE NOWAIT", variant)
    finally:
        await other.close()


@pytest.mark.parametrize(
    "call",
    [
        "SELECT id FROM variant_for_update($1)",
        "SELECT adjust_stock($1, 1, 'restock', $2)",
        "SELECT * FROM import_units($1, '{CODE-1}', $2)",
        "SELECT buy_batch($1, NULL, '[]', 0, 0)",
    ],
)
async def test_a_missing_variant_is_not_found_for_every_caller(db, call):
    args = [uuid.uuid4()] + ([uuid.uuid4()] if "$2" in call else [])
    with pytest.raises(asyncpg.PostgresError, match="^variant not found$") as missing:
        await db.execute(call, *args)
    assert missing.value.sqlstate == "LH404"


def test_no_function_file_locks_one_variant_another_way():
    # The preamble variant_for_update() replaced: a second copy would be free to drift from it.
    lock = re.compile(r"FROM\s+variants\s+WHERE\s+id\s*=\s*\w+\s+FOR\s+UPDATE", re.IGNORECASE)
    found = {path.name: len(lock.findall(path.read_text())) for path in FUNCTIONS.glob("*.sql")}
    assert {name: n for name, n in found.items() if n} == {"catalog.sql": 1}
