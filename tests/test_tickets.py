"""Support tickets through the REST API against a real PostgreSQL: who sees which tickets, who may answer,
how replies and the status move a ticket, that a closed one takes no reply, that an order must be the
opener's, the limits, and the notifications each write stores in its own transaction."""

import uuid

from tests.helpers import error_of, top_up


async def ok(res, status: int = 200) -> dict:
    assert res.status == status, await res.text()
    return await res.json()


async def order_of(client, make, buyer, seller) -> dict:
    """A paid order of `buyer` from `seller`'s shop."""
    product = await make.product(seller)
    await top_up(client, buyer, 10_000)
    body = {"items": [{"variant_id": product["variants"][0]["id"], "quantity": 1}]}
    return (await ok(await client.post("/api/orders", json=body, headers=buyer.headers), 201))["order"]


async def open_ticket(client, account, subject="Where is my parcel?", body="It has not come yet.", **extra):
    return await client.post("/api/tickets", json={"subject": subject, "body": body, **extra}, headers=account.headers)


async def opened(client, account, **extra) -> dict:
    return (await ok(await open_ticket(client, account, **extra), 201))["ticket"]


async def reply(client, account, ticket_id, body="Thanks, looking into it."):
    return await client.post(f"/api/tickets/{ticket_id}/messages", json={"body": body}, headers=account.headers)


async def set_status(client, account, ticket_id, status):
    return await client.post(f"/api/tickets/{ticket_id}/status", json={"status": status}, headers=account.headers)


async def listed(client, account, query: str = "") -> list[dict]:
    return (await ok(await client.get(f"/api/tickets{query}", headers=account.headers)))["items"]


async def ticket_notes(db) -> int:
    return await db.fetchval("SELECT count(*) FROM notifications WHERE kind LIKE 'ticket%'")


async def notes(db, account) -> list[dict]:
    """The ticket notifications stored for `account` (orders notify too: those are left out), oldest first."""
    rows = await db.fetch(
        """SELECT kind, payload FROM notifications WHERE user_id = $1 AND kind LIKE 'ticket%'
            ORDER BY created_at, id""",
        uuid.UUID(account.id),
    )
    return [dict(r) for r in rows]


async def test_a_ticket_about_an_order_goes_to_its_seller_and_back(client, make, db):
    seller = await make.seller(shop_name="Glow Lab")
    buyer = await make.user()
    order = await order_of(client, make, buyer, seller)

    ticket = await opened(client, buyer, order_id=order["id"])
    assert ticket["status"] == "open" and ticket["subject"] == "Where is my parcel?"
    assert ticket["order"] == {"id": order["id"], "number": order["number"]}
    assert ticket["seller"] == {"id": seller.seller["id"], "shop_name": "Glow Lab"}
    assert ticket["opener"] == {"id": buyer.id, "display_name": buyer.user["display_name"]}
    assert ticket["last_reply_by"] == "opener" and ticket["message_count"] == 1
    (first,) = ticket["messages"]
    assert (first["body"], first["role"], first["author"]["id"]) == ("It has not come yet.", "opener", buyer.id)

    # The seller is told, in the same transaction: a stored notification with what the email needs.
    (note,) = await notes(db, seller)
    assert note["kind"] == "ticket_opened"
    payload = note["payload"]
    assert payload["ticket_id"] == ticket["id"] and payload["order_number"] == order["number"]
    assert payload["from"]["role"] == "opener" and payload["excerpt"] == "It has not come yet."
    assert payload["path"] == f"/support/{ticket['id']}"
    assert await notes(db, buyer) == []

    # The seller answers: the buyer is told, and the ticket waits on the customer.
    answered = (await ok(await reply(client, seller, ticket["id"], "Shipped today."), 201))["ticket"]
    assert answered["status"] == "waiting" and answered["last_reply_by"] == "seller"
    assert [(m["role"], m["body"]) for m in answered["messages"]] == [
        ("opener", "It has not come yet."),
        ("seller", "Shipped today."),
    ]
    replies = await notes(db, buyer)
    assert [n["kind"] for n in replies] == ["ticket_reply"] and replies[0]["payload"]["excerpt"] == "Shipped today."
    assert replies[0]["payload"]["from"]["role"] == "seller"

    # The buyer writes back: open again, and the seller is told.
    again = (await ok(await reply(client, buyer, ticket["id"], "Got it, thanks!"), 201))["ticket"]
    assert again["status"] == "open" and again["last_reply_by"] == "opener" and again["message_count"] == 3
    assert [n["kind"] for n in await notes(db, seller)] == ["ticket_opened", "ticket_reply"]


