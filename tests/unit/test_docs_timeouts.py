"""docs/operations.md's Timeouts section names every timeout of the config's schema with its default: a table row
for each `timeout` / `*_timeout` field, reached from `Config` (a route's keys under `apis.NAME.routes[]` are the
same fields as under `routes[]`), and the prose names the client's send timeout and what backpressure does to the
upstream's read timeout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

from fastgw.config.schema import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _timeouts() -> dict[tuple[type, str], tuple[str, Any]]:
    """(struct, field) -> (the first key path it is reached by, its default), for every timeout field."""
    found: dict[tuple[type, str], tuple[str, Any]] = {}
    seen: set[type] = set()

    def walk(t: mi.Type, path: str) -> None:
        if isinstance(t, mi.StructType):
            if t.cls in seen:
                return
            seen.add(t.cls)
            for f in t.fields:
                at = f"{path}.{f.name}" if path else f.name
                if f.name == "timeout" or f.name.endswith("_timeout"):
                    found.setdefault((t.cls, f.name), (at, f.default))
                walk(f.type, at)
        elif isinstance(t, mi.UnionType):
            for member in t.types:
                walk(member, path)
        elif isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            walk(t.item_type, f"{path}[]")
        elif isinstance(t, mi.DictType):
            walk(t.value_type, f"{path}.NAME")
        elif isinstance(t, mi.Metadata):
            walk(t.type, path)

    walk(mi.type_info(Config), "")
    return found


def _section() -> str:
    text = DOC.read_text()
    start = text.index("### Timeouts\n")
    return text[start : text.index("\n### ", start + 1)]


def _rows() -> list[tuple[str, str]]:
    """(key cell, default cell) of each row of the section's table."""
    rows = []
    for line in _section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows.append((cells[0], cells[1]))
    return rows


def _default(value: Any) -> str:
    return "none" if value is None or value is msgspec.NODEFAULT else f"{value:g} s"


def test_every_timeout_of_the_schema_has_a_row_with_its_default():
    timeouts = _timeouts()
    assert ("limits.send_timeout", 60.0) in timeouts.values()  # the walk reaches what it should
    assert len(timeouts) >= 20
    rows = _rows()
    missing = []
    for (cls, _name), (path, default) in timeouts.items():
        cells = [d for key, d in rows if key.startswith(f"`{path}`")]
        # A key shared by integrations (http's timeout, lambda's) has a row per type, each with its own default.
        if _default(default) not in cells:
            missing.append(f"{path} ({cls.__name__}): {_default(default)}; rows: {cells}")
    assert missing == []


def test_no_row_names_a_timeout_the_schema_lacks():
    paths = {path for path, _ in _timeouts().values()}
    assert [key for key, _ in _rows() if key.split("`")[1] not in paths] == []


def test_the_prose_says_what_backpressure_does_to_the_deadlines():
    prose = re.sub(r"\s+", " ", _section())
    assert "`limits.send_timeout` (60 s" in prose
    assert "the target's read deadline is suspended meanwhile, not running" in prose
    assert "runs again, whole, once the client takes bytes" in prose
