"""How API Gateway answers requests no route takes, and which route a REST API picks: over real sockets.

REST APIs choose the most specific resource first and then its method (no falling through to `/{proxy+}`), and
answer any miss 403 Missing Authentication Token; HTTP APIs answer a path that exists only under other methods
404; plain routes keep the gateway's own 404 / 405 and fall through to less specific routes, as Kong does.
"""

from __future__ import annotations

from typing import Any

import pytest

from fastgw.testing import EchoUpstream, http_request

pytestmark = pytest.mark.asyncio

MISSING_TOKEN = b'{"message":"Missing Authentication Token"}'
NOT_FOUND = b'{"message":"Not Found"}'
TWICE = range(2)


def _routes(upstream_name: str = "b") -> list[dict[str, Any]]:
    integ = {"type": "http", "upstream": upstream_name}
    return [
        {"path": "/{proxy+}", "methods": ["ANY"], "integration": integ},
        {"path": "/items", "methods": ["GET"], "integration": integ},
        {"path": "/items/{id}", "methods": ["GET", "DELETE"], "integration": integ},
    ]


def _config(upstream: EchoUpstream, **top: Any) -> dict[str, Any]:
    return {"upstreams": {"b": {"targets": [upstream.url]}}, **top}


async def _expect(port: int, method: str, path: str, status: int, body: bytes | None = None) -> Any:
    r = await http_request(port, method, path)
    assert r.status == status, (method, path, r.status, r.body)
    if body is not None:
        assert r.body == body, (method, path)
    return r


async def test_rest_api_chooses_the_resource_first_then_the_method(upstream, gateway):
    gw = await gateway(_config(upstream, apis={"shop": {"type": "rest", "routes": _routes(), "stages": {"Prod": {}}}}))
    for _ in TWICE:
        upstream.received.clear()
        await _expect(gw.port, "GET", "/Prod/items", 200)
        await _expect(gw.port, "GET", "/Prod/items/7", 200)
        await _expect(gw.port, "POST", "/Prod/other/thing", 200)  # only /{proxy+} matches: ANY takes it
        # /items and /items/{id} are the most specific resources and lack POST: no fall-through to /{proxy+}.
        for method, path in (("POST", "/Prod/items"), ("PUT", "/Prod/items/7"), ("PATCH", "/Prod/items/")):
            r = await _expect(gw.port, method, path, 403, MISSING_TOKEN)
            assert r.header("x-amzn-errortype") == "MissingAuthenticationTokenException"
            assert r.header("content-length") == "42" and r.header("content-type") == "application/json"
            assert r.header("allow") is None
        assert [(s.method, s.path) for s in upstream.received] == [
            ("GET", "/Prod/items"), ("GET", "/Prod/items/7"), ("POST", "/Prod/other/thing"),
        ]  # fmt: skip


async def test_plain_routes_fall_through_as_before(upstream, gateway):
    gw = await gateway(_config(upstream, routes=_routes()))
    for _ in TWICE:
        upstream.received.clear()
        await _expect(gw.port, "POST", "/items", 200)
        await _expect(gw.port, "PUT", "/items/7", 200)
        assert [s.method for s in upstream.received] == ["POST", "PUT"]
    integ = {"type": "http", "upstream": "b"}
    gw = await gateway(_config(upstream, routes=[{"path": "/only-get", "methods": ["GET"], "integration": integ}]))
    r = await _expect(gw.port, "POST", "/only-get", 405, b'{"message":"Method Not Allowed"}')
    assert r.header("allow") == "GET"
    await _expect(gw.port, "GET", "/nothing-here", 404, NOT_FOUND)


async def test_a_listener_serving_only_rest_apis_answers_every_miss_like_api_gateway(upstream, gateway):
    routes = [{"path": "/items", "methods": ["GET"], "integration": {"type": "http", "upstream": "b"}}]
    gw = await gateway(_config(upstream, apis={"shop": {"type": "rest", "routes": routes, "stages": {"Prod": {}}}}))
    for _ in TWICE:
        for path in ("/", "/Beta/items", "/items", "/Prod", "/Prod/nope"):
            r = await _expect(gw.port, "GET", path, 403, MISSING_TOKEN)
            assert r.header("x-amzn-errortype") == "MissingAuthenticationTokenException"
    assert upstream.received == []


async def test_beside_other_routes_only_rest_stage_paths_answer_missing_token(upstream, gateway):
    integ = {"type": "http", "upstream": "b"}
    cfg = _config(
        upstream,
        routes=[{"path": "/health", "methods": ["GET"], "integration": integ}],
        apis={"shop": {"type": "rest", "routes": [{"path": "/items", "methods": ["GET"], "integration": integ}],
                       "stages": {"Prod": {}}}},
    )  # fmt: skip
    gw = await gateway(cfg)
    for _ in TWICE:
        await _expect(gw.port, "GET", "/Prod/nope", 403, MISSING_TOKEN)
        await _expect(gw.port, "POST", "/Prod/items", 403, MISSING_TOKEN)
        await _expect(gw.port, "GET", "/Beta/items", 404, NOT_FOUND)  # which API? the gateway cannot tell
        await _expect(gw.port, "POST", "/health", 405)
    assert upstream.received == []


async def test_http_api_answers_a_wrong_method_404(upstream, gateway):
    integ = {"type": "http", "upstream": "b"}
    cfg = _config(
        upstream,
        routes=[{"path": "/plain", "methods": ["GET"], "integration": integ}],
        apis={"web": {"type": "http", "routes": [{"path": "/things", "methods": ["GET"], "integration": integ},
                                                 {"path": "/things/{id}", "methods": ["GET"], "integration": integ}]}},
    )  # fmt: skip
    gw = await gateway(cfg)
    for _ in TWICE:
        upstream.received.clear()
        await _expect(gw.port, "GET", "/things", 200)
        for method, path in (("POST", "/things"), ("DELETE", "/things/1"), ("GET", "/nope")):
            r = await _expect(gw.port, method, path, 404, NOT_FOUND)
            assert r.header("allow") is None
        r = await _expect(gw.port, "POST", "/plain", 405)  # a plain route beside it keeps the 405
        assert r.header("allow") == "GET"
        assert [s.path for s in upstream.received] == ["/things"]


async def test_a_cors_preflight_still_finds_its_rest_route(upstream, gateway):
    routes = _routes()
    routes[1] = {**routes[1], "plugins": {"cors": {"origins": ["https://shop.example.org"]}}}
    gw = await gateway(_config(upstream, apis={"shop": {"type": "rest", "routes": routes, "stages": {"Prod": {}}}}))
    pre = {"Origin": "https://shop.example.org", "Access-Control-Request-Method": "GET"}
    for _ in TWICE:
        r = await http_request(gw.port, "OPTIONS", "/Prod/items", headers=pre)
        assert r.status == 204 and r.header("access-control-allow-origin") == "https://shop.example.org"
        # Not a preflight: OPTIONS is not a method of /items, and /{proxy+} is not asked.
        await _expect(gw.port, "OPTIONS", "/Prod/items", 403, MISSING_TOKEN)
    assert upstream.received == []
