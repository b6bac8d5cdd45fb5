"""Replays (docs/REPLAYS.md): a recorded show, its timeline, the replay lists, discarding and retention.

The rules live in storage/functions/replays.sql; these wrappers pass arguments, turn cursors into keys and
delete stored files. The recorder (livehub/shop/recordings.py) writes a replay's row; here it is read and,
when discarded or expired, its file deleted first, then its row: a file missing later is harmless, a row
pointing at nothing is not.

`template` below is true with the LiveKit backend and LIVEHUB_REPLAY_URL_TEMPLATE set: LiveKit Egress
recorded the room, so an ended stream that was to be recorded has a replay without a row of ours.

Shapes:
- replay: `{stream_id, title, seller: {id, shop_name}, unlisted, media_key, content_type, duration_s,
  started_at, products: [{id, title, position, price_cents, image_url}]}` (media_key, content_type and
  duration_s null for a template replay)
- event: `{id, kind, at, offset_s, ...}` (replay_timeline() in replays.sql lists each kind's fields)
"""

import base64
import binascii
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from uuid import UUID

from livehub.errors import ValidationFailed
from livehub.mediastore import MediaStore
from storage.db import DB

log = logging.getLogger(__name__)


async def get_replay(db: DB, stream_id: UUID, *, template: bool = False) -> dict | None:
    """The stream's replay, or None while it has none (not recorded yet, discarded, expired, opted out)."""
    return await db.fetchval("SELECT replay_json($1, $2)", stream_id, template)


# -- cursors: opaque to clients, a position in a list's order to us ------------------------------------


def encode_cursor(*key: str) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """The key a cursor holds; ValidationFailed (422) for anything this module did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, list) or len(key) != parts or not all(isinstance(k, str) for k in key):
        raise ValidationFailed("not a cursor this list gave", {"cursor": cursor})
    return key


# An event's id as replay_timeline() makes them: its kind, then a uuid or a zero-padded number.
_EVENT_ID = re.compile(r"^[a-z_]{1,40}:[0-9a-f-]{1,40}$")


def _is_uuid(text: str) -> bool:
    """A uuid as PostgreSQL writes it (a chat event's id is "chat:" and that; replay_timeline() reads it back)."""
    try:
        return str(UUID(text)) == text
    except ValueError:
        return False


def _time_of(text: str, cursor: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
        # In UTC: an offset at the ends of the calendar (year 1 at +14:00) does not fit a timestamp.
        if at.tzinfo is not None:
            return at.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise ValidationFailed("not a cursor this list gave", {"cursor": cursor})


async def timeline(db: DB, stream_id: UUID, *, limit: int, cursor: str | None, template: bool = False) -> dict | None:
    """A page of the replay's timeline, `{items, next_cursor}` in time order; None when there is no replay.
    The cursor holds the last event's (at, id): the next page starts right after it, whatever was added."""
    started_at = await db.fetchval("SELECT replay_started_at($1, $2)", stream_id, template)
    if started_at is None:
        return None
    after_at, after_id = None, None
    if cursor is not None:
        at_text, after_id = decode_cursor(cursor, 2)
        after_at = _time_of(at_text, cursor)
        if not _EVENT_ID.match(after_id) or (after_id.startswith("chat:") and not _is_uuid(after_id[5:])):
            raise ValidationFailed("not a cursor this list gave", {"cursor": cursor})
    rows = await db.fetch(
        "SELECT e FROM replay_timeline($1, $2, $3, $4, $5) e", stream_id, started_at, after_at, after_id, limit + 1
    )
    items = [r["e"] for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        # The event's exact time (microseconds), which `at` (its RFC 3339 text) also carries.
        next_cursor = encode_cursor(last["at"].replace("Z", "+00:00"), last["id"])
    return {"items": items, "next_cursor": next_cursor}


async def list_replays(
    db: DB, *, seller_id: UUID | None, limit: int, cursor: str | None, template: bool = False
) -> dict:
    """A page of listed streams' replays, the most recently made first: `{items, next_cursor}`."""
    before_at, before_id = None, None
    if cursor is not None:
        at_text, id_text = decode_cursor(cursor, 2)
        before_at = _time_of(at_text, cursor)
        try:
            before_id = UUID(id_text)
        except ValueError:
            raise ValidationFailed("not a cursor this list gave", {"cursor": cursor}) from None
    rows = await db.fetch(
        "SELECT item, sort_at FROM replay_list($1, $2, $3, $4, $5)",
        seller_id,
        before_at,
        before_id,
        limit + 1,
        template,
    )
    items = [r["item"] for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last["sort_at"].isoformat(), last["item"]["stream_id"])
    return {"items": items, "next_cursor": next_cursor}


async def discard(db: DB, store: MediaStore, stream_id: UUID, actor_id: UUID, *, template: bool = False) -> None:
    """The host, the shop or an admin discards the replay: its file, then its row (NotFound without one,
    Forbidden for anyone else). The stream's replay is marked discarded (streams.replay_discarded_at; its
    `record` stays the host's choice), so no replay of it comes back. With the template (LiveKit) there is no
    file here to delete: the replay stops being offered and LiveKit Egress's file stays in its storage."""
    key = await db.fetchval("SELECT replay_to_discard($1, $2, $3)", stream_id, actor_id, template)
    if key is not None:
        await store.delete(key)
    await db.fetchval("SELECT forget_replay($1, $2)", stream_id, key)


async def delete_expired(db: DB, store: MediaStore, *, days: int, batch: int, now: datetime | None = None) -> int:
    """Deletes up to `batch` replays made more than `days` days ago, oldest first (file, then row; a file
    already gone is fine). Returns how many. The retention job (livehub/jobs.py) calls it.
    A replay whose file the store fails to delete (a disk error, S3 refusing, a key it does not take) is
    logged and kept, row and all, for the next run; the others are deleted all the same."""
    before = (now or await db.fetchval("SELECT now()")) - timedelta(days=days)
    expired = await db.fetchval("SELECT expired_replays($1, $2)", before, batch)
    deleted = 0
    for replay in expired:
        try:
            await store.delete(replay["media_key"])
        except Exception:  # any store's failure: one replay's must not stop the rest
            log.exception(
                "replay retention: the file %r could not be deleted, kept for the next run", replay["media_key"]
            )
            continue
        await db.fetchval("SELECT forget_replay($1, $2)", UUID(replay["stream_id"]), replay["media_key"])
        deleted += 1
    return deleted


async def expire_template_replays(db: DB, *, days: int, batch: int, now: datetime | None = None) -> int:
    """With the LiveKit backend: replays of streams ended more than `days` days ago stop being offered
    (marked discarded; the files are in LiveKit's storage, which expires them itself)."""
    before = (now or await db.fetchval("SELECT now()")) - timedelta(days=days)
    return await db.fetchval("SELECT expire_template_replays($1, $2)", before, batch)
