"""A compiled core built from other sources than the twins beside it (a stale in-place build, a checkout moved to
another branch) falls back to the pure core, said as loudly as a missing one, instead of a gateway that cannot
start (fastgw/core/__init__.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastgw
from fastgw.testing import http_request
from tests.integration.gwprocess import GatewayProcess

PACKAGE = Path(fastgw.__file__).resolve().parent


def _copy(tmp_path: Path) -> Path:
    """fastgw without its extension, in tmp_path (the checkout's own build is never touched)."""
    shutil.copytree(PACKAGE, tmp_path / "fastgw", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.c"))
    return tmp_path / "fastgw"


def _env(home: Path) -> dict[str, str]:
    # The copy first; the checkout after it for tests/ (its fastgw is shadowed by the copy's).
    return {"FASTGW_NO_EXTENSIONS": "", "PYTHONPATH": os.pathsep.join([str(home), str(PACKAGE.parent)])}


def _version(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastgw", "--version"], capture_output=True, text=True, timeout=60, cwd=home,
        env={**os.environ, **_env(home)},
    )  # fmt: skip


# What a stale extension does at import, stood in by a module in the extension's place.
STAND_INS = {
    "assertion": ("raise AssertionError('fastgw._core: a part was built from older sources')\n", "AssertionError"),
    "size-changed": (
        "raise ValueError('fastgw._core.Router size changed, may indicate binary incompatibility. Expected 96 from C "
        "header, got 88 from PyObject')\n",
        "ValueError: fastgw._core.Router size changed",
    ),
    # Built before a twin gained a name: it imports, and lacks what the twins list.
    "missing-name": ("from fastgw.core.router import *  # noqa\n", "AttributeError"),
}


@pytest.mark.parametrize("case", sorted(STAND_INS))
def test_version_says_the_pure_core_serves_when_the_extension_is_stale(tmp_path, case):
    code, said = STAND_INS[case]
    (_copy(tmp_path) / "_core.py").write_text(code)
    out = _version(tmp_path)
    assert out.returncode == 0, out.stderr
    version, core = out.stdout.splitlines()
    assert version == f"fastgw {fastgw.__version__}"
    assert core.startswith("core: pure-Python (the compiled extension fastgw._core was built from other sources"), core
    assert said in core
    assert out.stderr == ""


async def test_serve_on_a_stale_extension_serves_the_pure_core_and_says_how_to_rebuild(tmp_path, monkeypatch):
    (_copy(tmp_path) / "_core.py").write_text(STAND_INS["assertion"][0])
    monkeypatch.chdir(tmp_path)
    gw = await GatewayProcess(None, env=_env(tmp_path)).start()
    try:
        assert (await http_request(gw.port, "GET", "/health")).status == 200
    finally:
        await gw.stop()
    said = [line for line in gw.log if "pure-python" in line.lower()]
    assert len(said) == 2, gw.log  # the one warning, and the listening line naming the core
    warning, listening = said
    assert " WARNING " in warning and "built from other sources than these (AssertionError" in warning
    assert "python setup.py build_ext --inplace" in warning
    assert "listening on" in listening and "core pure-Python" in listening


# A real stale build: an extension whose cdef class inherits a cdef class of another extension, compiled while that
# base had two fields; the base is then rebuilt with one. Cython checks the size at import: ValueError.
_BASE = "cdef class Shape:\n    cdef public object a\n{more}"
_CORE = "from fastgw._shape cimport Shape\n\ncdef class Router(Shape):\n    cdef public object c\n"
_SETUP = textwrap.dedent(
    """
    import sys
    from setuptools import setup, Extension
    from Cython.Build import cythonize
    setup(script_args=["build_ext", "--inplace", "-q"],
          ext_modules=cythonize([Extension(n, [n.replace(".", "/") + ".pyx"]) for n in sys.argv[1:]], quiet=True,
                                compiler_directives={"language_level": 3}))
    """
)


def _build(folder: Path, *names: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SETUP, *names], cwd=folder, capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        pytest.skip(f"cannot build a Cython extension here: {out.stderr[-500:]}")


def test_a_really_stale_extension_size_changed_falls_back(tmp_path):
    pytest.importorskip("Cython")
    build = tmp_path / "build"
    (build / "fastgw").mkdir(parents=True)
    (build / "fastgw" / "__init__.py").write_text("")
    for more in ("    cdef public object b\n", ""):
        (build / "fastgw" / "_shape.pxd").write_text(_BASE.format(more=more))
        (build / "fastgw" / "_shape.pyx").write_text("")
        if more:  # the core is built against the two-field base, then only the base is rebuilt
            (build / "fastgw" / "_core.pyx").write_text(_CORE)
            _build(build, "fastgw._shape", "fastgw._core")
        else:
            _build(build, "fastgw._shape")
    home = tmp_path / "home"
    package = _copy(home)
    for so in (build / "fastgw").glob("*.so"):
        shutil.copy(so, package / so.name)
    probe = subprocess.run(
        [sys.executable, "-c", "import fastgw._core"], capture_output=True, text=True, timeout=60, cwd=home,
        env={**os.environ, **_env(home)},
    )  # fmt: skip
    assert "size changed" in probe.stderr, probe.stderr  # what the chooser meets: a real ValueError at import
    out = _version(home)
    assert out.returncode == 0, out.stderr
    core = out.stdout.splitlines()[1]
    assert core.startswith("core: pure-Python (the compiled extension fastgw._core was built from other sources"), core
    assert "ValueError" in core and "size changed" in core
