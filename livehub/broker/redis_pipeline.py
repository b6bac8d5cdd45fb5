"""One node's durable publishes, pipelined: every publish waiting while a batch is out goes to Redis in the
next batch, as one write on one connection of the pipeline's own, and the replies come back in order.

Why: with one pooled connection per in-flight publish, a burst of chat needs as many connections (and
round trips) as publishes in flight, and once the pool is exhausted publishes queue for connections anyway.
Here a burst costs one round trip per batch, whatever its size (up to `batch_max`), and the pool stays free
for presence, counters and catch-up reads. Centrifugo's Redis engine batches its publishes the same way.

- Order: one batch is out at a time and the publish script runs in queue order, so publishes that follow
  each other (the second called after the first returned) get increasing offsets; concurrent ones are in
  the order they were queued.
- Bounds: at most `queue_max` publishes wait. A publish that finds the queue full waits for a place up to
  `busy_timeout_s`, then raises `BrokerBusy`: Redis busy (or this node over its rate) is never reported as
  Redis away.
- Failures: a batch whose write or replies fail (connection lost, reply slower than `timeout_s`) is sent
  again, on a new connection, with the same publish ids: the script remembers each id's result, so what
  already ran returns its first offset and is not appended or announced twice. Retries stop `timeout_s`
  after the batch was first sent (but there is always one); then that batch and everything queued behind
  it fail with `BrokerUnavailable` (they would find Redis away too), and the next publish tries afresh.
"""

import asyncio
import collections
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from livehub.broker.base import BrokerBusy, BrokerUnavailable
from livehub.broker.redis_link import DOWN
from livehub.metrics import BROKER_PUBLISH_SECONDS
from livehub.tasks import cancel_all

log = logging.getLogger(__name__)

_RETRY_FIRST_S = 0.05  # the first pause before a failed batch is sent again; doubles per retry


