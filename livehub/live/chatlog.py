"""Chat goes to PostgreSQL in background batches, so a room never waits on the database.

Messages wait in a bounded buffer; the hub has them written every half second in one statement. If the
database is away the batch is kept and retried; if the buffer fills meanwhile the oldest unwritten
messages are dropped, counted and logged: the live room matters more than the archive. A message the
database refuses on its own is set aside and logged, never retried, so it cannot hold up the others.
"""

import collections
import logging
from datetime import datetime
from uuid import UUID

import asyncpg

from livehub.batches import write_isolating
from livehub.metrics import CHAT_ARCHIVE_DROPPED, CHAT_ARCHIVE_QUEUE, CHAT_ARCHIVE_SET_ASIDE

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5
# A deletion can reach this node before the message itself is written (another node wrote it); it is
# retried for a few rounds.
DELETE_ATTEMPTS = 10


class ChatLog:
    def __init__(self, pool: asyncpg.Pool, *, max_buffered: int):
        self._pool = pool
        self._messages: collections.deque[tuple] = collections.deque()
        self._max = max_buffered
        self._deletions: dict[UUID, tuple[UUID, int]] = {}  # message id -> (deleted by, attempts left)
        self.dropped = 0  # lost to a full buffer while the database was away
        self.set_aside = 0  # refused by the database on their own (never retried)

    def add(self, stream_id: UUID, message: dict) -> None:
        """Queue a published chat message (it has its offset)."""
        if len(self._messages) >= self._max:
            self._messages.popleft()
            self.dropped += 1
            CHAT_ARCHIVE_DROPPED.inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("chat buffer full: %d messages dropped unwritten so far", self.dropped)
        self._messages.append(
            (
                UUID(message["id"]),
                stream_id,
                message["offset"],
                UUID(message["user"]["id"]),
                message["text"],
                datetime.fromisoformat(message["at"]),
            )
        )

    def delete(self, message_id: UUID, deleted_by: UUID) -> None:
        self._deletions[message_id] = (deleted_by, DELETE_ATTEMPTS)

    async def flush(self) -> None:
        CHAT_ARCHIVE_QUEUE.set(len(self._messages))  # what waited for this round
        if not self._messages and not self._deletions:
            return
        batch, self._messages = list(self._messages), collections.deque()
        # A message the database refuses is set aside on its own (livehub/batches.py); the rest are written.
        left = await write_isolating(batch, self._insert, self._set_aside)
        if left:
            # The database is away: put the rest back in front of what arrived meanwhile, within the bound.
            kept = left + list(self._messages)
            self.dropped += max(0, len(kept) - self._max)
            CHAT_ARCHIVE_DROPPED.inc(max(0, len(kept) - self._max))
            self._messages = collections.deque(kept[-self._max :])
            CHAT_ARCHIVE_QUEUE.set(len(self._messages))
            log.warning("writing chat failed, %d messages kept for the next round", len(self._messages))
            return
        if self._deletions:
            try:
                await self._delete()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("marking chat deleted failed, kept for the next round: %r", exc)

    async def _insert(self, rows: list[tuple]) -> None:
        await self._pool.execute(
            """INSERT INTO chat_messages (id, stream_id, "offset", user_id, text, created_at)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::uuid[], $5::text[],
                                    $6::timestamptz[])
               ON CONFLICT (id) DO NOTHING""",
            *zip(*rows, strict=True),
        )

    def _set_aside(self, row: tuple, exc: Exception) -> None:
        self.set_aside += 1
        CHAT_ARCHIVE_SET_ASIDE.inc()
        log.error("chat message %s of stream %s cannot be archived, set aside: %r", row[0], row[1], exc)

    async def _delete(self) -> None:
        ids = list(self._deletions)
        done = await self._pool.fetch(
            """UPDATE chat_messages c SET deleted_at = now(), deleted_by = d.by
                 FROM unnest($1::uuid[], $2::uuid[]) AS d(id, by)
                WHERE c.id = d.id AND c.deleted_at IS NULL RETURNING c.id""",
            ids,
            [self._deletions[i][0] for i in ids],
        )
        for row in done:
            self._deletions.pop(row["id"], None)
        for message_id in list(self._deletions):
            by, left = self._deletions[message_id]
            if left <= 1:
                del self._deletions[message_id]
            else:
                self._deletions[message_id] = (by, left - 1)
