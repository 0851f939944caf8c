"""The first day at the command line (issue 23): what `fastgw` says about its core, its config and its shutdown."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastgw
from fastgw.testing import http_request
from tests.integration.gwprocess import GatewayProcess

PACKAGE = Path(fastgw.__file__).resolve().parent


def _fastgw(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastgw", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture
def built_without_compiler(tmp_path: Path) -> dict[str, str]:
    """fastgw as a build without a C compiler installs it: no extension, and setup.py's record of why."""
    shutil.copytree(PACKAGE, tmp_path / "fastgw", ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.c"))
    (tmp_path / "fastgw" / "_core_missing.txt").write_text("no usable C compiler (command 'cc' failed)\n")
    # NOTE: the test venv's editable install would find the checkout's extension behind a missing one: this stands
    # where the extension would be, and fails to import as a missing one does.
    (tmp_path / "fastgw" / "_core.py").write_text("raise ImportError('No module named fastgw._core')\n")
    path = os.pathsep.join([str(tmp_path), str(PACKAGE.parent)])  # tests/ still importable, fastgw from the copy
    # FASTGW_NO_EXTENSIONS empty: the suite may run on the pure core, but this is about a missing compiled one.
    # (`python -m` puts the working folder first on sys.path: the gateway runs from the copy's folder)
    return {"FASTGW_NO_EXTENSIONS": "", "PYTHONPATH": path, "FASTGW_TEST_HOME": str(tmp_path)}


def test_version_names_the_core_as_a_fact_without_a_warning(built_without_compiler):
    out = _fastgw("--version", env=built_without_compiler, cwd=Path(built_without_compiler["FASTGW_TEST_HOME"]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"fastgw {fastgw.__version__}",
        "core: pure-Python (it was not built when fastgw was installed: no usable C compiler (command 'cc' failed))",
    ]
    assert out.stderr == ""  # a fact, not a warning: no RuntimeWarning with its source line


def test_version_on_the_compiled_core():
    if os.environ.get("FASTGW_NO_EXTENSIONS"):
        pytest.skip("pure core requested")
    out = _fastgw("--version")
    assert out.stdout.splitlines()[1:] == ["core: compiled"] and out.stderr == ""


async def test_serve_on_the_pure_core_says_so_once_with_what_works(built_without_compiler, monkeypatch):
    monkeypatch.chdir(built_without_compiler["FASTGW_TEST_HOME"])
    gw = await GatewayProcess(None, env=built_without_compiler).start()
    try:
        assert (await http_request(gw.port, "GET", "/health")).status == 200
    finally:
        await gw.stop()
    said = [line for line in gw.log if "pure-python" in line.lower() or "Warning" in line]
    assert len(said) == 2, gw.log  # the one warning, and the listening line naming the core
    warning, listening = said
    assert " WARNING " in warning and "not built when fastgw was installed: no usable C compiler" in warning
    # fastgw is not on an index: the command that works names the checkout (or the unpacked sdist).
    assert "apt-get install -y gcc python3-dev" in warning
    assert warning.endswith("pip install --force-reinstall --no-deps .")
    assert "listening on" in listening and "core pure-Python" in listening
    assert not any("RuntimeWarning" in line or "warnings.warn" in line for line in gw.log), gw.log
