"""Two-factor sign-in: time-based one-time codes (TOTP, RFC 6238, with pyotp) and single-use recovery codes.

An account turns it on in two steps: `begin` makes a secret (shown once, as an otpauth:// URI and a QR
code), `confirm` turns it on when a first code from the app matches, and hands out ten recovery codes.
Secrets are sealed with Fernet under LIVEHUB_TWO_FACTOR_KEYS, so a database dump alone does not give them
away; without a key they are stored as they are (docs/OPERATIONS.md, "Two-factor sign-in"). Recovery codes
are stored as SHA-256 hashes of 80 random bits each.

A code signs in once: the step it belongs to is recorded and a code of that step or an earlier one is
refused after (replay). A step-up code for an admin's money action (`check_current`) must be current but is
not used up, so one code may cover several actions within its 30 seconds.
"""

import hashlib
import hmac
import re
import secrets
import time
from uuid import UUID

import asyncpg
import pyotp
import segno

from livehub import sealing
from livehub.errors import Conflict, Forbidden, NotFound
from livehub.settings import Settings
from livehub.signin_limits import LoginLimiter, account_key

STEP_S = 30
RECOVERY_CODES = 10
# 32 letters and digits without the look-alikes (0/o, 1/l/i): 16 of them are 80 bits.
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
_SEPARATORS = re.compile(r"[\s-]")


def normalise_code(code: str) -> str:
    """'123 456' is '123456'; 'ABCD-efgh-…' is 'abcdefgh…'."""
    return _SEPARATORS.sub("", code).lower()


def _is_totp(code: str) -> bool:
    return len(code) == 6 and code.isdigit()


def _recovery_hash(user_id: UUID, code: str) -> bytes:
    return hashlib.sha256(user_id.bytes + code.encode()).digest()


