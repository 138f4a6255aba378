"""docs/protocol.md against ``wire.messages``: every message type has its row,
and each row lists exactly its TypedDict's fields (``?`` on the optional ones),
so a field added to a message and left undocumented fails here. The trace
record's fields (``turn_record.TraceRecord``) are held to docs/tracing.md the
same way."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any, Literal, TypedDict

import pytest

from openclaw_daemon.observability import turn_record
from openclaw_daemon.wire import frames, messages

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Section heading -> the union of the messages it documents.
SECTIONS: dict[str, Any] = {
    "Opening (both ways)": messages.Hello,
    "Requests (client → daemon)": messages.Request,
    "Stream frames (daemon → client)": messages.StreamFrame,
    "Terminal frames (daemon → client)": messages.Terminal,
}
SHAPES = (
    messages.TurnResult,
    messages.Usage,
    messages.StepResult,
    messages.ToolCallResult,
    messages.ClientSpan,
)


def section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/protocol.md has no section {heading!r}"
    return match.group(1)


def table(body: str) -> dict[str, str]:
    """First cell (a backticked name) -> second cell, for each row of the table."""
    rows = {}
    for line in body.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"`[^`]+`", cells[0]):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def documented_fields(cell: str) -> set[str]:
    """``a`, `b?``` -> {"a", "b?"}; ``—`` is no field."""
    return set() if cell == "—" else set(re.findall(r"`([^`]+)`", cell))


def typed_fields(shape: Any) -> set[str]:
    """The TypedDict's keys but ``type``, the optional ones marked with ``?``."""
    keys = shape.__required_keys__ | shape.__optional_keys__
    return {f"{key}?" if key in shape.__optional_keys__ else key for key in keys if key != "type"}


def tag(shape: Any) -> str:
    (value,) = typing.get_args(typing.get_type_hints(shape)["type"])
    return str(value)


def members(union: Any) -> tuple[Any, ...]:
    return typing.get_args(union) or (union,)


def mismatches(rows: dict[str, str], shapes: dict[str, Any]) -> list[str]:
    """What the page gets wrong about ``shapes`` (name -> TypedDict); empty if nothing."""
    problems = [f"no row for {name!r}" for name in shapes if name not in rows]
    problems += [f"a row for {name!r}, which is no message" for name in rows if name not in shapes]
    for name, shape in shapes.items():
        if name in rows:
            documented, typed = documented_fields(rows[name]), typed_fields(shape)
            if documented != typed:
                problems.append(
                    f"{name}: undocumented {sorted(typed - documented)}, "
                    f"documented but not typed {sorted(documented - typed)}"
                )
    return problems


def test_the_page_names_the_code_s_version() -> None:
    heading = (DOCS / "protocol.md").read_text().splitlines()[0]
    assert heading == f"# Wire protocol (version {frames.PROTOCOL_VERSION})"


@pytest.mark.parametrize("heading", list(SECTIONS))
def test_each_message_table_lists_exactly_its_typed_fields(heading: str) -> None:
    rows = table(section((DOCS / "protocol.md").read_text(), heading))
    shapes = {tag(shape): shape for shape in members(SECTIONS[heading])}
    if heading != "Opening (both ways)":
        shapes.pop("hello", None)  # both ways: in the opening's table only
    assert mismatches(rows, shapes) == []


def test_the_shapes_inside_messages_are_documented_field_by_field() -> None:
    rows = table(section((DOCS / "protocol.md").read_text(), "Shapes inside messages"))
    assert mismatches(rows, {shape.__name__: shape for shape in SHAPES}) == []


def test_a_field_added_to_a_message_but_not_documented_fails() -> None:
    class Token(TypedDict):  # messages.TokenFrame with one field more
        type: Literal["token"]
        text: str
        undocumentedMs: float

    rows = table(section((DOCS / "protocol.md").read_text(), "Stream frames (daemon → client)"))
    assert mismatches({"token": rows["token"]}, {"token": Token}) == [
        "token: undocumented ['undocumentedMs'], documented but not typed []"
    ]


def test_the_tagged_types_are_the_frame_type_sets() -> None:
    requests = {tag(shape) for shape in members(messages.Request)}
    daemon = {tag(shape) for shape in members(messages.DaemonFrame)}
    assert requests == frames.REQUEST_TYPES
    assert daemon == frames.STREAM_TYPES | frames.TERMINAL_TYPES
    assert {tag(shape) for shape in members(messages.Terminal)} == frames.TERMINAL_TYPES


def test_the_trace_record_is_documented_in_tracing_md() -> None:
    text = (DOCS / "tracing.md").read_text()
    documented: set[str] = set()
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            documented |= set(re.findall(r"`([^`]+)`", cells[0]))
    record = turn_record.TraceRecord
    keys = record.__required_keys__ | record.__optional_keys__
    assert keys - documented == set()
