"""What the benchmark scripts share: the project on sys.path, logging to stderr, argument parsing; process
CPU, memory and open-file readings from /proc, a probe a server answers on SIGUSR1, bench accounts by SQL,
the benchmark database, starting and stopping servers and load generators, waiting for a quiet machine and
rerunning disturbed windows; a minimal websocket client for load generators."""

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None


def floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None


# -- shared by the benchmarks that start servers and load generators (fanout, flashsale, media, rest) -----

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Server settings that only make registering the bench accounts fast; nothing measured hashes passwords.
CHEAP_PASSWORD_HASHING = {
    "LIVEHUB_PASSWORD_TIME_COST": "1",
    "LIVEHUB_PASSWORD_MEMORY_KIB": "8192",
    "LIVEHUB_PASSWORD_PARALLELISM": "1",
}


def rank(q: float, n: int) -> int:
    """The nearest rank (1-based) of the q-quantile among n values: ceil(q * n), at least 1."""
    return max(1, -(-int(q * n * 1000) // 1000))  # ceil(q * n) without float surprises


def nearest_rank(sorted_values: list[float], q: float) -> float:
    """The q-quantile of already sorted values by nearest rank (an observed value, never interpolated)."""
    if not sorted_values:
        return float("nan")
    return sorted_values[min(rank(q, len(sorted_values)), len(sorted_values)) - 1]


def pids_named(comm: str) -> list[int]:
    """Every process whose /proc/<pid>/comm is `comm` (e.g. postgres, redis-server)."""
    import contextlib

    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                if f.read().strip() == comm:
                    pids.append(int(entry))
    return pids


def proc_ticks_named(comm: str) -> dict[int, int]:
    """utime + stime (clock ticks) of every process whose /proc/<pid>/comm is `comm` (e.g. postgres)."""
    out: dict[int, int] = {}
    for pid in pids_named(comm):
        ticks = _stat_ticks(pid)
        if ticks is not None:  # else gone meanwhile
            out[pid] = sum(ticks)
    return out


def ticks_between(before: dict[int, int], after: dict[int, int]) -> int:
    """Clock ticks the processes of `after` used since `before` (all of them for processes born since)."""
    return sum(t - before.get(pid, 0) for pid, t in after.items())


def spawn_server(
    script: Path, port: int, env_updates: dict[str, str], logfile, extra_args: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`python <script> --serve <port> <extra_args>` in a session of its own (Ctrl-C reaches only the
    caller, which stops the server in order), with REDIS_URL removed (the in-process broker unless
    `env_updates` sets it again) and `env_updates` added. Its output goes to `logfile`; with None, it
    inherits the caller's stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LIVEHUB_REDIS_URL")}
    env.update(env_updates)
    return subprocess.Popen(
        [sys.executable, str(script), "--serve", str(port), *extra_args],
        env=env,
        cwd=str(ROOT),
        stdout=logfile,
        stderr=subprocess.STDOUT if logfile is not None else None,
        start_new_session=True,
    )


def drop_server_log(logfile, prefix: str = "", lines: int = 20) -> None:
    """Close and delete a server's log file (from `tempfile.NamedTemporaryFile(delete=False)`), logging its
    last lines first, each log line starting with `prefix`."""
    import contextlib

    logfile.close()
    tail = Path(logfile.name).read_text(errors="replace").strip().splitlines()[-lines:]
    if tail:
        log(f"{prefix}server log (last lines):\n  " + "\n  ".join(tail))
    with contextlib.suppress(OSError):
        os.unlink(logfile.name)


async def ask_all(executor, pipes: list, msgs: list[tuple], timeout: float) -> list:
    """Send one command down each multiprocessing pipe and gather the answers; each blocking pipe call
    runs in `executor` (a pool of our own: asyncio.run does not join it on Ctrl-C)."""
    loop = asyncio.get_running_loop()

    def ask(conn, msg):
        conn.send(msg)
        if not conn.poll(timeout):
            raise TimeoutError(f"load generator did not answer {msg[0]!r} within {timeout:.0f} s")
        return conn.recv()

    return await asyncio.gather(*(loop.run_in_executor(executor, ask, c, m) for c, m in zip(pipes, msgs, strict=True)))


# -- processes, machine and server helpers -----------------------------------------------------------

HOST = "127.0.0.1"


def raise_nofile(want: int = 65536) -> int:
    """Lift the open-files limit to `want`, the hard limit too when allowed (root); returns the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    return soft


def die_with_parent() -> None:
    """Linux: get SIGKILL when the process that started this one goes away, however it went."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _stat_ticks(pid: int) -> tuple[int, int] | None:
    """(utime, stime) of a process in clock ticks, fields 14 and 15 of /proc/<pid>/stat; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]), int(fields[12])


def cpu_split(pid: int) -> tuple[int, int]:
    """(utime, stime) clock ticks: user and kernel CPU of a process ((0, 0) when it is gone)."""
    return _stat_ticks(pid) or (0, 0)


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process in clock ticks (0 when it is gone)."""
    return sum(cpu_split(pid))


def rss_kb(pid: int) -> int:
    """Resident memory of a process in KiB (VmRSS of /proc/<pid>/status; 0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid: int) -> int:
    """File descriptors a process holds open (sockets included): the entries of /proc/<pid>/fd; 0 when gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


# A server process started with this variable set answers SIGUSR1 by writing facts about itself there.
PROBE_ENV = "LIVEHUB_BENCH_PROBE_FILE"


def install_probe(facts, signum: int | None = None) -> None:
    """In a server process (e.g. from `serve_livehub`'s `prepare`): on `signum` (SIGUSR1 by default) write
    `facts()` (a dict, run on the main thread, so inside the event loop's thread) as JSON to
    $LIVEHUB_BENCH_PROBE_FILE, replaced whole. Nothing without the variable. Read it with `read_probe`."""
    import json
    import signal

    path = os.environ.get(PROBE_ENV)
    if not path:
        return

    def dump(_signum, _frame) -> None:
        tmp = f"{path}.tmp"
        Path(tmp).write_text(json.dumps(facts()))
        os.replace(tmp, path)

    signal.signal(signum or signal.SIGUSR1, dump)


def read_probe(pid: int, path: Path, timeout_s: float = 5.0, signum: int | None = None) -> dict | None:
    """Ask a server with `install_probe` for its facts (`signum`, SIGUSR1 by default) and read them; None if
    it did not answer (or is gone). Blocks up to `timeout_s`."""
    import contextlib
    import json
    import signal
    import time

    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    try:
        os.kill(pid, signum or signal.SIGUSR1)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            return json.loads(path.read_text())
        time.sleep(0.02)
    return None


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies over all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


async def wait_quiet(our_ticks, busy_cpu: float, wait_s: float, idle_pid: int | None = None) -> float:
    """Wait (up to `wait_s` seconds) until the processes outside the benchmark use under `busy_cpu` % CPU
    (100 = one core) over one second, and, with `idle_pid` (a server), until that one uses under 10 %.
    `our_ticks()` gives the CPU ticks of the benchmark's own processes by pid (it may be a coroutine
    function); everything else busy on the machine (/proc/stat) counts as others. Returns what the others
    used in the last second sampled."""
    import inspect
    import time

    async def ours() -> dict[int, int]:
        ticks = our_ticks()
        return await ticks if inspect.isawaitable(ticks) else ticks

    deadline = time.monotonic() + wait_s
    while True:
        ours0, busy0 = await ours(), machine_busy()[0]
        await asyncio.sleep(1.0)
        ours1, busy1 = await ours(), machine_busy()[0]
        others = max(0.0, 100 * (busy1 - busy0 - ticks_between(ours0, ours1)) / CLK_TCK)
        server = 0.0 if idle_pid is None else 100 * (ours1.get(idle_pid, 0) - ours0.get(idle_pid, 0)) / CLK_TCK
        if (others <= busy_cpu and server < 10) or time.monotonic() >= deadline:
            return others
        busy = (
            f"other processes use {others:.0f} %"
            if idle_pid is None
            else f"server {server:.0f} %, other processes {others:.0f} %"
        )
        log(f"  waiting: {busy} CPU (loadavg {loadavg()})")
        await asyncio.sleep(2.0)


async def least_disturbed(wait_quiet, measure, retries: int, busy_cpu: float, stop=None, who="other processes"):
    """One window measured up to 1 + `retries` times: each attempt waits for a quiet machine (`await
    wait_quiet()`, which returns the others' CPU % just before), then `row = await measure(attempt)`
    (1-based); another follows while the others used over `busy_cpu` % CPU during the window
    (`row.others_cpu`), unless `stop(row)`. Returns the attempt the others disturbed least, chosen on that
    alone (never on its result), with `tries` and `discarded` (the other attempts' `line()`) set."""
    tried = []
    for attempt in range(1, retries + 2):
        others = await wait_quiet()
        row = await measure(attempt)
        tried.append(row)
        if row.others_cpu <= busy_cpu or attempt > retries or (stop is not None and stop(row)):
            break
        log(
            f"  {who} used {row.others_cpu:.0f} % CPU during the window ({others:.0f} % just before): "
            f"running it again. This attempt: {row.line()}"
        )
    for r in tried:
        r.tries = len(tried)
    row = min(tried, key=lambda r: r.others_cpu)
    row.discarded = [r.line() for r in tried if r is not row]
    return row


async def within(tasks: list, budget_s: float) -> tuple[list, int]:
    """Wait up to `budget_s` seconds for `tasks` and cancel those still running then. Returns the results
    of the finished ones that are not None (e.g. why a connection failed) and how many were cancelled."""
    done, pending = await asyncio.wait(tasks, timeout=budget_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    return [t.result() for t in done if t.result() is not None], len(pending)


def quiet_options(ap: argparse.ArgumentParser, retries: bool = True) -> None:
    """--busy-cpu and --wait-quiet for `wait_quiet` (and --retries, reruns of a window others disturbed)."""
    rerun = " or rerun" if retries else ""
    ap.add_argument(
        "--busy-cpu",
        type=float,
        default=25.0,
        help=f"CPU %% of other processes (100 = one core) above which a window is waited for{rerun} (default 25)",
    )
    ap.add_argument("--wait-quiet", type=float, default=20.0, help="longest wait for a quiet machine (default 20 s)")
    if retries:
        ap.add_argument("--retries", type=int, default=1, help="reruns of a window others disturbed (default 1)")


def free_port(host: str = HOST) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def ensure_database(dsn: str) -> None:
    """Create DATABASE_URL's database if missing; refuses `test` (and no name)."""
    import asyncpg

    name = urlsplit(dsn).path.lstrip("/")
    if not name or name == "test":
        raise SystemExit(f"refusing database {name!r}: name another one in DATABASE_URL")
    admin = await asyncpg.connect(with_database(dsn, "postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
            log(f"created database {name}")
    finally:
        await admin.close()


async def migrate(conn) -> None:
    """`storage.db.migrate`: `conn` finds the storage functions afterwards (migrate sets its search_path)."""
    from storage.db import migrate as migrate_schema

    await migrate_schema(conn)


async def give_addresses(conn, user_ids: list) -> None:
    """A default shipping address for each buyer: the bench shops sell goods that ship, which need one."""
    await conn.execute(
        """INSERT INTO addresses (user_id, name, line1, city, country, is_default)
           SELECT u, 'Bench buyer', '1 Bench Street', 'Berlin', 'DE', true FROM unnest($1::uuid[]) u""",
        user_ids,
    )


async def signed_in_users(conn, label: str, n: int, *, verified: bool = False) -> tuple[list, list[str]]:
    """n accounts made by SQL in one transaction (emails `<label>-<i>@bench.test`), each with a session and a
    default shipping address (`give_addresses`): (user ids, bearer tokens). `verified`: email verified."""
    from livehub.auth import hash_token, new_token

    async with conn.transaction():
        ids = await conn.fetchval(
            """WITH u AS (INSERT INTO users (email, display_name, password_hash, email_verified_at)
                          SELECT $1 || '-' || i || '@bench.test', 'Bench ' || i, 'no login',
                                 CASE WHEN $3 THEN now() END
                            FROM generate_series(1, $2) i RETURNING id)
               SELECT array_agg(id) FROM u""",
            label,
            n,
            verified,
        )
        tokens = [new_token() for _ in ids]
        await conn.execute(
            """INSERT INTO sessions (token_hash, user_id, expires_at)
               SELECT h, u, now() + interval '1 day' FROM unnest($1::bytea[], $2::uuid[]) AS x(h, u)""",
            [hash_token(t) for t in tokens],
            ids,
        )
        await give_addresses(conn, ids)
    return ids, tokens


async def wait_ready(base: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll `base`/healthz until it answers 200; fails early if the server process exits."""
    import contextlib
    import time

    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode} before it was ready")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as res:
                    if res.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s")


async def register(http, email: str, name: str, password: str = "bench password") -> tuple[str, str]:
    """A new account through the REST API: (user id, bearer token). The session cookie is dropped so the
    `http` session's later requests are authenticated only as their headers say."""
    body = {"email": email, "password": password, "display_name": name}
    async with http.post("/api/auth/register", json=body) as res:
        if res.status != 201:
            raise RuntimeError(f"register: {res.status} {await res.text()}")
        data = await res.json()
    http.cookie_jar.clear()
    return data["user"]["id"], data["token"]


async def live_stream(http, dsn: str, tag: str, *, stock: int = 100) -> tuple[str, str]:
    """A live stream featuring one product, made through the REST API as a seller would (the seller is
    approved with `set_seller_status` in SQL): (stream id, the host's bearer token)."""
    import asyncpg

    host_id, token = await register(http, f"host-{tag}@bench.test", f"Host {tag}")
    headers = {"Authorization": f"Bearer {token}"}

    async def post(path: str, body: dict | None, key: str) -> dict:
        async with http.post(path, json=body, headers=headers) as res:
            if res.status not in (200, 201):
                raise RuntimeError(f"{path}: {res.status} {await res.text()}")
            return (await res.json())[key]

    db = await asyncpg.connect(dsn)
    try:
        # Applying to sell needs a verified email (the emailed link, which a bench does not read).
        await db.execute("UPDATE users SET email_verified_at = now() WHERE id = $1", host_id)
        seller = await post("/api/sellers/apply", {"shop_name": f"Bench {tag}"}, "seller")
        await db.execute("SELECT set_seller_status($1, 'approved', NULL)", seller["id"])
    finally:
        await db.close()
    product = {"title": f"Item {tag}", "variants": [{"sku": f"SKU-{tag}", "price_cents": 1000, "stock": stock}]}
    product_id = (await post("/api/products", product, "product"))["id"]
    stream = await post("/api/streams", {"title": f"Live {tag}", "products": [{"product_id": product_id}]}, "stream")
    await post(f"/api/streams/{stream['id']}/start", None, "stream")
    return stream["id"], token


def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete the Redis keys servers made under LIVEHUB_REDIS_PREFIX=`prefix` (best effort: errors ignored)."""
    import contextlib

    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + ":*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def serve_livehub(port: int, host: str = HOST, prepare=None) -> None:
    """A server process (the target of `spawn_server`'s `--serve`): `livehub.app.serve` as run.py uses it,
    settings from the environment the parent prepared, on host:port, without the access log. `prepare()`,
    if given, runs once logging is set up, before the server is made."""
    die_with_parent()
    raise_nofile()
    import logging

    from livehub.app import serve
    from livehub.settings import Settings

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if prepare is not None:
        prepare()
    serve(Settings().model_copy(update={"host": host, "port": port}), access_log=None)


def masked_text_frame(payload: bytes) -> bytes:
    """A client-to-server websocket text frame (clients must mask, RFC 6455 5.3). The mask key is zero, so
    the masked payload is the payload itself; the server unmasks it all the same."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 1 << 16:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def handshake_request(host: str, port: int, path: str) -> bytes:
    import base64

    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class RawWebsocket(asyncio.Protocol):
    """A minimal websocket client for load generators: sends the handshake, parses the server's unmasked
    frames, answers pings, echoes a close. Subclasses get text frames in `on_text` (the payload, bytes or
    a bytearray, no decoding) or, to avoid copying it, override `text_at`; `on_closed(code)` comes once.
    `ready` is resolved by the subclass (e.g. on its welcome frame, setting `opened`) and failed here if
    the socket is refused or closes first."""

    __slots__ = ("request", "ready", "transport", "buf", "upgraded", "opened", "done")

    def __init__(self, request: bytes, ready: asyncio.Future):
        self.request = request
        self.ready = ready
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.opened = False  # the subclass saw what it waited for (set it with `ready`)
        self.done = False  # closed, lost or given up on

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        # Frames are parsed in `data` itself; only a partial frame is kept, in `buf`, for the next call.
        buf = self.buf
        if buf:
            buf += data
            data = buf
        pos = 0
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if data is not buf:
                    buf += data
                return
            if not data.startswith(b"HTTP/1.1 101"):
                self._fail(f"handshake refused: {bytes(data[:40])!r}")
                return
            self.upgraded = True
            pos = end + 4
        n = len(data)
        while n - pos >= 2:
            b1 = data[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80:  # a masked server frame: not websocket
                self._fail("masked frame from the server")
                return
            end = pos + head + length
            if end > n:
                break
            if data[pos] & 0x0F == 1:
                self.text_at(data, pos + head, end)
            else:
                self._control(data[pos] & 0x0F, bytes(data[pos + head : end]))
            pos = end
        if data is buf:
            del buf[:pos]
        elif pos < n:
            buf += data[pos:]

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == 9:  # ping: a pong with the same payload (zero mask key)
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
        elif opcode == 8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            try:
                self.transport.write(b"\x88\x82\0\0\0\0" + code.to_bytes(2, "big"))
            except Exception:  # noqa: BLE001 - the socket may already be gone
                pass
            self._closed(code)
            self.transport.close()

    def text_at(self, data, start: int, end: int) -> None:
        """A text frame whose payload is data[start:end] (`data` is only valid during the call)."""
        self.on_text(data[start:end])

    def on_text(self, payload) -> None:
        raise NotImplementedError

    def on_closed(self, code: int) -> None:
        pass

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        self.done = True
        self.transport.abort()

    def _closed(self, code: int) -> None:
        if self.done:
            return
        self.done = True
        if self.opened:
            self.on_closed(code)
        elif not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before it opened ({code})"))

    def connection_lost(self, exc) -> None:
        self._closed(1006)

    def abort(self) -> None:
        self.done = True
        if not self.ready.done():
            self.ready.cancel()
        if self.transport is not None:
            self.transport.abort()


# -- the skeleton of a benchmark: load-generator processes, the orchestrator, machine facts -------------


def event_loop_factory(choice: str = "auto"):
    """uvloop's loop for `auto` when it is installed (and always for `uvloop`), else asyncio's."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop

            return uvloop.new_event_loop
        except ImportError:
            if choice == "uvloop":
                raise
    return asyncio.new_event_loop


def run_generator(main, conn, *args, loop: str = "auto") -> None:
    """The body of a load-generator process: dies with its parent, lifts the open-files limit, ignores
    Ctrl-C (the orchestrator stops it) and runs `main(conn, *args)` on the event loop `loop` names (see
    `event_loop_factory`: uvloop when it is installed, by default)."""
    import signal

    die_with_parent()
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(loop)) as runner:
            runner.run(main(conn, *args))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass


def run_orchestrator(run, stopped: str = "the server and load generators"):
    """Run `run()` and return what it returns, with SIGTERM turned into Ctrl-C, so that either one stops
    the server(s) and the load generators in order (their `finally` blocks), logs that `stopped` were
    stopped and exits 130."""
    import signal

    raise_nofile()

    def terminate(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        return run()
    except KeyboardInterrupt:
        log(f"interrupted; {stopped} were stopped")
        sys.exit(130)


def machine_facts() -> dict:
    """Date, commit, cores, CPU model, memory, Python and aiohttp versions, load average."""
    import platform
    import time

    import aiohttp

    with open("/proc/meminfo") as f:
        mem = {line.split(":")[0]: line.split()[1] for line in f}
    model = ""
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    commit = subprocess.run(["git", "log", "-1", "--format=%h"], cwd=ROOT, capture_output=True, text=True).stdout
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit.strip(),
        "cores": os.cpu_count(),
        "cpu": model,
        "mem_total_gib": round(int(mem["MemTotal"]) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "loadavg_at_start": loadavg(),
    }


def start_generators(target, args_of: list[tuple], name: str | None = None) -> tuple[list, list]:
    """One `spawn`ed load-generator process per entry of `args_of`, each running `target(pipe, *args)` (and
    named `<name>-<i>` when `name` is given); returns (processes, the orchestrator's ends of their pipes)."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    procs, pipes = [], []
    for i, args in enumerate(args_of):
        parent, child = spawn.Pipe()
        proc = spawn.Process(
            target=target, args=(child, *args), name=None if name is None else f"{name}-{i}", daemon=True
        )
        proc.start()
        procs.append(proc)
        pipes.append(parent)
    return procs, pipes


def stop_generators(procs: list, pipes: list) -> None:
    """Ask each generator to quit, then wait a little for it and kill it if it does not."""
    import contextlib

    for pipe in pipes:
        with contextlib.suppress(OSError, ValueError):
            pipe.send(("quit",))
    for proc in procs:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
