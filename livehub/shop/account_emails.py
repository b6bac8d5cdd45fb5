"""Email verification and password reset (docs/MESSAGES.md, "Accounts"; rules in
storage/functions/account_tokens.sql).

Asking for an email (registering, resending, asking for a reset) only queues an `account_email` job with the
account and the kind, in the asking transaction. The job makes the token when it sends (`prepare`): 256
random bits from `secrets`, whose SHA-256 is stored (enough for a token of that entropy, and it is looked
up by primary key), committed before the email goes; the raw token then lives only in that job's memory
while it renders and sends, and in the email. A retried send makes a new token (for a reset, voiding the
one before).
"""

import asyncio
import re
from typing import Any
from uuid import UUID

import asyncpg

from livehub.auth import PasswordHasher, hash_token, new_token
from livehub.errors import InvalidToken, RateLimited, ValidationFailed
from livehub.passwords import password_problem
from livehub.settings import Settings

KINDS = ("verify_email", "password_reset")
# Where each kind's link leads (the page reads ?token=).
PAGES = {"verify_email": "/verify-email", "password_reset": "/reset-password"}
# What new_token makes; anything else names no token.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")
DAY_S = 24 * 3600


def _ttl_s(settings: Settings, kind: str) -> int:
    return settings.verify_email_ttl_s if kind == "verify_email" else settings.password_reset_ttl_s


async def prepare(conn: asyncpg.Connection, settings: Settings, user_id: UUID, kind: str) -> dict[str, Any] | None:
    """For the `account_email` job, inside its transaction (commit it before sending): a new token of `kind`
    for the account, stored hashed, and the template payload `{link, hours, minutes, expires_at}`. None when
    there is nothing to send any more (the account is gone or deactivated, or already verified)."""
    if kind not in KINDS:
        raise ValueError(f"not an account email: {kind}")
    token = new_token()
    ttl_s = _ttl_s(settings, kind)
    expires_at = await conn.fetchval(
        "SELECT account_token_mint($1, $2, $3, $4)", user_id, kind, hash_token(token), ttl_s
    )
    if expires_at is None:
        return None
    return {
        "link": f"{settings.public_url.rstrip('/')}{PAGES[kind]}?token={token}",
        "hours": round(ttl_s / 3600),
        "minutes": round(ttl_s / 60),
        "expires_at": expires_at.isoformat(),
    }


async def queue_verification(conn, settings: Settings, user_id: UUID) -> int | None:
    """Queue a verification email (in the caller's transaction). None when queued, else seconds to wait."""
    return await conn.fetchval(
        "SELECT queue_verify_email($1, $2, $3, $4)",
        user_id,
        settings.account_email_interval_s,
        settings.account_email_per_day,
        DAY_S,
    )


async def resend_verification(pool: asyncpg.Pool, settings: Settings, user_id: UUID) -> None:
    """Queue another verification email; RateLimited past the limits, Conflict when verified already."""
    wait = await queue_verification(pool, settings, user_id)
    if wait is not None:
        raise RateLimited(
            "a verification email was sent a moment ago; check your inbox (and spam folder) or try again later",
            {"retry_after_s": wait},
            retry_after_s=wait,
        )


async def request_password_reset(pool: asyncpg.Pool, settings: Settings, email: str, address: str) -> None:
    """Queue a reset email if the email names an active account and no limit is reached. Answers nothing
    either way, and does the same statements either way but the last INSERT."""
    await pool.execute(
        "SELECT queue_password_reset($1, $2, $3, $4, $5, $6)",
        email.strip(),
        address,
        settings.account_email_interval_s,
        settings.account_email_per_day,
        settings.password_reset_per_address_per_day,
        DAY_S,
    )


def _hash_of(token: str) -> bytes:
    if not _TOKEN.fullmatch(token):
        raise InvalidToken("this link is not valid: ask for a new one", {"reason": "unknown"})
    return hash_token(token)


async def verify_email(pool: asyncpg.Pool, token: str) -> UUID:
    """Use a verification token: the account's email is verified. Returns the account; InvalidToken."""
    return await pool.fetchval("SELECT verify_email($1)", _hash_of(token))


async def reset_password(pool: asyncpg.Pool, hasher: PasswordHasher, token: str, password: str) -> dict:
    """Set a new password with a reset token; every session of the account ends. InvalidToken for an unknown,
    used or expired token; ValidationFailed (on `password`) for one registration would refuse, which leaves
    the token usable. Returns `{user_id, ended_sessions}`."""
    token_hash = _hash_of(token)
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """SELECT u.email, u.display_name, u.phone FROM account_token_usable($1, 'password_reset') t
                 JOIN users u ON u.id = t.user_id""",
            token_hash,
        )
    # A few tens of milliseconds of CPU: off the event loop.
    problem = await asyncio.to_thread(
        password_problem, password, email=row["email"], display_name=row["display_name"], phone=row["phone"]
    )
    if problem is not None:
        raise ValidationFailed(
            problem, {"errors": [{"loc": ["password"], "msg": problem, "type": "password_too_weak"}]}
        )
    password_hash = await hasher.hash(password)
    # Checked again under its lock: a token used meanwhile (the same link twice at once) is refused here.
    row = await pool.fetchrow("SELECT * FROM reset_password($1, $2)", token_hash, password_hash)
    return dict(row)
