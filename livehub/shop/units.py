"""CSV import of digital units (gift cards, licence keys, tickets).

The file is one code per row; a first row reading `code` is a header. Every row that is not imported is
reported with its line number and why, so nothing is dropped silently, and a code already imported for
the variant is reported rather than imported twice. A file that cannot be read as CSV at all imports
nothing.
"""

import csv
import io
from uuid import UUID

from livehub.errors import PayloadTooLarge, ValidationFailed
from livehub.shop import catalog
from storage.db import DB

MAX_CODE_LENGTH = 256


def parse_codes(raw: bytes, *, max_codes: int) -> tuple[list[tuple[int, str]], list[dict]]:
    """Returns ([(line, code)], rejected) for the rows of a CSV file."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed("the file is not UTF-8 text", {"byte_offset": exc.start}) from None
    if "\x00" in text:
        raise ValidationFailed("the file contains NUL bytes; is it really CSV?")

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    accepted: list[tuple[int, str]] = []
    rejected: list[dict] = []
    first_line_of: dict[str, int] = {}
    line = 0
    try:
        for row_index, row in enumerate(reader):
            # A row's line is where it starts: quoted fields may span lines.
            line, end = line + 1, reader.line_num
            cells = [c.strip() for c in row]
            if row_index == 0 and cells and cells[0].lower() == "code" and not any(cells[1:]):
                line = end
                continue
            error = _row_error(cells, first_line_of)
            if error == "":
                pass  # blank row
            elif error:
                rejected.append({"line": line, "error": error})
            else:
                first_line_of[cells[0]] = line
                accepted.append((line, cells[0]))
                if len(accepted) > max_codes:
                    raise PayloadTooLarge(f"at most {max_codes} codes per import")
            line = end
    except csv.Error as exc:
        raise ValidationFailed("the file is not valid CSV", {"line": reader.line_num, "reason": str(exc)}) from None
    return accepted, rejected


def _row_error(cells: list[str], first_line_of: dict[str, int]) -> str | None:
    """None for an acceptable code, "" for a blank row, otherwise the reason it is rejected."""
    # Only an empty line is blank: `""` or `,` is a row whose code is empty, and is reported as such.
    if not cells:
        return ""
    code = cells[0]
    if any(cells[1:]):
        return "expected one column: the code"
    if not code:
        return "empty code"
    if len(code) > MAX_CODE_LENGTH:
        return f"code longer than {MAX_CODE_LENGTH} characters"
    if not code.isprintable():
        return "code contains control characters"
    if code in first_line_of:
        return f"duplicate of line {first_line_of[code]}"
    return None


async def import_csv(db: DB, user_id: UUID, variant_id: UUID, raw: bytes, *, max_codes: int) -> dict:
    accepted, rejected = parse_codes(raw, max_codes=max_codes)
    new_codes = await catalog.import_units(db, user_id, variant_id, [code for _, code in accepted])
    for line, code in accepted:
        if code not in new_codes:
            rejected.append({"line": line, "error": "already imported for this variant"})
    rejected.sort(key=lambda r: r["line"])
    return {"imported": len(new_codes), "rejected": rejected}
