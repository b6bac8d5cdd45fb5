"""The asyncpg pool and the schema: forward-only migrations plus re-applied functions.

Migrations (`migrations/NNNN_name.sql`) hold tables and run once each, recorded in `schema_migrations`.
Functions (`functions/*.sql`) hold the rules about money and stock as `CREATE OR REPLACE` statements and
are re-applied on every start, so changing a rule is editing one file. Both run under one advisory lock:
several processes starting at once apply everything exactly once.
"""

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import orjson

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MIGRATIONS = HERE / "migrations"
FUNCTIONS = HERE / "functions"
# What a domain function runs its queries on: the pool, or a connection already in a transaction.
DB = asyncpg.Pool | asyncpg.Connection
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same in every LiveHub process.
_MIGRATE_LOCK = 0x11BE_0B


@asynccontextmanager
async def transaction(db: DB) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on `db`: a pool lends a connection for it; a connection that is already in a
    transaction (an idempotent request's) nests a savepoint inside it."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db


def _encode_default(value):
    # asyncpg returns its own UUID subclass, which orjson does not take for a uuid.UUID.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode_json(value) -> str:
    return orjson.dumps(value, default=_encode_default).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    """orjson for json and jsonb both ways, so Postgres-built JSON arrives as Python objects."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", encoder=encode_json, decoder=orjson.loads)


async def keep_session(conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool: nothing. asyncpg's default reset costs a round
    trip per request (unlock advisory locks, close cursors, UNLISTEN, RESET ALL), and LiveHub keeps no
    session state on pooled connections: only transaction-scoped locks, no LISTEN, no session SET.
    asyncpg still rolls back a transaction left open before it calls this."""


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=keep_session,
    )


def migration_files() -> list[tuple[int, Path]]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            raise RuntimeError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append((int(m.group(1)), path))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations, then every function file. Returns the versions applied now."""
    applied_now = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, path in migration_files():
            if version in done:
                continue
            log.info("applying migration %s", path.name)
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name)
            applied_now.append(version)
        for path in sorted(FUNCTIONS.glob("*.sql")):
            await conn.execute(path.read_text())
    return applied_now
