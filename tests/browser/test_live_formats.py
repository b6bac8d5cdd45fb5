"""An auction and a giveaway in Chromium between a host and two viewers: the host starts an auction from the
studio; one viewer bids with a quick-bid button, the other sets a maximum and outbids them (the first sees
it, and a higher quick bid loses to the hidden maximum); a bid in the anti-snipe window visibly moves the
end; the winner is shown on every page and their order exists at the winning price. Then the host starts
a giveaway, both viewers enter, the host draws: the seed is revealed, its SHA-256 is the hash shown from
the start, and the winner is the entry the documented draw picks from the seed and the sorted entries."""

import asyncio
import hashlib
import re
import time

from playwright.async_api import expect

WAIT_MS = 20_000
# An auction's end comes from its own clock (its duration, extended by late bids), plus the timer's turn.
END_MS = 60_000


async def until(page, expression: str, timeout_ms: int = WAIT_MS) -> None:
    # Polled from here: the page's Content-Security-Policy (no eval) refuses wait_for_function.
    deadline = time.monotonic() + timeout_ms / 1000
    while not await page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        await asyncio.sleep(0.05)


async def live_show(client, seller, products):
    res = await client.post(
        "/api/streams",
        json={"title": "Auction night", "products": [{"product_id": p["id"]} for p in products]},
        headers=seller.headers,
    )
    assert res.status == 201, await res.text()
    stream = (await res.json())["stream"]
    res = await client.post(f"/api/streams/{stream['id']}/start", headers=seller.headers)
    assert res.status == 200, await res.text()
    return stream


async def funded(client, account, cents=50_000):
    res = await client.post("/api/wallet/top-up", json={"amount_cents": cents}, headers=account.headers)
    assert res.status == 200, await res.text()
    return account


def draw_index(seed: bytes, sorted_ids: list[str]) -> int:
    """The draw as docs/PROTOCOL.md states it: SHA-256 of the seed and the sorted ids joined by newlines,
    read as a big-endian number, modulo the number of entries."""
    digest = hashlib.sha256(seed + "\n".join(sorted_ids).encode()).digest()
    return int.from_bytes(digest, "big") % len(sorted_ids)


