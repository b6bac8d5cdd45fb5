"""Auctions at scale: 500 concurrent bidders (real websocket clients) on one auction over two nodes on one
Redis, and a node killed with SIGKILL mid-auction. Exactly one winner at the highest valid bid, every
outbid hold released, the books balanced, stock and earnings right, and the end decided once."""

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from conftest import ROOT, Factory, settings_for
from helpers import assert_books_balanced, give_addresses
from live_helpers import Viewer, live_show
from livehub.app import create_app
from livehub.auth import hash_token, new_token
from redis_server import free_port, redis_url  # noqa: F401

START = 1_000  # cents: the auction's opening price
INCREMENT = 100
RICH = 100_000  # a bidder's wallet: more than any bid here
POOR = 2_000  # a wallet too small for the bid its owner makes
STOCK = 5
CONNECTS_AT_ONCE = 50  # websocket handshakes in flight (each signs in through a node's pool)
FEE_BPS = settings_for("postgresql://unused").platform_fee_bps


def node_settings(database_url: str, redis: str, prefix: str):
    return settings_for(database_url).model_copy(
        update={
            "redis_url": redis,
            "redis_prefix": prefix,
            "tick_ms": 20,
            "presence_interval_s": 0.2,
            "room_history_ttl_s": 120,
            "db_pool_max": 20,
        }
    )


async def bidders_by_sql(db, wallets: list[int]) -> list[tuple[str, str]]:
    """One signed-in user per wallet figure (users and sessions by SQL: 500 registrations through argon2
    would be most of the test's time), each wallet topped up through the ledger: [(user id, token)]."""
    tag = secrets.token_hex(3)
    tokens = [new_token() for _ in wallets]
    async with db.transaction():
        ids = await db.fetchval(
            """WITH u AS (INSERT INTO users (email, display_name, password_hash, email_verified_at)
                          SELECT 'bidder-' || $1 || '-' || i || '@example.test', 'Bidder ' || i, 'no login', now()
                            FROM generate_series(1, $2) i RETURNING id, email)
               SELECT array_agg(id ORDER BY length(email), email) FROM u""",
            tag,
            len(wallets),
        )
        await db.execute(
            """INSERT INTO sessions (token_hash, user_id, expires_at)
               SELECT h, u, now() + interval '1 day' FROM unnest($1::bytea[], $2::uuid[]) AS x(h, u)""",
            [hash_token(t) for t in tokens],
            ids,
        )
        await give_addresses(db, ids)
    await db.execute(
        "SELECT top_up(u, w, 'auction test') FROM unnest($1::uuid[], $2::bigint[]) AS x(u, w)", ids, wallets
    )
    return [(str(i), t) for i, t in zip(ids, tokens, strict=True)]


async def connect_all(clients: list, stream_id: str, tokens: list[str]) -> list[Viewer]:
    """Bidder i on clients[i % len(clients)], CONNECTS_AT_ONCE handshakes at a time."""
    gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

    async def one(i: int, token: str) -> Viewer:
        async with gate:
            viewer = await Viewer.connect(clients[i % len(clients)], stream_id, token=token)
            assert viewer.welcome is not None, viewer.frames[-3:]
            return viewer

    async with asyncio.timeout(120):
        return await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens)))


async def start_auction(host: Viewer, variant_id: str, **fields) -> dict:
    body = {"variant_id": variant_id, "start_cents": START, "increment_cents": INCREMENT, **fields}
    reply = await host.request("auction", **body)
    assert reply["type"] == "ack", reply
    events = await host.wait_for(lambda v: v.of_type("auction"))
    return events[-1]["auction"] if "auction" in events[-1] else events[-1]


def auction_of(event: dict) -> dict:
    # The event is `{type: auction, ...fields}` or `{type: auction, auction: {...}}`: read either.
    return event.get("auction", event)


def ended_events(viewer: Viewer) -> list[dict]:
    return [auction_of(e) for e in viewer.of_type("auction") if auction_of(e).get("ended")]


