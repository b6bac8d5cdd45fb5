"""Backups (livehub/backups.py) against the real PostgreSQL: a shop with orders, refunds and payouts backed up
and restored into a new database with the same books, row counts and rows; a non-empty database and a
damaged file refused; the scheduled job logging its row; retention over simulated weeks; a failed backup
logged and told to the admins; the admin API; the `livehub backup` and `restore` commands."""

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from test_refunds import done, world

from conftest import _admin, _with_database, settings_for
from livehub import backups, jobs, keys
from livehub.mail import Mailer

LIVEHUB = Path(sys.executable).with_name("livehub")


@pytest.fixture
def settings(database_url, tmp_path):
    """The app's settings, its backups going to this test's directory."""
    return settings_for(database_url).model_copy(update={"backup_dir": tmp_path / "backups"})


@pytest.fixture
async def new_database(server_dsn):
    """A URL of a fresh, empty database on the test server, dropped afterwards."""
    name = f"livehub_restore_{os.getpid()}_{secrets.token_hex(4)}"
    await _admin(server_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_dsn, name)
    finally:
        await _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def context(client) -> jobs.Context:
    app_settings = client.app[keys.SETTINGS]
    return jobs.Context(client.app[keys.POOL], app_settings, None, Mailer(app_settings))


async def a_shop_with_money(client, db, make):
    """Orders: one delivered, one partly refunded, one cancelled, one still paid; a payout refused, one asked."""
    w = await world(client, db, make, funds=20_000)
    delivered, refunded, cancelled, _open = [await w.order() for _ in range(4)]
    await done(client, w.seller, delivered["id"], "ship")
    await done(client, w.buyer, delivered["id"], "deliver")
    await done(client, w.seller, refunded["id"], "refund", {"amount_cents": 250, "reason": "scratched"})
    await done(client, w.buyer, cancelled["id"], "cancel", {})
    res = await client.post("/api/seller/payouts", json={"amount_cents": 500}, headers=w.seller.headers)
    assert res.status == 201, await res.text()
    payout = (await res.json())["payout"]
    body = {"reason": "check the account"}
    res = await client.post(f"/api/admin/payouts/{payout['id']}/reject", json=body, headers=w.admin.headers)
    assert res.status == 200, await res.text()
    # And one left requested, its amount held.
    res = await client.post("/api/seller/payouts", json={"amount_cents": 300}, headers=w.seller.headers)
    assert res.status == 201, await res.text()
    return w


SAMPLES = (
    "SELECT id, number, status, total_cents, refunded_cents, fee_cents FROM orders ORDER BY id",
    "SELECT id, txn_id, account_id, amount_cents, type, order_id FROM ledger_entries ORDER BY id",
    "SELECT id, user_id, amount_cents, status FROM payouts ORDER BY id",
    "SELECT id, email, display_name, roles FROM users ORDER BY id",
)


async def rows_of(url: str) -> list[list]:
    conn = await asyncpg.connect(url)
    try:
        return [[tuple(r) for r in await conn.fetch(q)] for q in SAMPLES]
    finally:
        await conn.close()


async def test_a_shop_round_trips_through_backup_and_restore(client, make, db, database_url, new_database, tmp_path):
    await a_shop_with_money(client, db, make)
    made = await backups.dump(database_url, tmp_path)
    manifest = made.manifest
    assert made.path.is_file() and backups.manifest_path(made.path).is_file()
    assert not list(tmp_path.glob(".*partial"))
    assert manifest["size"] == made.path.stat().st_size and manifest["sha256"] == backups.sha256_of(made.path)
    assert manifest["schema_version"] == await db.fetchval("SELECT max(version) FROM schema_migrations")
    assert manifest["books"]["balanced"] is True and manifest["books"]["money_in_cents"] > 0
    assert manifest["row_counts"]["orders"] == 4 and manifest["row_counts"]["payouts"] == 2

    restored = await backups.restore_into(made.path, new_database)
    assert restored == {k: manifest[k] for k in ("schema_version", "books", "row_counts")}
    assert await rows_of(new_database) == await rows_of(database_url)
    # The restored database finds LiveHub's functions unqualified, as the original does.
    conn = await asyncpg.connect(new_database)
    try:
        assert (await conn.fetchval("SELECT check_books()::text")) is not None
    finally:
        await conn.close()

    # Not into a database that has tables, unless told to replace them.
    with pytest.raises(backups.BackupError, match="is not empty"):
        await backups.restore_into(made.path, new_database)
    again = await backups.restore_into(made.path, new_database, clean=True)
    assert again["books"] == manifest["books"]


