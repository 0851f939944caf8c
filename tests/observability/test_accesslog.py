"""The access log as an operator reads it: JSON lines checked field by field, the text format, a file that is
reopened on SIGUSR1 after logrotate moved it, and the gateway's own log as JSON."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import signal
import time
from pathlib import Path

import orjson

from fastgw.client import http_request
from fastgw.observability.accesslog import AccessLog, trace_id_of
from fastgw.testing import EchoUpstream, RawConnection, running_gateway
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
        miss = await http_request(gw.port, "GET", "/nowhere")
        assert miss.status in (403, 404)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    stamp = first.pop("time")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    duration = first.pop("duration_ms")
    upstream_ms = first.pop("upstream_ms")
    assert 0 < upstream_ms <= duration < 10_000
    assert len(first.pop("request_id")) >= 16
    assert first == {
        "client": "127.0.0.1", "method": "POST", "host": "shop.test", "path": "/prod/items", "route": "shop:items@prod",
        "api": "shop", "stage": "prod", "status": 200, "request_bytes": 3, "consumer": "alice",
        "user_agent": "curl/8.5", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "response_bytes": len(r.raw_head) + len(r.body), "upstream": f"127.0.0.1:{up.port}",
    }  # fmt: skip
    nothing = lines[1]
    # Fields nothing set are left out; those every request has are there (null when unknown).
    assert nothing["route"] is None and nothing["user_agent"] is None and "consumer" not in nothing
    assert "api" not in nothing and "upstream" not in nothing and "upstream_ms" not in nothing
    assert nothing["response_bytes"] == len(miss.raw_head) + len(miss.body) > 0


HEADER_ROUTES = """
apis:
  shop:
    type: rest
    stages: {prod: {}}
    routes:
      - path: /items
        name: beta
        headers: {X-Beta: "1"}
        integration: {type: mock, body: beta}
      - path: /items
        name: items
        integration: {type: mock, body: items}
"""


async def test_routes_told_apart_by_headers_carry_their_api_and_stage():
    # The router's entry of such routes is their switch (fastgw.pipeline.switch), in place of the first of them:
    # that one's lines had lost their api and stage, and its spans their http.route.
    from fastgw.gateway import Gateway
    from fastgw.observability.accesslog import served_routes

    out = io.BytesIO()
    async with running_gateway(HEADER_ROUTES, access_log=AccessLog(out)) as gw:
        assert (await http_request(gw.port, "GET", "/prod/items", headers={"x-beta": "1"})).body == b"beta"
        assert (await http_request(gw.port, "GET", "/prod/items")).body == b"items"
        served: Gateway | None = gw.gateway
        names = sorted({r.name for r in served_routes(served) if r.kind != "headers"})
        assert names == ["shop:beta@prod", "shop:items@prod"]
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["route"], e.get("api"), e.get("stage")) for e in lines] == [
        ("shop:beta@prod", "shop", "prod"),
        ("shop:items@prod", "shop", "prod"),
    ]


async def _slow_upstream(delay: float) -> asyncio.AbstractServer:
    """Answers every request `delay` seconds after it arrived."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow")
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_upstream_latency_is_the_wait_for_the_head_and_plugin_vars_are_logged():
    out = io.BytesIO()
    slow = await _slow_upstream(0.2)
    port = slow.sockets[0].getsockname()[1]
    cfg = {
        "plugin_modules": ["tests.observability.publish:Publish"],
        "upstreams": {"backend": {"targets": [f"http://127.0.0.1:{port}"]}},
        "routes": [
            {"path": "/slow", "name": "slow", "integration": {"type": "http", "upstream": "backend"},
             "plugins": {"publish-vars": {}}},
        ],
    }  # fmt: skip
    try:
        async with running_gateway(cfg, access_log=AccessLog(out)) as gw:
            r = await http_request(gw.port, "GET", "/slow", headers={"x-cache": "MISS", "x-limit": "allowed"})
            assert r.status == 200 and r.body == b"slow"
            refused = await http_request(gw.port, "GET", "/slow", headers={"x-limit": "refused"})
            assert refused.status == 429
    finally:
        slow.close()
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert 190 <= first["upstream_ms"] <= first["duration_ms"] < 5000, first
    assert first["cache_status"] == "MISS" and first["rate_limit"] == "allowed"
    assert first["upstream"] == f"127.0.0.1:{port}" and first["response_bytes"] == len(r.raw_head) + 4
    # Refused in the access phase: no upstream answered, the limiter's decision is there.
    assert second["status"] == 429 and second["rate_limit"] == "refused" and "upstream" not in second
    assert "cache_status" not in second


async def test_what_a_client_chose_is_escaped_and_every_line_is_json():
    out = io.BytesIO()
    cfg = {"routes": [{"path": "/{p+}", "name": "any", "integration": {"type": "mock"}}]}
    ua = 'say "hi" \\ café'
    async with running_gateway(cfg, access_log=AccessLog(out)) as gw:
        await http_request(gw.port, "GET", "/a%22b", headers={"user-agent": ua})
        await http_request(gw.port, "GET", "/plain", headers={"user-agent": "x"})
    first, second = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert first["user_agent"] == ua
    assert first["path"] == "/a%22b" and first["route"] == "any"  # what is matched, still encoded
    assert second["path"] == "/plain" and second["user_agent"] == "x"


