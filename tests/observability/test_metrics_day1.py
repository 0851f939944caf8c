"""Metrics a dashboard can use (issue 23): histogram buckets that see below 5 ms, and route labels that say which
route and stay put when other routes move."""

from __future__ import annotations

import pytest

from fastgw.config.load import load_config_bytes
from fastgw.testing import http_request, running_gateway
from tests.observability.test_metrics_admin import ADMIN, admin_get, samples

MOCK = {"type": "mock", "status": 200, "body": "ok"}


def _labels(config: dict) -> list[str]:
    import orjson

    return [e.label for e in load_config_bytes(orjson.dumps(config), "gw.json").entries]


async def test_request_durations_are_bucketed_from_100_microseconds():
    cfg = {"routes": [{"path": "/m", "integration": MOCK}], "admin": ADMIN}
    async with running_gateway(cfg) as server:
        assert (await http_request(server.port, "GET", "/m")).status == 200
        assert server.admin is not None
        got = samples((await admin_get(server.admin.port, "/metrics")).body.decode())
    bounds = [
        dict(labels)["le"]
        for name, labels in got
        if name == "fastgw_request_duration_seconds_bucket" and dict(labels)["route"] == "ANY /m"
    ]
    # A request proxied on one machine takes well under 5 ms: Prometheus' default buckets put all of them in the
    # first one, and the dashboard's p50/p99 could only say "below 5 ms".
    assert sorted(bounds, key=float) == [
        "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
        "1.0", "2.5", "5.0", "10.0", "+Inf",
    ]  # fmt: skip
    assert got[("fastgw_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "ANY /m")))] == 1


def test_an_unnamed_route_is_labelled_by_methods_and_path_and_keeps_it_when_routes_move():
    routes = [
        {"path": "/users/{id}", "methods": ["GET"], "integration": MOCK},
        {"path": "/users", "methods": ["GET", "POST"], "host": "api.example.com", "integration": MOCK},
        {"path": "/named", "name": "mine", "integration": MOCK},
    ]
    assert _labels({"routes": routes}) == ["GET /users/{id}", "GET,POST api.example.com/users", "mine"]
    moved = [{"path": "/first", "integration": MOCK}, *reversed(routes)]
    assert _labels({"routes": moved}) == ["ANY /first", "mine", "GET,POST api.example.com/users", "GET /users/{id}"]


def test_routes_that_share_methods_and_path_are_told_apart():
    routes = [
        {"path": "/v", "headers": {"x-version": "2"}, "integration": MOCK},
        {"path": "/v", "integration": MOCK},
    ]
    assert _labels({"routes": routes}) == ["ANY /v", "ANY /v #2"]


def test_an_api_route_is_labelled_api_methods_path_at_stage():
    config = {
        "apis": {
            "shop": {
                "type": "rest",
                "stages": {"Prod": {}, "Dev": {}},
                "routes": [
                    {"path": "/items/{id}", "methods": ["GET"], "integration": MOCK},
                    {"path": "/items", "name": "list", "integration": MOCK},
                ],
            }
        }
    }
    assert sorted(_labels(config)) == [
        "shop:GET /items/{id}@Dev", "shop:GET /items/{id}@Prod", "shop:list@Dev", "shop:list@Prod",
    ]  # fmt: skip


@pytest.mark.parametrize("name", ["fastgw_request_duration_seconds_bucket", "fastgw_upstream_duration_seconds_bucket"])
def test_the_grafana_dashboard_takes_quantiles_over_the_buckets_by_route(name):
    import json
    from pathlib import Path

    dash = json.loads((Path(__file__).resolve().parents[2] / "examples/grafana/fastgw-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"] if name in t["expr"]]
    # Quantiles over `le` (whatever the bounds), grouped by a label the gateway exports: new buckets and labels need
    # no change to the dashboard.
    assert exprs and all("histogram_quantile(" in e and " le)" in e for e in exprs), exprs