async def test_backups_are_readable_by_their_owner_only(db, database_url, tmp_path):
    # As under the unit's UMask=0022 (which keeps the images readable by nginx), in a directory made 0755.
    directory = tmp_path / "backups"
    directory.mkdir(mode=0o755)
    old = os.umask(0o022)
    try:
        made = await backups.dump(database_url, directory)
    finally:
        os.umask(old)
    assert directory.stat().st_mode & 0o777 == 0o700
    assert made.path.stat().st_mode & 0o777 == 0o600
    assert backups.manifest_path(made.path).stat().st_mode & 0o777 == 0o600


async def test_a_restore_into_a_database_in_use_is_refused(db, database_url, new_database, tmp_path):
    made = await backups.dump(database_url, tmp_path)
    node = await asyncpg.connect(new_database)  # as a live node's pool connection
    try:
        with pytest.raises(backups.BackupError, match="1 other connections: stop the nodes first"):
            await backups.restore_into(made.path, new_database, clean=True)
        assert await backups.tables_in(node) == []  # nothing was restored
    finally:
        await node.close()
    await backups.restore_into(made.path, new_database)


def test_a_password_in_the_query_is_redacted_and_passed_in_the_environment():
    url = "postgresql://u@db.example:5432/livehub?sslmode=require&password=s3cr%26t"
    assert backups.redact(url) == "postgresql://u@db.example:5432/livehub?sslmode=require&password=***"
    assert backups._without_password(url) == (
        "postgresql://u@db.example:5432/livehub?sslmode=require",
        {"PGPASSWORD": "s3cr&t"},
    )
    both = "postgresql://u:p1@h/db?password=p2"
    assert backups.redact(both) == "postgresql://u:***@h/db?password=***"
    assert backups._without_password(both) == ("postgresql://u@h/db", {"PGPASSWORD": "p2"})
    plain = "postgresql://u@h/db?sslmode=disable"
    assert backups.redact(plain) == plain and backups._without_password(plain) == (plain, {})


