"""The admin console's Backups tab in Chromium: the backups made so far (a scheduled one that succeeded, one
that failed with its error), and "Back up now" queueing one that the node's job worker makes while the tab
follows it to the end."""

import asyncio
import time

import pytest
from playwright.async_api import expect

from conftest import settings_for
from livehub import backups, jobs, keys
from livehub.mail import Mailer

TIMEOUT = 30_000  # ms: a dump on two busy cores


@pytest.fixture
def settings(database_url, tmp_path):
    """The app's settings, its backups going to this test's directory."""
    return settings_for(database_url).model_copy(update={"backup_dir": tmp_path / "backups"})


async def test_admin_sees_backups_and_starts_one(client, make, db, open_page):
    admin = await make.admin()
    app_settings = client.app[keys.SETTINGS]
    ctx = jobs.Context(client.app[keys.POOL], app_settings, None, Mailer(app_settings))
    done = await backups.backup_and_prune(ctx, "schedule")
    assert done["status"] == "succeeded"
    away = app_settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/livehub"})
    failed = await backups.backup_and_prune(jobs.Context(ctx.pool, away, None, ctx.mailer), "schedule")
    assert failed["status"] == "failed"

    page = await open_page("/admin#backups", admin)
    expect.set_options(timeout=TIMEOUT)
    table = page.locator("#backups-table tbody")
    await expect(table.locator("tr")).to_have_count(2)
    ok_row = table.locator(f'tr[data-backup-id="{done["id"]}"]')
    await expect(ok_row).to_contain_text("succeeded")
    await expect(ok_row).to_contain_text("Schedule")
    await expect(ok_row).to_contain_text(done["path"].rsplit("/", 1)[1])
    await expect(ok_row).to_contain_text("KiB")
    bad_row = table.locator(f'tr[data-backup-id="{failed["id"]}"]')
    await expect(bad_row).to_contain_text("failed")
    await expect(bad_row).to_contain_text("cannot connect to postgresql://postgres@127.0.0.1:1/livehub")

    await page.get_by_role("button", name="Back up now").click()
    await expect(table.locator("tr")).to_have_count(3)
    started = await db.fetchrow("SELECT id FROM backups WHERE trigger = 'admin'")
    assert started is not None
    deadline = time.monotonic() + 120
    while await db.fetchval("SELECT status FROM backups WHERE id = $1", started["id"]) == "running":
        assert time.monotonic() < deadline, "the queued backup never ran"
        await asyncio.sleep(0.2)
    new_row = table.locator(f'tr[data-backup-id="{started["id"]}"]')
    # The tab follows a running backup: it shows it succeeded without a reload.
    await expect(new_row).to_contain_text("succeeded")
    await expect(new_row).to_contain_text("Admin")
