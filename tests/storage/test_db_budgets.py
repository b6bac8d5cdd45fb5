"""The node pool's budgets (storage/db.py): waiting for a connection, a statement on the client's side
(the connection is dropped, never handed out again half-way) and on the server's side, and the long
budget of long_statements(). Against the test server: a slow statement is pg_sleep, not a stall."""

import asyncpg
import pytest

from livehub.errors import Unavailable, to_error
from storage.db import create_pool, long_statements, transaction


@pytest.fixture
async def pool(database_url):
    pool = await create_pool(
        database_url,
        min_size=1,
        max_size=2,
        acquire_timeout_s=0.5,
        command_timeout_s=0.5,
        statement_timeout_s=5,
        long_statement_timeout_s=3,
    )
    yield pool
    await pool.close()


def unavailable(exc: BaseException) -> bool:
    return isinstance(to_error(exc), Unavailable)


async def test_a_statement_past_its_budget_drops_its_connection(pool):
    pid = await pool.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(TimeoutError):
        await pool.fetchval("SELECT pg_sleep(3)")
    # In a transaction: the ROLLBACK finds the connection closed at once, and says the database is away.
    with pytest.raises(Exception) as caught:
        async with transaction(pool) as conn:
            await conn.execute("SELECT pg_sleep(3)")
    assert unavailable(caught.value), repr(caught.value)
    # The pool lends working connections again, new ones: the old ones never come back half-way.
    pids = set()
    for _ in range(4):
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
            pids.add(await conn.fetchval("SELECT pg_backend_pid()"))
    assert pid not in pids


async def test_waiting_for_a_connection_is_bounded(pool):
    async with pool.acquire(), pool.acquire():
        with pytest.raises(TimeoutError) as caught:
            await pool.fetchval("SELECT 1")
    assert unavailable(caught.value)


async def test_the_server_stops_a_statement_past_its_own_budget(database_url):
    pool = await create_pool(database_url, min_size=1, max_size=1, command_timeout_s=5, statement_timeout_s=0.2)
    try:
        assert await pool.fetchval("SHOW statement_timeout") == "200ms"
        with pytest.raises(asyncpg.QueryCanceledError) as caught:
            await pool.fetchval("SELECT pg_sleep(2)")
        assert unavailable(caught.value)
    finally:
        await pool.close()


async def test_long_statements_get_the_long_budget_for_their_transaction_only(pool):
    async with long_statements(pool) as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "3s"
        await conn.execute("SELECT pg_sleep(1)")  # twice the usual budget
    async with long_statements(pool, unbounded=True) as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "0"
        await conn.execute("SELECT pg_sleep(1)")
    # The budgets are the usual ones again, on both sides.
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "5s"
        with pytest.raises(TimeoutError):
            await conn.execute("SELECT pg_sleep(1)")


async def test_without_budgets_nothing_is_bounded(database_url):
    """A tool's pool (run.py's preparation, the benchmarks) and plain connections: as asyncpg has them."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        assert await pool.fetchval("SHOW statement_timeout") == "0"
        async with long_statements(pool) as conn:
            await conn.execute("SELECT pg_sleep(0.1)")
    finally:
        await pool.close()
    conn = await asyncpg.connect(database_url)
    try:
        async with long_statements(conn) as tx:
            assert await tx.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
