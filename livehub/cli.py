"""The `livehub` command (installed by `pip install -e .`; `python run.py` is the same without installing).

    livehub serve [--host 127.0.0.1] [--port 8080] [--demo] [--workers N]
    livehub create-admin EMAIL          (password from LIVEHUB_ADMIN_PASSWORD or a prompt)
    livehub backup [--to DIR]           (pg_dump and manifest; docs/OPERATIONS.md, "Backups")
    livehub restore FILE [--to URL] [--force]

With no DATABASE_URL an embedded PostgreSQL runs from ./var/pgdata (LIVEHUB_DATA_DIR) for as long as the
command does. `--workers N` starts N server processes on one port (the kernel spreads connections over them
with SO_REUSEPORT); they share rooms through Redis, so it needs REDIS_URL.

A subcommand is one function decorated with `@command(name, help, *arguments)`: it gets the parsed
arguments and the Settings, and returns the exit status.
"""

import argparse
import asyncio
import contextlib
import getpass
import logging
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pydantic

from livehub import demo, demo_images, logs
from livehub.app import serve as serve_node
from livehub.auth import PasswordHasher, ensure_admin
from livehub.backups import (
    EMBEDDED_SCHEDULE,
    BackupError,
    backup_dir,
    connect,
    dump,
    redact,
    restore_into,
    run_backup,
)
from livehub.dbwatch import CHECK_EVERY_S, DatabaseState, EmbeddedWatch
from livehub.mail import Mailer
from livehub.mediastore import open_store
from livehub.metrics import forget_ended, shared_by_worker_processes
from livehub.settings import Settings
from livehub.shop import payout_destinations
from storage.db import create_pool, migrate

log = logging.getLogger("livehub")
EMBEDDED_DATABASE = "livehub"

Handler = Callable[[argparse.Namespace, Settings], int]


class Command:
    def __init__(self, name: str, help: str, arguments: tuple[tuple[tuple, dict], ...], run: Handler):
        self.name, self.help, self.arguments, self.run = name, help, arguments, run


COMMANDS: dict[str, Command] = {}


def arg(*flags: str, **options) -> tuple[tuple, dict]:
    """One argparse argument of a subcommand: arg("--port", type=int, help=...)."""
    return flags, options


def command(name: str, help: str, *arguments: tuple[tuple, dict]) -> Callable[[Handler], Handler]:
    """Registers a subcommand: `livehub NAME ARGUMENTS...` calls the function with (args, settings)."""

    def register(run: Handler) -> Handler:
        COMMANDS[name] = Command(name, help, arguments, run)
        return run

    return register


@contextlib.contextmanager
def database(settings: Settings):
    """Yields (settings with a database_url, the embedded server or None): the configured database, or an
    embedded server's."""
    if settings.database_url:
        yield settings, None
        return
    from storage.embedded import EmbeddedPostgres

    data_dir = settings.data_dir.resolve()
    with EmbeddedPostgres(data_dir / "pgdata") as pg:
        log.info("embedded PostgreSQL on %s (data in %s)", pg.dsn, data_dir / "pgdata")
        asyncio.run(_create_database(pg.dsn, EMBEDDED_DATABASE))
        update = {"database_url": pg.dsn.rsplit("/", 1)[0] + "/" + EMBEDDED_DATABASE}
        if not settings.payout_keys:  # the embedded database's own key, beside it (payout_destinations.py)
            update["payout_keys"] = [payout_destinations.embedded_key(data_dir)]
        yield settings.model_copy(update=update), pg


@contextlib.contextmanager
def tool_database(settings: Settings):
    """Settings with a database_url for a tool that only connects (backup, restore): the configured
    database; else the embedded one of a node running on this data dir (never started a second time: that
    would stop the node's server); else the embedded one, started for as long as the tool runs."""
    if not settings.database_url and (port := _running_embedded_port(settings.data_dir.resolve() / "pgdata")):
        url = f"postgresql://postgres@127.0.0.1:{port}/{EMBEDDED_DATABASE}"
        yield settings.model_copy(update={"database_url": url})
        return
    with database(settings) as (settings, _):
        yield settings


