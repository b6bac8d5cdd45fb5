"""Assertions shared by the API tests."""

import orjson


async def error_of(res, status: int | None = None, code: str | None = None) -> dict:
    """The `error` object of an error response, asserting docs/API.md's shape (and status/code if given)."""
    body = await res.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details", "request_id"}, body
    assert body["error"]["request_id"] == res.headers["X-Request-Id"], body
    if status is not None:
        assert res.status == status, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


async def top_up(client, account, cents: int) -> None:
    """Credit an account's wallet through the API (the dev payment provider credits at once)."""
    res = await client.post("/api/wallet/top-up", json={"amount_cents": cents}, headers=account.headers)
    assert res.status == 200, await res.text()
    await res.read()


async def balance(client, account) -> int:
    res = await client.get("/api/wallet", headers=account.headers)
    assert res.status == 200, await res.text()
    return (await res.json())["balance_cents"]


async def assert_books_balanced(db) -> None:
    """check_books() finds every balance equal to its entries and every transaction summing to zero."""
    books = orjson.loads(await db.fetchval("SELECT check_books()::text"))
    assert books["balanced"] is True, books
    assert books["mismatched_accounts"] == 0 and books["unbalanced_transactions"] == 0, books


async def give_addresses(db, user_ids, country: str = "US") -> None:
    """A default shipping address for each of these users, made with SQL (for users made with SQL): goods
    that ship are not sold without one."""
    await db.execute(
        """INSERT INTO addresses (user_id, name, line1, city, postal_code, country, is_default)
           SELECT u, 'Buyer', '1 Test Street', 'Springfield', '12345', $2, true FROM unnest($1::uuid[]) u""",
        list(user_ids),
        country,
    )


async def mark_verified(client, user_id) -> None:
    """Mark an account's email verified in the database (test setup: applying to sell needs a verified email;
    tests/test_account_emails.py covers the real way)."""
    from livehub import keys

    await client.app[keys.POOL].execute("UPDATE users SET email_verified_at = now() WHERE id = $1", user_id)


async def import_codes(client, seller, variant_id, codes: list[str]) -> None:
    """The seller imports digital codes into a variant (CSV, one a line) through the API."""
    res = await client.post(
        f"/api/variants/{variant_id}/units",
        data="\n".join(codes).encode(),
        headers={"Content-Type": "text/csv", **seller.headers},
    )
    assert res.status == 200, await res.text()
    assert (await res.json())["imported"] == len(codes)
