"""OpenTelemetry export end to end: a gateway with `tracing:` sends its spans over OTLP/HTTP to a collector this
test runs on loopback (decoded with opentelemetry-proto), and the ids line up with what the caller sent and the
upstream received. Without the `otel` extra, the config is refused with the install hint."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fastgw.client import http_request
from fastgw.config.load import ConfigError, load_config_bytes
from fastgw.testing import EchoUpstream, running_gateway

pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP traces endpoint: POST /v1/traces, protobuf bodies, kept as decoded requests."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.path == "/v1/traces":
                    msg = ExportTraceServiceRequest()
                    msg.ParseFromString(body)
                    collector.requests.append(msg)
                    self.send_response(200)
                else:
                    self.send_response(404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[tuple[Any, Any]]:
        """(resource, span) of every span received."""
        return [(rs.resource, s) for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans
                for s in ss.spans]  # fmt: skip


def _attrs(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        v = kv.value
        out[kv.key] = v.string_value if v.HasField("string_value") else v.int_value
    return out


async def _until(pred: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pred()


def _config(upstream: str, collector_port: int, **tracing: Any) -> dict[str, Any]:
    return {
        "tracing": {"otlp_endpoint": f"http://127.0.0.1:{collector_port}/v1/traces", "service_name": "gw-test",
                    "flush_interval": 0.1, "resource_attributes": {"deployment.environment": "test"}, **tracing},
        "upstreams": {"backend": {"targets": [upstream]}},
        "routes": [
            {"path": "/items/{id}", "name": "items", "integration": {"type": "http", "upstream": "backend"},
             "plugins": {"trace-context": {}}},
            {"path": "/plain", "name": "plain", "integration": {"type": "http", "upstream": "backend"}},
        ],
    }  # fmt: skip


async def test_spans_join_the_callers_trace_and_the_upstream_hangs_under_the_client_span():
    with Collector() as collector:
        async with EchoUpstream() as up, running_gateway(_config(up.url, collector.port)) as gw:
            tp = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
            r = await http_request(gw.port, "GET", "/items/7?x=1", headers={"traceparent": tp})
            assert r.status == 200
            await _until(lambda: len(collector.spans()) >= 2)
        seen = dict(up.received[0].headers)["traceparent"]
    spans = {s.kind: (res, s) for res, s in collector.spans()}
    resource, server = spans[2]  # SPAN_KIND_SERVER
    _, client = spans[3]  # SPAN_KIND_CLIENT
    res = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert res["service.name"] == "gw-test" and res["deployment.environment"] == "test"
    assert server.trace_id.hex() == client.trace_id.hex() == CALLER_TRACE
    assert server.parent_span_id.hex() == CALLER_SPAN  # the gateway's span hangs under the caller's
    assert client.parent_span_id == server.span_id
    # The upstream got the same trace id, with the gateway's CLIENT span as its parent.
    assert seen == f"00-{CALLER_TRACE}-{client.span_id.hex()}-01"
    assert server.name == "items"
    expected = {"http.request.method": "GET", "url.path": "/items/7", "http.response.status_code": 200,
                "http.route": "/items/{id}", "fastgw.route": "items"}  # fmt: skip
    attrs = _attrs(server)
    assert {k: attrs.get(k) for k in expected} == expected, attrs
    assert server.start_time_unix_nano <= client.start_time_unix_nano <= client.end_time_unix_nano
    assert client.end_time_unix_nano <= server.end_time_unix_nano
    assert abs(server.start_time_unix_nano / 1e9 - time.time()) < 60
    assert _attrs(client)["server.port"] == up.port and client.name == f"GET 127.0.0.1:{up.port}"


async def test_a_route_without_the_plugin_keeps_the_callers_trace_and_sampling_drops_whole_traces():
    with Collector() as collector:
        async with EchoUpstream() as up, running_gateway(_config(up.url, collector.port)) as gw:
            tp = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
            assert (await http_request(gw.port, "GET", "/plain", headers={"traceparent": tp})).status == 200
            await _until(lambda: len(collector.spans()) >= 2)
        # The upstream saw the caller's own header (the gateway did not take part), with the same trace id.
        assert dict(up.received[0].headers)["traceparent"] == tp
    assert {s.trace_id.hex() for _, s in collector.spans()} == {CALLER_TRACE}
    with Collector() as collector:
        async with EchoUpstream() as up, running_gateway(_config(up.url, collector.port, sample_ratio=0.0)) as gw:
            for _ in range(3):
                assert (await http_request(gw.port, "GET", "/items/1")).status == 200
            assert (await http_request(gw.port, "GET", "/items/2", headers={"traceparent": tp})).status == 200
            await asyncio.sleep(0.5)  # several flush intervals
        assert collector.spans() == []


def test_tracing_config_errors_name_the_key(monkeypatch: pytest.MonkeyPatch):
    bad = b"tracing: {otlp_endpoint: 'localhost:4318'}\nroutes: [{path: /, integration: {type: mock}}]\n"
    with pytest.raises(ConfigError) as info:
        load_config_bytes(bad, "gw.yaml")
    assert info.value.path == "$.tracing.otlp_endpoint"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("opentelemetry") else real(name, *a)
    )
    ok = (
        b"tracing: {otlp_endpoint: 'http://127.0.0.1:4318/v1/traces'}\nroutes: [{path: /, integration: {type: mock}}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config_bytes(ok, "gw.yaml")
    assert info.value.path == "$.tracing" and "pip install 'fastgw[otel]'" in info.value.message


async def test_routes_told_apart_by_headers_name_their_template():
    # The first of such routes stands behind their switch in the gateway's routes (fastgw.pipeline.switch): its
    # spans had lost their http.route.
    cfg = {
        "tracing": {"otlp_endpoint": "", "flush_interval": 0.1},
        "routes": [
            {"path": "/v/{id}", "name": "beta", "headers": {"X-Beta": "1"}, "integration": {"type": "mock"}},
            {"path": "/v/{id}", "name": "stable", "integration": {"type": "mock"}},
        ],
    }
    with Collector() as collector:
        cfg["tracing"]["otlp_endpoint"] = f"http://127.0.0.1:{collector.port}/v1/traces"  # type: ignore[index]
        async with running_gateway(cfg) as gw:
            assert (await http_request(gw.port, "GET", "/v/1", headers={"x-beta": "1"})).status == 200
            assert (await http_request(gw.port, "GET", "/v/2")).status == 200
            await _until(lambda: len(collector.spans()) >= 2)
    routes = sorted((_attrs(s)["fastgw.route"], _attrs(s).get("http.route")) for _, s in collector.spans())
    assert routes == [("beta", "/v/{id}"), ("stable", "/v/{id}")]
