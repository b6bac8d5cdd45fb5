"""Migrations run once however many nodes start together; functions are re-applied on every start."""

import asyncio
import secrets

import asyncpg
import pytest

from conftest import _with_database
from storage.db import migrate, migration_files


@pytest.fixture
async def fresh_database(server_dsn):
    name = f"livehub_migrate_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_concurrent_starts_apply_each_migration_once(fresh_database):
    conns = [await asyncpg.connect(fresh_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        expected = [v for v, _ in migration_files()]
        assert sorted(results, key=len) == [[]] * 3 + [expected]
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == expected
        assert await migrate(conns[0]) == []
    finally:
        for c in conns:
            await c.close()


async def test_functions_are_reapplied_on_start(fresh_database):
    conn = await asyncpg.connect(fresh_database)
    try:
        await migrate(conn)
        await conn.execute("DROP FUNCTION adjust_stock(uuid, integer, text, uuid, text)")
        await migrate(conn)
        assert await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'adjust_stock'") == 1
    finally:
        await conn.close()
