"""The `livehub` console script that `pip install -e .` installs (livehub/cli.py): `livehub serve` runs a node
as `python run.py` does, `livehub create-admin EMAIL` creates or promotes an admin; run from outside the
checkout, against the test run's database."""

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from test_run import STARTUP_S, Node, data_dir, free_port, login, node_env, wait_ready  # noqa: F401

LIVEHUB = Path(sys.executable).with_name("livehub")


@pytest.fixture
def env(database_url, db):
    """The subprocess's environment: this run's database (emptied by `db`), no Redis."""
    return {"DATABASE_URL": database_url}


def livehub(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`livehub ARGS...` run in `cwd` (also its LIVEHUB_DATA_DIR), outside the checkout, with `env` added."""
    if not LIVEHUB.exists():
        pytest.fail(f"{LIVEHUB} is missing: reinstall with `pip install -e .`")
    return subprocess.run(
        [str(LIVEHUB), *args],
        cwd=cwd,
        timeout=STARTUP_S,
        env=node_env(cwd, **env),
        capture_output=True,
        text=True,
    )


def test_help_lists_the_subcommands(data_dir):  # noqa: F811
    shown = livehub(data_dir, "--help")
    assert shown.returncode == 0, shown.stderr
    assert "serve" in shown.stdout and "create-admin" in shown.stdout

    bare = livehub(data_dir)
    assert bare.returncode == 2 and "usage: livehub" in bare.stderr

    unknown = livehub(data_dir, "frobnicate")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr

    serve_help = livehub(data_dir, "serve", "--help")
    assert serve_help.returncode == 0
    assert all(option in serve_help.stdout for option in ("--host", "--port", "--demo", "--workers"))


async def test_serve_demo_then_create_admin(data_dir, env, db):  # noqa: F811
    node = Node(data_dir, "--demo", env=env, command=(str(LIVEHUB), "serve"), cwd=data_dir)
    try:
        assert "viewer1@demo.livehub" in node.banner and "demo-password" in node.banner
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, node.url)
            await login(session, node.url, "viewer7@demo.livehub", "demo-password")
            async with session.get(node.url + "/api/streams?status=live") as res:
                assert len((await res.json())["items"]) == 1
    finally:
        assert node.stop() == 0

    created = livehub(
        data_dir, "create-admin", "Boss@Example.test", LIVEHUB_ADMIN_PASSWORD="a long admin password", **env
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert "created admin boss@example.test" in created.stdout
    assert "admin" in await db.fetchval("SELECT roles FROM users WHERE email = 'boss@example.test'")

    promoted = livehub(
        data_dir, "create-admin", "viewer3@demo.livehub", LIVEHUB_ADMIN_PASSWORD="another password", **env
    )
    assert promoted.returncode == 0 and "promoted admin viewer3@demo.livehub" in promoted.stdout
    assert "admin" in await db.fetchval("SELECT roles FROM users WHERE email = 'viewer3@demo.livehub'")

    short = livehub(data_dir, "create-admin", "x@example.test", LIVEHUB_ADMIN_PASSWORD="short", **env)
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    assert await db.fetchval("SELECT count(*) FROM users WHERE email = 'x@example.test'") == 0


def test_serve_workers_need_redis(data_dir, env):  # noqa: F811
    refused = livehub(data_dir, "serve", "--workers", "2", "--port", str(free_port()), **env)
    assert refused.returncode == 2 and "needs REDIS_URL" in refused.stderr