async def test_auction_and_giveaway(open_page, make, client, db, screenshot):
    seller = await make.seller(shop_name="Camera Attic")
    camera = await make.product(
        seller, title="Vintage camera", variants=[{"sku": "CAM-1", "price_cents": 8000, "stock": 3}]
    )
    tote = await make.product(
        seller, title="Canvas tote", variants=[{"sku": "TOTE-1", "price_cents": 2000, "stock": 5}]
    )
    stream = await live_show(client, seller, [camera, tote])
    ann = await funded(client, await make.user(display_name="Ann Bidder"))
    bob = await funded(client, await make.user(display_name="Bob Bidder"))

    studio = await open_page(f"/studio?stream={stream['id']}", seller)
    await expect(studio.locator("#status")).to_have_text("LIVE", timeout=WAIT_MS)
    # Tall enough that the screenshots show the cards under the video.
    tall = {"width": 1280, "height": 1150}
    watch_ann = await open_page(f"/watch/{stream['id']}", ann, viewport=tall)
    watch_bob = await open_page(f"/watch/{stream['id']}", bob, viewport=tall)
    for page in (watch_ann, watch_bob):
        await expect(page.locator("#stream-title")).to_have_text("Auction night", timeout=WAIT_MS)
        await expect(page.locator("#auction")).to_be_hidden()

    # ---- the auction ----
    form = studio.locator("#auction-form")
    await form.get_by_label("Lot").select_option(camera["variants"][0]["id"])
    await form.get_by_label("Start price").fill("10.00")
    await form.get_by_label("Bid increment").fill("1.00")
    await form.get_by_label("Auction length").fill("30")
    await form.get_by_label("Mode").select_option("standard")
    await form.get_by_label("Anti-snipe window").fill("5")
    await form.get_by_role("button", name="Start auction").click()
    await expect(studio.locator("#auction-live")).to_contain_text("Vintage camera", timeout=WAIT_MS)
    await expect(studio.locator("#auction-live-leader")).to_have_text("no bids yet")
    # One auction or flash sale at a time: neither starts another while it runs.
    await expect(form.get_by_role("button", name="Start auction")).to_be_disabled()
    for button in await studio.get_by_role("button", name="Start flash sale").all():
        await expect(button).to_be_disabled()

    # Ann sees the lot at its start price and bids it with the first quick bid.
    card_ann = watch_ann.locator("#auction")
    await expect(card_ann).to_be_visible(timeout=WAIT_MS)
    await expect(card_ann.locator("#auction-product")).to_have_text("Vintage camera")
    await expect(card_ann.locator("#auction-current")).to_have_text("$10.00")
    await expect(card_ann.locator("#auction-countdown")).to_have_text(re.compile(r"^0:[0-2]\d$"))
    await card_ann.get_by_role("button", name="Bid $10.00").click()
    await expect(card_ann.locator("#auction-status")).to_have_text(
        "You are the highest bidder at $10.00.", timeout=WAIT_MS
    )
    await expect(card_ann.locator("#auction-leader")).to_have_text("You are leading", timeout=WAIT_MS)

    # Bob sees Ann leading and sets a maximum instead: he leads one increment above her, his maximum hidden.
    card_bob = watch_bob.locator("#auction")
    await expect(card_bob.locator("#auction-leader")).to_have_text("Leading: Ann Bidder", timeout=WAIT_MS)
    await expect(card_bob.get_by_role("button", name="Bid $11.00")).to_be_visible()
    await card_bob.get_by_label("Your maximum bid").fill("15")
    await card_bob.get_by_role("button", name="Set max bid").click()
    await expect(card_bob.locator("#auction-status")).to_contain_text(
        "You are the highest bidder at $11.00", timeout=WAIT_MS
    )
    await expect(card_bob.locator("#auction-leader")).to_have_text("You are leading")
    # Ann sees she was outbid; a higher quick bid loses to Bob's maximum (never shown: only its effect).
    await expect(card_ann.locator("#auction-status")).to_have_text(
        "You have been outbid: $11.00 by Bob Bidder.", timeout=WAIT_MS
    )
    await expect(card_ann.locator("#auction-leader")).to_have_text("Leading: Bob Bidder")
    await card_ann.get_by_role("button", name="Bid $12.00").click()
    await expect(card_ann.locator("#auction-status")).to_have_text(
        "Someone's maximum is higher: the bid is now $13.00.", timeout=WAIT_MS
    )
    await expect(card_bob.locator("#auction-current")).to_have_text("$13.00", timeout=WAIT_MS)
    # Bob, still leading, is told at what price; his own page alone knows his maximum.
    await expect(card_bob.locator("#auction-status")).to_have_text(
        "You are the highest bidder at $13.00. We bid for you up to your maximum of $15.00."
    )
    # The host sees the bids live.
    await expect(studio.locator("#auction-live-current")).to_have_text("$13.00", timeout=WAIT_MS)
    await expect(studio.locator("#auction-live-leader")).to_have_text("leading: Bob Bidder")
    await expect(studio.locator("#bid-log li").first).to_contain_text("Bob Bidder")

    # In the anti-snipe window (the last 5 s, read off the page's own countdown) Ann bids again: the end
    # moves and both pages show that it did.
    await until(watch_bob, "(/^0:0[0-4]$/).test(document.getElementById('auction-countdown').textContent)", END_MS)
    ends_before = await db.fetchval("SELECT ends_at FROM auctions WHERE stream_id = $1", stream["id"])
    await card_ann.get_by_role("button", name="Bid $14.00").click()
    await expect(card_ann.locator("#auction-status")).to_have_text(
        "Someone's maximum is higher: the bid is now $15.00.", timeout=WAIT_MS
    )
    assert await db.fetchval("SELECT ends_at FROM auctions WHERE stream_id = $1", stream["id"]) > ends_before
    for card in (card_ann, card_bob):
        await expect(card.locator("#auction-extended")).to_contain_text("a late bid extended the end", timeout=WAIT_MS)
    await screenshot(watch_ann, "auction")

    # The auction ends by its clock: Bob won at $15, and everyone sees it.
    await expect(card_bob.locator("#auction-winner")).to_contain_text("You won at $15.00!", timeout=END_MS)
    await expect(card_ann.locator("#auction-winner")).to_have_text("Won by Bob Bidder at $15.00.", timeout=WAIT_MS)
    await expect(studio.locator("#auction-live-winner")).to_have_text("Sold to Bob Bidder for $15.00", timeout=WAIT_MS)
    await expect(studio.locator("#auction-form").get_by_role("button", name="Start auction")).to_be_enabled()
    for button in await studio.get_by_role("button", name="Start flash sale").all():
        await expect(button).to_be_enabled()
    auction = await db.fetchrow("SELECT * FROM auctions WHERE stream_id = $1", stream["id"])
    assert str(auction["winner_id"]) == bob.user["id"]
    assert auction["current_cents"] == 1500
    order = await db.fetchrow("SELECT * FROM orders WHERE id = $1", auction["order_id"])
    assert str(order["buyer_id"]) == bob.user["id"] and str(order["stream_id"]) == stream["id"]
    items = await db.fetch("SELECT * FROM order_items WHERE order_id = $1", order["id"])
    assert [(str(i["variant_id"]), i["quantity"], i["unit_price_cents"]) for i in items] == [
        (camera["variants"][0]["id"], 1, 1500)
    ]
    assert await db.fetchval("SELECT count(*) FROM orders WHERE stream_id = $1", stream["id"]) == 1
    # The winner's page links the order.
    await expect(card_bob.get_by_role("link", name="See your order")).to_have_attribute(
        "href", f"/orders/{order['id']}"
    )

    # ---- the giveaway ----
    form = studio.locator("#giveaway-form")
    await form.get_by_label("Prize").select_option(tote["variants"][0]["id"])
    await form.get_by_label("Giveaway length").fill("300")
    await form.get_by_label("Who may enter").select_option("everyone")
    await form.get_by_role("button", name="Start giveaway").click()
    await expect(studio.locator("#giveaway-live")).to_contain_text("Canvas tote", timeout=WAIT_MS)
    seed_hash = await db.fetchval("SELECT seed_hash FROM giveaways WHERE stream_id = $1", stream["id"])
    assert re.fullmatch(r"[0-9a-f]{64}", seed_hash)

    for page in (watch_ann, watch_bob):
        card = page.locator("#giveaway")
        await expect(card).to_be_visible(timeout=WAIT_MS)
        await expect(card.locator("#giveaway-product")).to_have_text("Canvas tote")
        await expect(card.locator("#giveaway-seed-hash")).to_have_text(seed_hash)
        await expect(card.locator("#giveaway-seed-line")).to_be_hidden()
        await card.get_by_role("button", name="Enter the giveaway").click()
        await expect(card.get_by_role("button", name="You are in ✓")).to_be_disabled(timeout=WAIT_MS)
    for page in (watch_ann, watch_bob, studio):
        await expect(page.get_by_text("2 entries")).to_be_visible(timeout=WAIT_MS)

    # The host draws now; the seed is revealed everywhere and the winner follows from it.
    await studio.get_by_role("button", name="Draw the winner now").click()
    await expect(studio.locator("#giveaway-live-winner")).to_contain_text("Winner:", timeout=WAIT_MS)
    g = await db.fetchrow("SELECT * FROM giveaways WHERE stream_id = $1", stream["id"])
    rows = await db.fetch("SELECT user_id FROM giveaway_entries WHERE giveaway_id = $1", g["id"])
    entries = sorted(str(r["user_id"]) for r in rows)
    assert entries == sorted([ann.user["id"], bob.user["id"]])
    seed = bytes(g["seed"])
    assert hashlib.sha256(seed).hexdigest() == seed_hash
    winner_id = entries[draw_index(seed, entries)]
    assert str(g["winner_id"]) == winner_id
    winner, loser = (ann, bob) if winner_id == ann.user["id"] else (bob, ann)
    pages = {ann.user["id"]: watch_ann, bob.user["id"]: watch_bob}
    for page in pages.values():
        await expect(page.locator("#giveaway-seed")).to_have_text(seed.hex(), timeout=WAIT_MS)
    await expect(pages[winner.user["id"]].locator("#giveaway-winner")).to_contain_text("You won!", timeout=WAIT_MS)
    await expect(pages[loser.user["id"]].locator("#giveaway-winner")).to_have_text(
        f"Winner: {winner.user['display_name']}", timeout=WAIT_MS
    )
    await expect(studio.locator("#giveaway-live-winner")).to_have_text(f"Winner: {winner.user['display_name']}")
    prize = await db.fetchrow("SELECT * FROM orders WHERE id = $1", g["order_id"])
    assert str(prize["buyer_id"]) == winner_id and prize["total_cents"] == 0
    assert await db.fetchval("SELECT count(*) FROM orders WHERE stream_id = $1", stream["id"]) == 2
    await screenshot(pages[winner.user["id"]], "giveaway")
