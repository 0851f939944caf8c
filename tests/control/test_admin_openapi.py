"""docs/admin-api.openapi.yaml against what the admin API answers: every operation documents the refusals any call
may get (401, 403, and 415 on a write), every write that deploys documents how a deployment can fail (400, 413,
502, and 503 when the deployment store is away), and the bodies the code sends match the documented schemas: each
write refused for its token, its content type, and, on a real etcd that went away, for the store (503).
(tests/observability/test_metrics_admin.py holds the file's paths to the served routes.)"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from fastgw.admin.api import AdminAPI
from fastgw.client import Response, http_request
from fastgw.config.load import load_config
from fastgw.config.schema import AdminConfig
from fastgw.server.server import Server
from tests.adminapi import admin_call
from tests.etcdproc import EtcdCluster, etcd_binary

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "admin-api.openapi.yaml").read_text())
TABLE = [(m, template, writing) for m, _, _, template, writing in AdminAPI(None, AdminConfig()).table]  # type: ignore[arg-type]
# The writes that change no deployment; every other write goes through the control plane and its store.
NOT_DEPLOYING = {"/invoke", "/cache/purge"}
# An item of each section the config below holds, by the URL's first segment.
ITEMS = {"routes": "home", "upstreams": "u", "consumers": "alice", "functions": "f", "apis": "shop",
         "plugins": "request-id"}  # fmt: skip
READ, WRITE = "r" * 20, "w" * 20

CONFIG = """\
admin: {{host: 127.0.0.1, port: 0{tokens}}}
logging: {{access_log: false}}
{store}
upstreams:
  u: {{targets: ['http://127.0.0.1:9']}}
consumers:
  alice: {{credentials: {{key-auth: [{{key: alice-secret-key}}]}}}}
functions:
  f: {{runtime: python, handler: h.py:handler, warm: 0}}
apis:
  shop: {{type: http, routes: [{{path: /shop, integration: {{type: mock, body: shop}}}}]}}
plugins:
  request-id: {{}}
routes:
  - name: home
    path: /home
    integration: {{type: mock, body: {body}}}
"""


def _responses(template: str, method: str) -> dict[str, Any]:
    """The documented responses of an operation, each `$ref` to components.responses resolved."""
    out = {}
    for status, resp in SPEC["paths"][template][method.lower()]["responses"].items():
        if "$ref" in resp:
            resp = SPEC["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
        out[str(status)] = resp
    return out


def assert_documented(template: str, method: str, r: Response) -> None:
    """`r` is an answer the file documents for the operation: its status, and a JSON body valid against the
    schema documented for that status."""
    responses = _responses(template, method)
    assert str(r.status) in responses, f"{method} {template} answered {r.status} {r.body!r}, not documented"
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    schema = responses[str(r.status)]["content"]["application/json"]["schema"]
    # The file's own components beside the schema, so that its `#/components/...` references resolve.
    Draft202012Validator({**schema, "components": SPEC["components"]}).validate(r.json())


def _concrete(template: str, deployment: str) -> str:
    section = template.split("/")[1]
    return template.replace("{name}", ITEMS.get(section, "")).replace("{id}", deployment).replace("{other}", deployment)


# -- the file alone -----------------------------------------------------------------------------------------------


def test_every_operation_documents_what_any_call_can_be_refused_with():
    for method, template, writing in TABLE:
        codes = set(_responses(template, method))
        assert {"401", "403"} <= codes, (method, template)
        if writing:
            assert "415" in codes, (method, template)


def test_every_deploying_write_documents_how_a_deployment_fails():
    deploying = [(m, t) for m, t, writing in TABLE if writing and t not in NOT_DEPLOYING]
    assert len(deploying) == 2 + 1 + 2 * len(ITEMS)  # PUT /config, /reload, rollback, PUT and DELETE of each item
    for method, template in deploying:
        codes = set(_responses(template, method))
        assert {"200", "400", "413", "502", "503"} <= codes, (method, template, codes)
        if template != "/reload":  # (a reload is based on no revision: nothing to be stale)
            assert "409" in codes, (method, template)
        assert _responses(template, method)["503"]["content"]["application/json"]["schema"]["$ref"].endswith(
            ("/Message", "/Reload")
        )


# -- the code's answers -------------------------------------------------------------------------------------------


async def _gateway(tmp_path: Path, tokens: str = "", store: str = "", body: str = "home") -> Server:
    (tmp_path / "h.py").write_text("def handler(event, context):\n    return {'statusCode': 200, 'body': 'fn'}\n")
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG.format(tokens=tokens, store=store, body=body))
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    assert server.admin is not None
    return server


async def _call(server: Server, method: str, path: str, body: Any = None, token: str = WRITE, **headers: str):
    return await admin_call(server, method, path, body, token, **headers)


async def test_every_operation_refused_for_its_token_or_content_type_answers_as_documented(tmp_path: Path):
    tokens = f", tokens: [{{name: viewer, token: {READ}, role: read}}, {{name: ci, token: {WRITE}, role: write}}]"
    server = await _gateway(tmp_path, tokens=tokens)
    try:
        deployment = (await _call(server, "GET", "/status")).json()["deployment"]
        for method, template, writing in TABLE:
            path = _concrete(template, deployment)
            r = await _call(server, method, path, token="")
            assert r.status == 401, (method, path)
            assert_documented(template, method, r)
            r = await _call(server, method, path, origin="https://evil.example")
            assert r.status == 403, (method, path)
            assert_documented(template, method, r)
            if writing:
                r = await _call(server, method, path, token=READ)
                assert r.status == 403, (method, path)
                assert_documented(template, method, r)
                r = await _call(server, method, path, {}, content_type="text/plain")
                assert r.status == 415, (method, path)
                assert_documented(template, method, r)
        # Nothing of it changed what serves.
        assert (await _call(server, "GET", "/status")).json()["deployment"] == deployment
    finally:
        await server.shutdown(timeout=1.0)


@pytest.fixture
def lost() -> Iterator[EtcdCluster]:
    """An etcd of the test's own, which it kills."""
    etcd_binary()
    cluster = EtcdCluster(1).start()
    yield cluster
    cluster.stop()


