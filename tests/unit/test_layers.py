"""The module map: no import circles (type-only imports included) and arrows that run one way, as
docs/architecture.md draws them: server -> gateway -> integrations -> pipeline -> plugins/config -> core."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import fastgw

PACKAGE = Path(fastgw.__file__).parent


def _included(path: Path) -> list[Path]:
    """The files a Cython file includes (`include "core/router.pyx"`), relative to it, as the compiler reads them."""
    return [path.parent / name for name in re.findall(r'^include "([^"]+)"', path.read_text(), re.M)]


# The compiled core's parts, pasted into the hub `fastgw/_core.pyx` by the compiler: part of that module, not modules.
INCLUDED = {part for pyx in PACKAGE.rglob("*.pyx") for part in _included(pyx)}


def _modules() -> dict[str, Path]:
    out = {}
    for path in [*PACKAGE.rglob("*.py"), *(p for p in PACKAGE.rglob("*.pyx") if p not in INCLUDED)]:
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every fastgw module `name` imports, wherever the import stands (under TYPE_CHECKING, in a function)."""
    if path.suffix == ".pyx":  # Cython: its imports are plain Python lines, in it and in the parts it includes
        found = set()
        for part in [path, *_included(path)]:
            for m in re.findall(r"^from (fastgw[\w.]*) c?import \(?([\w, ]*)", part.read_text(), re.M):
                base, names = m
                subs = {f"{base}.{n.split(' as ')[0].strip()}" for n in names.split(",") if n.strip()}
                found |= {t for t in subs if t in MODULES} or ({base} if base in MODULES else set())
        return found
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
    assert "fastgw.core.router" in GRAPH["fastgw._core"]  # the Cython module's own imports (in its parts)
    assert "fastgw.core.observe" in GRAPH["fastgw._core"]  # `from fastgw.core import observe as ...`


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


PAIRS = ("router", "http", "phases", "limit", "observe", "steps", "conn", "upstream")
CORE = PACKAGE / "core"


def test_the_core_is_built_as_twin_pairs_included_by_one_hub():
    # uvloop's way: one extension, its hub including each part's .pyx (and its .pxd each part's .pxd), each part
    # beside its pure-Python twin; no other .pyx or .pxd in the package.
    hub = PACKAGE / "_core.pyx"
    assert _included(hub) == [CORE / f"{pair}.pyx" for pair in PAIRS]
    assert _included(PACKAGE / "_core.pxd") == [CORE / f"{pair}.pxd" for pair in PAIRS]
    for pair in PAIRS:
        assert (CORE / f"{pair}.py").is_file(), pair
    assert sorted(PACKAGE.rglob("*.pyx")) == sorted([hub, *(CORE / f"{p}.pyx" for p in PAIRS)])
    assert sorted(PACKAGE.rglob("*.pxd")) == sorted([PACKAGE / "_core.pxd", *(CORE / f"{p}.pxd" for p in PAIRS)])


@pytest.mark.parametrize("pair", PAIRS)
def test_each_compiled_part_is_small_declared_and_imports_at_its_top(pair):
    pyx = (CORE / f"{pair}.pyx").read_text()
    assert len(pyx.splitlines()) <= 800
    # Every cdef class of the part is declared in its .pxd (its attributes and C methods there, not in the .pyx).
    classes = re.findall(r"^cdef class (\w+)", pyx, re.M)
    declared = re.findall(r"^cdef class (\w+)", (CORE / f"{pair}.pxd").read_text(), re.M)
    assert classes == declared
    # Imports stand at the top: none after the first line of code (comments, blank lines and import lines first).
    lines = pyx.splitlines()
    code = next(
        i
        for i, line in enumerate(lines)
        if line and not line.startswith(("#", "from ", "import ", "cimport ", " ", ")"))
    )
    late = [line for line in lines[code:] if re.match(r"(from \S+ c?import|c?import) ", line)]
    assert late == []


@pytest.mark.parametrize("pair", PAIRS)
def test_each_twins_names_are_compiled_in_its_own_part(pair):
    # A pair's __all__ is what the pair twins: each name is defined in its .pyx (or, for the names both sides share
    # on purpose, imported there from the twin).
    twin = importlib.import_module(f"fastgw.core.{pair}")
    pyx = (CORE / f"{pair}.pyx").read_text()
    defined = set(re.findall(r"^(?:cdef class|def|cpdef \w+) (\w+)", pyx, re.M))
    imported = set()
    for m in re.finditer(rf"^from fastgw\.core\.{pair} import (\([^)]*\)|.*)$", pyx, re.M):
        imported |= {item.split(" as ")[-1].strip() for item in m.group(1).strip("()").split(",") if item.strip()}
    assert set(twin.__all__) <= defined | imported, set(twin.__all__) - defined - imported


def test_every_module_imports_on_its_own():
    """A package's __init__ runs before any module of it: an import of one module can close a circle that the
    module map above, which sees modules only, does not show (fastgw.plugins.chain -> fastgw.config.errors ran
    fastgw/config/__init__.py -> load -> chain, and `fastgw plugins` failed with an ImportError)."""
    import subprocess
    import sys

    scripts = {"fastgw.__main__", "fastgw.functions.runtimes.bootstrap"}  # programs, run, not imported
    names = sorted(n for n, p in MODULES.items() if p.suffix == ".py" and n not in scripts)
    script = (
        "import importlib, subprocess, sys\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True, text=True)\n"
        "    if r.returncode:\n"
        "        bad.append(f'{name}: ' + r.stderr.strip().splitlines()[-1])\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "", out.stdout
