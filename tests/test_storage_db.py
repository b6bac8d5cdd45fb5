"""migrate(): migrations run once however many nodes start together, and an applied one that changed stops
the start; the functions schema is rebuilt at every start, leaving no stale function behind and breaking
nothing that depends on the schema's functions."""

import asyncio
import hashlib
import re
import secrets
import shutil
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import asyncpg
import pytest

from conftest import _with_database
from storage.db import (
    FUNCTION_SCHEMA,
    FUNCTIONS,
    MIGRATIONS,
    SEARCH_PATH,
    close_pool,
    create_pool,
    migrate,
    migration_files,
)

VERSIONS = [v for v, _ in migration_files()]


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


@pytest.fixture
async def conn(fresh_database):
    """A connection to a database nothing has migrated yet (so it started without the functions' path)."""
    c = await asyncpg.connect(fresh_database)
    yield c
    await c.close()


@asynccontextmanager
async def session(dsn: str):
    """A connection opened now, with the database's defaults as any other client would get them."""
    c = await asyncpg.connect(dsn)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def sql(tmp_path):
    """Copies of the package's migrations and functions directories, for a test to edit."""
    shutil.copytree(MIGRATIONS, tmp_path / "migrations")
    shutil.copytree(FUNCTIONS, tmp_path / "functions")
    return tmp_path


def dirs(sql) -> dict:
    return {"migrations": sql / "migrations", "functions": sql / "functions"}


