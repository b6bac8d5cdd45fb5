"""docs/PROTOCOL.md and docs/API.md say what the code does: their frame, event and error tables are checked
against the models in livehub/live/protocol.py (and the show formats') and against ErrorCode."""

import re
from pathlib import Path

import pydantic

from livehub.errors import ErrorCode
from livehub.live import protocol
from livehub.live.formats import all_formats
from livehub.live.room import EVENTS, FRAMES

DOCS = Path(__file__).resolve().parents[1] / "docs"


def table(markdown: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after the line `heading`."""
    lines = markdown[markdown.index(heading) :].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def literal(model: type[pydantic.BaseModel], name: str) -> str | None:
    field = model.model_fields.get(name)
    return field.annotation.__args__[0] if field is not None else None


def documented_frame(span: str) -> tuple[str, str | None, dict[str, bool]]:
    """`{"type": "x", "action": "y", "a", "b"?, "c": [...]}` -> ("x", "y", {"a": True, "b": False, "c": True})."""
    kind, action, fields = None, None, {}
    for part in re.split(r",\s*", span.strip("{}")):
        if part.strip() == "...":
            continue
        m = re.fullmatch(r'\s*"(\w+)"(\?)?\s*(?::\s*(.*))?', part)
        assert m, f"cannot read {part!r} in {span}"
        name, optional, value = m.groups()
        if name == "type":
            kind = value.strip('"')
        elif name == "action":
            action = value.strip('"')
        else:
            fields[name] = not optional
    return kind, action, fields


def model_fields(model: type[pydantic.BaseModel], skip=("type", "action", "request_id")) -> dict[str, bool]:
    return {name: f.is_required() for name, f in model.model_fields.items() if name not in skip}


def test_client_frames_table_matches_the_frames_the_server_takes():
    rows = table((DOCS / "PROTOCOL.md").read_text(), "## Client to server")
    documented = {}
    for row in rows:
        for span in spans(row[0]):
            kind, action, fields = documented_frame(span)
            fields.pop("request_id", None)  # every frame may carry one
            documented[(kind, action)] = fields
    frames = [*protocol.CORE_FRAMES, *(f for fmt in all_formats() for f in fmt.frames)]
    models = {(literal(m, "type"), literal(m, "action")): model_fields(m) for m in frames}
    assert documented == models
    assert set(FRAMES.types) == {kind for kind, _ in models}


def test_reply_table_matches_the_reply_models():
    rows = table((DOCS / "PROTOCOL.md").read_text(), "### Replies to one client")
    documented = {}
    for row in rows:
        (span,) = spans(row[0])
        kind, _, fields = documented_frame(span)
        documented[kind] = fields
    replies = [m for m in protocol.SERVER_FRAMES if m not in (protocol.Welcome, protocol.Events)]
    assert set(documented) == {literal(m, "type") for m in replies}
    for model in replies:
        fields = model_fields(model, skip=("type",))
        if model.model_config.get("extra") == "allow":  # a notification's fields depend on its kind
            assert set(fields) <= set(documented["notification"])
            continue
        # `request_id` is echoed when the frame had one: documented plain, optional in the model.
        doc = documented[literal(model, "type")]
        assert set(doc) == set(fields), model.__name__
        optional = {n for n, req in doc.items() if not req} ^ {n for n, req in fields.items() if not req}
        assert optional <= {"request_id"}, model.__name__


def test_event_tables_list_every_event_with_its_fields():
    markdown = (DOCS / "PROTOCOL.md").read_text()
    durable, state = table(markdown, "Durable events:"), table(markdown, "State events:")
    by_type = {literal(m, "type"): m for m in EVENTS}
    assert {spans(r[0])[0] for r in durable} == {name for name, m in by_type.items() if m.durable}
    assert {spans(r[0])[0] for r in state} == {name for name, m in by_type.items() if not m.durable}
    rows = durable + state
    for name, fields_cell in ((spans(r[0])[0], r[1]) for r in rows):
        model = by_type[name]
        mentioned = {s.split(":")[0].split(" ")[0] for s in spans(fields_cell)}
        # The fields listed first (before any explanation) must exist; every field must be documented.
        leading = {s.split(":")[0].split(" ")[0] for s in spans(lead(fields_cell))}
        fields = set(model_fields(model, skip=("type", "offset")))
        assert fields <= mentioned, f"{name}: undocumented {fields - mentioned}"
        assert leading <= fields, f"{name}: documented but not sent: {leading - fields}"


def lead(cell: str) -> str:
    """The part of a cell before its explanation: up to the first colon outside code and parentheses."""
    depth, code = 0, False
    for i, ch in enumerate(cell):
        if ch == "`":
            code = not code
        elif not code and ch in "()":
            depth += 1 if ch == "(" else -1
        elif not code and depth == 0 and ch == ":":
            return re.sub(r"\([^)]*\)", "", cell[:i])
    return re.sub(r"\([^)]*\)", "", cell)


def keys_at_depth(text: str, depth: int) -> set[str]:
    """The `"key":` names of a JSON-like text at one nesting depth of braces."""
    found, level = set(), 0
    for m in re.finditer(r'[{}]|"(\w+)":', text):
        if m.group(0) == "{":
            level += 1
        elif m.group(0) == "}":
            level -= 1
        elif level == depth:
            found.add(m.group(1))
    return found


def test_welcome_state_lists_the_core_parts_and_every_show_format():
    markdown = (DOCS / "PROTOCOL.md").read_text()
    block = markdown[markdown.index("### `welcome`") :].split("```")[1]
    state = block[block.index('"state"') + len('"state":') : block.index('"recent"')]
    documented = keys_at_depth(state, 1)
    assert documented == {"pinned", "viewers", "reactions", "slow_mode_s"} | {f.key for f in all_formats()}
    assert keys_at_depth(block, 1) == set(protocol.Welcome.model_fields)


def test_the_error_table_is_the_error_enum():
    rows = table((DOCS / "API.md").read_text(), "## Errors")
    documented = {spans(r[0])[0]: int(r[1]) for r in rows}
    assert documented == {code.value: code.status for code in ErrorCode}
