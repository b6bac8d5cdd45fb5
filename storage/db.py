"""The asyncpg pool, transactions, JSON codecs, and (from storage.schema) migrate().

The schema is brought up to date by storage.schema.migrate() at every start: pending migrations run once
each, and the functions, which live in their own schema (FUNCTION_SCHEMA), are dropped and rebuilt from
`functions/*.sql`. Callers name those functions unqualified (`SELECT buy_batch(...)`): every pool
connection asks for SEARCH_PATH, and migrate() sets it as the database's default for other sessions.
"""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson

from storage.schema import FUNCTION_SCHEMA, FUNCTIONS, MIGRATIONS, SEARCH_PATH, migrate, migration_files

__all__ = [
    "DB",
    "FUNCTIONS",
    "FUNCTION_SCHEMA",
    "MIGRATIONS",
    "SEARCH_PATH",
    "create_pool",
    "encode_json",
    "init_connection",
    "keep_session",
    "migrate",
    "migration_files",
    "transaction",
]

# What a domain function runs its queries on: the pool, or a connection already in a transaction.
DB = asyncpg.Pool | asyncpg.Connection


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
        # Not left to the database's default, which a session only gets if it started after migrate() set it:
        # this pool's first connections open before migrate() runs on one of them, on a new database too.
        server_settings={"search_path": SEARCH_PATH},
    )
