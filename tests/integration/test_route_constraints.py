"""Regex constraints on path parameters (`{id:[0-9]+}`) and a route's `priority`, over real sockets: a gateway with
constrained routes before an echo upstream (what matched is what is forwarded), a function that reports its event,
and the config errors a user meets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastgw.config.load import ConfigError, load_config_bytes
from fastgw.testing import EchoUpstream, http_request
from tests.functions.conftest import write


def _http(upstream: str, path: str | None = None) -> dict[str, Any]:
    return {"type": "http", "upstream": upstream, **({"path": path} if path else {})}


@pytest.mark.asyncio
async def test_a_constrained_parameter_takes_only_the_segments_its_regex_matches_whole(gateway):
    async with EchoUpstream() as numbers, EchoUpstream() as names, EchoUpstream() as rest:
        gw = await gateway(
            {
                "logging": {"access_log": False},
                "upstreams": {
                    "numbers": {"targets": [numbers.url]},
                    "names": {"targets": [names.url]},
                    "rest": {"targets": [rest.url]},
                },
                "routes": [
                    {"path": "/users/{id:[0-9]+}", "integration": _http("numbers", "/v1/users/{id}")},
                    {"path": "/users/{name}", "integration": _http("names", "/by-name/{name}")},
                    {"path": "/users/me", "integration": _http("names", "/me")},
                    {"path": "/{proxy+}", "integration": _http("rest")},
                ],
            }
        )
        for _ in range(2):  # twice: nothing may leak from one request to the next
            for path in ("/users/42", "/users/42x", "/users/x42", "/users/me", "/users/42/orders", "/users/%31"):
                assert (await http_request(gw.port, "GET", path)).status == 200, path
        # The constraint's parameter is named `id` (without its regex) in the upstream path; `%31` is "1" once the
        # path is normalized, and the constraint sees the normalized segment.
        assert [r.target for r in numbers.received] == ["/v1/users/42", "/v1/users/1"] * 2
        assert [r.target for r in names.received] == ["/by-name/42x", "/by-name/x42", "/me"] * 2
        assert [r.target for r in rest.received] == ["/users/42/orders"] * 2


@pytest.mark.asyncio
async def test_a_segment_no_constraint_matches_is_a_404_without_a_less_specific_route(gateway):
    gw = await gateway(
        {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/orders/{id:[0-9]{4}}", "methods": ["GET"], "integration": {"type": "mock", "body": "o"}},
                {"path": "/orders/{code:[A-Z]{2}-[0-9]+}", "methods": ["GET"], "integration": {"type": "mock"}},
            ],
        }
    )
    assert (await http_request(gw.port, "GET", "/orders/1234")).body == b"o"
    assert (await http_request(gw.port, "GET", "/orders/AB-7")).status == 200
    for path in ("/orders/123", "/orders/12345", "/orders/ab-7", "/orders/1234/x"):
        r = await http_request(gw.port, "GET", path)
        assert r.status == 404 and r.json() == {"message": "Not Found"}, path
    # The path exists under GET only: 405 with Allow, as for any route.
    r = await http_request(gw.port, "POST", "/orders/1234")
    assert r.status == 405 and r.header("allow") == "GET"


@pytest.mark.asyncio
async def test_priority_orders_overlapping_constraints_and_config_order_breaks_ties(gateway):
    def cfg(hex_priority: int) -> dict[str, Any]:
        return {
            "logging": {"access_log": False},
            "routes": [
                {"path": "/i/{n:[0-9]+}", "integration": {"type": "mock", "body": "digits"}},
                {"path": "/i/{h:[0-9a-f]+}", "priority": hex_priority, "integration": {"type": "mock", "body": "hex"}},
                {"path": "/i/{any}", "priority": 99, "integration": {"type": "mock", "body": "any"}},
            ],
        }

    gw = await gateway(cfg(0))
    assert (await http_request(gw.port, "GET", "/i/12")).body == b"digits"  # both match: config order
    assert (await http_request(gw.port, "GET", "/i/ab")).body == b"hex"
    assert (await http_request(gw.port, "GET", "/i/zz")).body == b"any"  # priority never beats a constraint
    gw = await gateway(cfg(1))
    assert (await http_request(gw.port, "GET", "/i/12")).body == b"hex"
    assert (await http_request(gw.port, "GET", "/i/zz")).body == b"any"


FUNCTION = """
import json

def handler(event, context):
    keys = ("resource", "pathParameters", "routeKey", "requestContext")
    return {"statusCode": 200, "body": json.dumps({k: event.get(k) for k in keys})}
