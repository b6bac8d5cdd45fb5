"""Accounts and sessions: password hashing, session tokens, signing in (with the limits of
livehub/signin_limits.py and the second factor of livehub/twofactor.py).

Passwords are hashed with argon2id (memory-hard) in a worker thread so a login never stalls the event
loop. Session tokens are 256 random bits handed to the client once; only their SHA-256 is stored, which
is enough for a token of that entropy and lets every request look its session up by primary key.
"""

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from uuid import UUID

import argon2
import asyncpg

from livehub.errors import Conflict, Forbidden, Unauthorized
from livehub.passwords import check_new_password
from livehub.settings import Settings
from livehub.signin_limits import LoginLimiter, Outcome, account_key
from livehub.twofactor import TwoFactor


class PasswordHasher:
    def __init__(self, settings: Settings):
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.password_time_cost,
            memory_cost=settings.password_memory_kib,
            parallelism=settings.password_parallelism,
        )
        # A hash to verify against when the account does not exist, so a login for an unknown email
        # costs as much as one for a known email and timing does not reveal which accounts exist.
        self._decoy = self._hasher.hash(secrets.token_hex(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password) and password_hash is not None
            except argon2.exceptions.VerificationError:
                return False
            except argon2.exceptions.InvalidHashError:
                return False

        return await asyncio.to_thread(check)


_PHONE_PUNCTUATION = re.compile(r"[\s().-]")


def normalise_phone(value: str) -> str:
    """ "+1 (555) 123-4567" and "+15551234567" are one number."""
    return _PHONE_PUNCTUATION.sub("", value)


def new_token() -> str:
    return secrets.token_urlsafe(32)


# What new_token makes. Anything else (a byte that is not UTF-8 included) names no session.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Principal:
    """Who is making a request: the account, its roles, its seller profile if any, and whether it has
    two-factor sign-in on."""

    user_id: UUID
    roles: tuple[str, ...]
    seller_id: UUID | None = None
    seller_status: str | None = None
    two_factor: bool = False
    via_cookie: bool = field(default=False, compare=False)

    @property
    def is_admin(self) -> bool:
        """An admin acts as one only with two-factor sign-in on (docs/API.md, Roles)."""
        return "admin" in self.roles and self.two_factor

    @property
    def is_seller(self) -> bool:
        return "seller" in self.roles


# Roles as docs/API.md defines them: stored roles plus 'seller' for an approved seller profile.
USER_JSON = """
    json_build_object(
        'id', u.id, 'email', u.email, 'phone', u.phone, 'display_name', u.display_name,
        'roles', u.roles || CASE WHEN s.status = 'approved' THEN '{seller}'::text[] ELSE '{}' END,
        'seller_id', s.id, 'created_at', u.created_at, 'avatar', user_avatar_json(u.avatar_image_id),
        'email_verified', u.email_verified_at IS NOT NULL)
"""


async def user_json(conn, user_id: UUID) -> dict:
    return await conn.fetchval(
        f"SELECT {USER_JSON} FROM users u LEFT JOIN sellers s ON s.user_id = u.id WHERE u.id = $1", user_id
    )


async def principal_for_token(pool: asyncpg.Pool, token: str) -> Principal | None:
    """The session's account, or None for a token that names no live session."""
    if not _TOKEN.fullmatch(token):
        return None
    row = await pool.fetchrow(
        # When the session was last used, for its owner's list of devices: written at most once a minute,
        # so a busy session is not one write per request.
        """WITH seen AS (
               UPDATE sessions SET last_seen_at = now()
                WHERE token_hash = $1 AND expires_at > now()
                  AND (last_seen_at IS NULL OR last_seen_at < now() - interval '1 minute'))
           SELECT u.id, u.roles, s.id AS seller_id, s.status AS seller_status,
                  EXISTS (SELECT 1 FROM two_factor f WHERE f.user_id = u.id AND f.enabled_at IS NOT NULL)
                      AS two_factor
             FROM sessions t JOIN users u ON u.id = t.user_id LEFT JOIN sellers s ON s.user_id = u.id
            WHERE t.token_hash = $1 AND t.expires_at > now() AND u.deactivated_at IS NULL""",
        hash_token(token),
    )
    if row is None:
        return None
    roles = tuple(row["roles"]) + (("seller",) if row["seller_status"] == "approved" else ())
    return Principal(row["id"], roles, row["seller_id"], row["seller_status"], row["two_factor"])


def _storable(header: str) -> str:
    # A header's bytes that are not UTF-8 arrive as unpaired surrogates, which PostgreSQL text cannot hold.
    return header.encode("utf-8", "replace").decode("utf-8")


async def create_session(
    conn, user_id: UUID, ttl_s: int, *, user_agent: str | None = None, address: str | None = None
) -> str:
    """A new session of the account; its device (browser and address) is kept for the owner's list."""
    token = new_token()
    # Each sign-in sweeps the account's expired sessions, so the table holds live ones only.
    await conn.execute("DELETE FROM sessions WHERE user_id = $1 AND expires_at <= now()", user_id)
    await conn.execute(
        """INSERT INTO sessions (token_hash, user_id, expires_at, user_agent, address, last_seen_at)
           VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5, now())""",
        hash_token(token),
        user_id,
        ttl_s,
        _storable(user_agent or "")[:500] or None,
        address,
    )
    return token


async def end_session(pool: asyncpg.Pool, token: str) -> None:
    await pool.execute("DELETE FROM sessions WHERE token_hash = $1", hash_token(token))


async def register(
    pool: asyncpg.Pool,
    hasher: PasswordHasher,
    limiter: LoginLimiter,
    settings: Settings,
    *,
    email: str,
    password: str,
    display_name: str,
    address: str,
    phone: str | None = None,
    user_agent: str | None = None,
) -> tuple[dict, str]:
    """Create an account and its first session (its address is then one of the account's own), and queue
    its verification email. Returns
    (user, token); ValidationFailed for a password livehub/passwords.py refuses."""
    await check_new_password(password, email=email, display_name=display_name, phone=phone)
    password_hash = await hasher.hash(password)
    async with pool.acquire() as conn, conn.transaction():
        try:
            user_id = await conn.fetchval(
                """INSERT INTO users (email, phone, display_name, password_hash)
                   VALUES ($1, $2, $3, $4) RETURNING id""",
                email.lower(),
                phone,
                display_name,
                password_hash,
            )
        except asyncpg.UniqueViolationError as exc:
            field_name = "phone" if exc.constraint_name == "users_phone_key" else "email"
            raise Conflict(f"an account with this {field_name} already exists", {"field": field_name}) from None
        token = await create_session(conn, user_id, settings.session_ttl_s, user_agent=user_agent, address=address)
        await limiter.remember(conn, account_key(user_id, ""), address)
        # The verification email is queued with the account (the outbox): it exists exactly when the account does.
        from livehub.shop.account_emails import queue_verification  # (it imports this module)

        await queue_verification(conn, settings, user_id)
        return await user_json(conn, user_id), token


def login_account(login_id: str) -> str:
    """One account, one failure count, however the email is cased or the phone number punctuated."""
    account = login_id.strip().lower()
    return account if "@" in account else normalise_phone(account)


async def login(
    pool: asyncpg.Pool,
    hasher: PasswordHasher,
    limiter: LoginLimiter,
    two_factor: TwoFactor,
    settings: Settings,
    *,
    login_id: str,
    password: str,
    code: str | None,
    address: str,
    user_agent: str | None = None,
) -> tuple[dict, str]:
    """Sign in by email or phone, password, and a code when two-factor sign-in is on. Returns (user,
    token); raises RateLimited, or Unauthorized (details.two_factor_required when the password was right
    and a code is missing or wrong)."""
    account = login_account(login_id)
    row = await pool.fetchrow(
        """SELECT u.id, u.password_hash, u.deactivated_at,
                  EXISTS (SELECT 1 FROM two_factor f WHERE f.user_id = u.id AND f.enabled_at IS NOT NULL)
                      AS two_factor
             FROM users u WHERE u.email = $1 OR u.phone = $2""",
        account,
        normalise_phone(login_id),
    )
    # Decided before the password is looked at: a refused attempt learns nothing about it.
    attempt_id = await limiter.attempt(pool, account_key(row["id"] if row else None, account), address)
    outcome: Outcome = "neutral"
    try:
        if not await hasher.verify(row["password_hash"] if row else None, password):
            outcome = "failed"
            raise Unauthorized("wrong email or password")
        if row["two_factor"]:
            if not code:
                raise Unauthorized(
                    "enter the code from your authenticator app, or a recovery code", {"two_factor_required": True}
                )
            if not await two_factor.accept(pool, row["id"], code):
                outcome = "failed"
                raise Unauthorized("wrong or already used code", {"two_factor_required": True})
        if row["deactivated_at"] is not None:
            # Said only to someone who has proven to be the owner, who learns why; nobody else learns anything.
            raise Forbidden("this account has been deactivated by an admin")
        outcome = "signed_in"
    finally:
        await limiter.settle(pool, attempt_id, outcome)
    async with pool.acquire() as conn:
        token = await create_session(conn, row["id"], settings.session_ttl_s, user_agent=user_agent, address=address)
        return await user_json(conn, row["id"]), token


async def confirm_password(
    pool: asyncpg.Pool, hasher: PasswordHasher, limiter: LoginLimiter, user_id: UUID, password: str, address: str
) -> None:
    """Forbidden unless `password` is the account's (asked again before a change to how it signs in). A
    wrong one counts as a failed sign-in of the account from `address`."""
    attempt_id = await limiter.attempt(pool, account_key(user_id, ""), address)
    outcome: Outcome = "neutral"
    try:
        password_hash = await pool.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id)
        outcome = "passed" if await hasher.verify(password_hash, password) else "failed"
    finally:
        await limiter.settle(pool, attempt_id, outcome)
    if outcome == "failed":
        raise Forbidden("wrong password")


async def ensure_admin(pool: asyncpg.Pool, hasher: PasswordHasher, email: str, password: str) -> bool:
    """Create an admin account, or grant admin to an existing one (its password is then reset).
    Returns True when the account was created."""
    password_hash = await hasher.hash(password)
    created = await pool.fetchval(
        """INSERT INTO users (email, display_name, password_hash, roles)
           VALUES ($1, split_part($1, '@', 1), $2, '{viewer,admin}')
           ON CONFLICT (email) DO UPDATE
              SET roles = (SELECT array_agg(DISTINCT r ORDER BY r) FROM unnest(users.roles || '{admin}') r),
                  password_hash = EXCLUDED.password_hash
           RETURNING xmax = 0""",
        email.lower(),
        password_hash,
    )
    return created
