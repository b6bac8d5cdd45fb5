"""Auctions: bids settled per second on one auction, coalesced vs one bid per transaction, and the bid-to-result
latency of B bidders over websockets.

    python bench/auctions.py                          # both parts, defaults below
    python bench/auctions.py --part sql --bids 2000 --batches 1,50,200
    python bench/auctions.py --part ws --bidders 2000
    flock /tmp/livehub-bench.lock python bench/auctions.py      # measured runs

DATABASE_URL names the server (default ``postgresql://postgres@127.0.0.1:5432/livehub_bench_auctions``,
created if missing; ``test`` is refused). Bidders are made by SQL once per run (users, sessions with the
server's token hash, an address and a ``top_up`` each).

**sql**: the storage function that decides bids (``bid_batch``, one transaction per call), called
straight from one connection, as the room calls it: with batches of 1 (every bid its own transaction, the
uncoalesced baseline) and of N (the room's coalescing). Every bid is valid when it is decided (bid k of the
run is START + k x INCREMENT, from a bidder other than the one before), so each one holds the new
leader's amount and releases the previous leader's: the whole money path. Per row: a fresh auction on a
fresh stream, one untimed warm-up call, then ``--bids`` bids; settled/s = bids / wall time.

**ws**: a FRESH server process per row (``common.serve_livehub``, the in-process broker) on 127.0.0.1, with
the shipped settings (the room coalesces bids as buys: ``LIVEHUB_BUY_BATCH_MAX`` 50, ``LIVEHUB_BUY_WINDOW_MS``
5) and with ``LIVEHUB_BUY_BATCH_MAX=1`` (``--ws-batch-max``); a stream and an auction (600 s) through REST and
the host's socket; B bidders on
``/ws/streams/{id}?token=`` (``common.RawWebsocket`` on asyncio's loop, in this process); once all
are in, every bidder sends one ``{"type": "bid", "amount_cents", ...}`` at once, each a distinct amount
(bidder i: START + (i + 1) x INCREMENT), written in that order or shuffled (``--order``), and the time from
its frame written to its ``bid_result`` read is its latency (p50 / p99 by nearest rank, max). settled/s =
replies / (last reply - first bid written).

Checked afterwards, each row: every bid answered; the highest bid leads (sql: every bid ``leading``); one bid
row per bid; every bidder's wallet plus hold is its top-up (no money lost or made)
and only the leader has a hold; ``check_books()`` balanced. A failed check marks the row FAILED.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from common import (
    CHEAP_PASSWORD_HASHING,
    HOST,
    RawWebsocket,
    ensure_database,
    free_port,
    ints,
    loadavg,
    log,
    machine_facts,
    masked_text_frame,
    migrate,
    nearest_rank,
    serve_livehub,
    signed_in_users,
    spawn_server,
    stop_process,
    wait_ready,
    with_database,
)

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/livehub_bench_auctions"
START = 1_000
INCREMENT = 100
WALLET = 100_000_000  # cents per bidder: more than any bid here
PASSWORD = "auction bench password"
CONNECTS_IN_FLIGHT = 100
CONNECT_TIMEOUT_S = 30.0


# -- bidders and the shop ---------------------------------------------------------------------------


async def make_bidders(dsn: str, n: int, tag: str) -> tuple[list, list[str]]:
    """n users with a session each, by SQL: (user ids, bearer tokens)."""
    t0 = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        ids, tokens = await signed_in_users(conn, f"bid-{tag}", n, verified=True)
        await conn.execute("SELECT top_up(u, $2, 'auction bench') FROM unnest($1::uuid[]) u", ids, WALLET)
    finally:
        await conn.close()
    log(f"{n:,} bidders by SQL in {time.perf_counter() - t0:.1f} s")
    return ids, tokens


class Shop:
    """A seller (through REST, approved by SQL) and a fresh live stream per row, featuring one product."""

    def __init__(self, dsn: str, tag: str):
        self.dsn, self.tag = dsn, tag
        self.token = ""
        self.user_id = ""
        self.seq = 0
        self.live = ""

    async def post(self, http, path: str, body: dict | None = None, status: int = 200) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with http.post(path, json=body, headers=headers) as res:
            if res.status != status:
                raise RuntimeError(f"POST {path}: {res.status} {await res.text()}")
            return await res.json()

    async def seller(self, http) -> None:
        if self.token:
            return
        body = {"email": f"auction-seller-{self.tag}@bench.test", "password": PASSWORD, "display_name": "Seller"}
        registered = await self.post(http, "/api/auth/register", body, 201)
        self.token = registered["token"]
        self.user_id = registered["user"]["id"]
        http.cookie_jar.clear()
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("UPDATE users SET email_verified_at = now() WHERE id = $1", registered["user"]["id"])
            seller = (await self.post(http, "/api/sellers/apply", {"shop_name": f"Auctions {self.tag}"}, 201))["seller"]
            await conn.execute("SELECT set_seller_status($1, 'approved', NULL)", seller["id"])
        finally:
            await conn.close()

    async def stream(self, http) -> tuple[str, str]:
        await self.seller(http)
        self.seq += 1
        variant = {"sku": f"AUC-{self.tag}-{self.seq}", "price_cents": START, "stock": 10}
        product = (await self.post(http, "/api/products", {"title": "Lot", "variants": [variant]}, 201))["product"]
        body = {"title": f"Auction {self.seq}", "products": [{"product_id": product["id"]}]}
        stream_id = (await self.post(http, "/api/streams", body, 201))["stream"]["id"]
        if self.live:  # a shop is live in one stream at a time
            with contextlib.suppress(RuntimeError):
                await self.post(http, f"/api/streams/{self.live}/end")
        await self.post(http, f"/api/streams/{stream_id}/start")
        self.live = stream_id
        return stream_id, product["variants"][0]["id"]

    async def auction(self, http, stream_id: str, variant_id: str) -> str:
        """The host starts a 600 s auction over its socket: its id (from the `auction` event)."""
        async with http.ws_connect(f"/ws/streams/{stream_id}", params={"token": self.token}) as ws:
            frame = {"type": "auction", "variant_id": variant_id, "start_cents": START}
            await ws.send_json(frame | {"increment_cents": INCREMENT, "duration_s": 600, "mode": "standard"})
            async with asyncio.timeout(30):
                async for msg in ws:
                    data = orjson.loads(msg.data)
                    if data["type"] == "error":
                        raise RuntimeError(f"starting the auction: {data}")
                    for event in data.get("events", ()):
                        if event["type"] == "auction":
                            return str(event.get("auction", event)["id"])
        raise RuntimeError("no auction event")


async def check(dsn: str, auction_id: str, bidder_ids: list, want_bids: int, top: int | None) -> list[str]:
    """What a row must leave behind; the list of what is wrong."""
    conn = await asyncpg.connect(dsn)
    wrong = []
    try:
        a = await conn.fetchrow("SELECT bids, current_cents, leader_id FROM auctions WHERE id = $1", auction_id)
        rows = await conn.fetchval("SELECT count(*) FROM auction_bids WHERE auction_id = $1", auction_id)
        if rows != want_bids:
            wrong.append(f"{rows} bid rows for {want_bids} bids")
        if top is not None and a["current_cents"] != top:
            wrong.append(f"current {a['current_cents']}, the highest bid {top}")
        money = await conn.fetch(
            """SELECT user_id, sum(balance_cents) FILTER (WHERE kind = 'wallet') AS wallet,
                      coalesce(sum(balance_cents) FILTER (WHERE kind = 'hold'), 0) AS hold
                 FROM accounts WHERE user_id = ANY($1::uuid[]) GROUP BY user_id""",
            bidder_ids,
        )
        off = [r for r in money if r["wallet"] + r["hold"] != WALLET]
        if off:
            wrong.append(f"{len(off)} bidders' wallet + hold is not their top-up")
        holding = [r["user_id"] for r in money if r["hold"]]
        if holding not in ([], [a["leader_id"]]):
            wrong.append(f"{len(holding)} bidders hold money, not just the leader")
        books = orjson.loads(await conn.fetchval("SELECT check_books()::text"))
        if not books["balanced"]:
            wrong.append(f"books: {books}")
    finally:
        await conn.close()
    return wrong


# -- part 1: the storage function, batches of 1 vs batches of N ---------------------------------------


async def settle(conn, auction_id: str, bids: list[tuple]) -> dict:
    """One call of the function the room calls for a batch of bids (bid_batch): one transaction."""
    requests = [{"bidder_id": str(u), "amount_cents": amount, "request_id": rid} for u, amount, rid in bids]
    return orjson.loads(
        await conn.fetchval("SELECT bid_batch($1::uuid, $2::jsonb)::text", auction_id, orjson.dumps(requests).decode())
    )


async def sql_part(args, dsn: str, shop: Shop, ids: list, http) -> list[dict]:
    rows = []
    n = args.bids
    for run in range(args.runs):
        for batch in args.batches:
            stream_id, variant_id = await shop.stream(http)
            conn = await asyncpg.connect(dsn)
            try:
                # Started by SQL: this part measures the function alone, no room.
                auction = await conn.fetchval(
                    "SELECT start_auction($1, $2, $3, $4, $5, 600, 'standard', 10)::text",
                    stream_id,
                    shop.user_id,
                    variant_id,
                    START,
                    INCREMENT,
                )
                auction_id = orjson.loads(auction)["id"]
                # Bid k: START + k x INCREMENT from bidder k mod len(ids) (never the same bidder twice running).
                bids = [(ids[k % len(ids)], START + k * INCREMENT, f"s{run}-{batch}-{k}") for k in range(n + batch)]
                await settle(conn, auction_id, bids[:batch])  # warm-up, untimed
                answers = []
                t0 = time.perf_counter()
                for i in range(batch, n + batch, batch):
                    answers.append(await settle(conn, auction_id, bids[i : i + batch]))
                took = time.perf_counter() - t0
            finally:
                await conn.close()
            wrong = await check(dsn, auction_id, ids, n + batch, START + (n + batch - 1) * INCREMENT)
            statuses = Counter(r["status"] for a in answers for r in a["results"])
            if statuses != {"leading": n}:
                wrong.append(f"statuses {dict(statuses)}, not {n} leading")
            row = {"part": "sql", "run": run + 1, "batch": batch, "bids": n, "s": took, "per_s": n / took}
            row |= {"load": loadavg(), "failed": wrong}
            log(
                f"  sql run {run + 1} batch {batch:>4}: {n:,} bids in {took:.2f} s = {n / took:,.0f}/s "
                f"(load {row['load']}) {'ok' if not wrong else 'FAILED: ' + '; '.join(wrong)}"
            )
            rows.append(row)
    return rows


# -- part 2: B bidders over websockets ----------------------------------------------------------------


class Bidder(RawWebsocket):
    __slots__ = ("frame", "sent_ns", "reply_ns", "status", "waiting")

    def __init__(self, request: bytes, ready: asyncio.Future, waiting: dict):
        super().__init__(request, ready)
        self.frame = b""
        self.sent_ns = 0
        self.reply_ns = 0
        self.status: str | None = None
        self.waiting = waiting

    def on_text(self, payload) -> None:
        if payload.startswith((b'{"type":"bid_result"', b'{"type":"error"')):
            now = time.monotonic_ns()
            if self.sent_ns and self.status is None:
                msg = orjson.loads(payload)
                self.reply_ns = now
                self.status = msg.get("status") or "error:" + str(msg.get("code"))
                self.waiting["n"] -= 1
                if self.waiting["n"] <= 0 and not self.waiting["done"].done():
                    self.waiting["done"].set_result(None)
        elif not self.opened and payload.startswith(b'{"type":"welcome"'):
            self.opened = True
            self.ready.set_result(None)


async def connect_bidders(port: int, stream_id: str, tokens: list[str], waiting: dict) -> list[Bidder]:
    from common import handshake_request

    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    bidders: list[Bidder] = []

    async def one(token: str) -> None:
        async with gate:
            for attempt in range(3):
                path = f"/ws/streams/{stream_id}?token={token}"
                b = Bidder(handshake_request(HOST, port, path), loop.create_future(), waiting)
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        await loop.create_connection(lambda b=b: b, HOST, port)
                        await b.ready
                    bidders.append(b)
                    return
                except (OSError, TimeoutError, ConnectionError):
                    b.abort()
                    await asyncio.sleep(0.5 * (attempt + 1))
            raise RuntimeError("a bidder could not connect")

    await asyncio.gather(*(one(t) for t in tokens))
    return bidders


async def ws_part(args, dsn: str, shop: Shop, ids: list, tokens: list[str]) -> list[dict]:
    rows = []
    for run, batch_max in [(r, b) for r in range(args.runs) for b in args.ws_batch_max]:
        port = free_port()
        logfile = tempfile.NamedTemporaryFile(prefix="livehub-auction-server-", suffix=".log", delete=False)
        env = {"DATABASE_URL": dsn, **CHEAP_PASSWORD_HASHING}
        if batch_max:  # else the shipped settings
            env["LIVEHUB_BUY_BATCH_MAX"] = str(batch_max)
        server = spawn_server(Path(__file__).resolve(), port, env, logfile)
        bidders: list[Bidder] = []
        try:
            base = f"http://{HOST}:{port}"
            await wait_ready(base, server)
            async with aiohttp.ClientSession(base) as http:
                stream_id, variant_id = await shop.stream(http)
                auction_id = await shop.auction(http, stream_id, variant_id)
                loop = asyncio.get_running_loop()
                waiting = {"n": len(tokens), "done": loop.create_future()}
                t0 = time.perf_counter()
                bidders = await connect_bidders(port, stream_id, tokens, waiting)
                log(f"  ws run {run + 1}: {len(bidders):,} bidders connected in {time.perf_counter() - t0:.1f} s")
                await asyncio.sleep(1.0)  # the room is idle again after the joins
                # Bidder i bids START + (i + 1) x INCREMENT; `ascending`: written in that order (every bid leads
                # when decided in arrival order); `shuffled`: in an order fixed by --seed (most are outbid or
                # too low by the time they are decided).
                order = list(range(len(bidders)))
                if args.order == "shuffled":
                    random.Random(args.seed).shuffle(order)
                bidders = [bidders[i] for i in order]
                for i, b in enumerate(bidders):
                    body = {"type": "bid", "auction_id": auction_id, "amount_cents": START + (order[i] + 1) * INCREMENT}
                    b.frame = masked_text_frame(orjson.dumps(body | {"request_id": f"w{run}-{i}"}))
                load = loadavg()
                for b in bidders:
                    b.sent_ns = time.monotonic_ns()
                    b.transport.write(b.frame)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(waiting["done"]), args.timeout)
                answered = [b for b in bidders if b.reply_ns]
                lat = sorted((b.reply_ns - b.sent_ns) / 1e6 for b in answered)
                first = min(b.sent_ns for b in bidders)
                last = max((b.reply_ns for b in answered), default=first)
                burst = (last - first) / 1e9
                statuses = Counter(b.status for b in bidders)
                wrong = []
                if len(answered) != len(bidders):
                    wrong.append(f"{len(bidders) - len(answered)} bids unanswered")
                wrong += await check(dsn, auction_id, ids, len(answered), START + len(bidders) * INCREMENT)
                row = {
                    "part": "ws",
                    "run": run + 1,
                    "batch_max": batch_max or "shipped",
                    "order": args.order,
                    "bidders": len(bidders),
                    "replies": len(answered),
                    "burst_s": burst,
                    "per_s": len(answered) / burst if burst else 0.0,
                    "p50_ms": nearest_rank(lat, 0.50),
                    "p99_ms": nearest_rank(lat, 0.99),
                    "max_ms": lat[-1] if lat else float("nan"),
                    "statuses": dict(statuses),
                    "load": load,
                    "failed": wrong,
                }
                log(
                    f"  ws run {run + 1} batch_max {row['batch_max']}, {args.order}: "
                    f"{row['replies']:,} replies in {burst:.2f} s = {row['per_s']:,.0f}/s, "
                    f"p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms, max {row['max_ms']:.0f} ms, "
                    f"{dict(statuses)} (load {load}) {'ok' if not wrong else 'FAILED: ' + '; '.join(wrong)}"
                )
                rows.append(row)
                shop.live = ""
                with contextlib.suppress(RuntimeError):
                    await shop.post(http, f"/api/streams/{stream_id}/end")
        finally:
            for b in bidders:
                b.abort()
            stop_process(server)
            logfile.close()
            text = Path(logfile.name).read_text(errors="replace")
            os.unlink(logfile.name)
            bad = [ln for ln in text.splitlines() if " ERROR " in ln or "Traceback" in ln]
            if bad:
                log(f"  the server logged {len(bad)} errors, first: " + " | ".join(bad[:3]))
    return rows


# -- the run ----------------------------------------------------------------------------------------


async def main(args) -> None:
    dsn = os.environ.get("DATABASE_URL", DEFAULT_DSN)
    if dsn.rstrip("/").endswith("/postgres"):
        dsn = with_database(dsn, "livehub_bench_auctions")
    await ensure_database(dsn)
    facts = machine_facts()
    log(orjson.dumps(facts).decode())
    tag = secrets.token_hex(3)
    need = max(args.bidders if "ws" in args.part else 0, 500)
    ids, tokens = await make_bidders(dsn, need, tag)
    shop = Shop(dsn, tag)
    rows: list[dict] = []
    if "sql" in args.part:
        # The REST calls of the SQL part need a server too: one, with the shipped settings.
        port = free_port()
        server = spawn_server(Path(__file__).resolve(), port, {"DATABASE_URL": dsn, **CHEAP_PASSWORD_HASHING}, None)
        try:
            await wait_ready(f"http://{HOST}:{port}", server)
            async with aiohttp.ClientSession(f"http://{HOST}:{port}") as http:
                rows += await sql_part(args, dsn, shop, ids[:500], http)
                if shop.live:
                    with contextlib.suppress(RuntimeError):
                        await shop.post(http, f"/api/streams/{shop.live}/end")
                    shop.live = ""
        finally:
            stop_process(server)
    if "ws" in args.part:
        rows += await ws_part(args, dsn, shop, ids[: args.bidders], tokens[: args.bidders])
    print(orjson.dumps({"facts": facts, "rows": rows}, option=orjson.OPT_INDENT_2).decode())
    if any(r["failed"] for r in rows):
        sys.exit(1)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="sql,ws", help="sql, ws or both (default)")
    ap.add_argument("--bids", type=int, default=2000, help="sql part: bids per row")
    ap.add_argument("--batches", type=ints, default=[1, 50, 200], help="sql part: batch sizes (1: uncoalesced)")
    ap.add_argument("--bidders", type=int, default=2000, help="ws part: bidders, one bid each, all at once")
    ap.add_argument(
        "--ws-batch-max", type=ints, default=[0, 1], help="ws part: LIVEHUB_BUY_BATCH_MAX per row (0: shipped default)"
    )
    ap.add_argument("--order", choices=("ascending", "shuffled"), default="ascending", help="ws part: bid order")
    ap.add_argument("--seed", type=int, default=17, help="ws part: the shuffled order's seed")
    ap.add_argument("--runs", type=int, default=1, help="repeat each row this many times")
    ap.add_argument("--timeout", type=float, default=120.0, help="ws part: seconds to wait for every reply")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: be the server on this port
    return ap.parse_args()


if __name__ == "__main__":
    args = parse()
    if args.serve:
        serve_livehub(args.serve)
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main(args))
