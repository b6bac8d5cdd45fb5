"""Every list pages with a cursor whose format the OpenAPI document states: the id of the previous page's last
item (a UUID; ledger entries: an integer), or an opaque string the list gave. A cursor of the stated format
is never refused; anything else is a 422, never a 500."""

import uuid

from helpers import error_of, top_up

LISTS = [
    "/api/products",
    "/api/orders",
    "/api/seller/orders",
    "/api/notifications",
    "/api/streams",
    "/api/seller/payouts",
    "/api/admin/sellers",
    "/api/admin/orders",
    "/api/admin/wallets",
    "/api/admin/payouts",
    "/api/tickets",
]
# Lists under one product: their cursors are UUIDs too (a review's id).
PER_ITEM = ["/api/products/{id}/reviews"]


async def test_the_spec_states_each_cursors_format(client):
    spec = await (await client.get("/api/openapi.json")).json()
    formats = {}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param["name"] == "cursor":
                    schema = next(s for s in param["schema"].get("anyOf", [param["schema"]]) if s.get("type") != "null")
                    formats[path] = schema.get("format") or schema["type"]
    # ledger entries, audit rows, backups and stock movements
    integers = {
        "/api/wallet/transactions",
        "/api/admin/audit",
        "/api/admin/backups",
        "/api/variants/{id}/stock-history",
    }
    # Opaque strings: lists in an order no single id gives (replays by when they were made, a timeline by time
    # across several kinds of event); tests/test_replays.py refuses bad ones.
    opaque = {"/api/replays", "/api/streams/{id}/replay/timeline"}
    assert set(formats) == {*LISTS, *PER_ITEM, *integers, *opaque}
    assert formats == {
        **dict.fromkeys([*LISTS, *PER_ITEM], "uuid"),
        **dict.fromkeys(integers, "integer"),
        **dict.fromkeys(opaque, "string"),
    }


async def test_cursors_of_the_stated_format_are_accepted_and_others_refused(client, make, db):
    # An admin (with the second factor admins need) with a shop of their own, so every list is theirs to read.
    admin = await make.seller(two_factor=True)
    await db.execute("UPDATE users SET roles = '{viewer,admin}' WHERE id = $1", uuid.UUID(admin.id))
    product = await make.product(admin)
    for path in [*LISTS, *(p.replace("{id}", product["id"]) for p in PER_ITEM)]:
        res = await client.get(path, params={"cursor": str(uuid.uuid4())}, headers=admin.headers)
        assert res.status == 200, (path, res.status, await res.text())
        await error_of(await client.get(path, params={"cursor": "garbage"}, headers=admin.headers), 422)
    await top_up(client, admin, 100)
    wallet = "/api/wallet/transactions"
    history = f"/api/variants/{product['variants'][0]['id']}/stock-history"
    for path in (wallet, history):
        assert (await client.get(path, params={"cursor": "9223372036854775807"}, headers=admin.headers)).status == 200
        for bad in ("\u00b3", "-1", "1.5", "9223372036854775808", "x"):
            res = await client.get(path, params={"cursor": bad}, headers=admin.headers)
            await error_of(res, 422, "validation_error")
