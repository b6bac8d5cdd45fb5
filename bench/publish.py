"""The Redis publish pipeline under chat bursts (issue 15, part 4): two nodes publish durable chat events
into the same rooms at a fixed total rate, through the broker as rooms do (`RedisBroker.publish`), and
every node subscribes to every room and checks what it receives.

Each mode runs in turn, in the same invocation, on a fresh key prefix:
- `pipeline`: the publish pipeline (LIVEHUB_REDIS_PUBLISH_BATCH_MAX, default 256);
- `per-publish`: the old path, one pooled connection per in-flight publish (batch max 0), the baseline.

A node is a process of its own (`--node`, started by the parent): a Redis backplane as the server builds
it (`redis_backplane`, the server's defaults), subscribed to every room. At a start time the parent gives,
each node publishes open-loop: every millisecond of the schedule it starts the publishes that are due
(`rate / nodes` a second, rooms in turn), each as a task of its own, so a slow Redis shows up as latency,
not as a lower rate. Latency is from the scheduled time to the returned offset. After the burst each node
waits for its subscriptions to settle and reports, per room, whether the offsets it received were exactly
1..N in order (no gap, no duplicate, no reset), and how many events it got.

    flock /tmp/livehub-bench.lock .venv/bin/python bench/publish.py           # 5,000/s, 10 s, 50 rooms
    flock /tmp/livehub-bench.lock .venv/bin/python bench/publish.py --rate 10000 --modes pipeline
    flock /tmp/livehub-bench.lock .venv/bin/python bench/publish.py --seconds 0 --cpu-per-publish  # CPU only
    flock /tmp/livehub-bench.lock .venv/bin/python bench/publish.py --modes pipeline --parsers hiredis,python

`--parsers` runs every mode once per reply parser: `hiredis` is redis-py's default when the hiredis package
is installed, `python` forces redis-py's pure-Python parser on every connection (pub/sub, the pool, the
pipeline's own), so both are measured in one invocation with one environment.

REDIS_URL (default redis://127.0.0.1:6379/0) names the Redis; keys go under a fresh prefix, deleted after.
"""

import argparse
import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import log, nearest_rank  # noqa: E402

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
MODES = {"pipeline": 256, "per-publish": 0}  # LIVEHUB_REDIS_PUBLISH_BATCH_MAX of each mode
PARSERS = ("hiredis", "python")
SETTLE_S = 10.0  # how long a node waits after its burst for every room's events to arrive


class RoomCheck:
    """What a node received in one room: offsets must be exactly 1, 2, 3, ... in one epoch."""

    def __init__(self):
        self.count = 0
        self.last = 0
        self.epochs: set[str] = set()
        self.broken: list[str] = []

    def __call__(self, event: dict) -> None:
        if event.get("type") == "reset":
            self.broken.append(f"reset at {event['offset']}")
            return
        if "offset" not in event:
            return  # a state event
        self.epochs.add(event["epoch"])
        if event["offset"] != self.last + 1:
            self.broken.append(f"offset {event['offset']} after {self.last}")
        self.last = event["offset"]
        self.count += 1


def use_parser(name: str) -> None:
    """Make every redis-py asyncio connection made from now on in this process read its replies with
    `name`'s parser. redis-py binds its default parser (hiredis when installed) at import time, as a
    default argument, so the bench swaps it where the connection installs it."""
    from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser, _AsyncRESP3Parser
    from redis.asyncio.connection import AbstractConnection
    from redis.utils import HIREDIS_AVAILABLE

    if name not in PARSERS:
        raise SystemExit(f"unknown parser {name!r}: one of {', '.join(PARSERS)}")
    if name == "hiredis" and not HIREDIS_AVAILABLE:
        raise SystemExit("--parsers hiredis: the hiredis package is not installed (or older than redis-py needs)")
    original = getattr(AbstractConnection, "_bench_original_set_parser", AbstractConnection.set_parser)
    AbstractConnection._bench_original_set_parser = original

    def set_parser(self, parser_class):
        if name == "python" and parser_class is _AsyncHiredisParser:
            parser_class = _AsyncRESP3Parser if self.protocol == 3 else _AsyncRESP2Parser
        original(self, parser_class)

    AbstractConnection.set_parser = set_parser


