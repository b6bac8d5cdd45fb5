"""Sign-in limits that keep guessing slow without letting anyone lock an owner out.

Failures are counted per (account, address) pair; an account with many recent failures, or an address with
many, is slowed down (a growing wait, never a refusal for good) except where the account has signed in
before. The rules are one storage function (storage/functions/sign_in.sql), so every node shares them and a
decision sees every attempt decided before it; docs/OPERATIONS.md ("Sign-in limits") explains the design.

An attempt is decided and recorded (pending) before its password is checked, so a refused attempt never
reaches the password (its answer cannot tell a right password from a wrong one), and however many
attempts arrive together, no more than the pair's limit get to try one.
"""

from typing import Literal
from uuid import UUID

import asyncpg

from livehub.errors import RateLimited
from livehub.settings import Settings

Outcome = Literal["failed", "neutral", "passed", "signed_in"]


def account_key(user_id: UUID | None, login: str) -> str:
    """What failures are counted against: the account itself when the login names one, so its email and
    its phone share one count; otherwise the login as typed (normalised)."""
    return str(user_id) if user_id is not None else login


class LoginLimiter:
    """Decides sign-in attempts (and two-factor code checks, which count the same way)."""

    def __init__(self, settings: Settings):
        self.window_s = settings.login_window_s
        self._known_ttl_s = settings.login_known_address_ttl_s
        self._limits = (
            settings.login_window_s,
            settings.login_max_failures_per_pair,
            settings.login_slow_account_after,
            settings.login_slow_address_after,
            settings.login_delay_s,
            settings.login_max_delay_s,
            settings.login_known_address_ttl_s,
        )

    async def attempt(self, pool: asyncpg.Pool, account: str, address: str) -> int:
        """Record an attempt and return its id, or raise RateLimited (recording nothing)."""
        row = await pool.fetchrow(
            "SELECT * FROM sign_in_attempt($1, $2, $3, $4, $5, $6, $7, $8, $9)", account, address, *self._limits
        )
        if row["attempt_id"] is None:
            wait = row["retry_after_s"]
            raise RateLimited(
                "too many failed sign-in attempts; try again later", {"retry_after_s": wait}, retry_after_s=wait
            )
        return row["attempt_id"]

    async def settle(self, pool: asyncpg.Pool, attempt_id: int, outcome: Outcome) -> None:
        """'failed' counts; 'neutral' is forgotten; 'passed' also forgets the pair's failures; 'signed_in'
        also remembers the pair as one of the account's own."""
        await pool.execute("SELECT sign_in_settle($1, $2, $3)", attempt_id, outcome, self._known_ttl_s)

    async def remember(self, conn, account: str, address: str) -> None:
        """A pair that is signed in without an attempt (registering)."""
        await conn.execute("SELECT sign_in_remember($1, $2, $3)", account, address, self._known_ttl_s)

    async def sweep(self, pool: asyncpg.Pool) -> None:
        await pool.execute("SELECT sign_in_sweep($1, $2)", self.window_s, self._known_ttl_s)
