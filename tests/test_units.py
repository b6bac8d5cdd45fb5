"""Digital units: CSV import of codes into a digital variant."""

import asyncio
import uuid

from livehub.app import create_app
from tests.helpers import error_of

CSV = {"Content-Type": "text/csv"}


async def shop(make):
    """A seller with one product holding a digital and a physical variant: (seller, digital_id, physical_id)."""
    seller = await make.seller()
    product = await make.product(
        seller,
        variants=[
            {"sku": f"GIFT-{uuid.uuid4().hex[:8]}", "price_cents": 2500, "digital": True},
            {"sku": f"BOX-{uuid.uuid4().hex[:8]}", "price_cents": 3000, "stock": 4},
        ],
    )
    digital = next(v["id"] for v in product["variants"] if v["digital"])
    physical = next(v["id"] for v in product["variants"] if not v["digital"])
    return seller, digital, physical


async def upload(client, seller, variant_id: str, raw: bytes):
    return await client.post(f"/api/variants/{variant_id}/units", data=raw, headers={**CSV, **seller.headers})


async def imported(client, seller, variant_id: str, raw: bytes) -> dict:
    res = await upload(client, seller, variant_id, raw)
    assert res.status == 200, await res.text()
    body = await res.json()
    assert set(body) == {"imported", "rejected"}
    return body


async def stock(db, variant_id: str) -> int:
    return await db.fetchval("SELECT stock FROM variants WHERE id = $1", uuid.UUID(variant_id))


async def codes(db, variant_id: str) -> list[str]:
    return [
        r["code"]
        for r in await db.fetch(
            "SELECT code FROM digital_units WHERE variant_id = $1 ORDER BY code", uuid.UUID(variant_id)
        )
    ]


async def available(client, db, variant_id: str) -> int:
    product_id = await db.fetchval("SELECT product_id FROM variants WHERE id = $1", uuid.UUID(variant_id))
    body = await (await client.get(f"/api/products/{product_id}")).json()
    return next(v["available"] for v in body["product"]["variants"] if v["id"] == variant_id)


async def test_import_codes(make, client, db):
    seller, vid, _ = await shop(make)
    body = await imported(client, seller, vid, b"code\nAAAA-1111\nBBBB-2222\nCCCC-3333\n")
    assert body == {"imported": 3, "rejected": []}

    assert await stock(db, vid) == 3
    assert await available(client, db, vid) == 3
    units = await db.fetch(
        "SELECT code, status, imported_by FROM digital_units WHERE variant_id = $1 ORDER BY code", uuid.UUID(vid)
    )
    assert [tuple(u) for u in units] == [
        (c, "available", uuid.UUID(seller.id)) for c in ("AAAA-1111", "BBBB-2222", "CCCC-3333")
    ]
    moves = await db.fetch(
        "SELECT delta, stock_after, actor_id FROM stock_movements WHERE variant_id = $1 ORDER BY id", uuid.UUID(vid)
    )
    assert [tuple(m) for m in moves] == [(3, 3, uuid.UUID(seller.id))]

    # A second file adds to the first, in one more movement.
    body = await imported(client, seller, vid, b"DDDD-4444\nEEEE-5555\n")  # no header: line 1 is a code
    assert body == {"imported": 2, "rejected": []}
    assert await stock(db, vid) == 5
    assert await db.fetchval(
        "SELECT array_agg(delta ORDER BY id) FROM stock_movements WHERE variant_id = $1", uuid.UUID(vid)
    ) == [3, 2]


async def test_large_file_imports_every_code(make, client, db):
    # Far bigger than one network read: the whole body must be read, not just its first chunk.
    seller, vid, _ = await shop(make)
    raw = b"code\n" + b"".join(b"LARGE-%06d-%s\n" % (i, b"x" * 20) for i in range(20_000))
    assert len(raw) > 500_000
    body = await imported(client, seller, vid, raw)
    assert body == {"imported": 20_000, "rejected": []}
    assert await stock(db, vid) == 20_000
    assert await db.fetchval("SELECT count(*) FROM digital_units WHERE variant_id = $1", uuid.UUID(vid)) == 20_000


async def trickle(raw: bytes, size: int):
    """The body in chunks with pauses between them, as a slow client sends it (chunked, no Content-Length)."""
    for i in range(0, len(raw), size):
        yield raw[i : i + size]
        await asyncio.sleep(0.005)