def new_recovery_codes() -> list[str]:
    codes = ["".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16)) for _ in range(RECOVERY_CODES)]
    return ["-".join(c[i : i + 4] for i in range(0, 16, 4)) for c in codes]


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The 30-second step `code` belongs to: the current one or either neighbour (clocks drift)."""
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP_S)
    for step in (current, current - 1, current + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


class SecretBox(sealing.SecretBox):
    """Seals TOTP secrets under LIVEHUB_TWO_FACTOR_KEYS (livehub/sealing.py); without keys they are stored as
    they are ('plain:<secret>')."""

    def __init__(self, keys: list[str]):
        super().__init__(keys, "LIVEHUB_TWO_FACTOR_KEYS", "a two-factor secret")

    async def reseal_all(self, pool: asyncpg.Pool) -> int:
        """Seal every secret under the first key (a key was set or rotated); returns how many changed."""
        return await self.reseal(pool, "two_factor", "user_id", "secret")


class TwoFactor:
    """The accounts' second factor; every method takes the pool and the account explicitly."""

    def __init__(self, settings: Settings):
        self.box = SecretBox(settings.two_factor_keys)
        self.issuer = settings.two_factor_issuer

    async def status(self, pool: asyncpg.Pool, user_id: UUID) -> dict:
        return await pool.fetchrow(
            """SELECT f.enabled_at IS NOT NULL AS enabled, f.enabled_at,
                      (SELECT count(*) FROM recovery_codes r WHERE r.user_id = $1 AND r.used_at IS NULL)::int
                          AS recovery_codes_left
                 FROM (SELECT 1) one LEFT JOIN two_factor f ON f.user_id = $1""",
            user_id,
        )

    async def begin(self, pool: asyncpg.Pool, user_id: UUID, email: str) -> dict:
        """A new secret waiting for its first code (replacing one that never got it)."""
        secret = pyotp.random_base32()
        done = await pool.fetchval(
            """INSERT INTO two_factor (user_id, secret) VALUES ($1, $2)
               ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, created_at = now(), last_step = 0
                WHERE two_factor.enabled_at IS NULL
               RETURNING true""",
            user_id,
            self.box.seal(secret),
        )
        if not done:
            raise Conflict("two-factor sign-in is on already; turn it off first to set up another app")
        uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=self.issuer)
        # The QR code as rows of modules: a page draws it without loading an image (its CSP allows none
        # from data: URLs), an app without a camera types the secret instead.
        matrix = segno.make(uri, error="m").matrix
        return {"secret": secret, "otpauth_uri": uri, "qr_matrix": ["".join(map(str, row)) for row in matrix]}

    async def confirm(self, pool: asyncpg.Pool, user_id: UUID, code: str) -> list[str] | None:
        """Turn it on if `code` matches the waiting secret: the recovery codes, or None for a wrong code."""
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT secret, enabled_at FROM two_factor WHERE user_id = $1 FOR UPDATE", user_id
            )
            if row is None:
                raise NotFound("start setting up two-factor sign-in first")
            if row["enabled_at"] is not None:
                raise Conflict("two-factor sign-in is on already")
            code = normalise_code(code)
            step = matching_step(self.box.open(row["secret"]), code) if _is_totp(code) else None
            if step is None:
                return None
            await conn.execute(
                "UPDATE two_factor SET enabled_at = now(), last_step = $2 WHERE user_id = $1", user_id, step
            )
            return await _replace_recovery_codes(conn, user_id)

    async def accept(self, pool: asyncpg.Pool, user_id: UUID, code: str) -> bool:
        """A code that proves the second factor once: a TOTP code of a step not used before, or an unused
        recovery code (used up now)."""
        code = normalise_code(code)
        if not _is_totp(code):
            status = await pool.execute(
                "UPDATE recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
                user_id,
                _recovery_hash(user_id, code),
            )
            return status == "UPDATE 1"
        secret = await self._secret(pool, user_id)
        step = matching_step(secret, code) if secret else None
        if step is None:
            return False
        # One statement: of two requests with the same code, one moves last_step and the other finds it moved.
        return bool(
            await pool.fetchval(
                """UPDATE two_factor SET last_step = $2
                    WHERE user_id = $1 AND enabled_at IS NOT NULL AND last_step < $2 RETURNING true""",
                user_id,
                step,
            )
        )

    async def check_current(self, pool: asyncpg.Pool, user_id: UUID, code: str) -> bool:
        """A current TOTP code (a step-up for one action), not used up."""
        code = normalise_code(code)
        secret = await self._secret(pool, user_id)
        return bool(secret and _is_totp(code) and matching_step(secret, code) is not None)

    async def disable(self, pool: asyncpg.Pool, user_id: UUID) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
            await conn.execute("DELETE FROM two_factor WHERE user_id = $1", user_id)

    async def regenerate(self, pool: asyncpg.Pool, user_id: UUID) -> list[str]:
        """Ten new recovery codes; the old ones stop working."""
        async with pool.acquire() as conn, conn.transaction():
            return await _replace_recovery_codes(conn, user_id)

    async def prove(
        self,
        pool: asyncpg.Pool,
        limiter: LoginLimiter,
        user_id: UUID,
        code: str | None,
        address: str,
        *,
        step_up: bool = False,
    ) -> None:
        """Forbidden unless `code` proves the second factor: `accept`ed, or for a step-up `check_current`.
        A wrong code counts as a failed sign-in of the account from `address` (the same limits apply)."""
        if not code:
            raise Forbidden("a code from your authenticator app is needed", {"two_factor_code_required": True})
        attempt = await limiter.attempt(pool, account_key(user_id, ""), address)
        outcome = "neutral"
        try:
            good = await (self.check_current if step_up else self.accept)(pool, user_id, code)
            outcome = "passed" if good else "failed"
        finally:
            await limiter.settle(pool, attempt, outcome)
        if not good:
            raise Forbidden("wrong two-factor code", {"two_factor_code_required": True})

    async def _secret(self, pool: asyncpg.Pool, user_id: UUID) -> str | None:
        stored = await pool.fetchval(
            "SELECT secret FROM two_factor WHERE user_id = $1 AND enabled_at IS NOT NULL", user_id
        )
        return self.box.open(stored) if stored else None


async def _replace_recovery_codes(conn: asyncpg.Connection, user_id: UUID) -> list[str]:
    codes = new_recovery_codes()
    await conn.execute("DELETE FROM recovery_codes WHERE user_id = $1", user_id)
    await conn.executemany(
        "INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)",
        [(user_id, _recovery_hash(user_id, normalise_code(c))) for c in codes],
    )
    return codes


def require_enabled(enabled: bool, why: str) -> None:
    """Forbidden (details.two_factor_setup_required) unless the caller has turned two-factor sign-in on."""
    if not enabled:
        raise Forbidden(
            f"{why}: turn on two-factor sign-in first (Security, in the page header)",
            {"two_factor_setup_required": True},
        )
