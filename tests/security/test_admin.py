"""The admin API in a browser (issue 19, item 4): a web page must not drive it by CSRF (a cross-site POST, a form,
a `text/plain` fetch) nor read or drive it through DNS rebinding (a name it controls pointed at 127.0.0.1), while
an operator's plain `curl -X POST http://127.0.0.1:PORT/reload` keeps working. Over real sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from fastgw.client import http_request
from fastgw.config.load import load_config
from fastgw.server.server import Server

CONFIG = (
    "admin: {{host: 127.0.0.1, port: 0{extra}}}\nlogging: {{access_log: false}}\n"
    "routes:\n  - path: /v\n    integration: {{type: mock, body: one}}\n"
)


async def _serve(tmp_path: Path, extra: str = "") -> Server:
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG.format(extra=extra))
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    assert server.admin is not None
    return server


async def _call(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""):
    return await http_request(port, method, path, headers=headers, body=body, host=headers.pop("host", "127.0.0.1"))


async def test_a_foreign_host_or_origin_or_a_form_body_is_refused(tmp_path: Path):
    server = await _serve(tmp_path)
    try:
        assert server.admin is not None
        port = server.admin.port
        # The request of the issue: all three at once.
        evil = {"host": "evil.example", "origin": "http://evil.example", "content-type": "text/plain"}
        r = await _call(port, "POST", "/reload", dict(evil), b"{}")
        assert r.status == 403 and "evil.example" in r.json()["message"]
        # Each alone.
        r = await _call(port, "POST", "/reload", {"host": f"evil.example:{port}"})
        assert r.status == 403 and "admin.hosts" in r.json()["message"]
        r = await _call(port, "GET", "/config", {"host": "evil.example"})  # DNS rebinding reads too
        assert r.status == 403
        r = await _call(port, "POST", "/reload", {"origin": "http://evil.example"})
        assert r.status == 403 and "admin.allow_origins" in r.json()["message"]
        r = await _call(port, "POST", "/reload", {"origin": "null"})  # a sandboxed page
        assert r.status == 403
        r = await _call(port, "POST", "/reload", {"content-type": "text/plain"}, b"{}")
        assert r.status == 415 and r.json()["message"].startswith("expected content-type: application/json")
        form = {"content-type": "application/x-www-form-urlencoded"}
        assert (await _call(port, "POST", "/reload", form, b"a=b")).status == 415
        r = await _call(port, "POST", "/invoke", {"content-type": "text/plain"}, b'{"path": "/v"}')
        assert r.status == 415
        r = await _call(port, "POST", "/invoke", {}, b'{"path": "/v"}')  # a body with no content type
        assert r.status == 415
        r = await _call(port, "POST", "/invoke", {"origin": "https://evil.example"}, b"")
        assert r.status == 403
        r = await _call(port, "POST", "/deployments/0123456789abcdef/rollback", {"origin": "http://evil.example"})
        assert r.status == 403
        # What an operator sends is served: the listener's address (with or without the port), localhost, JSON.
        for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "[::1]"):
            assert (await _call(port, "GET", "/status", {"host": host})).status == 200, host
        r = await _call(port, "POST", "/invoke", {"content-type": "application/json; charset=utf-8"}, b'{"path": "/v"}')
        assert r.status == 200 and r.json()["status"] == 200
        assert (await _call(port, "POST", "/reload", {})).status == 200
    finally:
        await server.shutdown(timeout=1.0)


async def test_plain_curl_reloads(tmp_path: Path):
    server = await _serve(tmp_path)
    try:
        assert server.admin is not None
        url = f"http://127.0.0.1:{server.admin.port}/reload"
        proc = await asyncio.create_subprocess_exec(
            "curl", "-s", "-w", "\n%{http_code}", "-X", "POST", url,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        body, _, code = out.decode().rpartition("\n")
        assert code == "200" and orjson.loads(body)["reloaded"] is True
    finally:
        await server.shutdown(timeout=1.0)


async def test_configured_hosts_and_origins_are_served_with_cors(tmp_path: Path):
    extra = ", hosts: [gw-admin.internal], allow_origins: ['https://console.example.com']"
    server = await _serve(tmp_path, extra)
    try:
        assert server.admin is not None
        port = server.admin.port
        r = await _call(port, "GET", "/status", {"host": "gw-admin.internal:9901"})
        assert r.status == 200
        allowed = {"origin": "https://console.example.com"}
        r = await _call(port, "GET", "/status", dict(allowed))
        assert r.status == 200 and r.header("access-control-allow-origin") == "https://console.example.com"
        r = await _call(port, "OPTIONS", "/reload", {**allowed, "access-control-request-method": "POST"})
        assert r.status == 204 and "POST" in (r.header("access-control-allow-methods") or "")
        r = await _call(port, "POST", "/reload", {**allowed, "content-type": "application/json"}, b"{}")
        assert r.status == 200
        r = await _call(port, "GET", "/status", {"origin": "https://other.example.com"})
        assert r.status == 403 and r.header("access-control-allow-origin") is None
        assert (await _call(port, "GET", "/status", {"host": "gw-admin.internal.evil"})).status == 403
    finally:
        await server.shutdown(timeout=1.0)
