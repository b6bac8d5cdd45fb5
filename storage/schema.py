"""Bringing a database's schema up to date at every start: migrations once, functions rebuilt.

Migrations (`migrations/NNNN_name.sql`) hold tables and run once each, in order, recorded in
`schema_migrations` with the sha256 of their text. They are forward-only: an applied migration whose file
has changed since stops the start, since the change would never run here and this database would quietly
differ from one migrated after it.

Functions (`functions/*.sql`) hold the rules about money and stock. They live in their own schema,
FUNCTION_SCHEMA, dropped and rebuilt from the files at every start, so a function removed from the files,
or one whose signature changed, leaves no stale copy or overload behind. Callers name them unqualified:
SEARCH_PATH is the database's default search_path (set here), every pool connection's (db.create_pool)
and that of the session that ran migrate().
Nothing outside that schema may depend on what is in it (a trigger, a column default, a CHECK, a view):
dropping the schema would silently drop those too, so migrate() refuses and names them instead. What a
table needs, such as a trigger function, belongs to a migration and lives in public (0002's
ledger_is_append_only).

The job queue's tables are pgqueuer's (livehub/jobs.py; docs/MESSAGES.md), installed and upgraded here from
the pgqueuer release that is installed: pgqueuer's own offline upgrade script (render_converge: idempotent
CREATE ... IF NOT EXISTS, ADD COLUMN IF NOT EXISTS, enum labels, indexes, its trigger) runs whenever the
release recorded on the queue table (a COMMENT, which TRUNCATE keeps) is not the installed one, after the
migrations and before the functions (functions/messages.sql writes those tables). So a new pgqueuer release
upgrades every database at its next start, under the same lock; read its changelog before raising the pin.

It all runs in one transaction under one advisory lock: processes starting together apply each migration
exactly once, and other sessions find the old functions until it commits, the new ones after.
"""

import hashlib
import logging
import re
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MIGRATIONS = HERE / "migrations"
FUNCTIONS = HERE / "functions"
FUNCTION_SCHEMA = "livehub"
# public first: a table created without a schema must never land in the schema that is dropped at start.
SEARCH_PATH = f"public, {FUNCTION_SCHEMA}"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same in every LiveHub process.
_MIGRATE_LOCK = 0x11BE_0B
# Only a schema carrying this comment is ever dropped: one of the same name made by someone else is kept.
_SCHEMA_MARK = "LiveHub functions, dropped and rebuilt from storage/functions at every start"


def migration_files(directory: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            raise RuntimeError(f"migration file name must look like 0001_name.sql: {path.name}")
        found.append((int(m.group(1)), path))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


def checksum(text: str) -> str:
    # Of the text, not the bytes: read with universal newlines, a CRLF checkout is the same migration.
    return hashlib.sha256(text.encode()).hexdigest()


async def migrate(conn: asyncpg.Connection, *, migrations: Path = MIGRATIONS, functions: Path = FUNCTIONS) -> list[int]:
    """Apply pending migrations and rebuild the functions schema. Returns the versions applied now."""
    files = migration_files(migrations)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
        # Not LOCAL: the session that ran migrate() may call the functions next (the benchmarks do, on a new
        # database), and it started before the database's default was set. Undone if migrate() fails.
        await conn.execute(f"SET search_path = {SEARCH_PATH}")
        await _set_database_search_path(conn)
        done = await _check_applied(conn, files)
        await _drop_functions(conn)
        applied_now = await _apply_migrations(conn, files, done)
        await _install_queue(conn)
        await _create_functions(conn, functions)
    return applied_now


async def _set_database_search_path(conn: asyncpg.Connection) -> None:
    """Every later session (psql, scripts, other tools) finds the functions unqualified."""
    config = await conn.fetchval(
        """SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
            WHERE d.datname = current_database() AND s.setrole = 0"""
    )
    if f"search_path={SEARCH_PATH}" in (config or []):
        return  # set already, maybe by the owner for a role that does not own the database
    statement = await conn.fetchval(
        "SELECT format('ALTER DATABASE %I SET search_path = ' || $1, current_database())", SEARCH_PATH
    )
    try:
        await conn.execute(statement)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise RuntimeError(
            f"LiveHub needs the database's search_path to include its functions' schema, and this role may "
            f"not set it (only the database's owner or a superuser can). Run this once as one of them, then "
            f"start again: {statement}"
        ) from exc


async def _check_applied(conn: asyncpg.Connection, files: list[tuple[int, Path]]) -> set[int]:
    """The versions applied already, after refusing any whose file has changed since."""
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(),
               checksum text)"""
    )
    # Databases migrated before checksums were recorded; their rows are filled in from the files below.
    await conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    recorded = {r["version"]: r["checksum"] for r in rows}
    for version, path in files:
        if version not in recorded:
            continue
        now = checksum(path.read_text())
        if recorded[version] is None:
            await conn.execute("UPDATE schema_migrations SET checksum = $2 WHERE version = $1", version, now)
        elif recorded[version] != now:
            raise RuntimeError(
                f"migration {path} has changed since it was applied to this database (sha256 then "
                f"{recorded[version]}, now {now}). Migrations are forward-only: restore the file as it was "
                f"applied (e.g. git checkout it) and make the change in a new migration file."
            )
    return set(recorded)


async def _apply_migrations(conn: asyncpg.Connection, files: list[tuple[int, Path]], done: set[int]) -> list[int]:
    applied_now = []
    for version, path in files:
        if version in done:
            continue
        log.info("applying migration %s", path.name)
        text = path.read_text()
        await conn.execute(text)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            version,
            path.name,
            checksum(text),
        )
        applied_now.append(version)
    return applied_now


def _queue_release() -> str:
    from pgqueuer import __version__

    return f"pgqueuer {__version__}"


async def _install_queue(conn: asyncpg.Connection) -> None:
    """pgqueuer's schema, installed or brought up to the installed release (default names, in public)."""
    from pgqueuer.adapters.persistence.schema_ddl import render_converge
    from pgqueuer.domain.settings import DBSettings

    settings = DBSettings()
    table = settings.queue_table
    installed = await conn.fetchval("SELECT obj_description(to_regclass($1), 'pg_class')", table)
    release = _queue_release()
    if installed == release:
        return
    log.info("installing the job queue's schema for %s (was %s)", release, installed or "absent")
    for statement in render_converge(settings):
        await conn.execute(statement)
    await conn.execute(f"COMMENT ON TABLE {table} IS '{release}'")


