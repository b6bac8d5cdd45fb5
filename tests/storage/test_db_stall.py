"""A database that stops answering: a node on a private embedded PostgreSQL whose every process is stopped
(SIGSTOP) for ten seconds while REST calls, websocket buys and chat go on. Every caller gets an answer
within about three seconds (the budgets: one second for a connection, two per statement), nothing is
half-done, and the node serves again by itself once the server continues (SIGCONT).

Never the shared server on 127.0.0.1:5432: other tests and engineers use it."""

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from conftest import Factory, settings_for
from helpers import assert_books_balanced, top_up
from live_helpers import Viewer, live_show
from livehub.app import create_app
from storage.db import init_connection, migrate

STALL_S = 10
# About three seconds: a connection within 1 s, a statement within 2 s; the rest is this machine's slack.
ANSWER_WITHIN_S = 4.0
RESUME_WITHIN_S = 30


@pytest.fixture
def stallable(private_postgres):
    """The test's own PostgreSQL, resumed whatever happened (before it is stopped): never left stopped."""
    yield private_postgres
    resume(private_postgres)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, StopIteration):
                status = (entry / "status").read_text()
                if int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def resume(pg) -> None:
    if pg.pid is None:
        return
    for pid in [pg.pid, *children(pg.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def stalled(pg):
    """Every process of the cluster stopped: the postmaster first, so that it forks nothing meanwhile."""
    os.kill(pg.pid, signal.SIGSTOP)
    try:
        for pid in children(pg.pid):
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        resume(pg)


class Calls:
    """Every call made while the database is stalled: what it answered and how long that took."""

    def __init__(self) -> None:
        self.answers: Counter[tuple[str, str]] = Counter()
        self.slow: list[tuple[str, str, float]] = []
        self.longest: dict[str, float] = {}

    @contextlib.asynccontextmanager
    async def timed(self, kind: str):
        started = time.monotonic()
        answer = {}
        yield answer
        took = time.monotonic() - started
        self.answers[(kind, answer.get("as", "?"))] += 1
        self.longest[kind] = round(max(took, self.longest.get(kind, 0)), 2)
        if took > ANSWER_WITHIN_S:
            self.slow.append((kind, answer.get("as", "?"), round(took, 2)))


async def test_a_stalled_database_costs_callers_seconds_and_nothing_is_half_done(aiohttp_client, stallable):
    private_postgres = stallable
    url = private_postgres.dsn
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    await migrate(conn)
    settings = settings_for(url)
    client = await aiohttp_client(create_app(settings))
    make = Factory(client, conn)

    show = await live_show(make, products=1, stock=10_000, price=100)
    variant = show.variant()
    buyers = [await make.user() for _ in range(4)]
    for buyer in buyers:
        await top_up(client, buyer, 1_000_000)
    viewers = [await Viewer.connect(client, show.id, buyer) for buyer in buyers[:3]]
    assert (await viewers[0].request("buy", variant_id=variant))["status"] == "ok"

    calls = Calls()
    order = {"items": [{"variant_id": variant, "quantity": 1}]}
    rest = [
        ("GET /readyz", lambda b: client.get("/readyz")),
        ("GET /api/products", lambda b: client.get("/api/products")),
        ("GET /api/me", lambda b: client.get("/api/me", headers=b.headers)),
        ("POST /api/cart/items", lambda b: client.post("/api/cart/items", json=order["items"][0], headers=b.headers)),
        ("POST /api/orders", lambda b: client.post("/api/orders", json=order, headers=b.headers)),
    ]

    async def rest_caller(kind, send, buyer, until):
        while time.monotonic() < until:
            async with calls.timed(kind) as answer:
                res = await send(buyer)
                body = await res.json()
                answer["as"] = str(res.status) if res.status < 400 else f"{res.status} {body['error']['code']}"
            assert res.status < 500 or answer["as"] == "503 unavailable", (kind, body)

    async def ws_caller(kind, viewer, frame, until):
        while time.monotonic() < until:
            async with calls.timed(kind) as answer:
                reply = await viewer.request(kind, **frame)
                answer["as"] = " ".join(str(v) for v in (reply.get("status") or reply["type"], reply.get("code")) if v)
            if kind == "chat":
                await asyncio.sleep(0.6)  # pacing, under the chat rate limit

    until = time.monotonic() + STALL_S
    with stalled(private_postgres):
        await asyncio.gather(
            *(rest_caller(kind, send, buyers[3], until) for kind, send in rest),
            ws_caller("buy", viewers[0], {"variant_id": variant}, until),
            ws_caller("buy", viewers[1], {"variant_id": variant}, until),
            ws_caller("chat", viewers[2], {"text": "still there?"}, until),
        )
    assert not calls.slow, f"answered too late: {calls.slow}; all answers: {dict(calls.answers)}"
    # The readiness probe keeps its own budget of 2 s.
    assert calls.longest["GET /readyz"] < 3, calls.longest
    # The stall was real: calls that need the database were told it is away.
    assert calls.answers[("GET /api/products", "503 unavailable")] > 0, dict(calls.answers)
    assert calls.answers[("buy", "error")] > 0, dict(calls.answers)
    assert calls.answers[("chat", "ack")] > 0, dict(calls.answers)

    # Service resumes by itself.
    deadline = time.monotonic() + RESUME_WITHIN_S
    while (await client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, "the node never became ready again"
        await asyncio.sleep(0.1)
    while (res := await client.post("/api/orders", json=order, headers=buyers[3].headers)).status != 201:
        assert time.monotonic() < deadline, await res.text()
        await asyncio.sleep(0.1)
    assert (await viewers[1].request("buy", variant_id=variant))["status"] == "ok"
    for viewer in viewers:
        await viewer.close()

    # Nothing half-done.
    await assert_books_balanced(conn)
    uncharged = await conn.fetch(
        """SELECT o.id FROM orders o
             LEFT JOIN ledger_entries e ON e.order_id = o.id AND e.type = 'purchase'
             LEFT JOIN accounts a ON a.id = e.account_id AND a.kind = 'wallet'
            GROUP BY o.id, o.total_cents
           HAVING coalesce(-sum(e.amount_cents) FILTER (WHERE a.id IS NOT NULL), 0) <> o.total_cents"""
    )
    assert not uncharged, uncharged
    unaccounted = await conn.fetch(
        """SELECT v.sku, v.stock, sum(m.delta) AS moved FROM variants v
             LEFT JOIN stock_movements m ON m.variant_id = v.id
            GROUP BY v.id HAVING v.stock <> coalesce(sum(m.delta), 0)"""
    )
    assert not unaccounted, unaccounted
    sold = await conn.fetchval("SELECT 10000 - stock FROM variants WHERE id = $1", variant)
    assert sold == await conn.fetchval(
        "SELECT coalesce(sum(quantity), 0) FROM order_items WHERE variant_id = $1", variant
    )
    await conn.close()