def parser_in_use(connection) -> str:
    from redis._parsers import _AsyncHiredisParser

    return "hiredis" if isinstance(connection._parser, _AsyncHiredisParser) else "python"


async def node_main(args) -> dict:
    from livehub.broker import BrokerBusy, BrokerUnavailable, redis_backplane

    use_parser(args.parser)
    backplane = redis_backplane(args.redis, prefix=args.prefix, publish_batch_max=args.batch_max)
    await backplane.start()
    # The parser a pooled connection really got (a check that use_parser took effect).
    connection = await backplane.broker.link.client.connection_pool.get_connection()
    parser = parser_in_use(connection)
    await backplane.broker.link.client.connection_pool.release(connection)
    rooms = [f"room-{i}" for i in range(args.rooms)]
    checks = {room: RoomCheck() for room in rooms}
    for room in rooms:
        await backplane.broker.subscribe(room, checks[room])

    loop = asyncio.get_running_loop()
    per_node = args.rate / args.nodes
    total = int(per_node * args.seconds)
    latencies: list[float] = []
    outcomes = {"ok": 0, "unavailable": 0, "busy": 0, "other": 0}
    returned: dict[str, list[int]] = {room: [] for room in rooms}
    in_flight: set[asyncio.Task] = set()
    body = "x" * args.text_chars

    async def one(n: int, scheduled: float) -> None:
        room = rooms[n % len(rooms)]  # every node publishes into every room
        event = {"type": "chat", "id": f"{args.index}-{n}", "user": {"id": "u", "name": "bench"}, "text": body}
        try:
            published = await backplane.broker.publish(room, event)
        except BrokerUnavailable:
            outcomes["unavailable"] += 1
            return
        except BrokerBusy:
            outcomes["busy"] += 1
            return
        except Exception as exc:  # counted, not hidden
            outcomes["other"] += 1
            log(f"node {args.index}: {exc!r}")
            return
        latencies.append(loop.time() - scheduled)
        outcomes["ok"] += 1
        returned[room].append(published["offset"])

    # Both nodes start at the same wall-clock moment; the schedule is on the loop's clock from there.
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    start = loop.time()
    started = 0
    while started < total:
        now = loop.time()
        due = min(total, int((now - start) * per_node) + 1)
        while started < due:
            task = asyncio.create_task(one(started, start + started / per_node))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            started += 1
        await asyncio.sleep(0.001)
    burst_s = loop.time() - start
    if in_flight:
        await asyncio.wait(in_flight)
    publish_s = loop.time() - start
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)

    settle_until = loop.time() + SETTLE_S
    expected = args.expected_per_room
    while loop.time() < settle_until and any(c.count < expected for c in checks.values()):
        await asyncio.sleep(0.05)

    pipeline = backplane.broker.pipeline
    await backplane.close()
    latencies.sort()
    return {
        "node": args.index,
        "mode": args.mode,
        "parser": parser,
        "published": started,
        "outcomes": outcomes,
        "burst_s": round(burst_s, 3),
        "publish_s": round(publish_s, 3),
        "cpu_s": round((cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime), 3),
        "latency_ms": {
            q: round(nearest_rank(latencies, p) * 1000, 2)
            for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999), ("max", 1.0))
        },
        "round_trips": pipeline.batches if pipeline else None,
        "largest_batch": pipeline.largest_batch if pipeline else None,
        "retries": pipeline.retries if pipeline else None,
        "received": {room: c.count for room, c in checks.items()},
        "broken": {room: c.broken[:5] for room, c in checks.items() if c.broken},
        "epochs": sorted({e for c in checks.values() for e in c.epochs}),
        "returned_duplicates": sum(len(v) - len(set(v)) for v in returned.values()),
        "returned": {room: sorted(v) for room, v in returned.items()},
    }


