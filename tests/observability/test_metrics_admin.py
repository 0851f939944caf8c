"""Metrics and the admin API on real listeners: /metrics parsed with prometheus-client's own parser after known
traffic (one worker in this loop, and two worker processes under a supervisor), and the admin API's answers,
its token, its refusal of a non-loopback bind without one, reload and invoke."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastgw.admin.api import AdminError, check_bind
from fastgw.client import http_request
from fastgw.config.load import ConfigError, load_config, load_config_bytes
from fastgw.config.schema import AdminConfig
from fastgw.server.server import Server
from fastgw.testing import EchoUpstream, running_gateway
from tests.conftest import proxy_config
from tests.integration.gwprocess import GatewayProcess

ADMIN = {"host": "127.0.0.1", "port": 0}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def admin_get(port: int, path: str, token: str | None = None):
    return await admin_request(port, "GET", path, token=token)


async def admin_request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    token: str | None = None,
    headers: dict[str, str] | None = None,
):
    """A call as an operator's client makes it: Host the listener's address, a JSON body said to be JSON."""
    hdrs = {"authorization": f"Bearer {token}"} if token else {}
    if body:
        hdrs["content-type"] = "application/json"
    return await http_request(port, method, path, headers={**hdrs, **(headers or {})}, body=body, host="127.0.0.1")


async def test_metrics_count_known_traffic_by_route_method_and_status():
    async with EchoUpstream() as up:
        cfg = proxy_config(up.url, admin=ADMIN)
        cfg["routes"] = [
            {"path": "/users", "name": "api", "integration": {"type": "http", "upstream": "backend"}},
            {"path": "/mock", "name": "mock", "methods": ["GET"], "integration": {"type": "mock", "status": 201}},
        ]
        async with running_gateway(cfg) as server:
            assert server.admin is not None
            for _ in range(3):
                assert (await http_request(server.port, "POST", "/users", body=b"12345")).status == 200
            for _ in range(2):
                assert (await http_request(server.port, "GET", "/mock")).status == 201
            assert (await http_request(server.port, "DELETE", "/mock")).status == 405
            resp = await admin_get(server.admin.port, "/metrics")
            assert resp.status == 200 and resp.header("content-type").startswith("text/plain")
            got = samples(resp.body.decode())
    assert got[("fastgw_requests_total", (("method", "POST"), ("route", "api"), ("status", "200")))] == 3
    assert got[("fastgw_requests_total", (("method", "GET"), ("route", "mock"), ("status", "201")))] == 2
    # A 405 matched no route: counted under route "".
    assert got[("fastgw_requests_total", (("method", "DELETE"), ("route", ""), ("status", "405")))] == 1
    assert got[("fastgw_request_bytes_total", (("route", "api"),))] == 15
    assert got[("fastgw_request_duration_seconds_count", (("route", "api"),))] == 3
    assert got[("fastgw_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "mock")))] == 2
    assert 0 < got[("fastgw_request_duration_seconds_sum", (("route", "api"),))] < 10
    # Buckets are cumulative: each one holds at least what the one below holds.
    api = sorted(
        (float(dict(k[1])["le"]), v) for k, v in got.items()
        if k[0] == "fastgw_request_duration_seconds_bucket" and dict(k[1])["route"] == "api"
    )  # fmt: skip
    assert [v for _, v in api] == sorted(v for _, v in api) and api[-1][1] == 3
    # The scrape's own connection is on the admin listener, not the gateway's.
    assert got[("fastgw_open_connections", ())] == 0


async def test_metrics_off_keeps_no_counters_and_says_so():
    cfg = {"routes": [{"path": "/", "integration": {"type": "mock"}}], "admin": {**ADMIN, "metrics": False}}
    async with running_gateway(cfg) as server:
        assert server.counters is None and server.state is not None and server.state.access_log is None
        assert server.admin is not None
        resp = await admin_get(server.admin.port, "/metrics")
        assert resp.status == 404 and "metrics are off" in resp.json()["message"]


async def test_no_admin_section_no_listener_and_no_hook():
    async with running_gateway({"routes": [{"path": "/", "integration": {"type": "mock"}}]}) as server:
        assert server.admin is None and server.state is not None and server.state.access_log is None


SECRET_CONFIG = """
admin: {host: 127.0.0.1, port: 0, token: s3cret-admin-token}
logging: {access_log: false}
routes:
  - path: /v
    name: v
    methods: [GET]
    integration: {type: mock, body: one}
    plugins: {key-auth: {}}
consumers:
  alice: {credentials: {key-auth: [{key: alice-key-0123456789}]}}
