"""API Gateway's answers byte for byte: function errors, integration timeouts, bare 2.0 return values.

The sources of each body are in docs/functions.md ("Errors").
"""

from __future__ import annotations

import pytest

from fastgw.testing import http_request
from tests.functions.conftest import write
from tests.functions.test_runtimes import one_route, root

pytestmark = pytest.mark.asyncio

APP = """
    import time
    def fails(event, context):
        raise RuntimeError("boom")
    def slow(event, context):
        time.sleep(2)
        return {"statusCode": 200, "body": "late"}
    def hello(event, context):
        return "Hello from Lambda!"
    def obj(event, context):
        return {"message": "Hello from Lambda!"}
    def number(event, context):
        return 42
"""

ERRORS = {
    "rest": (502, b'{"message": "Internal server error"}'),
    "http": (500, b'{"message":"Internal Server Error"}'),
}
TIMEOUTS = {
    "rest": (504, b'{"message": "Endpoint request timed out"}'),
    "http": (503, b'{"message":"Service Unavailable"}'),
}


@pytest.mark.parametrize("api_type", ["rest", "http"])
async def test_function_error_and_integration_timeout_bytes(fgw, tmp_path, api_type):
    write(tmp_path / "fn", "app.py", APP)
    for handler, expected, integ in (("fails", ERRORS, {}), ("slow", TIMEOUTS, {"timeout": 0.3})):
        gw = await fgw(one_route({"runtime": "python", "handler": f"app.{handler}", "code": "fn"}, api_type, **integ))
        for _ in range(2):
            r = await http_request(gw.port, "GET", root(api_type) + "/x")
            assert (r.status, r.body) == expected[api_type], handler
            assert r.header("content-type") == "application/json"
            assert r.header("content-length") == str(len(expected[api_type][1]))
            assert r.header("x-amzn-requestid")


async def test_a_function_route_outside_apis_answers_as_an_http_api(fgw, tmp_path):
    write(tmp_path / "fn", "app.py", APP)
    cfg = {
        "functions": {"f": {"runtime": "python", "handler": "app.slow", "code": "fn"}},
        "routes": [{"path": "/x", "integration": {"type": "lambda", "function": "f", "timeout": 0.3}}],
    }
    gw = await fgw(cfg)
    r = await http_request(gw.port, "GET", "/x")
    assert (r.status, r.body) == TIMEOUTS["http"]


async def test_payload_2_0_bare_values_are_the_body_of_a_200(fgw, tmp_path):
    write(tmp_path / "fn", "app.py", APP)
    names = ("hello", "obj", "number")
    cfg = {
        "functions": {n: {"runtime": "python", "handler": f"app.{n}", "code": "fn"} for n in names},
        "routes": [{"path": f"/{n}", "integration": {"type": "lambda", "function": n}} for n in names]
        + [{"path": "/hello-v1", "integration": {"type": "lambda", "function": "hello", "payload_format": "1.0"}}],
    }
    gw = await fgw(cfg)
    for _ in range(2):
        for path, body in (("/hello", b"Hello from Lambda!"), ("/obj", b'{"message":"Hello from Lambda!"}'),
                           ("/number", b"42")):  # fmt: skip
            r = await http_request(gw.port, "GET", path)
            assert (r.status, r.body, r.header("content-type")) == (200, body, "application/json"), path
        # Payload 1.0 has no such inference: a bare string is not a proxy response.
        r = await http_request(gw.port, "GET", "/hello-v1")
        assert (r.status, r.body) == ERRORS["http"]