async def test_a_damaged_file_or_a_missing_manifest_is_refused(db, database_url, new_database, tmp_path):
    made = await backups.dump(database_url, tmp_path)
    data = bytearray(made.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    made.path.write_bytes(bytes(data))
    with pytest.raises(backups.BackupError, match="not the file its manifest describes"):
        await backups.restore_into(made.path, new_database)
    backups.manifest_path(made.path).unlink()
    with pytest.raises(backups.BackupError, match="no manifest"):
        await backups.restore_into(made.path, new_database)
    conn = await asyncpg.connect(new_database)
    try:
        assert await backups.tables_in(conn) == []  # nothing was restored
    finally:
        await conn.close()


async def test_a_restore_into_an_older_postgresql_is_refused(db, database_url, new_database, tmp_path):
    made = await backups.dump(database_url, tmp_path)
    assert made.manifest["server_major"] >= 13
    manifest_file = backups.manifest_path(made.path)
    claimed = {**made.manifest, "server_major": 99}  # as if taken from a newer server than the target's
    manifest_file.write_text(json.dumps(claimed))
    with pytest.raises(backups.BackupError, match="taken from PostgreSQL 99") as raised:
        await backups.restore_into(made.path, new_database)
    assert "older major version" in str(raised.value)


async def test_a_restore_that_does_not_add_up_fails(db, database_url, new_database, tmp_path):
    made = await backups.dump(database_url, tmp_path)
    # A manifest that claims another figure than the file holds (as if the dump missed a write).
    manifest_file = backups.manifest_path(made.path)
    manifest_file.write_text(manifest_file.read_text().replace('"users": 0', '"users": 3'))
    with pytest.raises(backups.BackupError, match="does not match") as raised:
        await backups.restore_into(made.path, new_database)
    assert "row_counts" in str(raised.value)


async def test_the_scheduled_job_backs_up_and_logs_its_row(client, db, tmp_path):
    # A backup whose node stopped two days ago while it ran: it will never finish, and is said so.
    stale = await db.fetchval(
        "INSERT INTO backups (trigger, started_at) VALUES ('schedule', now() - interval '2 days') RETURNING id"
    )
    await backups.scheduled_backup(context(client))
    gone = await db.fetchrow("SELECT status, error FROM backups WHERE id = $1", stale)
    assert tuple(gone) == ("failed", "never finished (its node stopped)")
    row = await db.fetchrow("SELECT * FROM backups WHERE id <> $1", stale)
    assert (row["trigger"], row["status"], row["error"]) == ("schedule", "succeeded", None)
    path = Path(row["path"])
    assert path.parent == tmp_path / "backups" and path.is_file()
    assert row["size_bytes"] == path.stat().st_size and row["sha256"] == backups.sha256_of(path)
    assert row["finished_at"] >= row["started_at"]


def test_the_schedule_is_read_from_the_settings(settings):
    assert backups.schedule_of(settings) == ""  # unset with DATABASE_URL: none (the CLI sets the embedded one's)
    assert backups.schedule_of(settings.model_copy(update={"backup_schedule": "off"})) == ""
    assert backups.schedule_of(settings.model_copy(update={"backup_schedule": " 0 2 * * * "})) == "0 2 * * *"
    assert jobs.SCHEDULES["backup"].expression(settings.model_copy(update={"backup_schedule": "5 4 * * *"})) == (
        "5 4 * * *"
    )


async def test_retention_keeps_the_newest_of_each_day_and_week_as_the_clock_moves(client, db, tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    async def made(at: datetime, where: Path = directory, status: str = "succeeded") -> int:
        path = where / f"livehub-{at:%Y%m%dT%H%M%S}.dump"
        path.write_bytes(b"x")
        backups.manifest_path(path).write_text("{}")
        return await db.fetchval(
            """INSERT INTO backups (started_at, finished_at, status, trigger, path, size_bytes, sha256)
               VALUES ($1, $1, $2, 'schedule', $3, 1, 'x') RETURNING id""",
            at,
            status,
            str(path),
        )

    # Two backups a day from October 1st to Wednesday December 2nd 2026.
    ids = {}
    day = datetime(2026, 10, 1, tzinfo=UTC)
    while day.date() <= datetime(2026, 12, 2).date():
        for hour in (3, 15):
            at = day + timedelta(hours=hour)
            ids[at] = await made(at)
        day += timedelta(days=1)
    failed = await made(datetime(2026, 11, 1, 9, tzinfo=UTC), status="failed")
    other_dir = await made(datetime(2026, 10, 2, 9, tzinfo=UTC), where=elsewhere)
    ctx = context(client)

    def at15(month: int, dom: int) -> int:
        return ids[datetime(2026, month, dom, 15, tzinfo=UTC)]

    async def kept() -> set[int]:
        return {r["id"] for r in await db.fetch("SELECT id FROM backups WHERE status = 'succeeded'")}

    # Wednesday evening: the last 7 days (Nov 26 - Dec 2) and the last 4 ISO weeks, whose newest are Dec 2,
    # Nov 29 (both among the days), Nov 22 and Nov 15.
    await backups.apply_retention(ctx.pool, ctx.settings, now=datetime(2026, 12, 2, 20, tzinfo=UTC))
    days = {at15(11, d) for d in range(26, 31)} | {at15(12, 1), at15(12, 2)}
    assert await kept() == days | {at15(11, 22), at15(11, 15), other_dir}
    # A week later with no backup since: the newest of each of the last 4 weeks that have one.
    await backups.apply_retention(ctx.pool, ctx.settings, now=datetime(2026, 12, 9, 20, tzinfo=UTC))
    assert await kept() == {at15(12, 2), at15(11, 29), at15(11, 22), other_dir}

    # Deleted files are gone with their manifests, their rows marked; the rest untouched.
    on_disk = sorted(p.name for p in directory.iterdir())
    assert on_disk == sorted(
        n
        # The failed one's file is not retention's: only succeeded backups are counted and deleted.
        for at in ("20261202T150000", "20261129T150000", "20261122T150000", "20261101T090000")
        for n in (f"livehub-{at}.dump", f"livehub-{at}.manifest.json")
    )
    assert len(list(elsewhere.iterdir())) == 2
    assert await db.fetchval("SELECT status FROM backups WHERE id = $1", failed) == "failed"
    deleted = await db.fetchrow("SELECT status, deleted_at FROM backups WHERE id = $1", at15(11, 15))
    assert deleted["status"] == "deleted" and deleted["deleted_at"] is not None

    # A file that cannot be deleted (a non-empty directory in its place: unlink fails even as root) keeps its
    # row succeeded, to be tried again; one already gone counts as deleted.
    stuck, missing = at15(12, 2), at15(11, 29)
    stuck_path = Path(await db.fetchval("SELECT path FROM backups WHERE id = $1", stuck))
    stuck_path.unlink()
    stuck_path.mkdir()
    (stuck_path / "x").write_text("")
    Path(await db.fetchval("SELECT path FROM backups WHERE id = $1", missing)).unlink()
    await backups.apply_retention(ctx.pool, ctx.settings, now=datetime(2027, 3, 1, 20, tzinfo=UTC))
    assert await kept() == {stuck, other_dir}
    assert backups.manifest_path(stuck_path).is_file()
    assert await db.fetchval("SELECT status FROM backups WHERE id = $1", missing) == "deleted"


def test_to_keep_with_weeks_off_and_a_backup_from_the_future():
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    stamps = [(i, now - timedelta(days=i)) for i in range(20)] + [("future", now + timedelta(hours=1))]
    assert backups.to_keep(stamps, now, keep_daily=2, keep_weekly=0) == {0, 1, "future"}


async def admins_told(db) -> list:
    return await db.fetch("SELECT user_id, payload FROM notifications WHERE kind = 'backup_failed' ORDER BY user_id")


async def test_a_failed_backup_is_logged_and_the_admins_are_told(client, make, db, tmp_path):
    admin = await make.admin()
    other_admin = await make.admin()
    await make.user()  # not an admin: not told
    ctx = context(client)
    # The database to back up does not answer (its password must not show anywhere).
    away = "postgresql://postgres:hunter2@127.0.0.1:1/livehub"
    ctx_away = jobs.Context(ctx.pool, ctx.settings.model_copy(update={"database_url": away}), None, ctx.mailer)
    row = await backups.backup_and_prune(ctx_away, "schedule")
    assert row["status"] == "failed" and "cannot connect" in row["error"] and "hunter2" not in row["error"]
    assert "postgres:***@127.0.0.1:1" in row["error"]
    told = await admins_told(db)
    assert sorted(str(t["user_id"]) for t in told) == sorted([admin.id, other_admin.id])
    assert told[0]["payload"]["backup_id"] == row["id"] and told[0]["payload"]["trigger"] == "schedule"

    # A directory that cannot be made (a file is in its way).
    (tmp_path / "blocked").write_text("")
    ctx_blocked = jobs.Context(
        ctx.pool, ctx.settings.model_copy(update={"backup_dir": tmp_path / "blocked" / "backups"}), None, ctx.mailer
    )
    row = await backups.backup_and_prune(ctx_blocked, "schedule")
    assert row["status"] == "failed" and "backup directory" in row["error"]
    assert len(await admins_told(db)) == 4
    statuses = [r["status"] for r in await db.fetch("SELECT status FROM backups ORDER BY id")]
    assert statuses == ["failed", "failed"]


async def test_admins_list_and_start_backups(client, make, db, tmp_path):
    admin = await make.admin()
    user = await make.user()
    for method in ("GET", "POST"):
        res = await client.request(method, "/api/admin/backups", headers=user.headers)
        assert res.status == 403 and (await res.json())["error"]["code"] == "forbidden"
    res = await client.get("/api/admin/backups", headers=admin.headers)
    assert res.status == 200 and await res.json() == {"items": [], "next_cursor": None}

    res = await client.post("/api/admin/backups", headers=admin.headers)
    assert res.status == 202, await res.text()
    started = (await res.json())["backup"]
    assert started["status"] == "running" and started["trigger"] == "admin" and started["requested_by"] == admin.id
    # The node's job worker makes it.
    deadline = time.monotonic() + 120
    while await db.fetchval("SELECT status FROM backups WHERE id = $1", started["id"]) == "running":
        assert time.monotonic() < deadline, "the queued backup never ran"
        await asyncio.sleep(0.2)
    res = await client.get("/api/admin/backups", headers=admin.headers)
    listed = (await res.json())["items"]
    assert [b["id"] for b in listed] == [started["id"]]
    assert listed[0]["status"] == "succeeded", listed[0]
    assert listed[0]["size_bytes"] > 0 and listed[0]["file_name"].endswith(".dump")
    assert (tmp_path / "backups" / listed[0]["file_name"]).is_file()
    audit = await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'backup.start'")
    assert audit == 1

    # Paged newest first.
    await db.execute("SELECT backup_started('cli', NULL)")
    first = await (await client.get("/api/admin/backups?limit=1", headers=admin.headers)).json()
    assert first["items"][0]["trigger"] == "cli" and first["next_cursor"]
    rest = await (
        await client.get(f"/api/admin/backups?limit=1&cursor={first['next_cursor']}", headers=admin.headers)
    ).json()
    assert [b["id"] for b in rest["items"]] == [started["id"]] and rest["next_cursor"] is None
    res = await client.get("/api/admin/backups?cursor=x", headers=admin.headers)
    assert res.status == 422 and (await res.json())["error"]["code"] == "validation_error"


def run_cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LIVEHUB), *args],
        cwd=cwd,
        timeout=300,
        env={**os.environ, "LIVEHUB_DATA_DIR": str(cwd), **env},
        capture_output=True,
        text=True,
    )


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1) if "@" in rest else ("postgres", rest)
    return f"{scheme}://{user.split(':', 1)[0]}:{password}@{host}"