async def test_with_etcd_away_every_deploying_write_answers_the_documented_503(tmp_path: Path, lost: EtcdCluster):
    pytest.importorskip("aiohttp", reason="the etcd store's client: pip install 'fastgw[etcd]'")
    node = lost
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    store = (
        f"store: {{etcd: {{endpoints: ['{node.endpoints[0]}'], prefix: '{prefix}', timeout: 0.5, "
        "connect_timeout: 0.2, local_copy: ''}}"
    )
    server = await _gateway(tmp_path, store=store)
    try:
        deployment = (await _call(server, "GET", "/status")).json()["deployment"]
        assert (await _call(server, "GET", "/deployments")).json()["deployments"][0]["id"] == deployment
        # What each write sends: what serves, read back while etcd is there (a write of it deploys again).
        bodies: dict[str, Any] = {"/config": (await _call(server, "GET", "/config")).json()}
        for section, name in ITEMS.items():
            r = await _call(server, "GET", f"/{section}/{name}")
            assert r.status == 200, r.body
            bodies[f"/{section}/{{name}}"] = r.json()
        node.kill(0)
        # The file changed: a reload has something to deploy.
        (tmp_path / "gw.yaml").write_text((tmp_path / "gw.yaml").read_text().replace("body: home", "body: new"))

        answered = []
        for method, template, writing in TABLE:
            if not writing or template in NOT_DEPLOYING:
                continue
            body = bodies.get(template) if method == "PUT" else None
            r = await _call(server, method, _concrete(template, deployment), body)
            assert r.status == 503, (method, template, r.status, r.body)
            assert r.json()["message"].startswith("the deployment store is unavailable: "), r.json()
            assert_documented(template, method, r)
            answered.append(f"{method} {template}")
        assert len(answered) == 3 + 2 * len(ITEMS), answered
        # The history is etcd's too: its reads answer 503 as well.
        for template in ("/deployments", "/deployments/{id}", "/deployments/{id}/diff/{other}"):
            r = await _call(server, "GET", _concrete(template, deployment))
            assert r.status == 503, (template, r.body)
            assert_documented(template, "GET", r)
        # Nothing was deployed: the last good deployment serves on.
        assert (await _call(server, "GET", "/status")).json()["deployment"] == deployment
        assert (await http_request(server.port, "GET", "/home")).body == b"home"
    finally:
        await server.shutdown(timeout=1.0)


async def test_a_deployment_too_large_for_etcd_answers_the_documented_413(tmp_path: Path, node: EtcdCluster):
    pytest.importorskip("aiohttp", reason="the etcd store's client: pip install 'fastgw[etcd]'")
    prefix = f"/t-{uuid.uuid4().hex[:8]}"
    store = f"store: {{etcd: {{endpoints: ['{node.endpoints[0]}'], prefix: '{prefix}', local_copy: ''}}}}"
    server = await _gateway(tmp_path, store=store)
    try:
        deployment = (await _call(server, "GET", "/status")).json()["deployment"]
        # Random text does not compress: past etcd's 1.5 MiB request limit however it is sent.
        noise = base64.b64encode(os.urandom(1_700_000)).decode()
        big = {"path": "/big", "integration": {"type": "mock", "body": noise}}
        r = await _call(server, "PUT", "/routes/big", big)
        assert r.status == 413, r.body[:300]
        assert "too large" in r.json()["message"], r.json()
        assert_documented("/routes/{name}", "PUT", r)
        assert (await _call(server, "GET", "/status")).json()["deployment"] == deployment
        assert (await http_request(server.port, "GET", "/big")).status == 404
        # The store is fine: the next write of a sensible size is deployed.
        r = await _call(server, "PUT", "/routes/small", {"path": "/small", "integration": {"type": "mock"}})
        assert r.status == 201, r.body
    finally:
        await server.shutdown(timeout=1.0)