"""


async def test_admin_token_wrong_missing_and_right():
    async with running_gateway(SECRET_CONFIG) as server:
        assert server.admin is not None
        port = server.admin.port
        assert (await admin_get(port, "/status")).status == 401
        assert (await admin_get(port, "/status", "s3cret-admin-tokeX")).status == 401
        assert (await admin_get(port, "/status", "s3cret")).status == 401  # a prefix is not the token
        resp = await admin_get(port, "/status", "s3cret-admin-token")
        assert resp.status == 200
        status = resp.json()
        assert status["status"] == "serving" and status["routes"] == 1 and status["workers"] == 1


async def test_admin_config_masks_secrets_and_lists_routes_upstreams_plugins():
    async with running_gateway(SECRET_CONFIG) as server:
        assert server.admin is not None
        port, token = server.admin.port, "s3cret-admin-token"
        body = (await admin_get(port, "/config", token)).body
        assert b"alice-key-0123456789" not in body and b"s3cret-admin-token" not in body
        cfg = orjson.loads(body)
        assert cfg["admin"]["token"] == "********"
        assert cfg["consumers"]["alice"]["credentials"]["key-auth"] == [{"key": "********"}]
        assert cfg["routes"][0]["path"] == "/v"  # what is not secret is shown as it is
        routes = (await admin_get(port, "/routes", token)).json()
        assert routes == [{"name": "v", "methods": ["GET"], "path": "/v", "host": None, "headers": None,
                           "integration": {"type": "mock", "status": 200, "headers": {}, "body": "one"},
                           "api": None, "stage": None, "plugins": ["key-auth"]}]  # fmt: skip
        plugins = (await admin_get(port, "/plugins", token)).json()
        by_name = {p["name"]: p for p in plugins["available"]}
        assert by_name["key-auth"]["routes"] == 1 and by_name["cors"]["routes"] == 0
        assert (await admin_get(port, "/upstreams", token)).json() == {}
        assert (await admin_get(port, "/nothing", token)).status == 404
        assert (await admin_request(port, "POST", "/status", token=token)).status == 405


async def test_admin_upstreams_list_targets():
    async with EchoUpstream() as up, running_gateway(proxy_config(up.url, admin=ADMIN)) as server:
        assert server.admin is not None
        ups = (await admin_get(server.admin.port, "/upstreams")).json()
    (target,) = ups["backend"]["targets"]
    assert target["url"] == up.url and target["health"] == "healthy" and target["in_rotation"] is True


def test_a_non_loopback_admin_bind_without_a_token_is_refused():
    with pytest.raises(ConfigError) as info:
        load_config_bytes(b"admin: {host: 0.0.0.0}\nroutes: [{path: /, integration: {type: mock}}]\n", "gw.yaml")
    assert info.value.path == "$.admin.token" and info.value.source == "gw.yaml"
    with pytest.raises(AdminError):
        check_bind(AdminConfig(host="10.1.2.3"))
    check_bind(AdminConfig(host="10.1.2.3", token="t"))  # with a token it may
    check_bind(AdminConfig(host="::1"))
    load_config_bytes(b"admin: {host: 0.0.0.0, token: t}\nroutes: [{path: /, integration: {type: mock}}]\n")


MOCK = "admin: {{host: 127.0.0.1, port: 0}}\nlogging: {{access_log: false}}\nroutes:\n" \
       "  - path: /v\n    integration: {{type: mock, body: {body}}}\n"  # fmt: skip


async def test_admin_reload_applies_a_good_config_and_refuses_a_broken_one(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(MOCK.format(body="one"))
    server = Server(load_config(path), "127.0.0.1", 0)
    await server.start()
    try:
        assert server.admin is not None
        port = server.admin.port
        path.write_text(MOCK.format(body="two"))
        resp = await admin_request(port, "POST", "/reload")
        assert resp.status == 200 and resp.json()["reloaded"] is True and resp.json()["routes"] == 1
        assert (await http_request(server.port, "GET", "/v")).body == b"two"
        path.write_text(MOCK.format(body="three") + "  - path: 12\n")
        resp = await admin_request(port, "POST", "/reload")
        assert resp.status == 400 and resp.json()["reloaded"] is False
        assert str(path) in resp.json()["message"] and "$.routes[1]" in resp.json()["message"]
        assert (await http_request(server.port, "GET", "/v")).body == b"two"  # the old config keeps serving
        assert (await admin_request(port, "GET", "/reload")).status == 405
    finally:
        await server.shutdown(timeout=1.0)


async def test_admin_invoke_runs_one_request_through_the_gateway():
    cfg = {"routes": [{"path": "/hello", "name": "hello", "integration": {"type": "mock", "body": {"hi": 1}}}],
           "admin": ADMIN}  # fmt: skip
    async with running_gateway(cfg) as server:
        assert server.admin is not None
        req = orjson.dumps({"method": "GET", "path": "/hello"})
        resp = await admin_request(server.admin.port, "POST", "/invoke", req)
        assert resp.status == 200
        out = resp.json()
        assert out["status"] == 200 and out["route"] == "hello" and orjson.loads(out["body"]) == {"hi": 1}
        bad = await admin_request(server.admin.port, "POST", "/invoke", b"{not json")
        assert bad.status == 400


async def test_metrics_sum_over_two_workers(tmp_path: Path):
    path = tmp_path / "gw.yaml"
    path.write_text(
        "admin: {host: 127.0.0.1, port: 0}\nlogging: {access_log: false}\n"
        "routes:\n  - path: /v\n    name: v\n    integration: {type: mock, body: one}\n"
    )
    gw = await GatewayProcess(path, "--workers", "2").start()
    try:
        deadline = time.monotonic() + 30
        while sum("ready on port" in line for line in gw.log) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        admin = [m for line in gw.log if (m := re.search(r"admin API listening on http://127\.0\.0\.1:(\d+)", line))]
        assert admin, gw.log
        admin_port = int(admin[0].group(1))
        n = 40
        sizes = set()
        for _ in range(n):
            r = await http_request(gw.port, "GET", "/v")
            assert r.status == 200
            sizes.add(len(r.raw_head) + len(r.body))
        key = ("fastgw_requests_total", (("method", "GET"), ("route", "v"), ("status", "200")))
        got: dict = {}
        # Workers write their counters once a second: wait for the sum to reach what was sent.
        while time.monotonic() < deadline:
            got = samples((await admin_get(admin_port, "/metrics")).body.decode())
            if got.get(key) == n:
                break
            await asyncio.sleep(0.2)
        assert got.get(key) == n, got
        (size,) = sizes  # every answer alike (the date may change its second, not its length)
        assert got[("fastgw_response_bytes_total", (("route", "v"),))] == n * size
        status = (await admin_get(admin_port, "/status")).json()
        assert status["workers"] == 2
    finally:
        await gw.stop()


def test_merge_counts_a_dead_workers_counters_but_not_its_gauges():
    from fastgw.observability.metrics import merge

    row = ["v", "GET", 200, 2, 10, 7, 0.5, *([0] * 12)]
    target = ["up", "127.0.0.1:1", 1, 2, 3, 1]  # in rotation, breaker open, 3 idle, 1 busy
    alive = {"series": [row], "connections": 3, "functions": {"f": 2}, "targets": [target], "dead": False,
             "retries": [["up", 1, 0]], "function_calls": [["f", 5, 1, 0]]}  # fmt: skip
    dead = {"series": [row], "connections": 5, "functions": {"f": 4}, "targets": [target], "dead": True,
            "retries": [["up", 2, 1]], "function_calls": [["f", 1, 1, 1]]}  # fmt: skip
    got = merge([alive, dead])
    assert got["series"][("v", "GET", 200)][:4] == [4, 20, 14, 1.0]  # the sum never goes down when a worker dies
    assert got["connections"] == 3 and got["functions"] == {"f": 2}
    assert got["targets"] == {("up", "127.0.0.1:1"): [1, 2, 3, 1]}  # gauges: the live worker's only
    assert got["retries"] == {("up",): [3, 1]} and got["function_calls"] == {("f",): [6, 2, 1]}


def test_the_openapi_file_describes_every_admin_endpoint_and_no_other():
    import yaml

    from fastgw.admin.api import AdminAPI

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "admin-api.openapi.yaml").read_text())
    api = AdminAPI(None, AdminConfig())  # type: ignore[arg-type]
    served = {(template, method.lower()) for method, _, _, template, _ in api.table}
    assert ("/routes/{name}", "put") in served and ("/config", "put") in served
    described = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert described == served


def test_the_grafana_dashboard_queries_only_metrics_the_gateway_exports():
    import json

    dash = json.loads(
        (Path(__file__).resolve().parents[2] / "examples" / "grafana" / "fastgw-dashboard.json").read_text()
    )
    exported = {"fastgw_requests_total", "fastgw_request_bytes_total", "fastgw_request_duration_seconds_bucket",
                "fastgw_open_connections", "fastgw_function_workers", "fastgw_response_bytes_total",
                "fastgw_upstream_duration_seconds_bucket", "fastgw_upstream_target_healthy",
                "fastgw_upstream_breaker_state", "fastgw_upstream_breaker_opens_total", "fastgw_upstream_retries_total",
                "fastgw_upstream_retries_refused_total", "fastgw_upstream_connections",
                "fastgw_rate_limit_decisions_total", "fastgw_cache_responses_total",
                "fastgw_function_invocations_total", "fastgw_function_errors_total", "fastgw_function_throttles_total",
                "fastgw_function_duration_seconds_bucket", "fastgw_function_workers_busy"}  # fmt: skip
    used = {m for p in dash["panels"] for t in p["targets"] for m in re.findall(r"fastgw_\w+", t["expr"])}
    assert used and used <= exported, used - exported
