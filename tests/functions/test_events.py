"""The Lambda proxy event, both payload formats, compared whole: a real gateway, a real Python worker that echoes
the event it got, a real socket."""

from __future__ import annotations

import base64
import re

import pytest

from fastgw.testing import http_request
from tests.functions.conftest import ECHO_PY, write

pytestmark = pytest.mark.asyncio

TIME = re.compile(r"^\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000$")


def config(api_type: str, stages: dict | None = None, **integ: object) -> dict:
    route_integ = {"type": "lambda", "function": "echo", **integ}
    return {
        "functions": {"echo": {"runtime": "python", "handler": "echo.handler", "code": "fn"}},
        "apis": {
            "shop": {
                "type": api_type,
                "id": "abc123",
                "routes": [
                    {"path": "/", "methods": ["ANY"], "integration": route_integ},
                    {"path": "/items/{id}", "methods": ["GET", "POST"], "integration": route_integ},
                    {"path": "/files/{proxy+}", "methods": ["ANY"], "integration": route_integ},
                ],
                "stages": stages if stages is not None else {"Prod": {"variables": {"color": "blue"}}},
            }
        },
    }


async def echo(port: int, method: str, path: str, **kw: object) -> tuple[dict, dict]:
    r = await http_request(port, method, path, **kw)  # type: ignore[arg-type]
    assert r.status == 200, r.body
    out = r.json()
    assert r.header("x-amzn-RequestId") == out["event"]["requestContext"]["requestId"]
    return out["event"], out["context"]


def expected_v1(event: dict, **over: object) -> dict:
    """The whole 1.0 event as API Gateway builds it, with the per-request values taken from `event`."""
    ctx = event["requestContext"]
    assert TIME.match(ctx["requestTime"]) and isinstance(ctx["requestTimeEpoch"], int)
    base = {
        "resource": "/",
        "path": "/",
        "httpMethod": "GET",
        "headers": {"host": "test.local", "connection": "close"},
        "multiValueHeaders": {"host": ["test.local"], "connection": ["close"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": {"color": "blue"},
        "body": None,
        "isBase64Encoded": False,
    }
    context = {
        "accountId": "000000000000",
        "apiId": "abc123",
        "domainName": "test.local",
        "domainPrefix": "test",
        "extendedRequestId": ctx["requestId"],
        "httpMethod": "GET",
        "identity": {
            "accessKey": None, "accountId": None, "caller": None, "cognitoAuthenticationProvider": None,
            "cognitoAuthenticationType": None, "cognitoIdentityId": None, "cognitoIdentityPoolId": None,
            "principalOrgId": None, "sourceIp": "127.0.0.1", "user": None, "userAgent": None, "userArn": None,
        },
        "path": "/Prod/",
        "protocol": "HTTP/1.1",
        "requestId": ctx["requestId"],
        "requestTime": ctx["requestTime"],
        "requestTimeEpoch": ctx["requestTimeEpoch"],
        "resourceId": ctx["resourceId"],
        "resourcePath": "/",
        "stage": "Prod",
    }  # fmt: skip
    context.update(over.pop("requestContext", {}))  # type: ignore[arg-type]
    base.update(over)
    base["requestContext"] = context
    return base


async def test_v1_root_resource_and_context(fgw, tmp_path):
    write(tmp_path / "fn", "echo.py", ECHO_PY)
    gw = await fgw(config("rest"))
    for _ in range(2):  # twice: nothing may leak from one invocation to the next
        event, ctx = await echo(gw.port, "GET", "/Prod/")
        assert event == expected_v1(event)
        assert ctx["function_name"] == "echo" and ctx["memory_limit_in_mb"] == "128"
        assert ctx["invoked_function_arn"].endswith(":function:echo")
        assert ctx["log_group_name"] == "/aws/lambda/echo"
        assert ctx["aws_request_id"] == event["requestContext"]["requestId"]
        assert 0 < ctx["remaining_ms"] <= 3000


async def test_v1_proxy_params_repeated_query_and_headers_and_binary_body(fgw, tmp_path):
    write(tmp_path / "fn", "echo.py", ECHO_PY)
    cfg = config("rest")
    cfg["apis"]["shop"]["binary_media_types"] = ["application/octet-stream"]  # a REST API's body is text unless
    gw = await fgw(cfg)
    event, _ = await echo(gw.port, "GET", "/Prod/files/a/b/c.txt?x=1&x=2&y=hello%20world&empty=")
    assert event == expected_v1(
        event,
        resource="/files/{proxy+}",
        path="/files/a/b/c.txt",
        pathParameters={"proxy": "a/b/c.txt"},
        queryStringParameters={"x": "2", "y": "hello world", "empty": ""},
        multiValueQueryStringParameters={"x": ["1", "2"], "y": ["hello world"], "empty": [""]},
        requestContext={"path": "/Prod/files/a/b/c.txt", "resourcePath": "/files/{proxy+}"},
    )
    binary = bytes(range(256))
    event, _ = await echo(
        gw.port, "POST", "/Prod/items/42", body=binary,
        headers={"Content-Type": "application/octet-stream", "X-Multi": "one", "x-multi": "two"},
    )  # fmt: skip
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == binary
    assert event["headers"]["x-multi"] == "two"
    assert event["multiValueHeaders"]["x-multi"] == ["one", "two"]
    assert event["pathParameters"] == {"id": "42"} and event["resource"] == "/items/{id}"
    assert event["httpMethod"] == "POST" and event["requestContext"]["httpMethod"] == "POST"
    event, _ = await echo(
        gw.port, "POST", "/Prod/items/7", body=b'{"a": 1}', headers={"Content-Type": "application/json"}
    )
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False


def expected_v2(event: dict, **over: object) -> dict:
    ctx = event["requestContext"]
    assert TIME.match(ctx["time"]) and isinstance(ctx["timeEpoch"], int)
    base = {
        "version": "2.0",
        "routeKey": "ANY /",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"host": "test.local", "connection": "close"},
        "isBase64Encoded": False,
    }
    context = {
        "accountId": "000000000000",
        "apiId": "abc123",
        "domainName": "test.local",
        "domainPrefix": "test",
        "http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": ""},
        "requestId": ctx["requestId"],
        "routeKey": "ANY /",
        "stage": "$default",
        "time": ctx["time"],
        "timeEpoch": ctx["timeEpoch"],
    }
    context.update(over.pop("requestContext", {}))  # type: ignore[arg-type]
    base.update(over)
    base["requestContext"] = context
    return base


