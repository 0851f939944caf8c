"""The first day at the command line (issue 23): what `fastgw` says about its core, its config and its shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import fastgw
from fastgw.testing import RawConnection, http_request
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


# -- FASTGW_CONFIG, -V, help texts -------------------------------------------------------------------------------

BROKEN = "routes:\n  - path: /x\n    integration: {type: mock, status: 200}\n    methods: [GIT]\n"


def test_version_short_flag():
    assert _fastgw("-V").stdout == _fastgw("--version").stdout != ""


def test_fastgw_config_is_the_config_of_every_command_that_reads_one(tmp_path):
    config = tmp_path / "gw.yaml"
    config.write_text("routes:\n  - path: /hello\n    integration: {type: mock, status: 200, body: hi}\n")
    env = {"FASTGW_CONFIG": str(config)}
    out = _fastgw("check", env=env)
    assert (out.returncode, out.stdout.strip()) == (0, f"{config}: ok (1 routes, 0 upstreams, 0 functions, 0 apis)")
    out = _fastgw("routes", env=env)
    assert out.returncode == 0 and "/hello" in out.stdout, out.stderr
    out = _fastgw("invoke", "GET", "/hello", "--json", env=env)
    assert out.returncode == 0 and '"status": 200' in out.stdout, out.stderr
    out = _fastgw("plugins", env=env)
    assert out.returncode == 0 and "proxy-cache" in out.stdout, out.stderr
    out = _fastgw("deployments", env=env)
    assert out.returncode == 0 and "no deployments in" in out.stdout, out.stderr
    # A broken one says where it came from.
    config.write_text(BROKEN)
    out = _fastgw("check", env=env)
    assert out.returncode == 1 and "the config named by FASTGW_CONFIG" in out.stderr, out.stderr
    # A CONFIG given wins over FASTGW_CONFIG.
    good = tmp_path / "good.yaml"
    good.write_text("routes:\n  - path: /a\n    integration: {type: mock, status: 200}\n")
    assert _fastgw("check", str(good), env=env).returncode == 0


def test_a_command_without_config_says_how_to_give_one():
    env = {k: v for k, v in os.environ.items() if k != "FASTGW_CONFIG"}
    out = subprocess.run([sys.executable, "-m", "fastgw", "check"], capture_output=True, text=True, env=env)
    assert out.returncode == 2 and "check: give CONFIG, or set FASTGW_CONFIG" in out.stderr, out.stderr


def test_check_has_help_and_cache_purge_names_the_header_responses_carry():
    out = " ".join(_fastgw("check", "--help").stdout.split())
    assert "without binding a socket" in out and "FASTGW_CONFIG" in out
    out = " ".join(_fastgw("cache-purge", "--help").stdout.split())
    assert "X-Cache-Status" in out and "X-Cache " not in out


# -- the access log's flags ------------------------------------------------------------------------------------


def _access_lines(log: list[str]) -> list[str]:
    return [line for line in log if "/health" in line and ("GET" in line)]


@pytest.mark.parametrize(
    ("args", "env", "config_line", "want"),
    [
        ((), {}, "", "json"),
        (("--no-access-log",), {}, "", None),
        ((), {"FASTGW_ACCESS_LOG": "false"}, "", None),
        (("--access-log-format", "text"), {}, "", "text"),
        ((), {"FASTGW_ACCESS_LOG_FORMAT": "text"}, "", "text"),
        (("--access-log",), {"FASTGW_ACCESS_LOG": "false"}, "  access_log: false\n", "json"),  # the flag wins
    ],
)
async def test_serve_flags_override_the_access_log(tmp_path, args, env, config_line, want):
    config = tmp_path / "gw.yaml"
    config.write_text(
        "logging:\n  level: info\n" + config_line
        + "routes:\n  - path: /health\n    integration: {type: mock, status: 200, body: ok}\n"
    )  # fmt: skip
    gw = await GatewayProcess(config, *args, env=env).start()
    try:
        assert (await http_request(gw.port, "GET", "/health")).status == 200
        deadline = asyncio.get_running_loop().time() + 5
        while want is not None and not _access_lines(gw.log) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await gw.stop()
    lines = _access_lines(gw.log)
    if want is None:
        assert lines == [], gw.log
    elif want == "json":
        assert len(lines) == 1 and json.loads(lines[0])["path"] == "/health", gw.log
    else:
        assert len(lines) == 1 and '"GET /health" 200' in lines[0] and not lines[0].startswith("{"), gw.log


def test_a_wrong_access_log_variable_is_said():
    out = _fastgw("serve", "--port", "0", env={"FASTGW_ACCESS_LOG": "maybe"})
    assert out.returncode == 1 and "FASTGW_ACCESS_LOG='maybe' is not a boolean" in out.stderr, out.stderr


# -- shutdown ----------------------------------------------------------------------------------------------------


async def test_shutdown_says_it_starts_what_it_drains_and_that_it_stopped():
    gw = await GatewayProcess(None).start()
    conn = await RawConnection.open(gw.port)  # an idle keep-alive connection to drain
    try:
        await conn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await conn.response()
        gw.signal(signal.SIGTERM)
        assert await gw.wait() == 0
    finally:
        await conn.close()
        await gw.stop()
    said = [line for line in gw.log if "shutting down" in line or line.endswith(" stopped")]
    assert len(said) == 2, gw.log
    assert " INFO " in said[0] and said[0].endswith("shutting down (signal SIGTERM), 1 connections draining")
    assert " INFO " in said[1] and said[1].endswith(": stopped")


async def test_shutdown_of_a_supervisor_and_its_workers_is_said():
    gw = await GatewayProcess(None, "--workers", "2").start()
    for _ in range(200):  # the supervisor takes its signals once its workers start
        if sum("ready on port" in line for line in gw.log) == 2:
            break
        await asyncio.sleep(0.05)
    gw.signal(signal.SIGINT)
    assert await gw.wait() == 0
    await gw.stop()
    text = "\n".join(gw.log)
    assert "shutting down (signal SIGINT), 2 workers draining their connections" in text, text
    assert text.count("shutting down (signal SIGTERM), 0 connections draining") == 2, text  # each worker's own
    assert text.count(" stopped") == 3 and gw.log[-1].endswith(": stopped"), text
