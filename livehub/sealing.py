"""Secrets sealed for the database with Fernet (MultiFernet for key rotation), under keys from a setting.

A sealed value is 'fernet:<key fingerprint>:<token>' under the first key of the setting; any listed key
opens it, so a new key goes first and the old one stays listed until `reseal` has moved every value to the
new one. 'plain:<value>' is a value stored as it is: what a box without keys writes, when its owner allows
that (two-factor secrets do, bank details do not: livehub/shop/payout_destinations.py). A database dump
alone then gives nothing away.
"""

import hashlib

import asyncpg
from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class SecretBox:
    """Seals and opens strings under the Fernet keys of one setting (named in every error)."""

    def __init__(self, keys: list[str], setting: str, what: str):
        self.setting, self.what = setting, what
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys]) if keys else None
        except ValueError as exc:
            raise RuntimeError(f"{setting}: not a Fernet key ({exc})") from None
        self._primary = _fingerprint(keys[0]) if keys else None

    @property
    def encrypts(self) -> bool:
        return self._fernet is not None

    def seal(self, secret: str) -> str:
        if self._fernet is None:
            return f"plain:{secret}"
        return f"fernet:{self._primary}:{self._fernet.encrypt(secret.encode()).decode()}"

    def open(self, stored: str) -> str:
        kind, _, rest = stored.partition(":")
        if kind == "plain":
            return rest
        if self._fernet is None:
            raise RuntimeError(f"{self.what} is sealed but {self.setting} is not set")
        try:
            return self._fernet.decrypt(rest.partition(":")[2].encode()).decode()
        except InvalidToken:
            raise RuntimeError(
                f"{self.what} is sealed with a key (fingerprint {rest.partition(':')[0]}) that is not in {self.setting}"
            ) from None

    def current(self, stored: str) -> bool:
        return stored.startswith(f"fernet:{self._primary}:") if self._primary else stored.startswith("plain:")

    async def reseal(self, pool: asyncpg.Pool, table: str, id_column: str, column: str) -> int:
        """Seal every value of `table.column` under the first key (a key was set or rotated); returns how
        many changed. Refuses (RuntimeError) when a value cannot be opened with the keys given. The names
        are the caller's constants, never input."""
        changed = 0
        # Only the values under another key (or none): a start without a rotation reads no row.
        current = f"fernet:{self._primary}:" if self._primary else "plain:"
        rows = await pool.fetch(
            f"""SELECT {id_column} AS id, {column} AS value FROM {table}
                 WHERE {column} IS NOT NULL AND left({column}, length($1)) <> $1""",
            current,
        )
        for row in rows:
            sealed = self.seal(self.open(row["value"]))
            # Only if nobody changed it meanwhile (another node resealing, the owner replacing it).
            status = await pool.execute(
                f"UPDATE {table} SET {column} = $3 WHERE {id_column} = $1 AND {column} = $2",
                row["id"],
                row["value"],
                sealed,
            )
            changed += status == "UPDATE 1"
        return changed