def _running_embedded_port(data_dir: Path) -> int | None:
    """The port of a live postmaster on data_dir (its postmaster.pid: pid on line 1, port on line 4)."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
        os.kill(pid, 0)
    except PermissionError:
        return port  # alive, run as another user (`nobody` when the node runs as root)
    except (OSError, ValueError, IndexError):
        return None
    return port


async def _create_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _prepare(settings: Settings, *, seed_demo: bool, admin: tuple[str, str] | None = None) -> None:
    """Migrate, and seed the demo or create an admin, before the server takes traffic."""
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        hasher = PasswordHasher(settings)
        if seed_demo:
            await demo.seed(pool, hasher, fee_bps=settings.platform_fee_bps, hold_s=settings.earnings_hold_s)
            # Drawn and stored through the node's media store, as an upload would be.
            async with open_store(settings) as store:
                await demo_images.seed_images(
                    pool, store, max_pixels=settings.max_image_pixels, max_images=settings.max_images_per_product
                )
        if admin:
            created = await ensure_admin(pool, hasher, *admin)
            print(f"{'created' if created else 'promoted'} admin {admin[0]}")
    finally:
        await pool.close()


def raise_open_files_limit() -> None:
    """Every websocket is an open file; the usual soft limit of 1024 would cap a node at ~1000 viewers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1_048_576 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)


@command(
    "serve",
    "start a LiveHub node",
    arg("--host", help="address to listen on (default 127.0.0.1, LIVEHUB_HOST)"),
    arg("--port", type=int, help="port (default 8080, LIVEHUB_PORT)"),
    arg("--demo", action="store_true", help="seed the demo shop and accounts"),
    arg("--workers", type=int, default=1, help="server processes on this port (needs REDIS_URL)"),
)
def serve(args: argparse.Namespace, settings: Settings) -> int:
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if args.demo:
        updates["demo_video"] = True
    settings = settings.model_copy(update=updates)
    if args.workers < 1 or (args.workers > 1 and not settings.redis_url):
        print("--workers N (N > 1) needs REDIS_URL: the processes share their rooms through Redis", file=sys.stderr)
        return 2
    raise_open_files_limit()
    with database(settings) as (settings, embedded):
        if embedded is not None and settings.backup_schedule is None:
            # Nobody else backs the embedded database up: daily, unless LIVEHUB_BACKUP_SCHEDULE says otherwise.
            settings = settings.model_copy(update={"backup_schedule": EMBEDDED_SCHEDULE})
        asyncio.run(_prepare(settings, seed_demo=args.demo))
        base_url = f"http://{settings.host}:{settings.port}"
        # Where the emails (verification, reset, notifications) go: SMTP, or .eml files to open.
        print(f"LiveHub email goes to {Mailer(settings).describe()}", flush=True)
        demo_help = demo.sign_in_help(base_url) if args.demo else None
        if args.workers == 1:
            print(demo_help or f"LiveHub is running at {base_url}", flush=True)
            return serve_node(settings, embedded=embedded)
        with shared_by_worker_processes():
            return _serve_workers(settings, args.workers, demo_help, embedded)


def _worker(settings: Settings) -> None:
    logs.setup(settings)
    serve_node(settings, reuse_port=True)


def _serve_workers(settings: Settings, count: int, demo_help: str | None, embedded=None) -> int:
    """N processes on one port; stopping this one (SIGINT/SIGTERM) stops them all. This process keeps the
    embedded database up (livehub/dbwatch.py) and, if it cannot, stops the workers and exits with 1."""
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_worker, args=(settings,), name=f"livehub-{i}") for i in range(count)]
    for w in workers:
        w.start()
    print(demo_help or f"LiveHub is running at http://{settings.host}:{settings.port} ({count} workers)", flush=True)

    def stop(*_):
        for w in workers:
            if w.is_alive():
                w.terminate()

    signal.signal(signal.SIGTERM, stop)
    watch = EmbeddedWatch(embedded, give_up_after_s=settings.embedded_db_restart_s, give_up=stop) if embedded else None
    try:
        while any(w.is_alive() for w in workers):
            multiprocessing.connection.wait([w.sentinel for w in workers], timeout=CHECK_EVERY_S)
            forget_ended(w.pid for w in workers if not w.is_alive())
            if watch is not None and not embedded.alive():
                asyncio.run(watch.check())
    except KeyboardInterrupt:
        stop()
    for w in workers:
        w.join()
    if watch is not None and watch.state is DatabaseState.GONE:
        return 1
    return max((w.exitcode or 0 for w in workers), default=0)