async def test_each_reply_on_an_order_ticket_tells_every_other_party(client, make, db):
    """The opener, the order's seller and the admins who have written in the ticket hear of each reply,
    never its author; an admin who has not written is left alone."""
    seller = await make.seller(shop_name="Glow Lab")
    buyer = await make.user()
    admin, bystander = await make.admin(), await make.admin()
    order = await order_of(client, make, buyer, seller)
    ticket = await opened(client, buyer, order_id=order["id"])

    async def replies_to(account) -> list[tuple[str, str]]:
        return [
            (n["payload"]["from"]["role"], n["payload"]["excerpt"])
            for n in await notes(db, account)
            if n["kind"] == "ticket_reply"
        ]

    # An admin steps in: the buyer and the shop both hear it.
    await ok(await reply(client, admin, ticket["id"], "Support here: the courier lost it."), 201)
    assert await replies_to(buyer) == [("admin", "Support here: the courier lost it.")]
    assert await replies_to(seller) == [("admin", "Support here: the courier lost it.")]
    note = next(n for n in await notes(db, seller) if n["kind"] == "ticket_reply")
    assert note["payload"]["ticket_id"] == ticket["id"] and note["payload"]["order_number"] == order["number"]
    assert note["payload"]["shop_name"] == "Glow Lab" and note["payload"]["from"]["id"] == admin.id

    # The buyer answers: the seller and the admin who wrote are told; the buyer and the other admin are not.
    await ok(await reply(client, buyer, ticket["id"], "Can you send another?"), 201)
    assert await replies_to(seller) == [
        ("admin", "Support here: the courier lost it."),
        ("opener", "Can you send another?"),
    ]
    assert await replies_to(admin) == [("opener", "Can you send another?")]
    assert await replies_to(buyer) == [("admin", "Support here: the courier lost it.")]

    # The seller answers: the buyer and the admin hear it, the seller does not hear of their own message.
    await ok(await reply(client, seller, ticket["id"], "Sent again today."), 201)
    assert (await replies_to(buyer))[-1] == ("seller", "Sent again today.")
    assert await replies_to(admin) == [("opener", "Can you send another?"), ("seller", "Sent again today.")]
    assert [role for role, _ in await replies_to(seller)] == ["admin", "opener"]
    assert await notes(db, bystander) == []
    # One notification per party per reply: 2 + 2 + 2.
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE kind = 'ticket_reply'") == 6


async def test_a_ticket_without_an_order_goes_to_the_admins(client, make, db):
    admins = [await make.admin(), await make.admin()]
    buyer = await make.user()
    ticket = await opened(client, buyer, subject="Cannot change my email", body="How do I?")
    assert ticket["order"] is None and ticket["seller"] is None
    for admin in admins:
        assert [n["kind"] for n in await notes(db, admin)] == ["ticket_opened"]
    # An admin answers; the buyer is told, and the admins are told of the buyer's next message.
    await ok(await reply(client, admins[0], ticket["id"], "Under Account."), 201)
    assert [n["payload"]["from"]["role"] for n in await notes(db, buyer)] == ["admin"]
    await ok(await reply(client, buyer, ticket["id"], "Found it."), 201)
    for admin in admins:
        assert [n["kind"] for n in await notes(db, admin)] == ["ticket_opened", "ticket_reply"]


