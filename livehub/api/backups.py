"""Admin routes for backups (livehub/backups.py): the log, and a backup started now through the job queue."""

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web
from pydantic import Field, computed_field

from livehub import jobs
from livehub.api.models import Page
from livehub.api.routing import Api, Model, Out, db, principal

api = Api("admin")


class BackupQuery(Model):
    limit: Annotated[int, Field(ge=1, le=100)] = 20
    # The previous page's `next_cursor`: the id of its last backup (the list goes on with older ones).
    cursor: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None


class BackupOut(Out):
    id: int
    started_at: datetime
    finished_at: datetime | None
    status: Literal["running", "succeeded", "failed", "deleted"] = Field(
        description="deleted: retention removed the file since"
    )
    trigger: Literal["schedule", "cli", "admin"]
    requested_by: UUID | None = Field(description="the admin who started it (trigger admin)")
    path: str | None = Field(description="where the file was written, on the node that made it")
    size_bytes: int | None
    sha256: str | None
    error: str | None = Field(description="why it failed")
    deleted_at: datetime | None

    @computed_field
    @property
    def file_name(self) -> str | None:
        return Path(self.path).name if self.path else None


class BackupEnvelope(Out):
    backup: BackupOut


@api.get("/api/admin/backups", auth="admin", query=BackupQuery, response=Page[BackupOut])
async def list_backups(request: web.Request, query: BackupQuery) -> Page[BackupOut]:
    """Backups, newest first: scheduled, from the command line and started here, with size and status"""
    rows = await db(request).fetch(
        "SELECT * FROM backups WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        query.cursor,
        query.limit + 1,
    )
    items = [dict(r) for r in rows[: query.limit]]
    next_cursor = str(items[-1]["id"]) if len(rows) > query.limit else None
    return Page[BackupOut].model_validate({"items": items, "next_cursor": next_cursor})


@api.post("/api/admin/backups", auth="admin", response=BackupEnvelope, status=202, audit="backup.start")
async def start_backup(request: web.Request) -> BackupEnvelope:
    """Back up the database now: the backup is queued (its row `running`) and a node's job worker makes it"""
    conn = db(request)  # the audit entry's transaction: the row, the job and the entry commit together
    row = await conn.fetchrow("SELECT * FROM backup_started('admin', $1)", principal(request).user_id)
    await jobs.enqueue(conn, "backup", {"backup_id": row["id"]})
    return BackupEnvelope(backup=BackupOut.model_validate(dict(row)))
