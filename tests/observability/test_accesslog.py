"""The access log as an operator reads it: JSON lines checked field by field, the text format, a file that is
reopened on SIGUSR1 after logrotate moved it, and the gateway's own log as JSON."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import time
from pathlib import Path

import orjson

from fastgw.client import http_request
from fastgw.observability.accesslog import AccessLog, trace_id_of
from fastgw.testing import EchoUpstream, running_gateway
from tests.integration.gwprocess import GatewayProcess

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

API_CONFIG = """
upstreams:
  backend: {targets: ["%s"]}
apis:
  shop:
    type: rest
    stages: {prod: {}}
    routes:
      - path: /items
        name: items
        methods: [POST]
        integration: {type: http, upstream: backend}
        plugins: {key-auth: {}, request-id: {}}
consumers:
  alice: {credentials: {key-auth: [{key: alice-key-0123456789}]}}
"""


async def test_json_lines_field_by_field():
    out = io.BytesIO()
    async with EchoUpstream() as up, running_gateway(API_CONFIG % up.url, access_log=AccessLog(out)) as gw:
        headers = {"apikey": "alice-key-0123456789", "user-agent": "curl/8.5", "traceparent": TRACEPARENT}
        r = await http_request(gw.port, "POST", "/prod/items?x=1", headers=headers, body=b"abc", host="shop.test")
        assert r.status == 200
        assert (await http_request(gw.port, "GET", "/nowhere")).status in (403, 404)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    stamp = first.pop("time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    assert 0 <= first.pop("duration_ms") < 10_000
    assert len(first.pop("request_id")) >= 16
    assert first == {
        "client": "127.0.0.1", "method": "POST", "host": "shop.test", "path": "/prod/items", "route": "shop:items@prod",
        "api": "shop", "stage": "prod", "status": 200, "request_bytes": 3, "consumer": "alice",
        "user_agent": "curl/8.5", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }  # fmt: skip
    miss = lines[1]
    # Fields nothing set are left out; those every request has are there (null when unknown).
    assert miss["route"] is None and miss["user_agent"] is None and "consumer" not in miss and "api" not in miss


async def test_text_format():
    out = io.BytesIO()
    cfg = {"routes": [{"path": "/t", "name": "t", "integration": {"type": "mock", "status": 202}}]}
    async with running_gateway(cfg, access_log=AccessLog(out, format="text")) as gw:
        await http_request(gw.port, "GET", "/t", headers={"user-agent": "probe/1", "traceparent": TRACEPARENT})
    line = out.getvalue().decode()
    assert re.fullmatch(
        r'127\.0\.0\.1 - - \[[0-9T:Z-]+\] "GET /t" 202 0 [0-9.]+ms "probe/1" host=test\.local route=t '
        r"request_id=- trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n",
        line,
    ), line


def test_trace_id_of_refuses_what_is_not_a_traceparent():
    assert trace_id_of(TRACEPARENT.encode()) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of(b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01") is None  # the all-zero id is invalid
    assert trace_id_of(b"garbage") is None and trace_id_of(None) is None
    assert trace_id_of(b"00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") is None


async def _wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pred()


async def test_a_file_log_is_reopened_on_sigusr1_and_the_gateway_log_can_be_json(tmp_path: Path):
    log_path = tmp_path / "access.log"
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(
        f"logging: {{format: json, access_log_path: {log_path}}}\n"
        "routes:\n  - path: /v\n    integration: {type: mock, body: one}\n"
    )
    gw = await GatewayProcess(cfg).start()
    try:
        assert (await http_request(gw.port, "GET", "/v")).status == 200
        await _wait_for(lambda: log_path.exists() and log_path.read_bytes().count(b"\n") == 1)
        rotated = tmp_path / "access.log.1"
        log_path.rename(rotated)  # what logrotate does, before it signals
        gw.signal(signal.SIGUSR1)
        await _wait_for(log_path.exists)
        assert (await http_request(gw.port, "GET", "/v?second")).status == 200
        await _wait_for(lambda: log_path.read_bytes().count(b"\n") == 1)
        assert orjson.loads(rotated.read_bytes())["path"] == "/v"
        assert orjson.loads(log_path.read_bytes())["path"] == "/v"
        assert rotated.read_bytes().count(b"\n") == 1  # nothing written to the moved file after the signal
    finally:
        await gw.stop()
    # The gateway's own log: one JSON object a line (the first lines come before the config is read).
    records = [orjson.loads(line) for line in gw.log if line.startswith("{")]
    assert any("listening on" in r["message"] and r["level"] == "info" for r in records), gw.log