async def test_v2_default_stage_cookies_query_and_params(fgw, tmp_path):
    write(tmp_path / "fn", "echo.py", ECHO_PY)
    gw = await fgw(config("http", stages={}))
    for _ in range(2):
        event, _ = await echo(gw.port, "GET", "/")
        assert event == expected_v2(event)
    event, _ = await echo(
        gw.port, "GET", "/items/9?x=1&x=2&q=a%2Cb",
        headers={"Cookie": "a=1; b=2", "cookie": "c=3", "User-Agent": "curl/8", "X-Multi": "one", "x-multi": "two"},
    )  # fmt: skip
    http = {"method": "GET", "path": "/items/9", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "curl/8"}
    assert event == expected_v2(
        event,
        routeKey="GET /items/{id}",
        rawPath="/items/9",
        rawQueryString="x=1&x=2&q=a%2Cb",
        cookies=["a=1", "b=2", "c=3"],
        headers={"host": "test.local", "connection": "close", "user-agent": "curl/8", "x-multi": "one,two"},
        queryStringParameters={"x": "1,2", "q": "a,b"},
        pathParameters={"id": "9"},
        requestContext={"routeKey": "GET /items/{id}", "http": http},
    )


async def test_v2_named_stage_keeps_prefix_and_stage_variables(fgw, tmp_path):
    write(tmp_path / "fn", "echo.py", ECHO_PY)
    gw = await fgw(config("http", stages={"dev": {"variables": {"color": "red"}}}))
    body = b"\x00\xffbinary"
    event, _ = await echo(gw.port, "PUT", "/dev/files/x/y", body=body, headers={"Content-Type": "image/png"})
    http = {"method": "PUT", "path": "/dev/files/x/y", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": ""}
    assert event == expected_v2(
        event,
        routeKey="ANY /files/{proxy+}",
        rawPath="/dev/files/x/y",
        headers={"host": "test.local", "connection": "close", "content-type": "image/png", "content-length": "8"},
        body=base64.b64encode(body).decode(),
        isBase64Encoded=True,
        pathParameters={"proxy": "x/y"},
        stageVariables={"color": "red"},
        requestContext={"routeKey": "ANY /files/{proxy+}", "stage": "dev", "http": http},
    )


async def test_payload_format_can_be_chosen_per_route(fgw, tmp_path):
    write(tmp_path / "fn", "echo.py", ECHO_PY)
    gw = await fgw(config("http", stages={}, payload_format="1.0"))
    event, _ = await echo(gw.port, "GET", "/items/5")
    assert "version" not in event and event["resource"] == "/items/{id}" and event["path"] == "/items/5"
    assert event["requestContext"]["stage"] == "$default" and event["stageVariables"] is None
