"""The README's picture (docs/request-path.svg, drawn by docs/diagram.py) held to what fastgw has: every integration
type of the config drawn as built, the http box naming every balancer, and nothing drawn as "next" that the
README's capability table calls built. (That the committed SVG is what the script draws: tests/unit/test_docs.py.)"""

from __future__ import annotations

import importlib.util
import re
import typing
from pathlib import Path

from fastgw.config.schema import Integration, Upstream

ROOT = Path(__file__).resolve().parents[2]


def _drawing():
    spec = importlib.util.spec_from_file_location("fastgw_docs_diagram", ROOT / "docs" / "diagram.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.drawing()


def _capabilities() -> dict[str, str]:
    """The README's 'What fastgw does' table: capability text -> status."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## What fastgw does", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\| (.+) \| ([^|]+) \|$", table, re.M)}


def test_every_integration_type_is_drawn_as_built():
    boxes = {title: kind for kind, title, _ in _drawing().boxes}
    types = {t.__struct_config__.tag for t in typing.get_args(Integration)}
    assert {t: boxes.get(t) for t in types} == dict.fromkeys(types, "integration")


def test_the_http_box_names_every_balancer():
    lines = " ".join(next(lines for kind, title, lines in _drawing().boxes if title == "http"))
    balancers = typing.get_args(typing.get_type_hints(Upstream)["balancer"])
    assert balancers, "the schema lost its balancers"
    missing = [b for b in balancers if not all(word in lines for word in b.split("-"))]
    assert not missing, f"docs/diagram.py's http box does not name {missing}"


def test_nothing_built_is_drawn_as_next():
    caps = _capabilities()
    assert caps and all(status for status in caps.values()), "the README's capability table is gone"
    for kind, title, _ in _drawing().boxes:
        if kind != "next":
            continue
        word = title.replace("(next)", "").strip().lower()
        rows = [status for cap, status in caps.items() if word in cap.lower()]
        assert rows and all(status != "built" for status in rows), (
            f"docs/diagram.py draws {title!r} as next, the README says it is built"
        )
