"""Payout destinations: the bank account a seller's or guest host's payouts go to.

The account number (an IBAN in IBAN countries, checked with its mod-97 checksum; elsewhere an account
number and a routing number, a US one checked with the ABA checksum) is sealed with Fernet under
LIVEHUB_PAYOUT_KEYS (livehub/sealing.py) before it is stored; only its last four characters stay readable.
Nothing here logs or returns the number: the earner sees it masked, and only the admin deciding a payout
opens the copy that payout took (livehub/shop/payouts.py, audit-logged by the route).

Without keys nothing is stored (503): unencrypted bank details are worse than none. The embedded database
keeps a key of its own under the data directory (`embedded_key`), so the demo runs with one command.
"""

import os
import re
from pathlib import Path
from uuid import UUID

import iso3166
import orjson
from cryptography.fernet import Fernet

from livehub.errors import Unavailable, ValidationFailed
from livehub.sealing import SecretBox
from livehub.shop import audit
from storage.db import DB, transaction

SETTING = "LIVEHUB_PAYOUT_KEYS"
KEY_FILE = "payout-keys"

# Countries whose banks are paid by IBAN (the SWIFT IBAN registry).
IBAN_COUNTRIES = frozenset(
    "AD AE AL AT AZ BA BE BG BH BI BR BY CH CR CY CZ DE DJ DK DO EE EG ES FI FK FO FR GB GE GI GL GR GT HR HU "
    "IE IL IQ IS IT JO KW KZ LB LC LI LT LU LV LY MC MD ME MK MN MR MT MU NI NL NO OM PK PL PS PT QA RO RS RU "
    "SA SC SD SE SI SK SM SO ST SV TL TN TR UA VA VG XK YE".split()
)
_SPACES = re.compile(r"[\s-]")
_IBAN = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_ACCOUNT = re.compile(r"^[A-Z0-9]{4,34}$")
_ROUTING = re.compile(r"^[A-Z0-9]{3,15}$")

MASKED_COLUMNS = "holder_name, country, kind, last4, connect_account_id, updated_at"


def payout_box(keys: list[str]) -> SecretBox:
    return SecretBox(keys, SETTING, "a payout destination")


def embedded_key(data_dir: Path) -> str:
    """The embedded database's payout key: read from data_dir/payout-keys, made there (owner-only) the first
    time. It sits beside the database it protects, so it guards a copied dump, not a copied data directory."""
    path = data_dir / KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = Fernet.generate_key().decode()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return key


def iban_valid(iban: str) -> bool:
    """The IBAN's shape and its ISO 13616 check digits (mod 97 of the rearranged number is 1)."""
    if not _IBAN.match(iban):
        return False
    digits = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return int(digits) % 97 == 1


def aba_valid(routing: str) -> bool:
    """A US routing (ABA) number: nine digits whose 3-7-1 weighted sum is a multiple of 10."""
    if not (len(routing) == 9 and routing.isdigit()):
        return False
    return sum(int(d) * w for d, w in zip(routing, (3, 7, 1) * 3, strict=True)) % 10 == 0


def checked(
    *,
    holder_name: str,
    country: str,
    iban: str | None,
    account_number: str | None,
    routing_number: str | None,
    connect_account_id: str | None,
) -> dict:
    """The destination in its stored form (number and routing number still in the clear), or
    ValidationFailed naming the field."""
    country = country.strip().upper()
    if country not in iso3166.countries_by_alpha2:
        raise ValidationFailed("not an ISO 3166 country code", {"field": "country"})
    if country in IBAN_COUNTRIES:
        if account_number or routing_number:
            raise ValidationFailed(f"banks in {country} are paid by IBAN: give iban only", {"field": "iban"})
        number = _SPACES.sub("", iban or "").upper()
        if not number:
            raise ValidationFailed(f"banks in {country} are paid by IBAN: give iban", {"field": "iban"})
        if not iban_valid(number):
            raise ValidationFailed("not a valid IBAN (check the digits)", {"field": "iban"})
        if number[:2] != country:
            raise ValidationFailed(f"this IBAN is of a bank in {number[:2]}, not {country}", {"field": "iban"})
        kind, routing = "iban", None
    else:
        if iban:
            raise ValidationFailed(
                f"banks in {country} are paid by account and routing number, not IBAN", {"field": "iban"}
            )
        number = _SPACES.sub("", account_number or "").upper()
        routing = _SPACES.sub("", routing_number or "").upper()
        if not _ACCOUNT.match(number):
            raise ValidationFailed("an account number is 4 to 34 letters and digits", {"field": "account_number"})
        if not _ROUTING.match(routing) or (country == "US" and not aba_valid(routing)):
            what = "a US routing number is 9 digits (ABA)" if country == "US" else "a routing number is needed"
            raise ValidationFailed(f"{what}: check it", {"field": "routing_number"})
        kind = "account"
    return {
        "holder_name": holder_name,
        "country": country,
        "kind": kind,
        "number": number,
        "routing_number": routing,
        "connect_account_id": connect_account_id,
    }


