"""An HTTP API's `$default` route (AWS's catch-all): written `path: $default` in fastgw's config, read from a SAM
HttpApi event without Path and Method, an OpenAPI `/$default` path or a quick-create API; its events say `$default`
as AWS's do (routeKey in 2.0, resource and resourcePath in 1.0, no path parameters). Real sockets, real workers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fastgw.config.errors import ConfigError
from fastgw.config.load import load_config
from fastgw.testing import http_request
from tests.aws.conftest import ECHO_PY, serving, write


def http_api(default_format: str | None = None) -> dict[str, Any]:
    default: dict[str, Any] = {"type": "lambda", "function": "echo"}
    if default_format:
        default["payload_format"] = default_format
    return {
        "functions": {"echo": {"runtime": "python", "handler": "app.handler", "code": "src"}},
        "apis": {
            "shop": {
                "type": "http",
                "id": "shop1",
                "routes": [
                    {"path": "/pets", "methods": ["GET"], "integration": {"type": "lambda", "function": "echo"}},
                    {"path": "$default", "name": "fallback", "integration": default},
                ],
            }
        },
    }


async def event_of(port: int, method: str, path: str) -> dict[str, Any]:
    r = await http_request(port, method, path)
    assert r.status == 200, r.body
    return json.loads(r.body)["event"]


@pytest.mark.asyncio
async def test_default_route_events_say_default_in_payload_2(fastgw_gateway, tmp_path):
    write(tmp_path / "src", "app.py", ECHO_PY)
    gw = await fastgw_gateway(http_api(), base_dir=tmp_path)
    event = await event_of(gw.port, "GET", "/pets")
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "GET /pets"
    for method, path in (("GET", "/"), ("DELETE", "/any/thing"), ("POST", "/pets/1"), ("POST", "/pets")):
        event = await event_of(gw.port, method, path)
        assert event["routeKey"] == "$default", (method, path)
        assert event["requestContext"]["routeKey"] == "$default"
        assert event["rawPath"] == path and event["requestContext"]["http"]["method"] == method
        assert "pathParameters" not in event  # AWS: the $default route has none


@pytest.mark.asyncio
async def test_default_route_events_say_default_in_payload_1(fastgw_gateway, tmp_path):
    write(tmp_path / "src", "app.py", ECHO_PY)
    gw = await fastgw_gateway(http_api("1.0"), base_dir=tmp_path)
    event = await event_of(gw.port, "PUT", "/a/b")
    assert (event["resource"], event["path"], event["httpMethod"]) == ("$default", "/a/b", "PUT")
    ctx = event["requestContext"]
    assert (ctx["resourcePath"], ctx["resourceId"], ctx["path"]) == ("$default", "$default", "/a/b")
    assert event["pathParameters"] is None


def test_default_route_only_in_http_apis_and_for_every_method(tmp_path):
    cfg = http_api()
    cfg["apis"]["shop"]["type"] = "rest"
    cfg["apis"]["shop"]["stages"] = {"Prod": {}}
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "$.apis.shop.routes[1].path" in str(err.value) and "REST API has none" in str(err.value)
    cfg = http_api()
    cfg["apis"]["shop"]["routes"][1]["methods"] = ["GET"]
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "$.apis.shop.routes[1].methods" in str(err.value) and "every method" in str(err.value)


@pytest.mark.asyncio
async def test_sam_http_api_event_without_path_is_the_default_route(tmp_path: Path):
    write(tmp_path / "src", "app.py", ECHO_PY)
    template = write(
        tmp_path,
        "template.yaml",
        """
        Transform: AWS::Serverless-2016-10-31
        Resources:
          Echo:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: src
              Handler: app.handler
              Runtime: python3.12
              Events:
                Everything: {Type: HttpApi}
                Old: {Type: HttpApi, Properties: {Path: "/v1/{id}", Method: get, PayloadFormatVersion: "1.0"}}
        """,
    )
    async with serving(template) as srv:
        for path in ("/", "/x/y"):
            event = await event_of(srv.port, "PATCH", path)
            assert event["routeKey"] == event["requestContext"]["routeKey"] == "$default"
        event = await event_of(srv.port, "GET", "/v1/7")
        assert (event["resource"], event["pathParameters"]) == ("/v1/{id}", {"id": "7"})
        assert event["requestContext"]["resourcePath"] == "/v1/{id}"


@pytest.mark.asyncio
async def test_openapi_default_path_is_the_default_route(fastgw_gateway, tmp_path: Path):
    write(tmp_path / "src", "app.py", ECHO_PY)
    write(
        tmp_path,
        "api.yaml",
        """
        openapi: "3.0.1"
        info: {title: t, version: "1"}
        paths:
          /$default:
            x-amazon-apigateway-any-method:
              x-amazon-apigateway-integration:
                type: aws_proxy
                uri: arn:aws:lambda:us-east-1:123456789012:function:echo
                payloadFormatVersion: "2.0"
        """,
    )
    cfg = {
        "functions": {"echo": {"runtime": "python", "handler": "app.handler", "code": "src"}},
        "apis": {"h": {"type": "http", "openapi": "api.yaml"}},
    }
    gw = await fastgw_gateway(cfg, base_dir=tmp_path)
    event = await event_of(gw.port, "POST", "/orders/9")
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "$default"


AUTHORIZER_PY = """
def handler(event, context):
    return {"isAuthorized": True, "context": {"saw": ",".join(event.get("identitySource") or [])}}
"""


@pytest.mark.asyncio
async def test_an_authorizers_context_route_key_is_the_routes_own(fastgw_gateway, tmp_path):
    """`$context.routeKey` as an identity source names the route as its events do: `$default`, or `ANY /path`."""
    write(tmp_path / "src", "app.py", ECHO_PY)
    write(tmp_path / "authz", "authz.py", AUTHORIZER_PY)
    cfg = http_api()
    cfg["functions"]["authz"] = {"runtime": "python", "handler": "authz.handler", "code": "authz"}
    api = cfg["apis"]["shop"]
    api["routes"].append({"path": "/toys", "integration": {"type": "lambda", "function": "echo"}})  # ANY
    api["plugins"] = {
        "lambda-authorizer": {
            "function": "authz", "type": "request", "api": "http", "simple_responses": True,
            "identity_source": ["$context.routeKey"], "ttl": 0,
        }
    }  # fmt: skip
    gw = await fastgw_gateway(cfg, base_dir=tmp_path)
    for method, path, key in (("GET", "/pets", "GET /pets"), ("POST", "/toys", "ANY /toys"), ("PUT", "/x", "$default")):
        event = await event_of(gw.port, method, path)
        assert event["requestContext"]["authorizer"]["lambda"]["saw"] == key, (method, path)