async def definitions(conn: asyncpg.Connection, name: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT n.nspname, pg_get_function_identity_arguments(p.oid) AS args
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE p.proname = $1 ORDER BY 1, 2""",
        name,
    )
    return [(r["nspname"], r["args"]) for r in rows]


async def test_concurrent_starts_apply_each_migration_once(fresh_database):
    conns = [await asyncpg.connect(fresh_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(results, key=len) == [[]] * 3 + [VERSIONS]
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == VERSIONS
        assert await migrate(conns[0]) == []
        assert await definitions(conns[0], "adjust_stock") == [
            (FUNCTION_SCHEMA, "p_variant uuid, p_delta integer, p_reason text, p_user uuid, p_reference text")
        ]
    finally:
        for c in conns:
            await c.close()


async def test_a_second_migrate_changes_no_migration_and_keeps_the_data(conn, fresh_database):
    assert await migrate(conn) == VERSIONS
    query = "SELECT version, name, applied_at, checksum FROM schema_migrations ORDER BY version"
    before = await conn.fetch(query)
    assert [(r["name"], r["checksum"]) for r in before] == [
        (path.name, hashlib.sha256(path.read_text().encode()).hexdigest()) for _, path in migration_files()
    ]
    await conn.execute("INSERT INTO users (email, display_name, password_hash) VALUES ('a@example.test', 'A', 'x')")

    assert await migrate(conn) == []
    assert await conn.fetch(query) == before
    assert await conn.fetchval("SELECT count(*) FROM users") == 1


async def test_a_function_removed_from_the_files_is_gone(conn, sql):
    extra = sql / "functions" / "zz_extra.sql"
    extra.write_text("CREATE FUNCTION lh_test_removed() RETURNS integer LANGUAGE sql AS 'SELECT 1';\n")
    await migrate(conn, **dirs(sql))
    assert await definitions(conn, "lh_test_removed") == [(FUNCTION_SCHEMA, "")]

    extra.unlink()
    await migrate(conn, **dirs(sql))
    assert await definitions(conn, "lh_test_removed") == []


async def test_a_function_whose_signature_changed_has_one_overload(conn, sql, fresh_database):
    extra = sql / "functions" / "zz_extra.sql"
    extra.write_text("CREATE FUNCTION lh_test_changed(a integer) RETURNS integer LANGUAGE sql AS 'SELECT a';\n")
    await migrate(conn, **dirs(sql))
    extra.write_text(
        "CREATE FUNCTION lh_test_changed(a integer, b integer DEFAULT 1) RETURNS integer\n"
        "LANGUAGE sql AS 'SELECT a + b';\n"
    )
    await migrate(conn, **dirs(sql))

    assert await definitions(conn, "lh_test_changed") == [(FUNCTION_SCHEMA, "a integer, b integer")]
    async with session(fresh_database) as other:
        # With the old overload left behind, this call would be ambiguous.
        assert await other.fetchval("SELECT lh_test_changed(1)") == 2


async def test_a_changed_migration_is_refused_and_nothing_is_applied(conn, sql):
    await migrate(conn, **dirs(sql))
    changed = sql / "migrations" / "0002_money.sql"
    changed.write_text(changed.read_text() + "\nCREATE INDEX lh_test_afterthought ON orders (status);\n")
    (sql / "migrations" / "0099_next.sql").write_text("CREATE TABLE lh_test_next (id integer);\n")

    with pytest.raises(RuntimeError, match=r"0002_money\.sql has changed since it was applied") as refused:
        await migrate(conn, **dirs(sql))
    assert "new migration" in str(refused.value)
    assert await conn.fetchval("SELECT to_regclass('lh_test_next')") is None
    assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == VERSIONS[-1]


async def test_a_database_from_before_the_functions_schema_is_brought_over(conn, fresh_database):
    # What the previous release left: no checksums, its functions in public, and an overload an older
    # signature of buy_batch left behind.
    await conn.execute(
        """CREATE TABLE schema_migrations (
               version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    for version, path in migration_files():
        await conn.execute(path.read_text())
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, path.name)
    for path in sorted(FUNCTIONS.glob("*.sql")):
        await conn.execute(path.read_text())
    await conn.execute("CREATE FUNCTION buy_batch(uuid, jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT NULL::jsonb'")

    assert await migrate(conn) == []
    checksums = await conn.fetch("SELECT name, checksum FROM schema_migrations ORDER BY version")
    assert [(r["name"], r["checksum"]) for r in checksums] == [
        (path.name, hashlib.sha256(path.read_text().encode()).hexdigest()) for _, path in migration_files()
    ]
    in_public = await conn.fetch("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace")
    # Only the trigger functions the migrations themselves define stay in public (and the job queue's, which
    # pgqueuer's schema defines).
    in_migrations = {"audit_log_is_append_only", "ledger_is_append_only", "variants_stock_fell"}
    assert {r["proname"] for r in in_public} - in_migrations == {"fn_pgqueuer_changed"}
    assert [schema for schema, _ in await definitions(conn, "buy_batch")] == [FUNCTION_SCHEMA]
    async with session(fresh_database) as other:
        assert await other.fetchval("SELECT user_is_admin(NULL)") is False


async def test_the_ledger_trigger_still_works_after_a_second_migrate(conn, fresh_database):
    await migrate(conn)
    await migrate(conn)
    async with session(fresh_database) as other:
        account = await other.fetchval("INSERT INTO accounts (kind) VALUES ('platform') RETURNING id")
        await other.execute(
            "INSERT INTO ledger_entries (txn_id, account_id, type, amount_cents) VALUES (1, $1, 'fee', 5)", account
        )
        for change in ("UPDATE ledger_entries SET memo = 'edited'", "DELETE FROM ledger_entries"):
            with pytest.raises(asyncpg.PostgresError, match="ledger entries are immutable") as refused:
                await other.execute(change)
            assert refused.value.sqlstate == "LH409"


async def test_objects_depending_on_the_functions_stop_the_start_and_survive(conn, fresh_database):
    await migrate(conn)
    await conn.execute(f"ALTER TABLE streams ADD COLUMN lh_test_at text DEFAULT {FUNCTION_SCHEMA}.utc_time(now())")
    await conn.execute(f"CREATE VIEW lh_test_admins AS SELECT id FROM users WHERE {FUNCTION_SCHEMA}.user_is_admin(id)")

    with pytest.raises(RuntimeError, match="depend on it") as refused:
        await migrate(conn)
    assert "default value for column lh_test_at of table streams" in str(refused.value)
    assert "view lh_test_admins" in str(refused.value)
    default = await conn.fetchval(
        "SELECT column_default FROM information_schema.columns WHERE table_name = 'streams' AND column_name = $1",
        "lh_test_at",
    )
    assert default.endswith("utc_time(now())")
    assert await conn.fetchval("SELECT to_regclass('lh_test_admins')") is not None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            """CREATE FUNCTION lh_test_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
               CREATE TRIGGER lh_test_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION lh_test_touch();""",
            "trigger lh_test_touch on table users",
        ),
        ("CREATE TABLE lh_test_kept (id integer);", "holds lh_test_kept"),
    ],
    ids=["trigger", "table"],
)
async def test_a_function_file_creating_what_the_rebuild_would_drop_is_refused(conn, sql, text, named):
    (sql / "functions" / "zz_extra.sql").write_text(text)
    with pytest.raises(RuntimeError, match=named):
        await migrate(conn, **dirs(sql))
    assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None