async def test_slowly_sent_file_is_read_to_the_end(make, client, db):
    seller, vid, _ = await shop(make)
    raw = b"code\n" + b"".join(b"SLOW-%04d\n" % i for i in range(500))
    res = await client.post(f"/api/variants/{vid}/units", data=trickle(raw, 512), headers={**CSV, **seller.headers})
    assert res.status == 200, await res.text()
    assert await res.json() == {"imported": 500, "rejected": []}
    assert await stock(db, vid) == 500


async def test_spreadsheet_export_with_bom_and_crlf(make, client, db):
    seller, vid, _ = await shop(make)
    body = await imported(client, seller, vid, b'\xef\xbb\xbfCode\r\n"Q-1"\r\n  Q-2  \r\nQ-3')
    assert body == {"imported": 3, "rejected": []}
    assert await codes(db, vid) == ["Q-1", "Q-2", "Q-3"]


async def test_mixed_file_reports_each_bad_line(make, client, db):
    seller, vid, _ = await shop(make)
    lines = [
        b"code",  # 1: header
        b"GOOD-1",  # 2
        b'""',  # 3: empty code
        b"GOOD-2",  # 4
        b"TWO,COLUMNS",  # 5
        b"X" * 257,  # 6: too long
        b"GOOD-1",  # 7: duplicate of line 2
        b"Y" * 256,  # 8: longest allowed
        b"",  # 9: blank line, skipped
        b'"TAB\tCODE"',  # 10: control character
        b"GOOD-3",  # 11
    ]
    body = await imported(client, seller, vid, b"\n".join(lines) + b"\n")
    assert body["imported"] == 4
    rejected = {r["line"]: r["error"] for r in body["rejected"]}
    assert [r["line"] for r in body["rejected"]] == [3, 5, 6, 7, 10]
    assert all(isinstance(e, str) and e for e in rejected.values())
    assert "empty" in rejected[3]
    assert "duplicate" in rejected[7] and "2" in rejected[7]

    assert await codes(db, vid) == ["GOOD-1", "GOOD-2", "GOOD-3", "Y" * 256]
    assert await stock(db, vid) == 4


async def test_line_numbers_follow_multiline_fields(make, client, db):
    seller, vid, _ = await shop(make)
    raw = b'code\nA-1\n"B\nSPLIT"\nC-1\n,\nD-1\n'
    body = await imported(client, seller, vid, raw)
    assert body["imported"] == 3
    assert [r["line"] for r in body["rejected"]] == [3, 6]  # the split field starts on line 3; "," is line 6
    assert await codes(db, vid) == ["A-1", "C-1", "D-1"]


async def test_reimport_imports_nothing_twice(make, client, db):
    seller, vid, _ = await shop(make)
    raw = b"code\nR-1\nR-2\nR-3\n"
    assert (await imported(client, seller, vid, raw))["imported"] == 3
    moves_before = await db.fetchval("SELECT count(*) FROM stock_movements WHERE variant_id = $1", uuid.UUID(vid))

    body = await imported(client, seller, vid, raw)
    assert body["imported"] == 0
    assert [r["line"] for r in body["rejected"]] == [2, 3, 4]
    assert all("already imported" in r["error"] for r in body["rejected"])
    assert await stock(db, vid) == 3
    assert await db.fetchval("SELECT count(*) FROM digital_units") == 3
    assert (
        await db.fetchval("SELECT count(*) FROM stock_movements WHERE variant_id = $1", uuid.UUID(vid)) == moves_before
    )

    # A file overlapping the old one imports only what is new.
    body = await imported(client, seller, vid, b"R-3\nR-4\nR-1\n")
    assert body["imported"] == 1
    assert [(r["line"], "already imported" in r["error"]) for r in body["rejected"]] == [(1, True), (3, True)]
    assert await stock(db, vid) == 4


async def test_same_code_in_two_variants_is_fine(make, client, db):
    seller, first, _ = await shop(make)
    product = await make.product(seller, variants=[{"sku": "OTHER-GIFT", "price_cents": 1, "digital": True}])
    second = product["variants"][0]["id"]
    assert (await imported(client, seller, first, b"SHARED-1\n"))["imported"] == 1
    assert (await imported(client, seller, second, b"SHARED-1\n"))["imported"] == 1
    assert (await stock(db, first), await stock(db, second)) == (1, 1)


