"""Show reminders and scheduled-show notifications: remind me, the sweep (with a controllable clock, never
a sleep), going live, and followers told of a scheduled show."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from helpers import error_of
from livehub import jobs
from livehub.shop import reminders
from smtp_server import body_html, body_text

LEAD = timedelta(minutes=15)


async def scheduled_stream(make, seller=None, *, at: datetime | None = None) -> tuple:
    seller = seller or await make.seller()
    product = await make.product(seller)
    body = {"title": "Spring drop", "products": [{"product_id": product["id"]}]}
    if at is not None:
        body["scheduled_at"] = at.isoformat()
    res = await make.client.post("/api/streams", json=body, headers=seller.headers)
    assert res.status == 201, await res.text()
    return seller, (await res.json())["stream"]


async def notices(db, kind: str, stream_id: str) -> list[str]:
    """Who got a notification of `kind` about the stream, one entry per notification."""
    rows = await db.fetch(
        "SELECT user_id FROM notifications WHERE kind = $1 AND payload->>'stream_id' = $2 ORDER BY user_id",
        kind,
        stream_id,
    )
    return [str(r["user_id"]) for r in rows]


async def test_remind_me_is_idempotent_counted_and_only_for_scheduled_streams(client, make, db):
    at = datetime.now(UTC) + timedelta(hours=2)
    seller, stream = await scheduled_stream(make, at=at)
    viewer, other = await make.user(), await make.user()
    url = f"/api/streams/{stream['id']}/remind"

    for _ in range(2):
        res = await client.post(url, headers=viewer.headers)
        assert res.status == 200 and (await res.json()) == {"stream_id": stream["id"], "reminders": 1, "reminded": True}
    res = await client.post(url, headers=other.headers)
    assert (await res.json())["reminders"] == 2

    res = await client.get(f"/api/streams/{stream['id']}", headers=viewer.headers)
    body = (await res.json())["stream"]
    assert (body["reminders"], body["reminded"]) == (2, True)
    res = await client.get(f"/api/streams/{stream['id']}")
    body = (await res.json())["stream"]
    assert (body["reminders"], body["reminded"]) == (2, None)

    for _ in range(2):
        res = await client.delete(url, headers=viewer.headers)
        assert res.status == 200 and (await res.json()) == {
            "stream_id": stream["id"],
            "reminders": 1,
            "reminded": False,
        }

    await error_of(await client.post(url), 401, "unauthorized")
    await error_of(await client.post(f"/api/streams/{uuid.uuid4()}/remind", headers=viewer.headers), 404, "not_found")
    res = await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
    assert res.status == 200, await res.text()
    await error_of(await client.post(url, headers=viewer.headers), 409, "conflict")
    # Forgetting stays possible whatever the stream's state.
    res = await client.delete(url, headers=other.headers)
    assert res.status == 200 and (await res.json())["reminders"] == 0


async def test_reminders_go_out_at_the_lead_time_exactly_once(client, make, db):
    at = datetime.now(UTC) + timedelta(hours=3)
    _, stream = await scheduled_stream(make, at=at)
    _, later = await scheduled_stream(make, at=at + timedelta(hours=1))
    viewers = [await make.user() for _ in range(3)]
    for v in viewers:
        res = await client.post(f"/api/streams/{stream['id']}/remind", headers=v.headers)
        assert res.status == 200
    res = await client.post(f"/api/streams/{later['id']}/remind", headers=viewers[0].headers)
    assert res.status == 200

    # Not before 15 minutes ahead of the scheduled time...
    assert await reminders.sweep(db, at - LEAD - timedelta(seconds=1), LEAD.total_seconds()) == 0
    assert await notices(db, "show_reminder", stream["id"]) == []
    # ... then each reminder once, whatever the sweeps after.
    assert await reminders.sweep(db, at - LEAD, LEAD.total_seconds()) == 3
    assert await reminders.sweep(db, at - LEAD + timedelta(minutes=1), LEAD.total_seconds()) == 0
    assert await reminders.sweep(db, at, LEAD.total_seconds()) == 0
    assert await notices(db, "show_reminder", stream["id"]) == sorted(v.id for v in viewers)
    assert await notices(db, "show_reminder", later["id"]) == []
    payload = await db.fetchval("SELECT payload FROM notifications WHERE kind = 'show_reminder' LIMIT 1")
    assert payload["title"] == "Spring drop" and payload["path"] == f"/watch/{stream['id']}"
    assert datetime.fromisoformat(payload["scheduled_at"]) == at.replace(microsecond=at.microsecond)

    # The later stream's reminder at its own time.
    assert await reminders.sweep(db, at + timedelta(hours=1) - LEAD, LEAD.total_seconds()) == 1
    assert await notices(db, "show_reminder", later["id"]) == [viewers[0].id]


async def test_two_sweeps_at_once_send_each_reminder_once(client, make, db, database_url):
    at = datetime.now(UTC) + timedelta(hours=1)
    _, stream = await scheduled_stream(make, at=at)
    viewers = [await make.user() for _ in range(6)]
    for v in viewers:
        res = await client.post(f"/api/streams/{stream['id']}/remind", headers=v.headers)
        assert res.status == 200
    now = at - LEAD

    a, b = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        # One sweep holds its rows (not committed yet): the other skips them rather than send them again.
        async with a.transaction():
            assert await reminders.sweep(a, now, LEAD.total_seconds()) == 6
            assert await asyncio.wait_for(reminders.sweep(b, now, LEAD.total_seconds()), 10) == 0
        assert await reminders.sweep(b, now, LEAD.total_seconds()) == 0
        assert await notices(db, "show_reminder", stream["id"]) == sorted(v.id for v in viewers)

        # And racing from the start: together they send each of 6 new reminders once.
        _, second = await scheduled_stream(make, at=at)
        for v in viewers:
            res = await client.post(f"/api/streams/{second['id']}/remind", headers=v.headers)
            assert res.status == 200
        sent = await asyncio.gather(*(reminders.sweep(c, now, LEAD.total_seconds()) for c in (a, b)))
        assert sum(sent) == 6
        assert await notices(db, "show_reminder", second["id"]) == sorted(v.id for v in viewers)
    finally:
        await a.close()
        await b.close()


async def test_going_live_tells_reminders_and_followers_once_each(client, make, db):
    at = datetime.now(UTC) + timedelta(hours=1)
    seller = await make.seller()
    follower, both, reminded = await make.user(), await make.user(), await make.user()
    for who in (follower, both):
        res = await client.post(f"/api/sellers/{seller.seller['id']}/follow", headers=who.headers)
        assert res.status == 200, await res.text()
    _, stream = await scheduled_stream(make, seller, at=at)
    for who in (both, reminded):
        res = await client.post(f"/api/streams/{stream['id']}/remind", headers=who.headers)
        assert res.status == 200

    res = await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
    assert res.status == 200, await res.text()
    assert await notices(db, "stream_live", stream["id"]) == sorted([follower.id, both.id, reminded.id])
    # Once live, the sweep sends no "starting soon".
    assert await reminders.sweep(db, at - LEAD, LEAD.total_seconds()) == 0


async def test_followers_are_told_of_a_scheduled_show(client, make, db):
    seller = await make.seller()
    follower, stranger = await make.user(), await make.user()
    res = await client.post(f"/api/sellers/{seller.seller['id']}/follow", headers=follower.headers)
    assert res.status == 200
    at = datetime.now(UTC) + timedelta(days=1)
    _, stream = await scheduled_stream(make, seller, at=at)
    assert await notices(db, "show_scheduled", stream["id"]) == [follower.id]
    payload = await db.fetchval("SELECT payload FROM notifications WHERE kind = 'show_scheduled'")
    assert payload["shop_name"] == seller.seller["shop_name"] and payload["path"] == f"/watch/{stream['id']}"
    assert datetime.fromisoformat(payload["scheduled_at"]) == at
    assert stranger.id not in await notices(db, "show_scheduled", stream["id"])

    # A stream with no time to come (to go live at once) is not announced as scheduled.
    _, unscheduled = await scheduled_stream(make, seller)
    assert await notices(db, "show_scheduled", unscheduled["id"]) == []


def test_the_sweep_runs_every_minute_on_the_job_queue():
    assert jobs.SCHEDULES["send_due_reminders"].cron == "* * * * *"
    assert jobs.SCHEDULES["send_due_reminders"].handler is reminders.send_due_reminders


@pytest.mark.parametrize("lead_s", [0, 900])
async def test_the_lead_is_a_setting(client, make, db, lead_s):
    at = datetime.now(UTC) + timedelta(hours=1)
    _, stream = await scheduled_stream(make, at=at)
    viewer = await make.user()
    assert (await client.post(f"/api/streams/{stream['id']}/remind", headers=viewer.headers)).status == 200
    assert await reminders.sweep(db, at - timedelta(seconds=lead_s + 1), lead_s) == 0
    assert await reminders.sweep(db, at - timedelta(seconds=lead_s), lead_s) == 1


async def test_the_reminder_and_the_scheduled_show_are_emailed(smtp_server, client, make, db, settings):
    seller = await make.seller(shop_name="Vinyl Den")
    fan, viewer = await make.user(), await make.user()
    res = await client.post(f"/api/sellers/{seller.seller['id']}/follow", headers=fan.headers)
    assert res.status == 200
    at = datetime(2031, 5, 4, 18, 30, tzinfo=UTC)
    _, stream = await scheduled_stream(make, seller, at=at)
    link = f"{settings.public_url}/watch/{stream['id']}"

    scheduled = await smtp_server.wait_for(fan.user["email"], subject="scheduled a show")
    assert scheduled["Subject"] == "Vinyl Den scheduled a show: Spring drop"
    assert "2031-05-04T18:30:00.000000Z" in body_text(scheduled) and link in body_text(scheduled)

    assert (await client.post(f"/api/streams/{stream['id']}/remind", headers=viewer.headers)).status == 200
    assert await reminders.sweep(db, at - LEAD, LEAD.total_seconds()) == 1
    msg = await smtp_server.wait_for(viewer.user["email"], subject="Starting soon")
    assert msg["Subject"] == "Starting soon: Spring drop by Vinyl Den"
    assert link in body_text(msg) and f'href="{link}"' in body_html(msg)
    # Swept again: nothing more is sent.
    assert await reminders.sweep(db, at - LEAD + timedelta(minutes=1), LEAD.total_seconds()) == 0
    deadline = asyncio.get_running_loop().time() + 15
    query = "SELECT count(*) FROM notifications WHERE kind = 'show_reminder' AND emailed_at IS NULL"
    while await db.fetchval(query):
        assert asyncio.get_running_loop().time() < deadline, "show_reminder not delivered"
        await asyncio.sleep(0.05)
    assert len(smtp_server.messages(viewer.user["email"], subject="Starting soon")) == 1
