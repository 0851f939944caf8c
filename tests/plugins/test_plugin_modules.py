"""`plugin_modules` beside the config resolve from the config's folder, as a function's `code:` does, with no
PYTHONPATH: `fastgw check` in-process, and `fastgw serve` as a process started from another folder."""

from __future__ import annotations

import os

import pytest

from fastgw.cli import main
from fastgw.client import http_request
from tests.integration.gwprocess import GatewayProcess

PLUGIN = """
import msgspec
from fastgw.plugins.base import Plugin, Response

class Stamp(Plugin):
    name = "{name}"
    priority = 900
    Config = msgspec.defstruct("StampConfig", [("word", str)], frozen=True, forbid_unknown_fields=True)

    def access(self, ctx, conf):
        return Response(200, {{"stamped": conf.word}})
"""


def _config(tmp_path, module: str, name: str):
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / f"{module}.py").write_text(PLUGIN.format(name=name))
    cfg = folder / "gw.yaml"
    cfg.write_text(
        f"plugin_modules: ['{module}:Stamp']\n"
        f"routes: [{{path: /s, plugins: {{{name}: {{word: hi}}}}, integration: {{type: mock}}}}]\n"
    )
    return cfg


def test_check_finds_a_plugin_module_beside_the_config(tmp_path, capsys, monkeypatch):
    cfg = _config(tmp_path, "fastgw_test_beside_check", "stamp-check")
    monkeypatch.chdir(tmp_path)  # not the config's folder
    assert main(["check", str(cfg)]) == 0, capsys.readouterr().err


@pytest.mark.asyncio
async def test_serve_finds_a_plugin_module_beside_the_config(tmp_path):
    cfg = _config(tmp_path, "fastgw_test_beside_serve", "stamp-serve")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")  # the checkout's, if any; never the config's folder
    gw = await GatewayProcess(cfg, env=env).start()
    try:
        r = await http_request(gw.port, "GET", "/s")
        assert (r.status, r.json()) == (200, {"stamped": "hi"})
    finally:
        await gw.stop()
