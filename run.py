"""Start a LiveHub node.

    python run.py [--host 127.0.0.1] [--port 8080] [--demo] [--workers N]
    python run.py create-admin EMAIL            (password from LIVEHUB_ADMIN_PASSWORD or a prompt)

With no DATABASE_URL an embedded PostgreSQL runs from ./var/pgdata (LIVEHUB_DATA_DIR) for as long as the
node does. `--workers N` starts N server processes on one port (the kernel spreads connections over them
with SO_REUSEPORT); they share rooms through Redis, so it needs REDIS_URL.
"""

import argparse
import asyncio
import contextlib
import getpass
import logging
import multiprocessing
import resource
import signal
import sys

import asyncpg

from livehub import demo
from livehub.app import serve as serve_node
from livehub.auth import PasswordHasher, ensure_admin
from livehub.settings import Settings
from storage.db import create_pool, migrate

log = logging.getLogger("livehub")
EMBEDDED_DATABASE = "livehub"


@contextlib.contextmanager
def database(settings: Settings):
    """Yields settings with a database_url: the configured one, or an embedded server's."""
    if settings.database_url:
        yield settings
        return
    from storage.embedded import EmbeddedPostgres

    data_dir = settings.data_dir.resolve()
    with EmbeddedPostgres(data_dir / "pgdata") as pg:
        log.info("embedded PostgreSQL on %s (data in %s)", pg.dsn, data_dir / "pgdata")
        asyncio.run(_create_database(pg.dsn, EMBEDDED_DATABASE))
        yield settings.model_copy(update={"database_url": pg.dsn.rsplit("/", 1)[0] + "/" + EMBEDDED_DATABASE})


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
            await demo.seed(pool, hasher)
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


def serve(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py", description="Start a LiveHub node.")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1, LIVEHUB_HOST)")
    parser.add_argument("--port", type=int, help="port (default 8080, LIVEHUB_PORT)")
    parser.add_argument("--demo", action="store_true", help="seed the demo shop and accounts")
    parser.add_argument("--workers", type=int, default=1, help="server processes on this port (needs REDIS_URL)")
    args = parser.parse_args(argv)
    settings = Settings()
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if args.demo:
        updates["demo_video"] = True
    settings = settings.model_copy(update=updates)
    if args.workers < 1 or (args.workers > 1 and not settings.redis_url):
        print("--workers N (N > 1) needs REDIS_URL: the processes share their rooms through Redis", file=sys.stderr)
        return 2
    raise_open_files_limit()
    with database(settings) as settings:
        asyncio.run(_prepare(settings, seed_demo=args.demo))
        base_url = f"http://{settings.host}:{settings.port}"
        if args.workers == 1:
            print(demo.sign_in_help(base_url) if args.demo else f"LiveHub is running at {base_url}", flush=True)
            serve_node(settings)
            return 0
        return _serve_workers(settings, args.workers, demo.sign_in_help(base_url) if args.demo else None)


def _worker(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve_node(settings, reuse_port=True)


def _serve_workers(settings: Settings, count: int, demo_help: str | None) -> int:
    """N processes on one port; stopping this one (SIGINT/SIGTERM) stops them all."""
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
    try:
        for w in workers:
            w.join()
    except KeyboardInterrupt:
        stop()
        for w in workers:
            w.join()
    return max((w.exitcode or 0 for w in workers), default=0)


def create_admin(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py create-admin", description="Create or promote an admin.")
    parser.add_argument("email")
    args = parser.parse_args(argv)
    settings = Settings()
    password = settings.admin_password or getpass.getpass("Password for the admin: ")
    if len(password) < 8:
        print("the password needs at least 8 characters", file=sys.stderr)
        return 2
    with database(settings) as settings:
        asyncio.run(_prepare(settings, seed_demo=False, admin=(args.email.strip().lower(), password)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=Settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] == "create-admin":
        return create_admin(argv[1:])
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