async def cpu_per_publish(url: str, batch_max: int, parser: str, count: int = 20_000, in_flight: int = 200) -> float:
    """Microseconds of this process's CPU per publish: one node, no subscriber, `count` publishes over 50
    rooms, `in_flight` at a time (the publish path alone, without the receiving side of the bursts)."""
    from livehub.broker import redis_backplane

    use_parser(parser)
    prefix = f"livehub-bench-publish-{secrets.token_hex(4)}"
    backplane = redis_backplane(url, prefix=prefix, publish_batch_max=batch_max)
    await backplane.start()
    event = {"type": "chat", "id": "x", "user": {"id": "u", "name": "bench"}, "text": "x" * 80}
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(count // in_flight):
        await asyncio.gather(*(backplane.broker.publish(f"room-{i % 50}", event) for i in range(in_flight)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    await backplane.close()
    drop_prefix(url, prefix)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return round(cpu / count * 1e6, 1)


def redis_cpu_s(url: str) -> float:
    import redis

    with redis.Redis.from_url(url) as client:
        info = client.info("cpu")
        return info["used_cpu_sys"] + info["used_cpu_user"]


def drop_prefix(url: str, prefix: str) -> int:
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
        for i in range(0, len(keys), 10_000):
            client.delete(*keys[i : i + 10_000])
        return len(keys)


def pub_key_bytes(url: str, prefix: str) -> int | None:
    """What Redis says one remembered publish id costs (MEMORY USAGE of one `pub:` key)."""
    import redis

    with redis.Redis.from_url(url) as client:
        for key in client.scan_iter(match=f"{prefix}:room:*:pub:*", count=1000):
            return client.memory_usage(key)
    return None


def run_mode(args, mode: str, parser: str) -> dict:
    prefix = f"livehub-bench-publish-{secrets.token_hex(4)}"
    total = int(args.rate * args.seconds)
    expected_per_room = total // args.rooms
    start_at = time.time() + 3.0  # time for both nodes to connect and subscribe
    cmd = [sys.executable, str(Path(__file__).resolve()), "--node"]
    common = [
        "--redis", args.redis, "--prefix", prefix, "--rate", str(args.rate), "--seconds", str(args.seconds),
        "--rooms", str(args.rooms), "--nodes", str(args.nodes), "--mode", mode, "--batch-max", str(MODES[mode]),
        "--start-at", str(start_at), "--expected-per-room", str(expected_per_room),
        "--text-chars", str(args.text_chars), "--parser", parser,
    ]  # fmt: skip
    redis_before = redis_cpu_s(args.redis)
    procs = [
        subprocess.Popen([*cmd, "--index", str(i), *common], stdout=subprocess.PIPE, text=True)
        for i in range(args.nodes)
    ]
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=args.seconds + SETTLE_S + 60)
        if proc.returncode != 0:
            raise SystemExit(f"node exited with {proc.returncode}")
        reports.append(json.loads(out))
    redis_cpu = redis_cpu_s(args.redis) - redis_before
    key_bytes = pub_key_bytes(args.redis, prefix)
    dropped = drop_prefix(args.redis, prefix)
    return summarize(mode, parser, reports, total, expected_per_room, redis_cpu, key_bytes, dropped, args)


def summarize(mode, parser, reports, total, expected_per_room, redis_cpu, key_bytes, keys, args) -> dict:
    if any(r["parser"] != parser for r in reports):
        raise SystemExit(f"a node ran with another parser than {parser}: {[r['parser'] for r in reports]}")
    ok = sum(r["outcomes"]["ok"] for r in reports)
    # Offsets the publishers got back, per room over both nodes: must be exactly 1..N.
    per_room_returned: dict[str, list[int]] = {}
    for r in reports:
        for room, offsets in r["returned"].items():
            per_room_returned.setdefault(room, []).extend(offsets)
    returned_intact = all(sorted(v) == list(range(1, len(v) + 1)) for v in per_room_returned.values())
    # What every node received, per room: the same count as was published there, gap-free, in order.
    delivered_intact = all(
        not r["broken"] and all(r["received"][room] == len(per_room_returned[room]) for room in r["received"])
        for r in reports
    )
    lat = {q: max(r["latency_ms"][q] for r in reports) for q in ("p50", "p90", "p99", "p999", "max")}
    trips = [r["round_trips"] for r in reports if r["round_trips"] is not None]
    return {
        "mode": mode,
        "parser": parser,
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "rooms": args.rooms,
        "nodes": args.nodes,
        "published": sum(r["published"] for r in reports),
        "expected": total,
        "ok": ok,
        "unavailable": sum(r["outcomes"]["unavailable"] for r in reports),
        "busy": sum(r["outcomes"]["busy"] for r in reports),
        "other_errors": sum(r["outcomes"]["other"] for r in reports),
        "offsets_returned_intact": returned_intact,
        "delivered_intact_on_every_node": delivered_intact,
        # One epoch per room, the same on every node: no room was reset during the run.
        "epochs_per_room": len({e for r in reports for e in r["epochs"]}) / args.rooms,
        "latency_ms_worst_node": lat,
        "latency_ms_per_node": [r["latency_ms"] for r in reports],
        "publish_window_s": [r["publish_s"] for r in reports],
        "round_trips": sum(trips) if trips else None,
        "largest_batch": max((r["largest_batch"] for r in reports if r["largest_batch"]), default=None),
        "retries": sum(r["retries"] or 0 for r in reports),
        "node_cpu_s": [r["cpu_s"] for r in reports],
        "redis_cpu_s": round(redis_cpu, 2),
        "pub_key_bytes": key_bytes,
        "keys_left": keys,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", default=os.environ.get("REDIS_URL", DEFAULT_REDIS))
    ap.add_argument("--rate", type=float, default=5000.0, help="publishes per second over all nodes")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rooms", type=int, default=50)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--text-chars", type=int, default=80, help="length of each chat message's text")
    ap.add_argument("--modes", default="pipeline,per-publish", help="comma-separated: " + ", ".join(MODES))
    ap.add_argument(
        "--parsers",
        help="comma-separated reply parsers, each mode runs once per parser: "
        + ", ".join(PARSERS)
        + " (default: what redis-py picks, hiredis when installed)",
    )
    ap.add_argument("--json", action="store_true", help="print the full results as JSON")
    ap.add_argument(
        "--cpu-per-publish", action="store_true", help="also each mode's node CPU per publish, publishing alone"
    )
    # A node's own arguments (the parent passes them).
    ap.add_argument("--node", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--parser", default="hiredis", help=argparse.SUPPRESS)
    ap.add_argument("--batch-max", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--expected-per-room", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.node:
        print(json.dumps(asyncio.run(node_main(args))))
        return
    if args.rate * args.seconds > 200_000:
        raise SystemExit("keep a run bounded: at most 200,000 publishes")
    results = []
    if args.parsers is None:
        from redis.utils import HIREDIS_AVAILABLE

        args.parsers = "hiredis" if HIREDIS_AVAILABLE else "python"
    runs = [(parser, mode) for parser in args.parsers.split(",") for mode in args.modes.split(",")]
    for parser, mode in runs if args.seconds > 0 else []:
        log(
            f"{mode}, {parser} parser: {args.nodes} nodes, {args.rate:.0f}/s for {args.seconds:.0f} s over "
            f"{args.rooms} rooms"
        )
        result = run_mode(args, mode, parser)
        results.append(result)
        log(
            f"  ok {result['ok']}/{result['expected']}, unavailable {result['unavailable']}, busy {result['busy']}, "
            f"other {result['other_errors']}; offsets intact {result['offsets_returned_intact']}, delivered intact "
            f"{result['delivered_intact_on_every_node']}, epochs per room {result['epochs_per_room']}; "
            f"latency ms {result['latency_ms_worst_node']}; round trips "
            f"{result['round_trips']} (largest batch {result['largest_batch']}); node CPU s {result['node_cpu_s']}, "
            f"Redis CPU s {result['redis_cpu_s']}; one publish id {result['pub_key_bytes']} bytes"
        )
    if args.cpu_per_publish:
        for parser, mode in runs:
            cpu = asyncio.run(cpu_per_publish(args.redis, MODES[mode], parser))
            results.append({"mode": mode, "parser": parser, "cpu_us_per_publish": cpu})
            log(f"{mode}, {parser} parser: {cpu} us of node CPU per publish (one node, no subscriber, 200 in flight)")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
