"""A buyer's saved shipping addresses.

Exactly one of them is the default while any exist: the first one added becomes it, naming another the
default moves it there, and deleting the default hands it to the most recently added of the rest. Orders
copy the address they ship to (storage/functions/shipping.sql), so editing or deleting one here changes
no order.
"""

from uuid import UUID

from livehub.errors import Conflict, NotFound
from storage.db import DB, transaction

MAX_ADDRESSES = 20
# The columns a client sets, in the API's order (is_default aside).
FIELDS = ("name", "line1", "line2", "city", "region", "postal_code", "country", "phone")


async def _lock(conn, user_id: UUID) -> None:
    # One change of a user's address book at a time: two first addresses added at once would both
    # become the default.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('addresses ' || $1::uuid, 0))", user_id)


async def list_addresses(db: DB, user_id: UUID) -> list[dict]:
    """The user's addresses, the default first, then in the order they were added."""
    rows = await db.fetch(
        """SELECT address_json(a) AS address FROM addresses a WHERE a.user_id = $1
            ORDER BY a.is_default DESC, a.created_at, a.id""",
        user_id,
    )
    return [r["address"] for r in rows]


async def add(db: DB, user_id: UUID, fields: dict, make_default: bool) -> dict:
    """Saves an address; the user's first one, or one added with `make_default`, becomes the default."""
    async with transaction(db) as conn:
        await _lock(conn, user_id)
        count = await conn.fetchval("SELECT count(*) FROM addresses WHERE user_id = $1", user_id)
        if count >= MAX_ADDRESSES:
            raise Conflict(f"an account keeps at most {MAX_ADDRESSES} addresses: delete one first")
        default = make_default or count == 0
        if default:
            await conn.execute("UPDATE addresses SET is_default = false WHERE user_id = $1 AND is_default", user_id)
        return await conn.fetchval(
            f"""INSERT INTO addresses (user_id, is_default, {", ".join(FIELDS)})
                VALUES ($1, $2, {", ".join(f"${i + 3}" for i in range(len(FIELDS)))})
                RETURNING address_json(addresses)""",
            user_id,
            default,
            *(fields.get(f) for f in FIELDS),
        )


async def update(db: DB, user_id: UUID, address_id: UUID, changes: dict, make_default: bool | None) -> dict:
    """Changes the fields in `changes` (a field set to None is cleared). `make_default` True makes it the
    default; False is refused for the default itself, which only naming another default moves."""
    unknown = set(changes) - set(FIELDS)
    assert not unknown, f"not address fields: {unknown}"
    async with transaction(db) as conn:
        await _lock(conn, user_id)
        is_default = await conn.fetchval(
            "SELECT is_default FROM addresses WHERE id = $1 AND user_id = $2", address_id, user_id
        )
        if is_default is None:
            raise NotFound("address not found")
        if make_default is False and is_default:
            raise Conflict("one address is always the default: make another one the default instead")
        if make_default and not is_default:
            await conn.execute("UPDATE addresses SET is_default = false WHERE user_id = $1 AND is_default", user_id)
            await conn.execute("UPDATE addresses SET is_default = true WHERE id = $1", address_id)
        names = list(changes)
        if names:
            sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
            await conn.execute(f"UPDATE addresses SET {sets} WHERE id = $1", address_id, *changes.values())
        return await conn.fetchval("SELECT address_json(a) FROM addresses a WHERE a.id = $1", address_id)


async def delete(db: DB, user_id: UUID, address_id: UUID) -> None:
    """Deletes an address; if it was the default, the most recently added of the others takes its place."""
    async with transaction(db) as conn:
        await _lock(conn, user_id)
        was_default = await conn.fetchval(
            "DELETE FROM addresses WHERE id = $1 AND user_id = $2 RETURNING is_default", address_id, user_id
        )
        if was_default is None:
            raise NotFound("address not found")
        if was_default:
            await conn.execute(
                """UPDATE addresses SET is_default = true
                    WHERE id = (SELECT id FROM addresses WHERE user_id = $1
                                 ORDER BY created_at DESC, id DESC LIMIT 1)""",
                user_id,
            )