async def bid_all(viewers: list[Viewer], auction_id: str, amounts: list[int]) -> list[dict]:
    """Every viewer sends its one bid at once; every one is answered with a bid_result."""
    rids = [f"b{i}-{time.monotonic_ns()}" for i in range(len(viewers))]
    await asyncio.gather(
        *(
            v.send(type="bid", auction_id=auction_id, amount_cents=a, request_id=r)
            for v, a, r in zip(viewers, amounts, rids, strict=True)
        )
    )

    async def reply(v: Viewer, rid: str) -> dict:
        return await v.wait_for(lambda w: next((f for f in w.frames if f.get("request_id") == rid), None), 60)

    results = await asyncio.gather(*(reply(v, r) for v, r in zip(viewers, rids, strict=True)))
    assert all(r["type"] == "bid_result" for r in results), [r for r in results if r["type"] != "bid_result"][:3]
    return results


async def barrier(host: Viewer, *viewers: Viewer) -> None:
    """A chat line from the host, seen by every viewer: every durable event published before it has been
    delivered to them (the room's events are in one order)."""
    text = f"barrier {secrets.token_hex(4)}"
    assert (await host.request("chat", text=text))["type"] == "ack"
    for v in viewers:
        await v.wait_for(lambda w: any(e.get("text") == text for e in w.of_type("chat")), 30)


async def wallets(db, user_ids: list[str]) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT user_id::text, balance_cents FROM accounts WHERE kind = 'wallet' AND user_id = ANY($1::uuid[])",
        user_ids,
    )
    return {r["user_id"]: r["balance_cents"] for r in rows}


async def held(db, user_ids: list[str]) -> dict[str, int]:
    """What the bidders have in any account but their wallet (an auction's holds): all of it must be gone."""
    rows = await db.fetch(
        """SELECT kind, sum(balance_cents)::bigint AS cents FROM accounts
            WHERE user_id = ANY($1::uuid[]) AND kind <> 'wallet' GROUP BY kind""",
        user_ids,
    )
    return {r["kind"]: r["cents"] for r in rows if r["cents"]}


async def check_settled(db, show, bidders: list[tuple[str, str]], top_ups: list[int], winner: int, price: int):
    """One order (the winner's, at the price), the stock one less, the seller's earning the price less the
    platform's fee, every other wallet back to its top-up, no hold left, the books balanced."""
    ids = [u for u, _ in bidders]
    orders = await db.fetch("SELECT id, buyer_id::text, total_cents FROM orders WHERE stream_id = $1", show.id)
    assert [(o["buyer_id"], o["total_cents"]) for o in orders] == [(ids[winner], price)]
    balances = await wallets(db, ids)
    expected = {u: w - (price if i == winner else 0) for i, (u, w) in enumerate(zip(ids, top_ups, strict=True))}
    wrong = {u: (balances.get(u), want) for u, want in expected.items() if balances.get(u) != want}
    assert not wrong, f"{len(wrong)} wallets wrong, e.g. {list(wrong.items())[:3]}"
    assert await held(db, ids) == {}
    stock = await db.fetchval("SELECT stock FROM variants WHERE id = $1", show.variant())
    assert stock == STOCK - 1
    earned = await db.fetchval(
        "SELECT balance_cents FROM accounts WHERE user_id = $1 AND kind = 'earnings_pending'", show.seller.id
    )
    assert earned == price - price * FEE_BPS // 10_000
    await assert_books_balanced(db)
    return orders[0]["id"]


# -- 500 bidders, two nodes ------------------------------------------------------------------------------

BIDDERS = 500
# Bidder i bids START + i * INCREMENT, all at once. The three highest bids but one come from wallets too
# small for them: the highest VALID bid is bidder 497's.
TOO_POOR = (499, 498, 496)
WINNER = 497


