"""A user's own account: profile (display name, phone, avatar), password change, and the sessions signed in to it
(this device and others), which the user lists and ends.

A session's token is never stored, only its hash (livehub/auth.py); sessions are named by a public id
instead, and the caller's own is recognised by its token's hash."""

import asyncio
from uuid import UUID

import asyncpg

from livehub.auth import PasswordHasher, confirm_password, hash_token, user_json
from livehub.errors import Conflict, NotFound, ValidationFailed
from livehub.mediastore import MediaStore
from livehub.passwords import password_problem
from livehub.shop import avatars
from livehub.signin_limits import LoginLimiter
from storage.db import DB, transaction

# The most sessions listed: the most recently used. Each sign-in adds one for up to LIVEHUB_SESSION_TTL_S.
MAX_LISTED_SESSIONS = 100


async def update_profile(db: DB, store: MediaStore, user_id: UUID, changes: dict) -> dict:
    """Sets the given fields (display_name, phone; a phone of None removes it; avatar_image_id, one of the
    user's uploads, or None for no avatar), all or none. Returns the user."""
    columns = {k: v for k, v in changes.items() if k in ("display_name", "phone")}
    gone: list[dict] = []
    async with transaction(db) as conn:
        if columns:
            sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=2))
            try:
                await conn.execute(f"UPDATE users SET {sets} WHERE id = $1", user_id, *columns.values())
            except asyncpg.UniqueViolationError:
                raise Conflict("an account with this phone already exists", {"field": "phone"}) from None
        if "avatar_image_id" in changes:
            gone = await avatars.choose(conn, user_id, changes["avatar_image_id"])
        user = await user_json(conn, user_id)
    # The files of the pictures that went, once their rows are surely gone (committed).
    await avatars.delete_files(store, gone)
    return user


def _refused(field: str, problem: str) -> ValidationFailed:
    return ValidationFailed(problem, {"errors": [{"loc": [field], "msg": problem, "type": "password_too_weak"}]})


async def change_password(
    pool: asyncpg.Pool,
    hasher: PasswordHasher,
    limiter: LoginLimiter,
    user_id: UUID,
    *,
    current_password: str,
    new_password: str,
    address: str,
    keep_token: str,
) -> int:
    """Replaces the password and ends every other session of the account (whoever else may know the old
    one is signed out); the session of `keep_token` stays. Returns how many sessions ended. Forbidden for
    a wrong current password (a failed sign-in from `address`), ValidationFailed on `new_password` for one
    registration would refuse (livehub/passwords.py) or the current one again."""
    await confirm_password(pool, hasher, limiter, user_id, current_password, address)
    if new_password == current_password:
        raise _refused("new_password", "the new password must differ from the current one")
    user = await pool.fetchrow("SELECT email, display_name, phone FROM users WHERE id = $1", user_id)
    # A few tens of milliseconds of CPU: off the event loop.
    problem = await asyncio.to_thread(
        password_problem, new_password, email=user["email"], display_name=user["display_name"], phone=user["phone"]
    )
    if problem is not None:
        raise _refused("new_password", problem)
    password_hash = await hasher.hash(new_password)
    async with transaction(pool) as conn:
        await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)
        ended = await conn.fetch(
            "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING 1", user_id, hash_token(keep_token)
        )
    return len(ended)


async def list_sessions(db: DB, user_id: UUID, current_token: str) -> list[dict]:
    """The account's live sessions, this one first, then the most recently used."""
    rows = await db.fetch(
        """SELECT id, created_at, coalesce(last_seen_at, created_at) AS last_seen_at, expires_at, user_agent,
                  address, token_hash = $2 AS current
             FROM sessions WHERE user_id = $1 AND expires_at > now()
            ORDER BY token_hash = $2 DESC, coalesce(last_seen_at, created_at) DESC, id
            LIMIT $3""",
        user_id,
        hash_token(current_token),
        MAX_LISTED_SESSIONS,
    )
    return [dict(r) for r in rows]


async def end_session(db: DB, user_id: UUID, session_id: UUID) -> None:
    """Signs one of the account's sessions out (this one included)."""
    ended = await db.fetchval("DELETE FROM sessions WHERE id = $1 AND user_id = $2 RETURNING id", session_id, user_id)
    if ended is None:
        raise NotFound("session not found")


async def end_other_sessions(db: DB, user_id: UUID, current_token: str) -> int:
    """Signs every other session of the account out. Returns how many ended."""
    ended = await db.fetch(
        "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING 1", user_id, hash_token(current_token)
    )
    return len(ended)