async def test_a_schema_of_that_name_made_by_someone_else_is_kept(conn):
    await conn.execute(f"CREATE SCHEMA {FUNCTION_SCHEMA}; CREATE TABLE {FUNCTION_SCHEMA}.precious (id integer)")
    with pytest.raises(RuntimeError, match="LiveHub did not create it"):
        await migrate(conn)
    assert await conn.fetchval(f"SELECT to_regclass('{FUNCTION_SCHEMA}.precious')") is not None


async def test_pool_connections_opened_before_the_first_migrate_find_the_functions(fresh_database):
    pool = await create_pool(fresh_database, min_size=2, max_size=2)
    try:
        async with pool.acquire() as first:
            await migrate(first)
        async with pool.acquire() as a, pool.acquire() as b:
            for c in (a, b):
                assert await c.fetchval(f"SELECT to_regprocedure('{FUNCTION_SCHEMA}.user_is_admin(uuid)')") is not None
                assert await c.fetchval("SELECT user_is_admin(NULL)") is False
    finally:
        await pool.close()
    async with session(fresh_database) as other:
        assert await other.fetchval("SHOW search_path") == SEARCH_PATH


async def test_the_connection_that_migrated_calls_the_functions_next(conn):
    await migrate(conn)
    assert await conn.fetchval("SELECT user_is_admin(NULL)") is False


async def test_a_role_that_does_not_own_the_database_needs_its_search_path_set_once(fresh_database):
    role = f"livehub_app_{secrets.token_hex(4)}"
    database = urlsplit(fresh_database).path.lstrip("/")
    admin = await asyncpg.connect(fresh_database)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        await admin.execute(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
        await admin.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        app = await asyncpg.connect(fresh_database, user=role)
        try:
            with pytest.raises(RuntimeError, match="owner") as refused:
                await migrate(app)
            statement = re.search(r"ALTER DATABASE .*$", str(refused.value)).group(0)
            await admin.execute(statement)
            assert await migrate(app) == VERSIONS
        finally:
            await app.close()
    finally:
        await admin.execute(f'DROP OWNED BY "{role}"')
        await admin.close()
        async with session(_with_database(fresh_database, "postgres")) as server:
            await server.execute(f'DROP ROLE "{role}"')


async def test_closing_a_pool_whose_connection_is_never_released_ends_in_bounded_time(database_url):
    # asyncpg's close() alone waits for every connection to come back: a shutdown must not.
    pool = await create_pool(database_url, min_size=1, max_size=1)
    held = await pool.acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await close_pool(pool, within_s=0.5)
    assert loop.time() - started < 3
    assert pool.is_closing()
    with pytest.raises(asyncpg.InterfaceError):  # the held connection was cut off
        await held.fetchval("SELECT 1")
