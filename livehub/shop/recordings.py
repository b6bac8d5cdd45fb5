"""The recorder's reads and writes (livehub/media/recording.py): whether a stream is to be recorded, its
finished replay's row, and that row again when the video is served (livehub/api/replay_video.py)."""

from datetime import datetime
from uuid import UUID

from storage.db import DB


async def to_record(db: DB, stream_id: UUID) -> bool:
    """Whether the stream is recorded (its host did not opt it out; a missing stream is not)."""
    return bool(await db.fetchval("SELECT record FROM streams WHERE id = $1", stream_id))


async def ended(db: DB, stream_ids: list[UUID]) -> list[UUID]:
    """Which of these streams are no longer live (or no longer exist): their recordings can be finished."""
    rows = await db.fetch(
        """SELECT w.id FROM unnest($1::uuid[]) AS w (id) LEFT JOIN streams s ON s.id = w.id
            WHERE s.id IS NULL OR s.status <> 'live'""",
        stream_ids,
    )
    return [row["id"] for row in rows]


async def has_replay(db: DB, stream_id: UUID) -> bool:
    return await db.fetchval("SELECT true FROM stream_replays WHERE stream_id = $1", stream_id) is not None


async def wants_replay(db: DB, stream_id: UUID) -> bool:
    """Whether a finished recording is still wanted: the stream exists, has no replay yet, is to be recorded
    and its replay was not discarded. The segments of one that is not are dropped."""
    return bool(
        await db.fetchval(
            """SELECT record AND replay_discarded_at IS NULL
                      AND NOT EXISTS (SELECT 1 FROM stream_replays WHERE stream_id = $1)
                 FROM streams WHERE id = $1""",
            stream_id,
        )
    )


async def save_replay(
    db: DB,
    stream_id: UUID,
    *,
    media_key: str,
    content_type: str,
    duration_s: float,
    size_bytes: int,
    started_at: datetime,
) -> bool:
    """The stream's replay row; False (and nothing written) if the stream already has one, is gone, is no
    longer to be recorded or had its replay discarded (a recorder finishing late must not bring it back)."""
    inserted = await db.fetchval(
        """INSERT INTO stream_replays (stream_id, media_key, content_type, duration_s, size_bytes, started_at)
           SELECT id, $2, $3, $4, $5, $6 FROM streams
            WHERE id = $1 AND record AND replay_discarded_at IS NULL
           ON CONFLICT (stream_id) DO NOTHING
           RETURNING true""",
        stream_id,
        media_key,
        content_type,
        duration_s,
        size_bytes,
        started_at,
    )
    return bool(inserted)


async def replay_file(db: DB, stream_id: UUID) -> dict | None:
    """`{media_key, content_type, size_bytes}` of the stream's replay, or None: none either when the replay
    was discarded or its shop is not approved (suspended, deactivated), as `GET /api/streams/{id}/replay`."""
    row = await db.fetchrow(
        """SELECT r.media_key, r.content_type, r.size_bytes
             FROM stream_replays r JOIN streams s ON s.id = r.stream_id JOIN sellers se ON se.id = s.seller_id
            WHERE r.stream_id = $1 AND s.replay_discarded_at IS NULL AND se.status = 'approved'""",
        stream_id,
    )
    return dict(row) if row is not None else None