async def _drop_functions(conn: asyncpg.Connection) -> None:
    # Before the migrations, so that none of them can come to depend on a function about to be replaced.
    mark = await conn.fetchrow(
        "SELECT obj_description(oid, 'pg_namespace') AS comment FROM pg_namespace WHERE nspname = $1",
        FUNCTION_SCHEMA,
    )
    if mark is None:
        return
    if mark["comment"] != _SCHEMA_MARK:
        raise RuntimeError(
            f"schema {FUNCTION_SCHEMA} exists but LiveHub did not create it (it lacks LiveHub's comment), and "
            f"LiveHub drops and rebuilds that schema at every start. If it is yours, rename it (ALTER SCHEMA "
            f"{FUNCTION_SCHEMA} RENAME TO ...); if it holds only LiveHub's functions (a dump restored without "
            f"comments), drop it (DROP SCHEMA {FUNCTION_SCHEMA} CASCADE). Then start again."
        )
    await _check_contents(conn)
    await conn.execute(f"DROP SCHEMA {FUNCTION_SCHEMA} CASCADE")


async def _create_functions(conn: asyncpg.Connection, directory: Path) -> None:
    await conn.execute(f"CREATE SCHEMA {FUNCTION_SCHEMA}")
    await conn.execute(f"COMMENT ON SCHEMA {FUNCTION_SCHEMA} IS '{_SCHEMA_MARK}'")
    # Schema first, so that the files' unqualified CREATE FUNCTION lands in it.
    await conn.execute(f"SET LOCAL search_path = {FUNCTION_SCHEMA}, public")
    for path in sorted(directory.glob("*.sql")):
        await conn.execute(path.read_text())
    await conn.execute(f"SET LOCAL search_path = {SEARCH_PATH}")
    # Releases before this schema existed kept these functions in public, where copies (and stale
    # overloads) would make unqualified calls ambiguous or pick the old rule.
    stale = await conn.fetch(
        """SELECT format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS name
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public'
              AND p.proname IN (SELECT proname FROM pg_proc WHERE pronamespace = $1::text::regnamespace)""",
        FUNCTION_SCHEMA,
    )
    for row in stale:
        await conn.execute(f"DROP FUNCTION {row['name']}")
    # Checked now too, so that a function file creating a trigger or a table fails on its first start.
    await _check_contents(conn)


async def _check_contents(conn: asyncpg.Connection) -> None:
    """Raises, naming them, unless dropping the functions schema would drop nothing but functions and types:
    no relation in it, and nothing outside it that depends on what is in it."""
    relations = await conn.fetchval(
        # relkind c: the row type of a composite type, which is rebuilt like any type.
        "SELECT string_agg(relname, ', ') FROM pg_class WHERE relnamespace = $1::text::regnamespace AND relkind <> 'c'",
        FUNCTION_SCHEMA,
    )
    if relations:
        raise RuntimeError(
            f"schema {FUNCTION_SCHEMA} holds {relations}, and it is dropped at every start: tables, views and "
            f"sequences belong in a migration (in public)."
        )
    rows = await conn.fetch(
        """WITH inside AS (
               SELECT 'pg_proc'::regclass::oid AS classid, oid AS objid
                 FROM pg_proc WHERE pronamespace = $1::text::regnamespace
               UNION ALL
               SELECT 'pg_type'::regclass::oid, oid FROM pg_type WHERE typnamespace = $1::text::regnamespace)
           SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) AS dependent,
                  pg_describe_object(d.refclassid, d.refobjid, 0) AS needs
             FROM pg_depend d
             JOIN inside i ON i.classid = d.refclassid AND i.objid = d.refobjid
            WHERE d.deptype IN ('n', 'a')
              AND (d.classid, d.objid) NOT IN (SELECT classid, objid FROM inside)
            ORDER BY 1, 2""",
        FUNCTION_SCHEMA,
    )
    if rows:
        found = "; ".join(f"{r['dependent']} (on {r['needs']})" for r in rows)
        raise RuntimeError(
            f"objects outside schema {FUNCTION_SCHEMA} depend on it: {found}. That schema is dropped and rebuilt "
            f"at every start, which would drop them too. Define what they need in a migration (in public, like "
            f"ledger_is_append_only in 0002_money.sql), or drop them."
        )
