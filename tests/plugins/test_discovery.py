"""Installed plugin packages (the `fastgw.plugins` entry points) are read when a config names a plugin that is not
built in, and by `fastgw plugins`: a gateway of built-in plugins does not pay for `importlib.metadata` and every
plugin package (fastgw/plugins/chain.py). Each case runs in a fresh interpreter with a real installed distribution
(a dist-info folder on its path), so what was imported is what the load did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastgw

ROOT = Path(fastgw.__file__).resolve().parent.parent

PLUGIN = """
import msgspec
from fastgw.plugins.base import Plugin

class Conf(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    plan: str = "free"

class Stamp(Plugin):
    name = "stamp"
    priority = 500
    Config = Conf

    def access(self, ctx, conf):
        return None
"""

PROBE = """
import json, sys
from fastgw.config.load import ConfigError, load_config_bytes
BASE = set(sys.modules)
try:
    loaded = load_config_bytes(sys.argv[1].encode(), "gw.yaml")
    said = ""
except ConfigError as exc:
    said = str(exc)
print(json.dumps({
    "error": said,
    "metadata": "importlib.metadata" in sys.modules,
    "stamp_imported": "stamp_plugin" in sys.modules,
    "built_ins": sorted(m for m in sys.modules if m.startswith("fastgw.plugins.") and m not in BASE),
}))
"""

BUILT_IN = "routes:\n  - path: /x\n    integration: {type: mock}\n    plugins: {request-id: {}}\n"
NAMES_STAMP = "routes:\n  - path: /x\n    integration: {type: mock}\n    plugins: {stamp: {plan: gold}}\n"
UNKNOWN = "routes:\n  - path: /x\n    integration: {type: mock}\n    plugins: {nosuch: {}}\n"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder holding an installed distribution with one entry point, `stamp = stamp_plugin:Stamp`."""
    (tmp_path / "stamp_plugin.py").write_text(PLUGIN)
    info = tmp_path / "stamp_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: stamp-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[fastgw.plugins]\nstamp = stamp_plugin:Stamp\n")
    return tmp_path


def _run(site: Path, *args: str, code: str = PROBE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, *args] if not code else [sys.executable, "-c", code, *args],
                          env=env, capture_output=True, text=True, timeout=60, cwd=site)  # fmt: skip


def _probe(site: Path, config: str) -> dict[str, object]:
    out = _run(site, config)
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_a_config_of_built_in_plugins_reads_no_entry_points_and_imports_only_its_plugins(site):
    assert _probe(site, BUILT_IN) == {
        "error": "", "metadata": False, "stamp_imported": False, "built_ins": ["fastgw.plugins.request_id"],
    }  # fmt: skip


def test_a_config_naming_an_installed_plugin_finds_it(site):
    got = _probe(site, NAMES_STAMP)
    assert (got["error"], got["metadata"], got["stamp_imported"]) == ("", True, True)


def test_the_built_in_table_names_each_plugin_of_each_module():
    import importlib

    from fastgw.plugins.chain import BUILTIN_MODULES, BUILTINS

    found = {p.name: m for m in BUILTIN_MODULES for p in importlib.import_module(m).PLUGINS}
    assert found == BUILTINS
    assert sorted(BUILTIN_MODULES) == sorted(
        f"fastgw.plugins.{f.stem}" for f in (ROOT / "fastgw" / "plugins").glob("*.py")
        if "PLUGINS = " in f.read_text() and f.stem != "base"
    )  # fmt: skip


def test_an_unknown_plugin_is_said_with_every_installed_one(site):
    said = _probe(site, UNKNOWN)["error"]
    assert "$.routes[0].plugins.nosuch" in said and "unknown plugin 'nosuch'" in said
    assert "stamp" in said and "request-id" in said  # the installed list includes the entry points


def test_a_broken_package_holds_up_only_configs_that_look_beyond_the_built_ins(site):
    (site / "stamp_plugin.py").write_text("raise RuntimeError('half installed')\n")
    assert _probe(site, BUILT_IN)["error"] == ""
    said = _probe(site, NAMES_STAMP)["error"]
    assert "$.routes[0].plugins.stamp" in said
    assert "entry point stamp = stamp_plugin:Stamp: cannot load it: half installed" in said


def test_a_broken_package_never_turns_a_config_error_listing_plugins_into_a_traceback(site):
    # Errors that list the plugins a config could name read the installed packages: a broken one is left out of the
    # list, and the config error is said as ever (before: the PluginError escaped as a traceback).
    (site / "stamp_plugin.py").write_text("raise RuntimeError('half installed')\n")
    credential = BUILT_IN + "consumers: {alice: {credentials: {cors: [{key: k}]}}}\n"
    said = str(_probe(site, credential)["error"])
    assert "$.consumers.alice.credentials.cors" in said and "key-auth" in said, said
    itself = (
        "routes:\n  - path: /x\n    integration: {type: mock}\n    plugins:\n      multi-auth:\n"
        "        auth_plugins: [{multi-auth: {}}, {key-auth: {}}]\n"
    )
    said = str(_probe(site, itself)["error"])
    assert "$.routes[0].plugins.multi-auth" in said and "key-auth" in said, said


def test_a_package_taking_a_built_in_name_is_refused_when_entry_points_are_read(site):
    (site / "stamp_plugin.py").write_text(PLUGIN.replace('name = "stamp"', 'name = "request-id"'))
    (site / "stamp_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[fastgw.plugins]\nstamp = stamp_plugin:Stamp\nother = stamp_plugin:Stamp\n"
    )
    said = _probe(site, UNKNOWN)["error"]
    assert "a plugin named 'request-id' is already registered (built-in" in said
    out = _run(site, "-m", "fastgw", "plugins", code="")
    assert out.returncode != 0 and "already registered" in out.stdout + out.stderr


def test_fastgw_plugins_lists_installed_packages(site):
    out = _run(site, "-m", "fastgw", "plugins", code="")
    assert out.returncode == 0, out.stderr
    assert "stamp" in out.stdout and "entry point stamp_plugin:Stamp" in out.stdout
