"""A gateway keeps in memory only what its config uses (issue 22, bench/README.md "Idle memory"): what `fastgw
serve` imports, a plain config loaded and its gateway built, in a fresh interpreter, leaves the admin API, the
functions runtime, the plugins it does not name and the entry-point machinery out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fastgw

ROOT = Path(fastgw.__file__).resolve().parent.parent

PROBE = """
import json, sys
import fastgw.cli, fastgw.server.server, fastgw.server.supervisor
from fastgw.config.load import load_config_bytes
from fastgw.gateway import Gateway
Gateway(load_config_bytes(sys.argv[1].encode(), sys.argv[2]))
print(json.dumps(sorted(sys.modules)))
"""

NOT_USED = [
    "fastgw.admin.api",  # no admin listener
    "fastgw.functions.pool",  # no functions
    "fastgw.aggregate",
    "fastgw.proxy.websocket",
    "fastgw.plugins.jwt_auth",  # a plugin the config does not name
    "fastgw.plugins.lambda_authorizer",
    "importlib.metadata",  # no plugin from an installed package
    "importlib.resources",
]


def _loaded(config: str, source: str = "gw.yaml") -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, config, source], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def test_a_plain_config_keeps_only_what_it_uses():
    config = (
        "upstreams: {backend: {targets: ['http://127.0.0.1:9']}}\n"
        "routes:\n"
        "  - path: /{proxy+}\n    integration: {type: http, upstream: backend}\n    plugins: {request-id: {}}\n"
        "  - path: /\n    integration: {type: mock}\n"
    )
    loaded = _loaded(config)
    assert [m for m in NOT_USED if m in loaded] == []
    assert "fastgw.plugins.request_id" in loaded
    assert "yaml" in loaded


def test_a_json_config_does_not_import_yaml():
    config = '{"routes": [{"path": "/", "integration": {"type": "mock"}}]}'
    loaded = _loaded(config, "gw.json")
    assert "yaml" not in loaded and "fastgw.config._yaml" not in loaded
    assert [m for m in NOT_USED if m in loaded] == []


def test_what_a_config_uses_is_imported_when_it_uses_it():
    config = (
        "functions: {hello: {runtime: python, handler: app.handler, code: .}}\n"
        "routes:\n"
        "  - path: /f\n    integration: {type: lambda, function: hello}\n"
        "    plugins: {jwt-auth: {secret: s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t}}\n"
        "  - path: /a\n    integration: {type: aggregate, backends: [{function: hello}]}\n"
    )
    loaded = _loaded(config)
    assert {"fastgw.functions.pool", "fastgw.aggregate", "fastgw.plugins.jwt_auth"} <= loaded
