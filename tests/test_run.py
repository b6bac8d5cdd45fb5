"""The README's first command, end to end: `python run.py --demo` with no DATABASE_URL starts an embedded
PostgreSQL, seeds the demo, serves it, and leaves no server behind when stopped. Then `create-admin`."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest

from conftest import ROOT
from redis_server import redis_url  # noqa: F401

STARTUP_S = 90
RUN_PY = (sys.executable, "run.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


@pytest.fixture
def data_dir():
    base = Path(tempfile.mkdtemp(prefix="livehub-run-"))
    base.chmod(0o755)  # as root the embedded server runs as `nobody`, which must reach its data
    yield base
    shutil.rmtree(base, ignore_errors=True)


def node_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LIVEHUB_DATABASE_URL", "REDIS_URL")}
    env.update(LIVEHUB_DATA_DIR=str(data_dir), LIVEHUB_PASSWORD_MEMORY_KIB="8192", LIVEHUB_LOG_LEVEL="WARNING")
    env.update(extra)
    return env


class Node:
    """`run.py --port P ARGS...` (or another `command`, such as `livehub serve`), up to its banner."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None, command=RUN_PY, cwd=ROOT):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), *args],
            cwd=cwd,
            env=node_env(data_dir, **(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.banner = self._wait_for_banner()

    def _wait_for_banner(self) -> str:
        lines = []
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "running at" in line and "--demo" not in self.proc.args or "password" in line:
                return "".join(lines)
        self.stop()
        pytest.fail(f"{' '.join(self.proc.args[:2])} did not start:\n" + "".join(lines))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.stdout.close()
        return code

    def stop_and_read(self) -> str:
        """Stop the node (SIGTERM) and return everything it wrote after its banner."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            output, _ = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        return output


async def wait_ready(session: aiohttp.ClientSession, url: str, *, tries: int = 100) -> None:
    for _ in range(tries):
        try:
            async with session.get(url + "/readyz") as res:
                if res.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail("node never became ready")


async def login(session, url, email, password) -> dict:
    async with session.post(url + "/api/auth/login", json={"email": email, "password": password}) as res:
        assert res.status == 200, await res.text()
        return await res.json()


async def test_demo_node_with_embedded_postgres(data_dir):
    node = Node(data_dir, "--demo")
    try:
        assert "viewer1@demo.livehub" in node.banner and "demo-password" in node.banner
        # No LIVEHUB_SMTP_URL: emails are written as files, and the banner says where.
        assert f"LiveHub email goes to .eml files in {(data_dir / 'mail').resolve()}" in node.banner
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, node.url)
            await login(session, node.url, "viewer7@demo.livehub", "demo-password")
            async with session.get(node.url + "/api/products?limit=100") as res:
                products = (await res.json())["items"]
            assert len(products) >= 5
            async with session.get(node.url + "/") as res:
                assert res.status == 200 and "LiveHub" in await res.text()
            # A new user finds a live room at once, with a product pinned.
            async with session.get(node.url + "/api/streams?status=live") as res:
                (stream,) = (await res.json())["items"]
            async with session.ws_connect(f"{node.url.replace('http', 'ws')}/ws/streams/{stream['id']}") as ws:
                welcome = await ws.receive_json(timeout=10)
            assert welcome["stream"]["status"] == "live" and welcome["state"]["pinned"] is not None
        pid = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        assert alive(pid)
    finally:
        code = node.stop()
    assert code == 0
    assert not alive(pid), "the embedded PostgreSQL must stop with the node"

    # create-admin against the same embedded data, then a restart (seeding again is a no-op).
    result = subprocess.run(
        [sys.executable, "run.py", "create-admin", "Boss@Example.test"],
        cwd=ROOT,
        timeout=STARTUP_S,
        env=node_env(data_dir, LIVEHUB_ADMIN_PASSWORD="a long admin password"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created admin boss@example.test" in result.stdout

    node = Node(data_dir, "--demo")
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, node.url)
            boss = await login(session, node.url, "boss@example.test", "a long admin password")
            assert "admin" in boss["user"]["roles"]
            async with session.get(node.url + "/api/products?limit=100") as res:
                assert len((await res.json())["items"]) == len(products)
    finally:
        assert node.stop() == 0


async def test_workers_share_one_port_and_need_redis(data_dir, redis_url):  # noqa: F811
    refused = subprocess.run(
        [sys.executable, "run.py", "--workers", "2", "--port", str(free_port())],
        cwd=ROOT,
        timeout=STARTUP_S,
        env=node_env(data_dir),
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "needs REDIS_URL" in refused.stderr

    node = Node(data_dir, "--workers", "2", env={"REDIS_URL": redis_url, "LIVEHUB_REDIS_PREFIX": f"run{os.getpid()}"})
    try:
        seen = set()
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, node.url)
            # Each request on a new connection, which the kernel gives to either listening process; the
            # second may still be starting (importing aiortc takes a while on a busy machine), so keep
            # asking until both have answered or STARTUP_S has passed.
            deadline = time.monotonic() + STARTUP_S
            while len(seen) < 2 and time.monotonic() < deadline:
                async with session.get(node.url + "/healthz", headers={"Connection": "close"}) as res:
                    seen.add((await res.json())["node"])
                await asyncio.sleep(0.01)
        assert len(seen) == 2, "only one worker answered"
    finally:
        assert node.stop() == 0


async def test_the_access_log_never_shows_secrets(data_dir, database_url):
    """A node's access log as it is written, for requests carrying secrets in their query string (a
    websocket's ?token=, however spelt) and in a Referer: the secrets are replaced, the rest stays."""
    node = Node(data_dir, env={"DATABASE_URL": database_url, "LIVEHUB_LOG_LEVEL": "INFO"})
    secrets = [f"S3CRET{i}x" for i in range(7)]
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, node.url)
            ws_url = node.url.replace("http", "ws")
            async with session.ws_connect(f"{ws_url}/ws/me?token={secrets[0]}") as ws:
                await ws.close()
            for path in (
                f"/api/products?limit=5&access_token={secrets[1]}",
                f"/api/me?%74oken={secrets[2]}&Password={secrets[3]}",
                f"/healthz?api_key={secrets[4]}&client_secret={secrets[5]}",
            ):
                async with session.get(node.url + path, headers={"Referer": f"{node.url}/x?code={secrets[6]}"}) as res:
                    await res.read()
    finally:
        log = node.stop_and_read()
    requests = [line for line in log.splitlines() if '"GET /' in line]
    assert len(requests) >= 5, log
    assert not [s for s in secrets if s in log], log
    assert "/api/products?limit=5&access_token=[redacted]" in log
    assert "/ws/me?token=[redacted]" in log
    assert "/x?code=[redacted]" in log


def postmaster(data_dir: Path) -> tuple[int, int]:
    """The embedded PostgreSQL's (pid, port), from its lock file."""
    lines = (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()
    return int(lines[0]), int(lines[3])


async def test_a_killed_embedded_database_is_restarted_by_the_node(data_dir):
    node = Node(data_dir)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, node.url)
            body = {"email": "kept@example.test", "password": "long enough pw", "display_name": "Kept"}
            async with session.post(node.url + "/api/auth/register", json=body) as res:
                assert res.status == 201, await res.text()
            old_pid, port = postmaster(data_dir)
            os.kill(old_pid, signal.SIGKILL)

            # Back by itself, same data; the node says it was alive all along, and what its database does.
            states = set()
            deadline = time.monotonic() + STARTUP_S
            while True:
                async with session.get(node.url + "/healthz") as res:
                    assert res.status == 200, await res.text()
                    states.add((await res.json())["embedded_database"])
                async with session.get(node.url + "/readyz") as res:
                    if res.status == 200 and postmaster(data_dir)[0] != old_pid:
                        break
                assert time.monotonic() < deadline, f"the database never came back; states seen: {states}"
                await asyncio.sleep(0.2)
            await login(session, node.url, "kept@example.test", "long enough pw")
            assert postmaster(data_dir)[1] == port
            # The watcher says "running" once its restart call has returned, which may be just after the
            # database began to answer.
            while True:
                async with session.get(node.url + "/healthz") as res:
                    if (await res.json())["embedded_database"] == "running":
                        break
                assert time.monotonic() < deadline, "the node never said its database is running again"
                await asyncio.sleep(0.1)
        new_pid = postmaster(data_dir)[0]
    finally:
        code = node.stop()
    assert code == 0
    assert not alive(new_pid), "the restarted PostgreSQL must stop with the node"


async def test_an_embedded_database_that_cannot_come_back_stops_the_node_with_status_1(data_dir):
    node = Node(data_dir, env={"LIVEHUB_EMBEDDED_DB_RESTART_S": "2"})
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, node.url)
        pid, port = postmaster(data_dir)
        os.kill(pid, signal.SIGKILL)
        # Its port taken meanwhile: the server cannot listen where the node's connections point.
        deadline = time.monotonic() + STARTUP_S
        while True:
            try:
                squatter = socket.create_server(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, "the port never came free"
                await asyncio.sleep(0.05)
        with squatter:
            code = await asyncio.to_thread(node.proc.wait, STARTUP_S)
        output = node.proc.stdout.read()
    finally:
        if node.proc.poll() is None:
            node.stop()
        else:
            node.proc.stdout.close()
    assert code == 1, output
    assert "could not be restarted" in output