"""


@pytest.mark.asyncio
@pytest.mark.parametrize("payload", ["1.0", "2.0"])
async def test_a_function_sees_the_parameter_by_its_name_and_the_resource_without_constraints(
    gateway, tmp_path: Path, payload: str
):
    write(tmp_path / "fn", "app.py", FUNCTION)
    cfg = {
        "logging": {"access_log": False},
        "functions": {"show": {"runtime": "python", "handler": "app.handler", "code": "fn"}},
        "routes": [
            {
                "path": "/items/{id:[0-9]+}/{rest+}",
                "methods": ["GET"],
                "integration": {"type": "lambda", "function": "show", "payload_format": payload},
            }
        ],
    }
    gw = await gateway(cfg, base_dir=tmp_path)
    r = await http_request(gw.port, "GET", "/items/7/a/b")
    assert r.status == 200, r.body
    event = r.json()
    assert event["pathParameters"] == {"id": "7", "rest": "a/b"}
    if payload == "1.0":
        assert event["resource"] == "/items/{id}/{rest+}"
        assert event["requestContext"]["resourcePath"] == "/items/{id}/{rest+}"
    else:
        assert event["routeKey"] == "GET /items/{id}/{rest+}"
    assert (await http_request(gw.port, "GET", "/items/x/a")).status == 404


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/a/{id:[0-9}", "constraint of {id} is not a regular expression"),
        ("/a/{id:(}", "not a regular expression"),
        ("/a/{id:}", "empty constraint"),
        ("/a/{p+:.*}", "greedy parameter {p+} takes no constraint"),
        ("/a/{id:[0-9]+}.json", "a parameter must be a whole segment"),
    ],
)
def test_a_bad_constraint_is_a_config_error_naming_the_key_path(path: str, says: str):
    raw = "routes:\n  - {path: /ok, integration: {type: mock}}\n"
    raw += f"  - {{path: '{path}', integration: {{type: mock}}}}\n"
    with pytest.raises(ConfigError) as info:
        load_config_bytes(raw.encode(), "gw.yaml")
    assert info.value.path == "$.routes[1].path" and says in info.value.message, str(info.value)
    assert "gw.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("second", "where", "says"),
    [
        # The same template and constraint (the name does not count): two routes for the same requests.
        ("{path: '/a/{other:[0-9]+}', integration: {type: mock}}", "$.routes[1]", "conflicts with"),
        ("{path: /b, priority: high, integration: {type: mock}}", "$.routes[1].priority", "int"),
        ("{path: /b, priority: 10000000, integration: {type: mock}}", "$.routes[1].priority", "<= 1000000"),
    ],
)
def test_conflicts_and_bad_priorities_are_refused(second: str, where: str, says: str):
    raw = f"routes:\n  - {{path: '/a/{{id:[0-9]+}}', integration: {{type: mock}}}}\n  - {second}\n"
    with pytest.raises(ConfigError) as info:
        load_config_bytes(raw.encode(), "gw.yaml")
    assert info.value.path == where and says in info.value.message, str(info.value)


def test_the_same_template_under_different_constraints_loads():
    raw = b"""
routes:
  - {path: '/a/{id:[0-9]+}', integration: {type: mock}}
  - {path: '/a/{id:[a-z]+}', integration: {type: mock}}
  - {path: '/a/{id}', integration: {type: mock}}
"""
    loaded = load_config_bytes(raw, "gw.yaml")
    assert loaded.router.match("GET", "h", "/a/b") == (1, {"id": "b"})


AUTHORIZER = """
def handler(event, context):
    seen = {"resource": event["resource"], "resourcePath": event["requestContext"]["resourcePath"]}
    statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
    return {"principalId": "p", "context": seen,
            "policyDocument": {"Version": "2012-10-17", "Statement": [statement]}}
"""


@pytest.mark.asyncio
async def test_a_lambda_authorizer_sees_the_resource_without_constraints(gateway, tmp_path: Path):
    write(tmp_path / "fn", "app.py", FUNCTION)
    write(tmp_path / "fn", "authz.py", AUTHORIZER)
    authorizer = {"function": "authz", "type": "request", "identity_source": "method.request.header.X-User", "ttl": 0}
    cfg = {
        "logging": {"access_log": False},
        "functions": {
            "show": {"runtime": "python", "handler": "app.handler", "code": "fn"},
            "authz": {"runtime": "python", "handler": "authz.handler", "code": "fn"},
        },
        "apis": {
            "shop": {
                "type": "rest",
                "plugins": {"lambda-authorizer": authorizer},
                "routes": [
                    {
                        "path": "/items/{id:[0-9]+}",
                        "methods": ["GET"],
                        "integration": {"type": "lambda", "function": "show"},
                    }
                ],
                "stages": {"Prod": {}},
            }
        },
    }
    gw = await gateway(cfg, base_dir=tmp_path)
    r = await http_request(gw.port, "GET", "/Prod/items/7", headers={"X-User": "ann"})
    assert r.status == 200, r.body
    event = r.json()
    assert event["resource"] == "/items/{id}" and event["pathParameters"] == {"id": "7"}
    assert event["requestContext"]["authorizer"]["resource"] == "/items/{id}"
    assert event["requestContext"]["authorizer"]["resourcePath"] == "/items/{id}"
