"""The metrics added for issue 14 after known traffic on real listeners: response bytes, upstream latency, a retry
and the breaker it opened, a target the active checks took out, pool connections, a function that answers and
one that fails, and what the cache and rate-limit plugins publish; parsed with prometheus-client's parser."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fastgw.client import http_request
from fastgw.testing import EchoUpstream, running_gateway
from tests.functions.conftest import write
from tests.integration.targets import refused_port
from tests.observability.test_metrics_admin import ADMIN, admin_get, samples

FUNCTIONS = """
def ok(event, context):
    return {"statusCode": 200, "body": "fine"}

def broken(event, context):
    raise ValueError("no")
"""


async def _until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pred()


async def test_upstreams_functions_and_plugin_decisions_after_known_traffic(tmp_path: Path):
    write(tmp_path / "fn", "app.py", FUNCTIONS)
    down = refused_port()
    async with EchoUpstream() as up:
        active = {"interval": 0.1, "timeout": 0.05, "unhealthy_threshold": 1, "path": "/hc"}
        cfg = {
            "admin": ADMIN,
            "plugin_modules": ["tests.observability.publish:Publish"],
            "upstreams": {
                # Round-robin starts on the stopped target: the first request fails there, opens its breaker and
                # is retried on the echo target.
                "flaky": {"targets": [f"http://127.0.0.1:{down}", up.url],
                          "breaker": {"consecutive_failures": 1, "failure_ratio": None, "cool_down": 60}},
                "checked": {"targets": [f"http://127.0.0.1:{down}"], "health": {"active": active}},
            },
            "functions": {"ok": {"runtime": "python", "handler": "app.ok", "code": "fn"},
                          "broken": {"runtime": "python", "handler": "app.broken", "code": "fn"}},
            "routes": [
                {"path": "/p", "name": "p", "integration": {"type": "http", "upstream": "flaky"},
                 "plugins": {"publish-vars": {}}},
                {"path": "/ok", "name": "ok", "integration": {"type": "lambda", "function": "ok"}},
                {"path": "/broken", "name": "broken", "integration": {"type": "lambda", "function": "broken"}},
            ],
        }  # fmt: skip
        async with running_gateway(cfg, base_dir=tmp_path) as server:
            assert server.admin is not None
            sent = 0
            for headers in ({"x-cache": "MISS"}, {"x-cache": "HIT"}, {"x-cache": "HIT", "x-limit": "allowed"}):
                r = await http_request(server.port, "GET", "/p", headers=headers)
                assert r.status == 200
                sent += len(r.raw_head) + len(r.body)
            assert (await http_request(server.port, "GET", "/p", headers={"x-limit": "refused"})).status == 429
            assert (await http_request(server.port, "GET", "/ok")).status == 200
            assert (await http_request(server.port, "GET", "/broken")).status == 500
            checked = server.gateway.upstreams["checked"].targets[0]  # type: ignore[union-attr]
            await _until(lambda: not checked.check_up)
            got = samples((await admin_get(server.admin.port, "/metrics")).body.decode())
    flaky_down = (("target", f"127.0.0.1:{down}"), ("upstream", "flaky"))
    flaky_up = (("target", f"127.0.0.1:{up.port}"), ("upstream", "flaky"))
    assert got[("fastgw_response_bytes_total", (("route", "p"),))] >= sent > 0
    # Three answers from the echo target (the 429 never left the gateway), each timed from the request sent.
    assert got[("fastgw_upstream_duration_seconds_count", (("upstream", "flaky"),))] == 3
    assert 0 < got[("fastgw_upstream_duration_seconds_sum", (("upstream", "flaky"),))] < 5
    assert got[("fastgw_upstream_retries_total", (("upstream", "flaky"),))] == 1
    assert got[("fastgw_upstream_breaker_opens_total", flaky_down)] == 1
    assert got[("fastgw_upstream_breaker_state", flaky_down)] == 2  # open
    assert got[("fastgw_upstream_breaker_state", flaky_up)] == 0  # closed
    assert got[("fastgw_upstream_target_healthy", flaky_down)] == 0  # out while its breaker is open
    assert got[("fastgw_upstream_target_healthy", flaky_up)] == 1
    assert got[("fastgw_upstream_target_healthy", (("target", f"127.0.0.1:{down}"), ("upstream", "checked")))] == 0
    # The keep-alive connection to the echo target went back to the pool.
    assert got[("fastgw_upstream_connections", (("state", "idle"), *flaky_up))] == 1
    assert got[("fastgw_upstream_connections", (("state", "busy"), *flaky_up))] == 0
    assert got[("fastgw_cache_responses_total", (("route", "p"), ("status", "HIT")))] == 2
    assert got[("fastgw_cache_responses_total", (("route", "p"), ("status", "MISS")))] == 1
    assert got[("fastgw_rate_limit_decisions_total", (("decision", "refused"), ("route", "p")))] == 1
    assert got[("fastgw_rate_limit_decisions_total", (("decision", "allowed"), ("route", "p")))] == 1
    for name, errors in (("ok", 0), ("broken", 1)):
        fn = (("function", name),)
        assert got[("fastgw_function_invocations_total", fn)] == 1
        assert got[("fastgw_function_errors_total", fn)] == errors
        assert got[("fastgw_function_throttles_total", fn)] == 0
        assert got[("fastgw_function_duration_seconds_count", fn)] == 1
        assert got[("fastgw_function_workers", fn)] == 1 and got[("fastgw_function_workers_busy", fn)] == 0
    # Functions are not upstreams in the upstream histogram.
    assert not any(k[0].startswith("fastgw_upstream_duration") and "function" in str(k[1]) for k in got)
