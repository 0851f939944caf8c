"""The README and docs/ say what is true: links resolve, the picture is the script's, the figures are the
committed benchmark results', and the README's test command is the one CI runs."""

from __future__ import annotations

import importlib.util
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http(s)://, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"


def test_the_picture_is_what_docs_diagram_py_draws():
    spec = importlib.util.spec_from_file_location("fastgw_docs_diagram", ROOT / "docs" / "diagram.py")
    assert spec is not None and spec.loader is not None
    diagram = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagram)
    committed = (ROOT / "docs" / "request-path.svg").read_text()
    assert committed == diagram.draw(), "docs/request-path.svg is stale: run `make diagram` and commit it"
    root = ET.fromstring(committed)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "docs/request-path.svg" in (ROOT / "README.md").read_text()


def test_the_readme_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"\*\*Set up and run the tests\*\*.*?```sh\n(.*?)\n```", readme, re.S)
    assert len(blocks) == 1, "the README lost its test command"
    assert blocks[0] in (ROOT / ".ci" / "run").read_text().splitlines()


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def test_the_readme_figures_are_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Why pick fastgw") :]
    section = section[: section.index("\n## ", 5)]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "bench/results/" in line]
    assert len(rows) >= 3, section  # every row of the table cites its result file
    for row in rows:
        (cited,) = re.findall(r"\((bench/results/[^)]+\.json)\)", row)
        numbers = _numbers(json.loads((ROOT / cited).read_text()))
        for figure, unit in re.findall(r"\*\*([\d.]+)(x|%| ms)\*\*", row):
            decimals = len(figure.partition(".")[2])
            scale = 100 if unit == "%" else 1
            assert any(round(n * scale, decimals) == float(figure) for n in numbers), (figure + unit, cited)