@pytest.fixture
async def nodes(aiohttp_client, database_url, redis_url, db):  # noqa: F811
    prefix = f"t{secrets.token_hex(4)}"
    return [
        await aiohttp_client(
            create_app(node_settings(database_url, redis_url, prefix)),
            connector=aiohttp.TCPConnector(limit=0),
        )
        for _ in range(2)
    ]


async def test_500_bidders_on_two_nodes_one_winner_at_the_highest_valid_bid(nodes, db):
    a, b = nodes
    make = Factory(a, db)
    show = await live_show(make, products=1, stock=STOCK)
    top_ups = [POOR if i in TOO_POOR else RICH for i in range(BIDDERS)]
    bidders = await bidders_by_sql(db, top_ups)
    viewers = await connect_all([a, b], show.id, [t for _, t in bidders])
    host = await Viewer.connect(a, show.id, show.seller)
    watcher_b = viewers[1]  # on node B
    auction = await start_auction(host, show.variant(), duration_s=15, mode="standard")
    auction_id = auction["id"]
    await watcher_b.wait_for(lambda v: v.of_type("auction"))

    amounts = [START + i * INCREMENT for i in range(BIDDERS)]
    results = await bid_all(viewers, auction_id, amounts)
    statuses = Counter(r["status"] for r in results)
    assert set(statuses) <= {"leading", "outbid", "too_low", "insufficient_funds"}, statuses
    for i in TOO_POOR:
        assert results[i]["status"] in ("insufficient_funds", "too_low"), (i, results[i])
    # The highest valid bid is above every other valid one by an increment, whenever it arrived: accepted.
    assert results[WINNER]["status"] == "leading", results[WINNER]
    assert statuses["leading"] >= 1

    # Both nodes' timers race to close it; the database lets one do it.
    limit = 60
    ended = await host.wait_for(lambda v: ended_events(v), timeout=limit)
    await watcher_b.wait_for(lambda v: ended_events(v), timeout=limit)
    await barrier(host, watcher_b, viewers[0])
    for v in (host, watcher_b, viewers[0]):
        assert len(ended_events(v)) == 1, ended_events(v)
    final = ended[0]
    winner_id = bidders[WINNER][0]
    assert final["winner"]["id"] == winner_id, final
    assert final["current_cents"] == amounts[WINNER], final
    assert final["leader"] is None or final["leader"]["id"] == winner_id
    assert ended_events(watcher_b)[0]["order_id"] == final["order_id"]

    order_id = await check_settled(db, show, bidders, top_ups, WINNER, amounts[WINNER])
    assert str(order_id) == str(final["order_id"])
    # Every bid decided once, as its bidder was told.
    rows = await db.fetch("SELECT status FROM auction_bids WHERE auction_id = $1", auction_id)
    assert Counter(r["status"] for r in rows) == statuses
    for v in (*viewers, host):
        await v.close()


# -- a node killed mid-auction ---------------------------------------------------------------------------


class SubprocessNode:
    """A real node (run.py) in a process of its own on the test database and Redis under `prefix`."""

    def __init__(self, database_url: str, redis: str, prefix: str):
        self.port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LIVEHUB_")},
            "DATABASE_URL": database_url,
            "REDIS_URL": redis,
            "LIVEHUB_REDIS_PREFIX": prefix,
            "LIVEHUB_DATA_DIR": tempfile.mkdtemp(prefix="livehub-auction-node-"),
            "LIVEHUB_PASSWORD_MEMORY_KIB": "8192",
            "LIVEHUB_PASSWORD_TIME_COST": "1",
            "LIVEHUB_LOG_LEVEL": "WARNING",
            "LIVEHUB_TICK_MS": "20",
            "LIVEHUB_PRESENCE_INTERVAL_S": "0.2",
            "LIVEHUB_ROOM_HISTORY_TTL_S": "120",
        }
        self.log = Path(env["LIVEHUB_DATA_DIR"]) / "node.log"
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.session = aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{self.port}", connector=aiohttp.TCPConnector(limit=0)
        )

    async def ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-2000:]
            try:
                async with self.session.get("/readyz") as res:
                    if res.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError("the node did not start: " + self.log.read_text(errors="replace")[-2000:])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    async def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        await self.session.close()
        self._out.close()