async def save(db: DB, box: SecretBox, user_id: UUID, destination: dict, *, client: dict) -> dict:
    """Store (or replace) the user's destination, sealed; its masked form. A new id each time: payouts
    asked for before keep the copy they took."""
    if not box.encrypts:
        raise Unavailable(f"payout destinations cannot be saved: {SETTING} is not set on this server")
    sealed = box.seal(
        orjson.dumps({"number": destination["number"], "routing_number": destination["routing_number"]}).decode()
    )
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            f"""INSERT INTO payout_destinations
                       (user_id, holder_name, country, kind, last4, sealed, connect_account_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (user_id) DO UPDATE
                   SET id = gen_random_uuid(), holder_name = EXCLUDED.holder_name, country = EXCLUDED.country,
                       kind = EXCLUDED.kind, last4 = EXCLUDED.last4, sealed = EXCLUDED.sealed,
                       connect_account_id = EXCLUDED.connect_account_id, updated_at = now()
                RETURNING {MASKED_COLUMNS}""",
            user_id,
            destination["holder_name"],
            destination["country"],
            destination["kind"],
            destination["number"][-4:],
            sealed,
            destination["connect_account_id"],
        )
        await _announce(conn, user_id, "saved", dict(row), client)
    return dict(row)


async def masked(db: DB, user_id: UUID) -> dict | None:
    row = await db.fetchrow(f"SELECT {MASKED_COLUMNS} FROM payout_destinations WHERE user_id = $1", user_id)
    return dict(row) if row else None


async def remove(db: DB, user_id: UUID, *, client: dict) -> bool:
    async with transaction(db) as conn:
        row = await conn.fetchrow(
            f"DELETE FROM payout_destinations WHERE user_id = $1 RETURNING {MASKED_COLUMNS}", user_id
        )
        if row is not None:
            await _announce(conn, user_id, "removed", dict(row), client)
    return row is not None


async def _announce(conn, user_id: UUID, change: str, shown: dict, client: dict) -> None:
    """A changed destination is where the next payouts go, so someone with a stolen session would change it
    first: the change is audit-logged and the user is told (notification and email), in its transaction.
    Neither carries the number: the last four and the country only."""
    masked_copy = {"change": change, "last4": shown["last4"], "country": shown["country"], "kind": shown["kind"]}
    await audit.record(
        conn,
        "payout.destination_change",
        actor_id=user_id,
        target_type="payout",
        target_id=str(user_id),
        address=client.get("address"),
        user_agent=client.get("user_agent"),
        details=masked_copy,
    )
    await conn.execute(
        "SELECT notify_user($1, 'payout_destination_changed', $2)",
        user_id,
        {**masked_copy, "path": "/seller#earnings"},
    )


def opened(box: SecretBox, masked_copy: dict, sealed: str) -> dict:
    """A payout's copy of its destination in full: the masked part with the number and routing number."""
    return {**masked_copy, **orjson.loads(box.open(sealed))}


async def reseal_all(box: SecretBox, pool) -> int:
    """Every destination, and every payout's copy, sealed under the first key (a key was rotated)."""
    return await box.reseal(pool, "payout_destinations", "user_id", "sealed") + await box.reseal(
        pool, "payouts", "id", "destination_sealed"
    )