async def test_who_sees_which_tickets(client, make, db):
    admin = await make.admin()
    seller, other_seller = await make.seller(), await make.seller()
    buyer, stranger = await make.user(), await make.user()
    order = await order_of(client, make, buyer, seller)
    about_order = await opened(client, buyer, order_id=order["id"])
    general = await opened(client, buyer, subject="A question")
    # The seller's own ticket (as a customer of another shop).
    sellers_own = await opened(client, seller, subject="My payout")

    def ids(items):
        return {t["id"] for t in items}

    assert ids(await listed(client, buyer)) == {about_order["id"], general["id"]}
    assert ids(await listed(client, seller)) == {about_order["id"], sellers_own["id"]}
    assert ids(await listed(client, seller, "?scope=shop")) == {about_order["id"]}
    assert ids(await listed(client, seller, "?scope=mine")) == {sellers_own["id"]}
    assert ids(await listed(client, buyer, "?scope=shop")) == set()
    assert await listed(client, other_seller) == [] and await listed(client, stranger) == []
    assert ids(await listed(client, admin)) == {about_order["id"], general["id"], sellers_own["id"]}
    # Lists carry no messages.
    assert all(t["messages"] is None for t in await listed(client, admin))

    for account in (buyer, seller, admin):
        got = (await ok(await client.get(f"/api/tickets/{about_order['id']}", headers=account.headers)))["ticket"]
        assert got["id"] == about_order["id"] and len(got["messages"]) == 1
    # Anyone else is told it does not exist, as with orders; so is a general ticket to the shop's seller.
    for account, ticket in [(stranger, about_order), (other_seller, about_order), (seller, general)]:
        res = await client.get(f"/api/tickets/{ticket['id']}", headers=account.headers)
        await error_of(res, 404, "not_found")
        await error_of(await reply(client, account, ticket["id"]), 404, "not_found")
        await error_of(await set_status(client, account, ticket["id"], "closed"), 404, "not_found")
    await error_of(await client.get("/api/tickets/not-a-uuid", headers=buyer.headers), 404, "not_found")
    await error_of(await client.get(f"/api/tickets/{uuid.uuid4()}", headers=buyer.headers), 404, "not_found")
    # Signed out: nothing.
    await error_of(await client.get("/api/tickets"), 401, "unauthorized")
    await error_of(await client.post("/api/tickets", json={"subject": "x", "body": "y"}), 401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM ticket_messages") == 3


async def test_an_order_must_be_the_openers(client, make, db):
    admin = await make.admin()
    seller = await make.seller()
    buyer, stranger = await make.user(), await make.user()
    order = await order_of(client, make, buyer, seller)
    # Someone else's order is not found, as orders answer; one the caller sees but did not buy (their shop's,
    # or any as an admin) is forbidden.
    await error_of(await open_ticket(client, stranger, order_id=order["id"]), 404, "not_found")
    await error_of(await open_ticket(client, stranger, order_id=str(uuid.uuid4())), 404, "not_found")
    await error_of(await open_ticket(client, seller, order_id=order["id"]), 403, "forbidden")
    await error_of(await open_ticket(client, admin, order_id=order["id"]), 403, "forbidden")
    assert await db.fetchval("SELECT count(*) FROM tickets") == 0
    assert await ticket_notes(db) == 0


async def test_replies_and_status_move_the_ticket(client, make, db):
    admin = await make.admin()
    seller = await make.seller()
    buyer = await make.user()
    order = await order_of(client, make, buyer, seller)
    ticket = await opened(client, buyer, order_id=order["id"])
    tid = ticket["id"]

    # The opener may close and reopen, nothing else.
    for status in ("waiting", "resolved"):
        await error_of(await set_status(client, buyer, tid, status), 403, "forbidden")
    closed = (await ok(await set_status(client, buyer, tid, "closed")))["ticket"]
    assert closed["status"] == "closed"
    # A closed ticket takes no reply, from anyone, and stores nothing.
    before = await ticket_notes(db)
    for account in (buyer, seller, admin):
        err = await error_of(await reply(client, account, tid), 409, "conflict")
        assert err["details"] == {"status": "closed"}
    assert await db.fetchval("SELECT count(*) FROM ticket_messages") == 1
    assert await ticket_notes(db) == before
    assert (await ok(await set_status(client, buyer, tid, "open")))["ticket"]["status"] == "open"

    # The seller and an admin set any status; setting the current one changes nothing.
    for account, status in [(seller, "resolved"), (admin, "waiting"), (seller, "closed"), (admin, "open")]:
        assert (await ok(await set_status(client, account, tid, status)))["ticket"]["status"] == status
    current = (await ok(await client.get(f"/api/tickets/{tid}", headers=admin.headers)))["ticket"]
    same = (await ok(await set_status(client, admin, tid, "open")))["ticket"]
    assert same["updated_at"] == current["updated_at"]

    # A reply to a resolved ticket moves it on like any other: staff -> waiting, opener -> open.
    await ok(await set_status(client, seller, tid, "resolved"))
    assert (await ok(await reply(client, admin, tid, "Anything else?"), 201))["ticket"]["status"] == "waiting"
    await ok(await set_status(client, seller, tid, "resolved"))
    assert (await ok(await reply(client, buyer, tid, "Yes, one thing."), 201))["ticket"]["status"] == "open"
    got = (await ok(await client.get(f"/api/tickets/{tid}", headers=buyer.headers)))["ticket"]
    roles = [m["role"] for m in got["messages"]]
    assert roles == ["opener", "admin", "opener"]
    # An admin's answer on an order's ticket goes to the opener and the shop; the buyer's to the shop and the
    # admin who answered.
    assert [n["payload"]["from"]["role"] for n in await notes(db, buyer) if n["kind"] == "ticket_reply"] == ["admin"]
    assert [n["payload"]["from"]["role"] for n in await notes(db, seller)] == ["opener", "admin", "opener"]
    assert [n["payload"]["from"]["role"] for n in await notes(db, admin)] == ["opener"]
    await error_of(await set_status(client, seller, tid, "lost"), 422, "validation_error")


async def test_validation(client, make, db):
    buyer = await make.user()
    ticket = await opened(client, buyer)
    bad = [
        {"subject": "", "body": "x"},
        {"subject": "   ", "body": "x"},
        {"subject": "x" * 201, "body": "x"},
        {"subject": "two\nlines", "body": "x"},
        {"subject": "x", "body": ""},
        {"subject": "x", "body": " \n "},
        {"subject": "x", "body": "x" * 5001},
        {"subject": "x", "body": "bell \x07"},
        {"subject": "x"},
        {"subject": "x", "body": "x", "order_id": "not-a-uuid"},
        {"subject": "x", "body": "x", "extra": 1},
    ]
    for body in bad:
        res = await client.post("/api/tickets", json=body, headers=buyer.headers)
        await error_of(res, 422, "validation_error")
    for body in ({"body": ""}, {"body": "x" * 5001}, {}, {"body": "x", "status": "open"}):
        res = await client.post(f"/api/tickets/{ticket['id']}/messages", json=body, headers=buyer.headers)
        await error_of(res, 422, "validation_error")
    for query in ("?status=lost", "?older_than_s=-1", "?sort=newest", "?scope=all", "?cursor=x", "?limit=0"):
        await error_of(await client.get(f"/api/tickets{query}", headers=buyer.headers), 422, "validation_error")
    # The longest allowed go through, lines and all.
    long = await opened(client, buyer, subject="s" * 200, body="line\n" * 999 + "b" * 5)
    assert len(long["messages"][0]["body"]) == 5000
    assert await db.fetchval("SELECT count(*) FROM tickets") == 2


async def test_the_admin_queue_by_status_and_age_oldest_first(client, make, db):
    admin = await make.admin()
    buyers = [await make.user() for _ in range(4)]
    tickets = [await opened(client, b, subject=f"Question {i}") for i, b in enumerate(buyers)]
    # Ages set on the rows (no waiting): ticket i last heard from (4 - i) hours ago; ticket 1 answered.
    for i, t in enumerate(tickets):
        await db.execute(
            "UPDATE tickets SET last_reply_at = now() - make_interval(hours => $2) WHERE id = $1",
            uuid.UUID(t["id"]),
            4 - i,
        )
    await ok(await set_status(client, admin, tickets[1]["id"], "waiting"))

    queue = await listed(client, admin, "?status=open&sort=oldest")
    assert [t["subject"] for t in queue] == ["Question 0", "Question 2", "Question 3"]
    older = await listed(client, admin, "?status=open&sort=oldest&older_than_s=7200")
    assert [t["subject"] for t in older] == ["Question 0", "Question 2"]
    recent = await listed(client, admin)
    assert [t["subject"] for t in recent] == ["Question 3", "Question 2", "Question 1", "Question 0"]
    assert [t["subject"] for t in await listed(client, admin, "?status=waiting")] == ["Question 1"]

    # Paged with the cursor, in the list's own order.
    seen, cursor = [], None
    while True:
        query = "?sort=oldest&limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = await ok(await client.get(f"/api/tickets{query}", headers=admin.headers))
        seen += [t["subject"] for t in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == ["Question 0", "Question 1", "Question 2", "Question 3"]
    # Another user's ticket is no position in a buyer's list.
    page = await ok(await client.get(f"/api/tickets?cursor={tickets[0]['id']}", headers=buyers[1].headers))
    assert page == {"items": [], "next_cursor": None}


async def test_the_notification_and_its_delivery_commit_with_the_reply(client, make, db):
    """The reply, its notification and the job that delivers it are one transaction: rolled back together."""
    seller = await make.seller()
    buyer = await make.user()
    order = await order_of(client, make, buyer, seller)
    ticket = await opened(client, buyer, order_id=order["id"])
    before = (await ticket_notes(db), await db.fetchval("SELECT count(*) FROM ticket_messages"))
    # The delivery job of that one notification (the node's worker takes and finishes others meanwhile).
    jobs = """SELECT count(*) FROM pgqueuer WHERE entrypoint = 'deliver_notification'
                AND convert_from(payload, 'UTF8')::jsonb->>'notification_id' = $1"""
    tx = db.transaction()
    await tx.start()
    await db.execute("SELECT reply_ticket($1, $2, false, 'On its way.')", uuid.UUID(ticket["id"]), uuid.UUID(seller.id))
    assert await ticket_notes(db) == before[0] + 1
    note = await db.fetchval(
        "SELECT id::text FROM notifications WHERE kind = 'ticket_reply' ORDER BY created_at DESC LIMIT 1"
    )
    assert await db.fetchval(jobs, note) == 1
    await tx.rollback()
    assert (await ticket_notes(db), await db.fetchval("SELECT count(*) FROM ticket_messages")) == before
    assert await db.fetchval(jobs, note) == 0


async def test_emails_through_a_real_smtp_server(smtp_server, settings, client, make):
    """A buyer's ticket about an order emails the shop's seller (ticket_opened); the seller's answer emails the
    buyer (ticket_reply), each with the message and the link to the conversation."""
    from smtp_server import body_html, body_text

    seller = await make.seller(shop_name="Glow Lab")
    buyer = await make.user()
    order = await order_of(client, make, buyer, seller)
    ticket = await opened(
        client, buyer, subject="Wrong colour", body="I ordered red,\nit came blue.", order_id=order["id"]
    )
    link = f"{settings.public_url}/support/{ticket['id']}"

    opened_mail = await smtp_server.wait_for(seller.user["email"], subject="New support ticket")
    assert opened_mail["Subject"] == f"New support ticket about order {order['number']}: Wrong colour"
    text = body_text(opened_mail).replace("\r\n", "\n")
    assert "I ordered red,\nit came blue." in text and link in text
    assert f'href="{link}"' in body_html(opened_mail)

    await ok(await reply(client, seller, ticket["id"], "Sorry! A red one is on its way."), 201)
    answer = await smtp_server.wait_for(buyer.user["email"], subject="Re: Wrong colour")
    assert answer["Subject"] == f"Re: Wrong colour (order {order['number']})"
    text = body_text(answer).replace("\r\n", "\n")
    assert "Glow Lab answered the support ticket" in text and "A red one is on its way." in text
    assert link in text
    # Each once: the buyer got nothing about the ticket they opened themselves.
    assert smtp_server.messages(buyer.user["email"], subject="New support ticket") == []
    assert len(smtp_server.messages(seller.user["email"], subject="support ticket")) == 1


async def test_the_demo_has_a_conversation_once(settings, db, client):
    """`run.py --demo`: viewer1 asked the shop about their past order and the shop answered; seeding again
    adds nothing."""
    from livehub import demo
    from livehub.auth import PasswordHasher
    from storage.db import create_pool

    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        for _ in range(2):
            await demo.seed(pool, PasswordHasher(settings))
    finally:
        await pool.close()
    (row,) = await db.fetch(
        """SELECT t.status, u.email, (SELECT array_agg(author_role ORDER BY created_at, id) FROM ticket_messages m
                                       WHERE m.ticket_id = t.id) AS roles
             FROM tickets t JOIN users u ON u.id = t.opener_id JOIN orders o ON o.id = t.order_id"""
    )
    assert (row["status"], row["email"], row["roles"]) == ("waiting", demo.VIEWERS[0], ["opener", "seller"])
