"""Guest hosts in Chromium: a seller plans a show in the studio with another user as its host and a
commission; the host (no shop of their own) sees the invitation in their studio, accepts it, and goes live
with the fake camera; the seller's studio shows the show as hosted by a guest."""

import asyncio
import re
import time
import uuid

import pytest
from playwright.async_api import expect

from conftest import settings_for

WAIT_MS = 20_000


@pytest.fixture
def settings(database_url):
    return settings_for(database_url).model_copy(update={"media_host_addresses": ["127.0.0.1"]})


async def db_until(db, sql: str, *args, expected) -> None:
    """Polls the database until the query answers `expected` (bounded)."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while (value := await db.fetchval(sql, *args)) != expected:
        assert time.monotonic() < deadline, f"{sql} stayed {value!r}, not {expected!r}"
        await asyncio.sleep(0.1)


async def test_invite_accept_and_the_host_starts_the_show(open_page, make, db):
    seller = await make.seller(shop_name="Lamp Corner")
    await make.product(seller, title="Glow lamp", variants=[{"sku": "LAMP-H", "price_cents": 2500, "stock": 20}])
    host = await make.user()

    # The host's studio: no shop, no invitation yet, but their host id to give to shops.
    host_page = await open_page("/studio", host)
    await expect(host_page.locator("#host-id")).to_have_text(host.id, timeout=WAIT_MS)
    await expect(host_page.locator("#gate")).to_be_visible()
    await expect(host_page.locator("#hosting-empty")).to_be_visible()

    # The seller plans a show hosted by them at 12.5%.
    studio = await open_page("/studio", seller)
    # (A shop with no show yet finds the form open.)
    await studio.get_by_label("Title").fill("Guest lamps")
    await studio.get_by_label("Guest host's id").fill(host.id)
    await studio.get_by_label("Host's commission (%)").fill("12.5")
    await studio.get_by_role("checkbox", name="Glow lamp").check()
    await studio.get_by_role("button", name="Create show").click()
    note = re.compile(r"Hosted by a guest \(invited\)")
    await expect(studio.locator("#host-note")).to_have_text(note, timeout=WAIT_MS)
    await expect(studio.locator("#go-live")).to_be_hidden()
    await expect(studio.get_by_role("button", name="Take the show back")).to_be_visible()
    stream_id = await studio.evaluate("document.body.dataset.streamId")
    await db_until(
        db,
        "SELECT host_status || ':' || host_commission_bps FROM streams WHERE id = $1",
        uuid.UUID(stream_id),
        expected="invited:1250",
    )

    # The host reloads the studio: the invitation, with the commission; accepting opens the studio on it.
    await host_page.reload()
    invitation = host_page.locator(f"#hosting-list li[data-stream-id='{stream_id}']")
    await expect(invitation).to_contain_text("Lamp Corner", timeout=WAIT_MS)
    await expect(invitation).to_contain_text("12.50%")
    await host_page.get_by_role("button", name="Accept hosting Guest lamps").click()
    await db_until(db, "SELECT host_status FROM streams WHERE id = $1", uuid.UUID(stream_id), expected="accepted")
    await expect(host_page.locator("#studio")).to_be_visible(timeout=WAIT_MS)
    await expect(host_page.locator("#stream-select")).to_have_value(stream_id, timeout=WAIT_MS)
    await expect(invitation).to_contain_text("Accepted")

    # The host goes live with the fake camera.
    go_live = host_page.get_by_role("button", name="Go live")
    await expect(go_live).to_be_enabled(timeout=WAIT_MS)
    await go_live.click()
    await expect(host_page.locator("#status")).to_have_text("LIVE", timeout=WAIT_MS)
    await db_until(db, "SELECT status FROM streams WHERE id = $1", uuid.UUID(stream_id), expected="live")
    await expect(host_page.locator("#on-air")).to_be_visible(timeout=WAIT_MS)

    # The shop's studio follows: live, hosted by the guest, nothing to take back any more.
    await studio.reload()
    await expect(studio.locator("#status")).to_have_text("LIVE", timeout=WAIT_MS)
    await expect(studio.locator("#host-note")).to_have_text(re.compile(r"Hosted by a guest \(accepted\)"))
    await expect(studio.get_by_role("button", name="Take the show back")).to_be_hidden()
