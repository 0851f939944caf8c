"""The module map: no import circles (type-only imports included) and arrows that run one way, as
docs/architecture.md draws them: server -> gateway -> integrations -> pipeline -> plugins/config -> core."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import fastgw

PACKAGE = Path(fastgw.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.pyx")]:
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every fastgw module `name` imports, wherever the import stands (under TYPE_CHECKING, in a function)."""
    if path.suffix == ".pyx":  # Cython: its imports are plain Python lines
        return {m for m in re.findall(r"^from (fastgw[\w.]*) c?import", path.read_text(), re.M) if m in MODULES}
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            # `from fastgw import _core` names a module; `from fastgw.core import Router` names the module itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target.startswith("fastgw") and target != name:
                while target not in MODULES and "." in target:
                    target = target.rpartition(".")[0]
                if target in MODULES and target != name:
                    found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_imports_it_must_see():
    # The checks below are only as good as the graph: a few arrows every version of the code has.
    assert "fastgw.pipeline.exchange" in GRAPH["fastgw.pipeline.dispatch"]
    assert "fastgw.core" in GRAPH["fastgw.pipeline.exchange"]
    assert "fastgw.pipeline.exchange" in GRAPH["fastgw.server.protocol"]  # a TYPE_CHECKING import
    assert "fastgw._core" in GRAPH["fastgw.core"]  # a `from fastgw import _core` inside a try
    assert "fastgw._pycore" in GRAPH["fastgw._core"]  # the Cython module's own imports


def test_no_import_circles_not_even_type_only_ones():
    assert _cycles() == []


@pytest.mark.parametrize("package", ["fastgw.pipeline", "fastgw.proxy", "fastgw.functions", "fastgw.plugins"])
def test_lower_layers_never_import_the_server_or_the_gateway(package):
    offenders = {
        name: sorted(t for t in deps if t.startswith(("fastgw.server", "fastgw.gateway")))
        for name, deps in GRAPH.items()
        if name == package or name.startswith(package + ".")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_pipeline_imports_no_integration():
    # Integrations are reached through Route.start: the exchange never names one.
    for name, deps in GRAPH.items():
        if name.startswith("fastgw.pipeline"):
            assert not [d for d in deps if d.startswith(("fastgw.proxy", "fastgw.functions"))], name


def test_product_code_does_not_import_the_test_kit():
    kit = {"fastgw.testing", "fastgw.pytest_plugin"}
    users = sorted(name for name, deps in GRAPH.items() if deps & kit and name not in kit)
    assert users == []
