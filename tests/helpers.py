"""Assertions shared by the API tests."""


async def error_of(res, status: int | None = None, code: str | None = None) -> dict:
    """The `error` object of an error response, asserting CONTRACT.md's shape (and status/code if given)."""
    body = await res.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    if status is not None:
        assert res.status == status, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
