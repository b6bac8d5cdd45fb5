"""Show reminders: "remind me" on a scheduled stream, and the sweep that sends them.

The rules are in storage/functions/reminders.sql: `send_due_reminders(now, lead)` marks every due reminder
sent and stores its show_reminder notification in one transaction (safe when two nodes sweep at once); a
pgqueuer schedule runs `sweep` every minute on one node."""

from datetime import UTC, datetime
from uuid import UUID

from livehub import jobs
from storage.db import DB


async def set_reminder(db: DB, stream_id: UUID, user_id: UUID, on: bool) -> dict:
    """Ask (on) or stop asking to be reminded; idempotent. Returns {stream_id, reminders, reminded}."""
    return await db.fetchval("SELECT set_stream_reminder($1, $2, $3)", stream_id, user_id, on)


async def reminders_of(db: DB, stream_id: UUID, user_id: UUID | None) -> dict:
    return await db.fetchval("SELECT stream_reminders_json($1, $2)", stream_id, user_id)


async def sweep(db: DB, now: datetime, lead_s: float) -> int:
    """Sends the reminders due by now + lead_s; returns how many. The clock is the caller's (tests pass one)."""
    return await db.fetchval("SELECT send_due_reminders($1, make_interval(secs => $2))", now, float(lead_s))


@jobs.schedule("send_due_reminders", "* * * * *")
async def send_due_reminders(ctx: jobs.Context) -> None:
    """Every minute, on one node: the reminders now due."""
    await sweep(ctx.pool, datetime.now(UTC), ctx.settings.reminder_lead_s)
