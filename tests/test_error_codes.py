"""The one error vocabulary: every SQLSTATE the storage functions raise is a known code, every path
translates through `to_error`, and the module carries no transport."""

import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pydantic
import pytest

from livehub.broker import BrokerUnavailable
from livehub.errors import (
    ErrorCode,
    LiveHubError,
    NotFound,
    OutOfStock,
    RateLimited,
    Unavailable,
    ValidationFailed,
    to_error,
)

ROOT = Path(__file__).resolve().parents[1]


def test_every_sqlstate_raised_by_a_storage_function_has_a_code():
    raised = set()
    for path in (ROOT / "storage" / "functions").glob("*.sql"):
        raised |= set(re.findall(r"ERRCODE\s*=\s*'(LH\w{3})'", path.read_text()))
    known = {code.sqlstate for code in ErrorCode if code.sqlstate}
    assert raised, "no storage function raises an LH SQLSTATE: the pattern is wrong"
    assert raised <= known, f"SQLSTATEs without an ErrorCode: {sorted(raised - known)}"


def test_codes_are_unique_and_carry_their_status():
    assert len({c.value for c in ErrorCode}) == len(ErrorCode)
    assert ErrorCode.OUT_OF_STOCK == "out_of_stock" and ErrorCode.OUT_OF_STOCK.status == 409
    assert OutOfStock().message == ErrorCode.OUT_OF_STOCK.message and OutOfStock().status == 409
    assert RateLimited("slow", retry_after_s=30).retry_after_s == 30


async def test_a_storage_error_becomes_its_code_with_its_details(db):
    with pytest.raises(asyncpg.PostgresError) as caught:
        await db.execute(
            """DO $$ BEGIN RAISE EXCEPTION 'only 2 left' USING ERRCODE = 'LHOOS', DETAIL = '{"available": 2}';
               END $$"""
        )
    err = to_error(caught.value)
    assert isinstance(err, OutOfStock)
    assert (err.message, err.details, err.status) == ("only 2 left", {"available": 2}, 409)

    with pytest.raises(asyncpg.PostgresError) as caught:
        await db.execute("SELECT 1 / 0")
    assert isinstance(to_error(caught.value), ValidationFailed)  # a value Postgres refuses: the client's

    with pytest.raises(asyncpg.PostgresError) as caught:
        await db.execute("SELECT * FROM no_such_table")
    assert to_error(caught.value) is None  # our bug: logged and answered `internal` by the transport

    with pytest.raises(asyncpg.DataError) as caught:
        await db.fetchval("SELECT $1::int", "seven")
    assert to_error(caught.value) is None  # asyncpg refused to encode it client-side: also ours


def test_other_exceptions_translate_in_one_place():
    err = NotFound("no such thing")
    assert to_error(err) is err

    class Body(pydantic.BaseModel):
        n: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Body.model_validate({"n": "x"})
    err = to_error(caught.value)
    assert isinstance(err, ValidationFailed) and err.details["errors"][0]["loc"] == ["n"]
    assert isinstance(to_error(ConnectionResetError()), Unavailable)
    assert isinstance(to_error(asyncpg.ConnectionDoesNotExistError("connection was closed")), Unavailable)
    assert to_error(asyncpg.InterfaceError("cannot perform operation: another operation is in progress")) is None
    assert to_error(KeyError("bug")) is None
    away = to_error(BrokerUnavailable("Connection refused"))
    assert isinstance(away, Unavailable) and away.message == "the room cannot take that right now, try again"
    assert str(away) == "Connection refused"  # the cause stays in the log, not in the client's message
    assert issubclass(type(to_error(RateLimited())), LiveHubError)


def test_the_error_module_knows_no_transport():
    code = "import sys, livehub.errors; print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_the_live_layer_imports_nothing_from_the_rest_handlers():
    offenders = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in (ROOT / "livehub" / "live").rglob("*.py")
        for line in path.read_text().splitlines()
        if re.match(r"\s*(from livehub\.api\b|import livehub\.api\b|from livehub import .*\bapi\b)", line)
    ]
    assert offenders == []