KILL_BIDDERS = 60  # half on the node that is killed


async def test_a_node_killed_mid_auction_the_other_ends_it_once_with_the_right_winner(
    aiohttp_client,
    database_url,
    redis_url,  # noqa: F811
    db,
):
    prefix = f"t{secrets.token_hex(4)}"
    doomed = SubprocessNode(database_url, redis_url, prefix)
    try:
        # Up before node A and any data: each node rebuilds the storage functions as it starts.
        await doomed.ready()
        a = await aiohttp_client(
            create_app(node_settings(database_url, redis_url, prefix)), connector=aiohttp.TCPConnector(limit=0)
        )
        make = Factory(a, db)
        show = await live_show(make, products=1, stock=STOCK)
        top_ups = [RICH] * KILL_BIDDERS
        bidders = await bidders_by_sql(db, top_ups)
        # Even bidders on the doomed node, odd ones on A; the host (who starts the auction) on the doomed one.
        viewers = await connect_all([doomed.session, a], show.id, [t for _, t in bidders])
        on_doomed, on_a = viewers[0::2], viewers[1::2]
        host = await Viewer.connect(doomed.session, show.id, show.seller)
        watcher = await Viewer.connect(a, show.id, show.seller)  # the host again, on A
        auction = await start_auction(host, show.variant(), duration_s=20, mode="sudden_death")
        auction_id = auction["id"]
        await watcher.wait_for(lambda v: v.of_type("auction"))

        # Before the kill: everyone bids at once; the highest bid comes from a bidder on the doomed node.
        amounts = [START + i * INCREMENT for i in range(KILL_BIDDERS)]
        top = max(range(0, KILL_BIDDERS, 2), key=lambda i: amounts[i])
        amounts[top] = START + KILL_BIDDERS * INCREMENT * 2  # above everything anyone bids here
        results = await bid_all(viewers, auction_id, amounts)
        assert results[top]["status"] == "leading", results[top]
        await watcher.wait_for(
            lambda v: any(auction_of(e).get("current_cents") == amounts[top] for e in v.of_type("auction"))
        )

        # Killed while bids are in flight on it (each below the leader: whether or not their batch committed,
        # the winner is the same): a batch cut off mid-transaction rolls back whole.
        await asyncio.gather(
            *(
                v.send(type="bid", auction_id=auction_id, amount_cents=amounts[top] - INCREMENT, request_id=f"k{i}")
                for i, v in enumerate(on_doomed)
            )
        )
        doomed.kill()
        ends_at = auction_of(watcher.of_type("auction")[-1])["ends_at"]
        # After: the bidders on A bid again, each below the leader: refused, the leader stays.
        later = await bid_all(on_a, auction_id, [amounts[top] - INCREMENT] * len(on_a))
        assert {r["status"] for r in later} <= {"too_low", "outbid"}, Counter(r["status"] for r in later)

        # Only A's timer is left to close it.
        ended = await watcher.wait_for(lambda v: ended_events(v), timeout=60)
        await barrier(watcher, *on_a[:3])
        for v in (watcher, *on_a[:3]):
            assert len(ended_events(v)) == 1, ended_events(v)
        final = ended[0]
        assert final["ends_at"] == ends_at  # sudden death: no bid moved the end
        assert final["winner"]["id"] == bidders[top][0], final
        assert final["current_cents"] == amounts[top], final
        order_id = await check_settled(db, show, bidders, top_ups, top, amounts[top])
        assert str(order_id) == str(final["order_id"])
        for v in on_doomed:  # their node is gone: each socket closed
            await asyncio.wait_for(asyncio.shield(v._reader), 30)
        for v in (*on_a, watcher):
            await v.close()
    finally:
        await doomed.close()
