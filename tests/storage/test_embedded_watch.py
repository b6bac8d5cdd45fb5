"""A node's watch over its embedded PostgreSQL (livehub/dbwatch.py), in process: once the server has died
and cannot be restarted, /healthz says so (503) and the node stops itself as SIGTERM would. (Restarting,
and run.py's exit status, are tested on real node processes in tests/test_run.py.)"""

import asyncio
import os
import signal
import socket
import time

import pytest

from helpers import error_of
from livehub.app import create_app

WAIT_S = 60


@pytest.fixture
def sigterm():
    """SIGTERMs this process gets meanwhile, counted instead of ending it."""
    received = []
    previous = signal.signal(signal.SIGTERM, lambda *_: received.append(time.monotonic()))
    yield received
    signal.signal(signal.SIGTERM, previous)


async def test_healthz_is_503_when_the_embedded_database_is_gone_for_good(
    aiohttp_client, settings, private_postgres, sigterm
):
    embedded = private_postgres
    settings = settings.model_copy(update={"database_url": embedded.dsn, "embedded_db_restart_s": 0.5})
    client = await aiohttp_client(create_app(settings, embedded=embedded))
    res = await client.get("/healthz")
    assert res.status == 200 and (await res.json())["embedded_database"] == "running"

    port = embedded.port
    os.kill(embedded.pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_S
    while True:  # the port free once the postmaster is gone: take it, so no restart can listen there
        try:
            squatter = socket.create_server(("127.0.0.1", port))
            break
        except OSError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    with squatter:
        while (res := await client.get("/healthz")).status == 200:
            assert time.monotonic() < deadline, "never gave up"
            await asyncio.sleep(0.1)
        err = await error_of(res, 503, "unavailable")
        assert err["details"] == {"embedded_database": "gone"}
        assert sigterm, "the node did not stop itself"