@command(
    "create-admin",
    "create an admin account, or promote an existing one and set its password",
    arg("email", help="the admin's email (an existing account is promoted)"),
)
def create_admin(args: argparse.Namespace, settings: Settings) -> int:
    password = settings.admin_password or getpass.getpass("Password for the admin: ")
    if len(password) < 8:
        print("the password needs at least 8 characters", file=sys.stderr)
        return 2
    with database(settings) as (settings, _):
        asyncio.run(_prepare(settings, seed_demo=False, admin=(args.email.strip().lower(), password)))
    return 0


@command(
    "backup",
    "back up the database: a pg_dump file (-Fc) and its manifest, logged in the backups table",
    arg("--to", metavar="DIR", help="the directory to write to (default LIVEHUB_BACKUP_DIR: <data dir>/backups)"),
)
def backup(args: argparse.Namespace, settings: Settings) -> int:
    with tool_database(settings) as settings:
        return asyncio.run(_backup(settings, Path(args.to).resolve() if args.to else None))


async def _backup(settings: Settings, directory: Path | None) -> int:
    try:
        conn = await connect(settings.database_url)
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    try:
        if not await conn.fetchval("SELECT to_regproc('backup_started') IS NOT NULL"):
            # A database of an older release (the backup before an upgrade): dumped, but not logged.
            return await _unlogged_backup(settings, directory)
        row = await run_backup(conn, settings, "cli", directory=directory)
    finally:
        await conn.close()
    if row["status"] != "succeeded":
        print(f"backup failed: {row['error']}", file=sys.stderr)
        return 1
    print(f"backup {row['id']}: {row['path']} ({row['size_bytes']} bytes, sha256 {row['sha256']})")
    return 0


async def _unlogged_backup(settings: Settings, directory: Path | None) -> int:
    try:
        made = await dump(settings.database_url, directory or backup_dir(settings))
    except BackupError as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"backup (not logged: no backups table yet): {made.path} ({made.manifest['size']} bytes)")
    return 0


@command(
    "restore",
    "restore a backup into an empty database, then check its books and row counts against the manifest",
    arg("file", help="a .dump file written by `livehub backup` (its .manifest.json next to it)"),
    arg("--to", metavar="URL", help="the database to restore into (default: the configured one)"),
    arg(
        "--force",
        "--clean",
        dest="clean",
        action="store_true",
        help="restore into a database that has tables, dropping what the backup holds first",
    ),
)
def restore(args: argparse.Namespace, settings: Settings) -> int:
    if args.to:
        return asyncio.run(_restore(Path(args.file), args.to, args.clean))
    with tool_database(settings) as settings:
        return asyncio.run(_restore(Path(args.file), settings.database_url, args.clean))


async def _restore(file: Path, url: str, clean: bool) -> int:
    try:
        restored = await restore_into(file, url, clean=clean)
    except BackupError as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    books = restored["books"]
    print(
        f"restored {file.name} into {redact(url)}: schema version {restored['schema_version']}, "
        f"books {'balanced' if books.get('balanced') else 'NOT balanced'} and equal to the backup's, "
        f"row counts of {len(restored['row_counts'])} tables equal"
    )
    return 0


def parser(prog: str = "livehub", default: str | None = None) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description="LiveHub: a live-commerce server.")
    subcommands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        sub = subcommands.add_parser(
            cmd.name,
            # The default subcommand is the program itself: `run.py [--demo]`, as its usage says.
            prog=prog if cmd.name == default else None,
            help=cmd.help,
            description=cmd.help[:1].upper() + cmd.help[1:] + ".",
        )
        for flags, options in cmd.arguments:
            sub.add_argument(*flags, **options)
    return top


def main(argv: list[str] | None = None, *, prog: str = "livehub", default: str | None = None) -> int:
    """Runs a subcommand. With `default`, arguments that do not start with a subcommand's name are that
    subcommand's (run.py: `python run.py --demo` is `livehub serve --demo`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if default is not None and (not argv or argv[0] not in COMMANDS):
        argv.insert(0, default)
    args = parser(prog, default).parse_args(argv)
    try:
        settings = Settings()
    except pydantic.ValidationError as exc:
        # What is wrong, never the values: keys and passwords come through the environment.
        for error in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(part) for part in error["loc"])
            print(f"{prog}: configuration: {where + ': ' if where else ''}{error['msg']}", file=sys.stderr)
        return 2
    logs.setup(settings)
    return COMMANDS[args.command].run(args, settings)


if __name__ == "__main__":
    sys.exit(main())
