"""Notifications: followers of a shop are notified (a row each, pushed through the hub) when it goes
live; a user lists theirs newest first and marks them read."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from livehub import keys
from livehub.shop import streams
from tests.helpers import error_of


def U(value) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def notifications(client, account, query: str = "") -> dict:
    res = await client.get(f"/api/notifications{query}", headers=account.headers)
    assert res.status == 200, await res.text()
    return await res.json()


async def test_followers_are_notified_when_a_shop_goes_live(client, make, db, monkeypatch):
    seller = await make.seller(shop_name="Glow Lab")
    fans = [await make.user() for _ in range(2)]
    bystander = await make.user()
    for fan in fans:
        res = await client.post(f"/api/sellers/{seller.seller['id']}/follow", headers=fan.headers)
        assert res.status == 200, await res.text()
    pushed = []

    async def notify(user_ids, payload):
        pushed.append((set(user_ids), payload))

    monkeypatch.setattr(client.app[keys.HUB], "notify", notify)
    res = await client.post("/api/streams", json={"title": "Serum night", "products": []}, headers=seller.headers)
    stream = (await res.json())["stream"]
    # Scheduling notifies no one.
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE kind = 'stream_live'") == 0

    res = await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
    assert res.status == 200, await res.text()

    expected = {"stream_id": stream["id"], "title": "Serum night", "seller_id": seller.seller["id"]}
    for fan in fans:
        (note,) = (await notifications(client, fan))["items"]
        assert note["kind"] == "stream_live" and note["read_at"] is None
        assert note["payload"] == {**expected, "shop_name": "Glow Lab"}
    assert (await notifications(client, bystander))["items"] == []
    # Each is pushed by its deliver_notification job, which runs after the commit.
    deadline = asyncio.get_running_loop().time() + 15
    while len(pushed) < len(fans) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert sorted(pushed, key=lambda p: str(p[0])) == sorted(
        [
            (
                {U(fan.id)},
                {
                    "type": "notification",
                    "notification": {
                        "id": note["id"],
                        "kind": "stream_live",
                        "payload": note["payload"],
                        "created_at": note["created_at"],
                        "read_at": None,
                    },
                },
            )
            for fan in fans
            for note in (await notifications(client, fan))["items"]
        ],
        key=lambda p: str(p[0]),
    )


async def test_start_stream_returns_the_followers_it_notified(client, make, db):
    seller = await make.seller()
    fan = await make.user()
    await db.execute("INSERT INTO follows (user_id, seller_id) VALUES ($1, $2)", U(fan.id), U(seller.seller["id"]))
    stream = await streams.create_stream(
        db, U(seller.id), title="Late show", scheduled_at=None, products=[], moderators=[]
    )
    live, followers = await streams.start_stream(db, U(stream["id"]), U(seller.id))
    assert live["status"] == "live" and followers == [U(fan.id)]
    assert await db.fetchval("SELECT user_id FROM notifications WHERE kind = 'stream_live'") == U(fan.id)


async def test_list_pages_newest_first_and_mark_read(client, make, db):
    me = await make.user()
    other = await make.user()
    now = datetime.now(UTC)
    ids = [
        await db.fetchval(
            """INSERT INTO notifications (user_id, kind, payload, created_at)
               VALUES ($1, 'stream_live', $2::text::jsonb, $3) RETURNING id""",
            U(me.id),
            f'{{"n": {n}}}',
            now - timedelta(minutes=10 - n),
        )
        for n in range(5)
    ]
    theirs = await db.fetchval(
        "INSERT INTO notifications (user_id, kind) VALUES ($1, 'stream_live') RETURNING id", U(other.id)
    )
    newest_first = [str(i) for i in reversed(ids)]

    first = await notifications(client, me, "?limit=2")
    assert [n["id"] for n in first["items"]] == newest_first[:2]
    assert [n["payload"] for n in first["items"]] == [{"n": 4}, {"n": 3}]
    assert first["next_cursor"] == newest_first[1]
    second = await notifications(client, me, f"?limit=2&cursor={first['next_cursor']}")
    assert [n["id"] for n in second["items"]] == newest_first[2:4]
    last = await notifications(client, me, f"?limit=2&cursor={second['next_cursor']}")
    assert [n["id"] for n in last["items"]] == newest_first[4:] and last["next_cursor"] is None
    # Another user's id is no cursor into my list.
    assert (await notifications(client, me, f"?cursor={theirs}"))["items"] == []
    await error_of(await client.get("/api/notifications?cursor=x", headers=me.headers), 422, "validation_error")
    await error_of(await client.get("/api/notifications"), 401, "unauthorized")

    async def mark(body: dict) -> int:
        res = await client.post("/api/notifications/read", json=body, headers=me.headers)
        assert res.status == 200, await res.text()
        return (await res.json())["marked"]

    assert await mark({"ids": [str(ids[0]), str(ids[1]), str(theirs)]}) == 2
    read = {n["id"] for n in (await notifications(client, me))["items"] if n["read_at"] is not None}
    assert read == {str(ids[0]), str(ids[1])}
    assert await mark({"ids": [str(ids[0])]}) == 0  # already read
    assert await mark({}) == 3
    assert await mark({"ids": None}) == 0
    assert await db.fetchval("SELECT read_at FROM notifications WHERE id = $1", theirs) is None
    await error_of(
        await client.post("/api/notifications/read", json={"ids": ["nope"]}, headers=me.headers),
        422,
        "validation_error",
    )
