"""The README's AWS walkthrough, verbatim, and a real third-party Lambda app (Starlette behind Mangum)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastgw.config.load import load_config
from fastgw.server.server import Server
from fastgw.testing import http_request
from tests.functions.conftest import needs_node, write

pytestmark = pytest.mark.asyncio

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "my-rest-api" / "fastgw.yaml"


@needs_node
async def test_my_rest_api_walkthrough():
    server = Server(load_config(EXAMPLE), "127.0.0.1", 0)
    await server.start()
    try:
        for path in ("/Prod", "/Prod/"):
            for method in ("GET", "POST"):  # ANY
                r = await http_request(server.port, method, path)
                assert r.status == 200
                assert r.body == b'"The API Gateway REST API console is great!"'
                assert r.header("content-type") == "application/json"
        r = await http_request(server.port, "GET", "/Prod/unknown")
        assert (r.status, r.json()) == (403, {"message": "Missing Authentication Token"})
        for path in ("/", "/Beta/anything"):  # no such stage: the listener serves only this REST API
            r = await http_request(server.port, "GET", path)
            assert (r.status, r.body) == (403, b'{"message":"Missing Authentication Token"}')
    finally:
        await server.shutdown(timeout=1.0)


MANGUM_APP = """
from mangum import Mangum
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return JSONResponse({"hello": request.path_params["name"], "q": request.query_params.getlist("q"),
                         "root_path": request.scope.get("root_path", "")})


async def echo(request):
    body = await request.body()
    return PlainTextResponse(body[::-1], status_code=201, headers={"x-len": str(len(body))})


async def cookie(request):
    response = PlainTextResponse("set")
    response.set_cookie("session", "abc")
    response.set_cookie("theme", "dark")
    return response


app = Starlette(routes=[Route("/hello/{name}", hello), Route("/echo", echo, methods=["POST"]),
                        Route("/cookie", cookie)])
handler = Mangum(app, lifespan="off")
"""


@pytest.mark.parametrize("api_type", ["rest", "http"])
async def test_starlette_app_behind_mangum_runs_unchanged(fgw, tmp_path, api_type):
    write(tmp_path / "app", "main.py", MANGUM_APP)
    cfg = {
        "functions": {"web": {"runtime": "python", "handler": "main.handler", "code": "app"}},
        "apis": {
            "site": {
                "type": api_type,
                "routes": [{"path": "/{proxy+}", "integration": {"type": "lambda", "function": "web"}}],
                # An HTTP API's usual stage is $default (no prefix): with a named one, rawPath carries the stage
                # and Mangum needs api_gateway_base_path, exactly as on AWS.
                "stages": {"Prod": {}} if api_type == "rest" else {},
            }
        },
    }
    gw = await fgw(cfg)
    p = "/Prod" if api_type == "rest" else ""
    for _ in range(2):
        r = await http_request(gw.port, "GET", p + "/hello/world?q=1&q=2")
        assert r.status == 200, r.body
        assert r.json()["hello"] == "world" and r.json()["q"] == ["1", "2"]
        r = await http_request(gw.port, "POST", p + "/echo", body=b"abc", headers={"content-type": "text/plain"})
        assert (r.status, r.body, r.header("x-len")) == (201, b"cba", "3")
        r = await http_request(gw.port, "GET", p + "/cookie")
        cookies = sorted(v.split(";")[0] for k, v in r.headers if k.lower() == "set-cookie")
        assert r.status == 200 and cookies == ["session=abc", "theme=dark"]
        r = await http_request(gw.port, "GET", p + "/nothing-here")
        assert r.status == 404  # Starlette's own 404, through the proxy integration
