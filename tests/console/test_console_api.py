"""The console's files and its few calls beside the admin API (fastgw/admin/console.py), over real sockets on an
in-process gateway: the page behind the admin listener's Host/Origin checks, its calls behind the API's tokens,
a function's code written to a folder of its own and test-invoked with its log lines, API drafts, live counters."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from fastgw.client import http_request
from fastgw.config.load import load_config
from fastgw.server.server import Server
from tests.adminapi import admin_call

BASE = """\
admin: {{host: 127.0.0.1, port: 0{tokens}}}
logging: {{access_log: false}}
routes:
  - name: home
    path: /home
    integration: {{type: mock, body: home}}
"""
READ = "r" * 20
WRITE = "w" * 20
TOKENS = f", tokens: [{{name: ro, token: {READ}, role: read}}, {{name: rw, token: {WRITE}, role: write}}]"


async def _serve(tmp_path: Path, tokens: str = "") -> Server:
    path = tmp_path / "gw.yaml"
    path.write_text(BASE.format(tokens=tokens))
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    assert server.admin is not None
    return server


call = admin_call


async def test_the_page_and_its_files_are_served_from_the_package(tmp_path: Path):
    server = await _serve(tmp_path)
    try:
        moved = await call(server, "GET", "/console")
        assert moved.status == 301 and moved.header("location") == "/console/"
        page = await call(server, "GET", "/console/")
        assert page.status == 200 and page.header("content-type") == "text/html; charset=utf-8"
        assert b'<script type="module" src="js/app.js">' in page.body
        assert "default-src 'self'" in (page.header("content-security-policy") or "")
        assert (await call(server, "GET", "/console/index.html")).body == page.body
        js = await call(server, "GET", "/console/js/app.js")
        assert js.status == 200 and js.header("content-type") == "text/javascript; charset=utf-8"
        assert (await call(server, "GET", "/console/nope.js")).status == 404
        assert (await call(server, "GET", "/console/../console.py")).status == 404  # nothing outside its folder
        assert (await call(server, "GET", "/console/", Host="evil.example")).status == 403  # DNS rebinding
        assert (await call(server, "POST", "/console/")).status == 405
    finally:
        await server.shutdown(timeout=1.0)


async def test_the_page_is_open_and_its_calls_need_the_apis_tokens(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    server = await _serve(tmp_path, TOKENS)
    try:
        assert (await call(server, "GET", "/console/")).status == 200  # the page asks for the token itself
        assert (await call(server, "GET", "/console/api/info")).status == 401
        info = await call(server, "GET", "/console/api/info", token=READ)
        assert info.status == 200 and info.json()["tokens"] is True
        assert info.json()["traffic"] == f"http://127.0.0.1:{server.port}"
        code = {"files": {"app.py": "def main(event, context):\n    return 1\n"}}
        with caplog.at_level(logging.INFO, logger="fastgw.audit"):
            r = await call(server, "PUT", "/console/api/functions/f/code", code, token=READ)
        assert r.status == 403 and "read" in r.json()["message"]
        with caplog.at_level(logging.INFO, logger="fastgw.audit"):
            assert (await call(server, "PUT", "/console/api/functions/f/code", code, token=WRITE)).status == 201
        audited = [r.getMessage() for r in caplog.records if r.name == "fastgw.audit"]
        assert "admin PUT /console/api/functions/f/code by ro from 127.0.0.1: 403" in audited
        assert "admin PUT /console/api/functions/f/code by rw from 127.0.0.1: 201" in audited
    finally:
        await server.shutdown(timeout=1.0)


async def test_the_consoles_own_origin_may_write_and_no_other(tmp_path: Path):
    server = await _serve(tmp_path)
    assert server.admin is not None
    own = f"127.0.0.1:{server.admin.port}"
    route = {"path": "/x", "integration": {"type": "mock", "body": "x"}}
    try:
        r = await call(server, "PUT", "/routes/x", route, Host=own, Origin=f"http://{own}")
        assert r.status == 201, r.body
        r = await call(server, "PUT", "/routes/x", route, Host=own, Origin="http://evil.example")
        assert r.status == 403 and "admin.allow_origins" in r.json()["message"]
        # A rebound name with its own origin is still refused by the Host check.
        r = await call(server, "PUT", "/routes/x", route, Host="evil.example:80", Origin="http://evil.example:80")
        assert r.status == 403
    finally:
        await server.shutdown(timeout=1.0)


async def test_code_goes_to_a_folder_named_by_its_content_and_the_test_tab_shows_logs(tmp_path: Path):
    server = await _serve(tmp_path)
    handler = (
        "def main(event, context):\n    print('got', event['n'])\n"
        "    return {'statusCode': 200, 'body': str(event['n'] * 2)}\n"
    )
    try:
        r = await call(server, "PUT", "/console/api/functions/double/code", {"files": {"app.py": handler}})
        assert r.status == 201, r.body
        code = r.json()["code"]
        folder = tmp_path / code
        assert folder.is_relative_to(tmp_path / "gw.yaml.deployments" / "code" / "double")
        assert (folder / "app.py").read_text() == handler
        again = await call(server, "PUT", "/console/api/functions/double/code", {"files": {"app.py": handler}})
        assert again.json()["code"] == code  # the same code, the same folder
        for dots in ("..", "."):  # a name that would lead out of the code folder is no route at all
            r = await call(server, "PUT", f"/console/api/functions/{dots}/code", {"files": {"app.py": handler}})
            assert r.status == 404, (dots, r.status)
        assert not (folder.parent.parent.parent / folder.name).exists(), "code written outside its function's folder"
        bad = await call(server, "PUT", "/console/api/functions/double/code", {"files": {"../x.py": "1"}})
        assert bad.status == 400 and bad.json()["path"] == "$.files.../x.py"
        r = await call(server, "PUT", "/functions/double", {"runtime": "python", "handler": "app.main", "code": code})
        assert r.status == 201, r.body
        got = await call(server, "GET", "/console/api/functions/double/code")
        assert got.json()["file"] == "app.py" and got.json()["text"] == handler
        out = await call(server, "POST", "/console/api/functions/double/invoke", {"n": 21})
        assert out.status == 200, out.body
        result = out.json()
        assert result["ok"] is True and result["result"] == {"statusCode": 200, "body": "42"}
        assert any("got 21" in line for line in result["logs"]) and result["duration_ms"] > 0
        missing = await call(server, "POST", "/console/api/functions/nope/invoke", {})
        assert missing.status == 404
    finally:
        await server.shutdown(timeout=1.0)


async def test_api_drafts_are_kept_until_deployed(tmp_path: Path):
    server = await _serve(tmp_path)
    draft = {
        "type": "rest",
        "routes": [{"path": "/", "methods": ["ANY"], "integration": {"type": "mock", "body": "hi"}}],
    }
    try:
        assert (await call(server, "PUT", "/console/api/drafts/shop", draft)).status == 200
        assert (await call(server, "GET", "/console/api/drafts")).json() == {"shop": draft}
        assert (await call(server, "GET", "/console/api/drafts/shop")).json() == draft
        assert (await http_request(server.port, "GET", "/Prod")).status == 404  # a draft serves nowhere
        assert (await call(server, "PUT", "/apis/shop", {**draft, "stages": {"Prod": {}}})).status == 201
        assert (await http_request(server.port, "GET", "/Prod")).body == b"hi"
        assert (await call(server, "DELETE", "/console/api/drafts/shop")).status == 200
        assert (await call(server, "GET", "/console/api/drafts/shop")).status == 404
        assert (await call(server, "PUT", "/console/api/drafts/shop", [1])).status == 400
    finally:
        await server.shutdown(timeout=1.0)


async def test_the_live_counters_as_json(tmp_path: Path):
    server = await _serve(tmp_path)
    try:
        for _ in range(3):
            assert (await http_request(server.port, "GET", "/home")).status == 200
        stats = (await call(server, "GET", "/console/api/stats")).json()
        rows = [r for r in stats["series"] if r[0] == "home"]
        assert rows and rows[0][1:4] == ["GET", 200, 3]
        assert len(rows[0]) == 7 + len(stats["buckets"]) + 1  # count, bytes in/out, sum, the buckets, +Inf
    finally:
        await server.shutdown(timeout=1.0)


async def test_under_workers_the_supervisor_answers_with_the_traffic_port_and_its_own_test_pool(tmp_path: Path):
    import re

    from tests.integration.gwprocess import GatewayProcess

    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text("def main(event, context):\n    print('in', event)\n    return 7\n")
    path = tmp_path / "gw.yaml"
    path.write_text(
        BASE.format(tokens="") + "functions:\n  f: {runtime: python, handler: app.main, code: fn}\n"
        "  # no route calls it: the supervisor serves none, so the test runs in a pool of its own\n"
    )
    gw = await GatewayProcess(path, "--workers", "2").start()
    try:
        admin = 0
        for _ in range(200):  # the supervisor starts its admin listener after it logs the workers' port
            found = [int(m.group(1)) for line in gw.log if (m := re.search(r"admin API listening on .*:(\d+)", line))]
            if found:
                admin = found[0]
                break
            await asyncio.sleep(0.05)

        async def call(method: str, target: str, body: bytes = b""):
            headers = {"content-type": "application/json"} if body else {}
            return await http_request(admin, method, target, headers=headers, body=body, host="127.0.0.1", timeout=30)

        info = (await call("GET", "/console/api/info")).json()
        assert info["traffic"] == f"http://127.0.0.1:{gw.port}"
        out = (await call("POST", "/console/api/functions/f/invoke", b'{"x": 1}')).json()
        assert out["ok"] is True and out["result"] == 7 and any("in {'x': 1}" in line for line in out["logs"])
    finally:
        await gw.stop()
