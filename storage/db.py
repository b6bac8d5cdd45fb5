"""The asyncpg pool, transactions, JSON codecs, and (from storage.schema) migrate().

The schema is brought up to date by storage.schema.migrate() at every start: pending migrations run once
each, and the functions, which live in their own schema (FUNCTION_SCHEMA), are dropped and rebuilt from
`functions/*.sql`. Callers name those functions unqualified (`SELECT buy_batch(...)`): every pool
connection asks for SEARCH_PATH, and migrate() sets it as the database's default for other sessions.

Bounded waits: a node's pool can be given budgets (create_pool's *_timeout_s) so that a database that stops
answering (stalled, a network partition) costs a caller a few seconds and a 503, never the whole outage:
waiting for a connection (and opening one), each statement on the client's side, and each statement on
the server's side (statement_timeout, so the server stops work nobody waits for any more). A statement
past its client budget drops its connection at once rather than asking the server to cancel it: a stalled
server acknowledges no cancel, and the caller's ROLLBACK and the pool's release would each wait for it.
Statements that are long by nature (CSV imports, reports) run in `long_statements()`; migrations unbounded.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
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
    "close_pool",
    "create_pool",
    "encode_json",
    "init_connection",
    "keep_session",
    "long_statements",
    "migrate",
    "migration_files",
    "transaction",
]

# What a domain function runs its queries on: the pool, or a connection already in a transaction.
DB = asyncpg.Pool | asyncpg.Connection

log = logging.getLogger(__name__)

# How long close_pool() waits for the connections in use before cutting them off.
CLOSE_POOL_S = 10.0


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


class _Connection(asyncpg.Connection):
    """A pool connection that is dropped, not cancelled, when a statement outlives its budget."""

    # Statements in long_statements() get this budget, on both sides (None: no budget configured).
    long_statement_timeout_s: float | None = None

    def _cancel_current_command(self, waiter, cancel_waiter=None):
        # asyncpg calls this when a statement timed out or its task was cancelled, and then waits for the
        # server to acknowledge the cancel before the connection may run anything (a ROLLBACK, the pool's
        # reset). Aborted instead, on the next turn of the loop (asyncpg is still completing the statement's
        # waiter): the caller's ROLLBACK finds the connection closed, and the pool's release, seeing it
        # closed, terminates it and opens a new one later. (Not terminate() here: that would hand the pool
        # its holder back while the caller's release is still under way.) The server rolls back when it
        # notices; statement_timeout bounds the work it does until then.
        self._loop.call_soon(self._abort)

    @contextlib.contextmanager
    def _statement_budget(self, seconds: float | None) -> Iterator[None]:
        # The client-side budget (command_timeout) of the statements run meanwhile; asyncpg reads it from
        # the connection's settings for every statement that passes no timeout of its own.
        saved = self._config
        self._config = saved._replace(command_timeout=seconds)
        try:
            yield
        finally:
            self._config = saved


class _Pool(asyncpg.Pool):
    """A pool whose acquire() waits at most `acquire_timeout_s` unless told otherwise, as its fetch(),
    fetchval(), execute()... do (they call acquire() with no timeout)."""

    acquire_timeout_s: float | None = None
    # Told how long each acquire waited and what it failed with, if it did (the node's metrics).
    observe_acquire: Callable[[float, BaseException | None], None] | None = None

    def acquire(self, *, timeout: float | None = None):
        return super().acquire(timeout=self.acquire_timeout_s if timeout is None else timeout)

    async def _acquire(self, timeout):
        # asyncpg's one way in for `async with acquire()`, `await acquire()` and fetch()/execute().
        if self.observe_acquire is None:
            return await super()._acquire(timeout)
        started = time.perf_counter()
        try:
            conn = await super()._acquire(timeout)
        except BaseException as exc:
            self.observe_acquire(time.perf_counter() - started, exc)
            raise
        self.observe_acquire(time.perf_counter() - started, None)
        return conn


async def create_pool(
    dsn: str,
    *,
    min_size: int = 2,
    max_size: int = 20,
    acquire_timeout_s: float | None = None,
    command_timeout_s: float | None = None,
    statement_timeout_s: float | None = None,
    long_statement_timeout_s: float | None = None,
    observe_acquire: Callable[[float, BaseException | None], None] | None = None,
) -> asyncpg.Pool:
    """The pool of a node (or a tool: without budgets, nothing is bounded). `acquire_timeout_s` bounds
    waiting for a connection, opening one included; `command_timeout_s` each statement on the client's side
    (past it the connection is dropped and the caller gets TimeoutError); `statement_timeout_s` each
    statement on the server's side (QueryCanceledError); `long_statement_timeout_s` both sides of the
    statements in long_statements(); `observe_acquire(seconds, error or None)` is told of each acquire."""
    server_settings = {
        # Not left to the database's default, which a session only gets if it started after migrate() set it:
        # this pool's first connections open before migrate() runs on one of them, on a new database too.
        "search_path": SEARCH_PATH,
    }
    if statement_timeout_s:
        server_settings["statement_timeout"] = str(_ms(statement_timeout_s))

    async def init(conn: asyncpg.Connection) -> None:
        conn.long_statement_timeout_s = long_statement_timeout_s
        await init_connection(conn)

    pool = _Pool(
        dsn,
        connection_class=_Connection,
        record_class=asyncpg.Record,
        min_size=min_size,
        max_size=max_size,
        max_queries=50000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connect=None,
        setup=None,
        init=init,
        reset=keep_session,
        command_timeout=command_timeout_s,
        server_settings=server_settings,
    )
    pool.acquire_timeout_s = acquire_timeout_s
    pool.observe_acquire = observe_acquire
    return await pool


async def close_pool(pool: asyncpg.Pool, within_s: float = CLOSE_POOL_S) -> None:
    """Close gracefully, waiting at most `within_s` for the connections in use to come back, then cut off
    what is left: asyncpg's close() waits as long as any connection is held, and one held by a caller stuck
    on a stalled server (or a task left behind at shutdown) would hold the node's shutdown forever."""
    try:
        await asyncio.wait_for(pool.close(), within_s)
    except TimeoutError:
        log.warning("database connections still in use after %s s at shutdown; closed anyway", within_s)
        pool.terminate()


@asynccontextmanager
async def long_statements(db: DB, *, unbounded: bool = False) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on `db` whose statements may take the pool's long budget (LIVEHUB_DB_LONG_STATEMENT_
    TIMEOUT_S) instead of the usual one, on the server's side and the client's; `unbounded`: no budget at
    all (migrations). On a connection that has no budgets (a tool's, a test's), just a transaction."""
    async with transaction(db) as conn:
        # Only this module's pool connections have budgets (through a pool's proxy too).
        budget_of = getattr(conn, "_statement_budget", None)
        if budget_of is None:
            yield conn
            return
        budget = None if unbounded else conn.long_statement_timeout_s
        # LOCAL: ends with the transaction, so the connection goes back to the pool as it came.
        await conn.execute(f"SET LOCAL statement_timeout = {_ms(budget) if budget else 0}")
        with budget_of(budget):
            yield conn


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