def _pack(args: tuple) -> bytes:
    """One command in RESP (bulk strings; str as UTF-8, numbers in decimal)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if not isinstance(arg, bytes):
            arg = arg.encode() if isinstance(arg, str) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


@dataclass(slots=True)
class _Publish:
    keys: list
    args: list
    future: asyncio.Future


class PublishPipeline:
    """Runs one Lua script (the broker's publish) for many callers, batched. `run()` is the callers' door;
    `start()`/`close()` own the writer task. The counters (`batches`, `published`, `largest_batch`,
    `retries`) are for tests and benchmarks: round trips versus publishes."""

    def __init__(
        self,
        client: Redis,
        script: str,
        *,
        batch_max: int,
        queue_max: int,
        timeout_s: float,
        busy_timeout_s: float,
        down: Callable[[BaseException, str], None],
        name: str,
    ):
        self._client = client  # its pool holds the one connection this pipeline writes on
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest().encode()
        self._batch_max, self._queue_max = batch_max, queue_max
        self._timeout_s, self._busy_timeout_s = timeout_s, busy_timeout_s
        self._down = down
        self._name = name
        self._queue: collections.deque[_Publish] = collections.deque()
        self._queued = asyncio.Event()  # the writer has something to send
        self._room_left = asyncio.Event()  # the queue is below queue_max
        self._room_left.set()
        self._script_loaded = False  # on the current connection; a new connection loads it in its first batch
        self._task: asyncio.Task | None = None
        self.batches = 0  # round trips that carried publishes
        self.published = 0  # publishes answered
        self.largest_batch = 0
        self.retries = 0  # batches sent again after a failure

    def start(self) -> None:
        self._task = asyncio.create_task(self._write(), name=self._name)

    async def close(self) -> None:
        """Stop the writer; whatever still waits fails with BrokerUnavailable."""
        if self._task is not None:
            # The writer waits on redis-py's reads, which can swallow a cancellation: asked again, bounded.
            await cancel_all([self._task])
            self._task = None
        self._fail(list(self._queue), BrokerUnavailable("the broker is closing"))
        self._queue.clear()
        await self._client.aclose()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def run(self, keys: list, args: list):
        """The script's reply for these keys and args, once the batch carrying them is answered."""
        if self._task is None:
            raise BrokerUnavailable("the broker is not started")
        if len(self._queue) >= self._queue_max:
            await self._wait_for_room()
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Publish(keys, args, future))
        if len(self._queue) >= self._queue_max:
            self._room_left.clear()
        self._queued.set()
        return await future

    async def _wait_for_room(self) -> None:
        bound = asyncio.timeout(self._busy_timeout_s)
        try:
            async with bound:
                while len(self._queue) >= self._queue_max:
                    self._room_left.clear()
                    await self._room_left.wait()
        except TimeoutError:
            if not bound.expired():
                raise
            raise BrokerBusy(
                f"{len(self._queue)} publishes waiting for Redis, no place within {self._busy_timeout_s} s"
            ) from None

    async def _write(self) -> None:
        while True:
            await self._queued.wait()
            batch = self._take()
            if not batch:
                continue
            try:
                await self._send(batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                log.exception("publish pipeline failed")
                self._fail(batch, BrokerUnavailable(repr(exc)))

    def _take(self) -> list[_Publish]:
        """The next batch: up to batch_max publishes whose callers still wait (a cancelled one never goes)."""
        batch = []
        while self._queue and len(batch) < self._batch_max:
            publish = self._queue.popleft()
            if not publish.future.done():
                batch.append(publish)
        if not self._queue:
            self._queued.clear()
        if len(self._queue) < self._queue_max:
            self._room_left.set()
        return batch

    async def _send(self, batch: list[_Publish]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        give_up = started + self._timeout_s
        pause, failures = _RETRY_FIRST_S, 0
        while True:
            try:
                replies = await self._round_trip(batch)
                if any(isinstance(reply, NoScriptError) for reply in replies):
                    # Redis lost its scripts without the connection dropping (SCRIPT FLUSH). Those publishes
                    # did not run; send the whole batch again: what did run answers with its first result.
                    self._script_loaded = False
                    replies = await self._round_trip(batch)
                break
            except DOWN as exc:
                self._script_loaded = False
                # At least one retry, even when the failure was a reply slower than the whole window.
                if loop.time() + pause >= give_up and failures:
                    self._down(exc, "publish")
                    failure = BrokerUnavailable(str(exc) or type(exc).__name__)
                    self._fail(batch, failure)
                    # Behind it everything would find Redis away too: fail it now, not one timeout per batch.
                    self._fail(list(self._queue), failure)
                    self._queue.clear()
                    self._queued.clear()
                    self._room_left.set()
                    return
                failures += 1
                self.retries += 1
                await asyncio.sleep(pause)
                pause *= 2
        BROKER_PUBLISH_SECONDS.observe(loop.time() - started)
        self.batches += 1
        self.published += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        for publish, reply in zip(batch, replies, strict=True):
            if publish.future.done():
                continue
            if isinstance(reply, Exception):  # the script itself failed (OOM, a bug): this publish only
                publish.future.set_exception(BrokerUnavailable(str(reply)))
            else:
                publish.future.set_result(reply)

    async def _round_trip(self, batch: list[_Publish]) -> list:
        """One write with every command of the batch, then their replies in order (a ResponseError in
        place of a failed one). Packed here rather than through redis-py's Pipeline: half the CPU per
        publish, which is what limits a node in a burst (docs/BENCHMARKS.md, "Redis publish pipeline")."""
        commands = [] if self._script_loaded else [_pack((b"SCRIPT", b"LOAD", self._script))]
        for publish in batch:
            commands.append(_pack((b"EVALSHA", self._sha, len(publish.keys), *publish.keys, *publish.args)))
        pool = self._client.connection_pool
        connection = await pool.get_connection()
        try:
            await connection.send_packed_command(b"".join(commands), check_health=False)
            replies = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            # Replies may be left unread (an error, a cancellation): the connection cannot be used again.
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
        if not self._script_loaded:
            loaded, replies = replies[0], replies[1:]
            if isinstance(loaded, Exception):
                raise loaded
            self._script_loaded = True
        return replies

    @staticmethod
    def _fail(batch: list[_Publish], error: Exception) -> None:
        for publish in batch:
            if not publish.future.done():
                publish.future.set_exception(error)