async def test_concurrent_imports_count_each_code_once(make, client, db):
    seller, vid, _ = await shop(make)
    file_a = b"code\n" + b"\n".join(b"C-%03d" % i for i in range(0, 60)) + b"\n"
    file_b = b"code\n" + b"\n".join(b"C-%03d" % i for i in range(30, 90)) + b"\n"

    async def edit(i: int):
        return await client.patch(f"/api/variants/{vid}", json={"price_cents": 100 + i}, headers=seller.headers)

    responses = await asyncio.gather(
        *(upload(client, seller, vid, f) for f in (file_a, file_b, file_a, file_b)), *(edit(i) for i in range(4))
    )
    assert [r.status for r in responses] == [200] * 8, [await r.text() for r in responses if r.status != 200][:2]
    reports = [await r.json() for r in responses[:4]]
    assert sum(r["imported"] for r in reports) == 90
    assert sum(len(r["rejected"]) for r in reports) == 4 * 60 - 90
    assert await stock(db, vid) == 90
    assert await db.fetchval("SELECT count(*) FROM digital_units WHERE variant_id = $1", uuid.UUID(vid)) == 90
    assert await db.fetchval("SELECT sum(delta) FROM stock_movements WHERE variant_id = $1", uuid.UUID(vid)) == 90


async def test_unreadable_files_import_nothing(make, client, db):
    seller, vid, _ = await shop(make)
    for raw in (
        b'code\nGOOD-1\n"abc\n',  # unterminated quote
        b'code\nGOOD-1\n"ab"c\n',  # text after a closing quote
        b"code\nGOOD-1\n\xff\xfeBAD\n",  # not UTF-8
        b"code\nGOOD-1\nA\x00B\n",  # NUL byte
        b"\x00\x00\x00\x00",
    ):
        res = await upload(client, seller, vid, raw)
        await error_of(res, 422, "validation_error")
    assert await db.fetchval("SELECT count(*) FROM digital_units") == 0
    assert await stock(db, vid) == 0
    assert await db.fetchval("SELECT count(*) FROM stock_movements WHERE variant_id = $1", uuid.UUID(vid)) == 0


async def test_wrong_targets(make, client, db):
    seller, digital, physical = await shop(make)
    raw = b"code\nW-1\n"
    await error_of(await upload(client, seller, physical, raw), 409, "conflict")
    assert await stock(db, physical) == 4
    await error_of(await upload(client, seller, str(uuid.uuid4()), raw), 404, "not_found")
    await error_of(await upload(client, seller, "not-a-variant", raw), 404, "not_found")
    client.session.cookie_jar.clear()
    res = await client.post(f"/api/variants/{digital}/units", data=raw, headers=CSV)
    await error_of(res, 401, "unauthorized")
    assert await db.fetchval("SELECT count(*) FROM digital_units") == 0


async def test_upload_size_limit(make, aiohttp_client, settings, db):
    small = await aiohttp_client(create_app(settings.model_copy(update={"max_upload_bytes": 1000})))
    seller, vid, _ = await shop(make)

    # Exactly at the limit is fine.
    at_limit = b"code\n" + b"\n".join(b"L-%04d" % i for i in range(140)) + b"\n"
    at_limit += b"Z" * (1000 - len(at_limit) - 1) + b"\n"
    assert len(at_limit) == 1000
    res = await upload(small, seller, vid, at_limit)
    assert res.status == 200, await res.text()
    count = (await res.json())["imported"]
    assert count == 141

    over = b"code\n" + b"\n".join(b"M-%04d" % i for i in range(200)) + b"\n"
    assert len(over) > 1000
    await error_of(await upload(small, seller, vid, over), 413, "payload_too_large")

    # Without a Content-Length (chunked, arriving bit by bit), the limit still holds.
    res = await small.post(f"/api/variants/{vid}/units", data=trickle(over, 100), headers={**CSV, **seller.headers})
    await error_of(res, 413, "payload_too_large")
    assert await db.fetchval("SELECT count(*) FROM digital_units WHERE code LIKE 'M-%'") == 0
    assert await stock(db, vid) == count


async def test_codes_per_import_limit(make, aiohttp_client, settings, db):
    capped = await aiohttp_client(create_app(settings.model_copy(update={"max_units_per_import": 3})))
    seller, vid, _ = await shop(make)
    await error_of(await upload(capped, seller, vid, b"code\nK-1\nK-2\nK-3\nK-4\n"), 413, "payload_too_large")
    assert await stock(db, vid) == 0
    body = await imported(capped, seller, vid, b"code\nK-1\nK-2\nK-3\n")
    assert body == {"imported": 3, "rejected": []}