async def test_the_backup_and_restore_commands(db, database_url, new_database, tmp_path):
    made = await asyncio.to_thread(
        run_cli, tmp_path, "backup", "--to", str(tmp_path / "out"), DATABASE_URL=database_url
    )
    assert made.returncode == 0, made.stderr
    dumps = list((tmp_path / "out").glob("*.dump"))
    assert len(dumps) == 1 and str(dumps[0]) in made.stdout
    assert await db.fetchval("SELECT trigger FROM backups WHERE status = 'succeeded'") == "cli"

    target = with_password(new_database, "s3cret-pw")
    restored = await asyncio.to_thread(run_cli, tmp_path, "restore", str(dumps[0]), "--to", target)
    assert restored.returncode == 0, restored.stderr
    assert "books balanced" in restored.stdout and "s3cret-pw" not in restored.stdout + restored.stderr
    refused = await asyncio.to_thread(run_cli, tmp_path, "restore", str(dumps[0]), "--to", target)
    assert refused.returncode == 1 and "is not empty" in refused.stderr and "--force" in refused.stderr
    assert "s3cret-pw" not in refused.stdout + refused.stderr
    forced = await asyncio.to_thread(run_cli, tmp_path, "restore", str(dumps[0]), "--to", target, "--force")
    assert forced.returncode == 0, forced.stderr
    # The restored database holds the backup's own row as the dump saw it, running: it says it never ended.
    conn = await asyncpg.connect(new_database)
    try:
        rows = [tuple(r) for r in await conn.fetch("SELECT trigger, status, error FROM backups")]
    finally:
        await conn.close()
    assert rows == [("cli", "failed", "still running when the backup this database was restored from was taken")]


def test_tools_use_the_running_embedded_server_of_the_data_dir(private_postgres, tmp_path):
    from livehub.cli import tool_database

    # A node's embedded server runs on <data dir>/pgdata: a tool connects to it instead of starting another.
    data_dir = private_postgres.data_dir.parent
    with tool_database(settings_for("").model_copy(update={"database_url": None, "data_dir": data_dir})) as found:
        assert found.database_url == f"postgresql://postgres@127.0.0.1:{private_postgres.port}/livehub"
    assert private_postgres.alive()
