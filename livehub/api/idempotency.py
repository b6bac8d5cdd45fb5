"""Idempotency-Key: a retried write returns the first response instead of acting twice.

The key's row is inserted in the same transaction as the handler's writes and its response, so either
both the effect and the stored response commit or neither does: a retry after a crash or a timeout
finds either the recorded answer or nothing done. A concurrent request with the same key waits on the
row (the unique index) until the first commits, then replays its answer. A handler that fails rolls
everything back, key included, so a retry runs again. Keys are per account and kept for
`idempotency_ttl_s`.
"""

import hashlib
from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
from aiohttp import web

from livehub import keys
from livehub.errors import IdempotencyMismatch, ValidationFailed

CONNECTION = web.RequestKey("idempotent_connection", asyncpg.Connection)
MAX_KEY_LENGTH = 255


def request_hash(request: web.Request, body: bytes) -> bytes:
    return hashlib.sha256(b"\0".join([request.method.encode(), request.path.encode(), body])).digest()


async def run_once(
    request: web.Request, user_id: UUID, key: str, body: bytes, call: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not 0 < len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
    digest = request_hash(request, body)
    ttl_s = request.app[keys.SETTINGS].idempotency_ttl_s
    async with request.app[keys.POOL].acquire() as conn, conn.transaction():
        # Expired keys of this account go first, so a key can be reused once its window has passed.
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE user_id = $1 AND created_at < now() - make_interval(secs => $2)",
            user_id,
            ttl_s,
        )
        fresh = await conn.fetchval(
            """INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            user_id,
            key,
            digest,
        )
        if not fresh:
            first = await conn.fetchrow(
                "SELECT request_hash, status, response::text FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                user_id,
                key,
            )
            if first["request_hash"] != digest:
                raise IdempotencyMismatch("this Idempotency-Key was used with a different request")
            return _replay(first["status"], first["response"])

        request[CONNECTION] = conn
        try:
            response = await call()
        finally:
            del request[CONNECTION]
        body_text = response.body.decode() if isinstance(response, web.Response) and response.body else None
        await conn.execute(
            "UPDATE idempotency_keys SET status = $3, response = $4::text::jsonb WHERE user_id = $1 AND key = $2",
            user_id,
            key,
            response.status,
            body_text,
        )
        return response


def _replay(status: int, body: str | None) -> web.Response:
    headers = {"Idempotent-Replayed": "true"}
    if body is None:
        return web.Response(status=status, headers=headers)
    return web.Response(status=status, body=body.encode(), headers=headers, content_type="application/json")
