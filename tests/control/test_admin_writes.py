"""The admin API that writes (issue 20, items 3 and 4): PUT/GET/DELETE of routes, upstreams, consumers,
functions, apis and global plugins, and GET/PUT /config, each checked as the file is and served as one new
deployment (ETag = its id, If-Match for compare-and-swap); tokens with a role; an audit line per write. Over real
sockets, with traffic proving what serves."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fastgw.client import http_request
from fastgw.config.load import load_config
from fastgw.server.server import Server
from fastgw.testing import EchoUpstream
from tests.adminapi import admin_call

BASE = """\
admin: {{host: 127.0.0.1, port: 0{tokens}}}
logging: {{access_log: false}}
upstreams:
  backend: {{targets: ['{url}']}}
routes:
  - name: home
    path: /home
    integration: {{type: mock, body: home}}
"""
READ = "r" * 20
WRITE = "w" * 20


async def _serve(tmp_path: Path, url: str, tokens: str = "") -> Server:
    path = tmp_path / "gw.yaml"
    path.write_text(BASE.format(url=url, tokens=tokens))
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    assert server.admin is not None
    return server


admin = admin_call


async def test_routes_are_created_replaced_read_and_deleted_as_deployments(tmp_path: Path):
    async with EchoUpstream() as up:
        server = await _serve(tmp_path, up.url)
        try:
            route = {"path": "/users/{id}", "methods": ["GET"], "integration": {"type": "http", "upstream": "backend"}}
            r = await admin(server, "PUT", "/routes/users", route)
            assert r.status == 201, r.body
            first = r.json()["deployment"]
            assert r.header("etag") == f'"{first}"' and r.json()["workers"][0]["deployment"] == first
            got = await http_request(server.port, "GET", "/users/7")
            assert got.status == 200 and got.json()["path"] == "/users/7"  # the echo upstream saw it
            r = await admin(server, "GET", "/routes/users")
            assert r.status == 200 and r.json() == {**route, "name": "users"} and r.header("etag") == f'"{first}"'
            # Replaced (200), the answer coming once it serves.
            mock = {"path": "/users/{id}", "integration": {"type": "mock", "body": "replaced"}}
            r = await admin(server, "PUT", "/routes/users", mock, if_match=f'"{first}"')
            assert r.status == 200 and r.json()["deployment"] != first
            assert (await http_request(server.port, "GET", "/users/7")).body == b"replaced"
            # A stale If-Match is refused, and nothing changes.
            r = await admin(server, "PUT", "/routes/users", route, if_match=f'"{first}"')
            assert r.status == 409 and "stale" in r.json()["message"]
            assert (await http_request(server.port, "GET", "/users/7")).body == b"replaced"
            # Checked exactly as the file is: the key path of the whole config.
            bad = {"path": "no-slash", "integration": {"type": "mock"}}
            r = await admin(server, "PUT", "/routes/users", bad)
            assert r.status == 400 and r.json()["message"].startswith("$.routes[1].path:")
            r = await admin(
                server, "PUT", "/routes/other", {"path": "/o", "integration": {"type": "http", "upstream": "x"}}
            )
            assert r.status == 400 and r.json()["path"] == "$.routes[2].integration.upstream"
            r = await admin(server, "PUT", "/routes/users", {**mock, "name": "else"})
            assert r.status == 400 and r.json()["path"] == "$.name"
            r = await http_request(server.admin.port, "PUT", "/routes/users", body=b"{nope", host="127.0.0.1",
                                   headers={"content-type": "application/json"})  # fmt: skip
            assert r.status == 400
            # Deleted; then gone.
            r = await admin(server, "DELETE", "/routes/users")
            assert r.status == 200
            assert (await http_request(server.port, "GET", "/users/7")).status == 404
            assert (await admin(server, "DELETE", "/routes/users")).status == 404
            assert (await admin(server, "GET", "/routes/users")).status == 404
            assert (await admin(server, "POST", "/routes/users")).status == 405
            # The file was never written; the deployments say what happened.
            assert "users" not in (tmp_path / "gw.yaml").read_text()
            listed = (await admin(server, "GET", "/deployments")).json()["deployments"]
            assert [d["source"] for d in listed][:3] == [
                "DELETE /routes/users",
                "PUT /routes/users",
                "PUT /routes/users",
            ]
        finally:
            await server.shutdown(timeout=1.0)


async def test_every_section_and_the_whole_config_can_be_written(tmp_path: Path):
    async with EchoUpstream() as up, EchoUpstream() as other:
        server = await _serve(tmp_path, up.url)
        try:
            # An upstream, then a route on it.
            assert (await admin(server, "PUT", "/upstreams/other", {"targets": [other.url]})).status == 201
            r = await admin(
                server, "PUT", "/routes/o", {"path": "/o", "integration": {"type": "http", "upstream": "other"}}
            )
            assert r.status == 201 and (await http_request(server.port, "GET", "/o")).status == 200
            # An upstream still used cannot go: the check names the route.
            r = await admin(server, "DELETE", "/upstreams/other")
            assert r.status == 400 and "other" in r.json()["message"]
            # A consumer and a global plugin: key-auth on every route.
            consumer = {"credentials": {"key-auth": [{"key": "alice-secret-key"}]}}
            assert (await admin(server, "PUT", "/consumers/alice", consumer)).status == 201
            assert (await admin(server, "PUT", "/plugins/key-auth", {})).status == 201
            assert (await http_request(server.port, "GET", "/home")).status == 401
            assert (
                await http_request(server.port, "GET", "/home", headers={"apikey": "alice-secret-key"})
            ).status == 200
            # Read back masked; a masked secret sent back keeps its value.
            r = await admin(server, "GET", "/consumers/alice")
            assert r.json() == {"credentials": {"key-auth": [{"key": "********"}]}}
            masked = {**r.json(), "groups": ["staff"]}
            assert (await admin(server, "PUT", "/consumers/alice", masked)).status == 200
            assert (
                await http_request(server.port, "GET", "/home", headers={"apikey": "alice-secret-key"})
            ).status == 200
            assert (await admin(server, "DELETE", "/plugins/key-auth")).status == 200
            assert (await http_request(server.port, "GET", "/home")).status == 200
            # A function and an API that uses it.
            (tmp_path / "h.py").write_text(
                "def handler(event, context):\n    return {'statusCode': 200, 'body': 'fn'}\n"
            )
            fn = {"runtime": "python", "handler": "h.py:handler", "warm": 0}
            assert (await admin(server, "PUT", "/functions/f", fn)).status == 201
            api = {"type": "http", "routes": [{"path": "/fn", "integration": {"type": "lambda", "function": "f"}}]}
            assert (await admin(server, "PUT", "/apis/shop", api)).status == 201
            assert (await http_request(server.port, "GET", "/fn")).body == b"fn"
            assert (await admin(server, "GET", "/apis/shop")).json() == api
            assert (await admin(server, "GET", "/functions/nope")).status == 404
            # The whole config: read, changed, written back with its ETag.
            r = await admin(server, "GET", "/config")
            cfg, etag = r.json(), r.header("etag")
            assert cfg["consumers"]["alice"]["credentials"]["key-auth"] == [{"key": "********"}]
            cfg["routes"][0]["integration"]["body"] = "home2"
            r = await admin(server, "PUT", "/config", cfg, if_match=etag)
            assert r.status == 200 and r.header("etag") != etag
            assert (await http_request(server.port, "GET", "/home")).body == b"home2"
            assert (await admin(server, "PUT", "/config", cfg, if_match=etag)).status == 409
            assert (await admin(server, "PUT", "/config", [1])).status == 400
            # The consumer's key survived the round trip through the mask.
            assert (await admin(server, "PUT", "/plugins/key-auth", {})).status == 201
            assert (
                await http_request(server.port, "GET", "/home", headers={"apikey": "alice-secret-key"})
            ).status == 200
        finally:
            await server.shutdown(timeout=1.0)


async def test_tokens_have_roles_and_every_write_is_audited(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    tokens = f", tokens: [{{name: viewer, token: {READ}, role: read}}, {{name: ci, token: {WRITE}, role: write}}]"
    server = await _serve(tmp_path, "http://127.0.0.1:9", tokens)
    caplog.set_level(logging.INFO, logger="fastgw.audit")
    try:
        assert (await admin(server, "GET", "/status")).status == 401
        assert (await admin(server, "GET", "/status", token="x" * 20)).status == 401
        assert (await admin(server, "GET", "/status", token=READ[:-1])).status == 401
        assert (await admin(server, "GET", "/config", token=READ)).status == 200
        route = {"path": "/n", "integration": {"type": "mock"}}
        r = await admin(server, "PUT", "/routes/n", route, token=READ)
        assert r.status == 403 and "read" in r.json()["message"]
        assert (await admin(server, "POST", "/reload", token=READ)).status == 403
        r = await admin(server, "PUT", "/routes/n", route, token=WRITE)
        assert r.status == 201
        did = r.json()["deployment"]
        assert (await admin(server, "PUT", "/routes/n", {"path": "bad"}, token=WRITE)).status == 400
    finally:
        await server.shutdown(timeout=1.0)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "fastgw.audit"]
    assert "admin PUT /routes/n by viewer from 127.0.0.1: 403" in lines
    assert f"admin PUT /routes/n by ci from 127.0.0.1: 201 deployment {did}" in lines
    assert "admin PUT /routes/n by ci from 127.0.0.1: 400" in lines
    assert not any("GET" in line for line in lines)  # reads are not writes
    # The deployment remembers who made it.
    listed = (await _listed(tmp_path))[0]
    assert listed.deployment.author == "ci" and listed.deployment.source == "PUT /routes/n"


async def _listed(tmp_path: Path):
    from fastgw.control.filestore import FileStore

    return FileStore(tmp_path / "gw.yaml.deployments").history_now()