async def test_text_format():
    out = io.BytesIO()
    cfg = {"routes": [{"path": "/t", "name": "t", "integration": {"type": "mock", "status": 202, "body": "ok"}}]}
    async with running_gateway(cfg, access_log=AccessLog(out, format="text")) as gw:
        r = await http_request(gw.port, "GET", "/t", headers={"user-agent": "probe/1", "traceparent": TRACEPARENT})
    line = out.getvalue().decode()
    sent = len(r.raw_head) + len(r.body)
    assert re.fullmatch(
        rf'127\.0\.0\.1 - - \[[0-9T:Z-]+\] "GET /t" 202 {sent} [0-9.]+ms "probe/1" host=test\.local route=t '
        r"request_id=- trace_id=4bf92f3577b34da6a3ce929d0e0e4736 request_bytes=0\n",
        line,
    ), line


async def test_a_burst_is_flushed_in_order_with_one_line_each():
    out = io.BytesIO()
    cfg = {"routes": [{"path": "/{n}", "name": "n", "integration": {"type": "mock"}}]}
    log = AccessLog(out)
    async with running_gateway(cfg, access_log=log) as gw:
        conn = await RawConnection.open(gw.port)
        n = 600  # more than one buffer's worth: a flush on the way, and the rest at the end
        await conn.send(b"".join(b"GET /%d HTTP/1.1\r\nhost: x\r\n\r\n" % i for i in range(n)))
        for _ in range(n):
            assert (await conn.response()).status == 200
        await conn.close()
    paths = [orjson.loads(line)["path"] for line in out.getvalue().splitlines()]
    assert paths == [f"/{i}" for i in range(n)]


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


def test_a_traceparent_that_is_not_w3c_gives_no_trace_id():
    from fastgw.observability.accesslog import trace_id_of

    good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id_of(good) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of(b"00-\t" + good[4:]) is None  # a tab in the id would break the JSON line
    assert trace_id_of(good[:36] + b"zzzzzzzzzzzzzzzz-01") is None  # the span export reads the parent as hex
    assert trace_id_of(good.upper()) is None


async def test_a_hook_that_raises_is_logged_and_the_connection_goes_on(caplog):
    # The Observer runs the counters, the log's buffer and the other hooks in one call from Exchange.done: one that
    # raises is logged there, and the keep-alive connection answers its next request.
    from fastgw.observability.metrics import Counters, observer

    class Broken:
        def add(self, ex, now):
            raise RuntimeError("span export broke")

    out = io.BytesIO()
    log = AccessLog(out)
    counters = Counters()
    cfg = {"routes": [{"path": "/t", "name": "t", "integration": {"type": "mock", "body": "ok"}}]}
    async with running_gateway(cfg) as gw:
        gw.state.access_log = observer(log, counters, Broken())  # type: ignore[union-attr]
        conn = await RawConnection.open(gw.port)
        try:
            for _ in range(2):
                await conn.send(b"GET /t HTTP/1.1\r\nhost: x\r\n\r\n")
                r = await conn.response()
                assert r.status == 200 and r.body == b"ok"
        finally:
            await conn.close()
        log.flush()
    assert [orjson.loads(line)["route"] for line in out.getvalue().splitlines()] == ["t", "t"]
    assert counters.series[("t", "GET", 200)][0] == 2
    assert caplog.text.count("observing the exchange failed") == 2


def test_an_access_log_path_that_cannot_be_opened_is_a_config_error_naming_the_key(tmp_path, capsys):
    """`fastgw check` refuses it, and so `serve` does before it binds, naming the key: it used to pass the check
    and then fail `serve` as 'cannot listen on 127.0.0.1:PORT'."""
    from fastgw.cli import main
    from fastgw.config.load import ConfigError, load_config_bytes

    cases = {
        str(tmp_path / "missing" / "access.log"): "does not exist",
        str(tmp_path): "got the folder",
    }
    for path, words in cases.items():
        raw = orjson.dumps({"logging": {"access_log_path": path}, "routes": []})
        try:
            load_config_bytes(raw, "gw.json")
        except ConfigError as exc:
            assert exc.path == "$.logging.access_log_path", exc
            assert words in str(exc), exc
        else:
            raise AssertionError(f"{path}: no error")
        cfg = tmp_path / "gw.json"
        cfg.write_bytes(raw)
        assert main(["check", str(cfg)]) != 0
        assert "$.logging.access_log_path" in capsys.readouterr().err
    # A file in an existing folder, or access_log off, passes.
    load_config_bytes(orjson.dumps({"logging": {"access_log_path": str(tmp_path / "a.log")}}), "gw.json")
    off = {"logging": {"access_log": False, "access_log_path": str(tmp_path / "missing" / "a.log")}}
    load_config_bytes(orjson.dumps(off), "gw.json")
