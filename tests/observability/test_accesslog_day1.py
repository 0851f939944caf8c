"""The access log's `host` is the Host header as the client sent it, port included (issue 23): a gateway behind
several ports (or a client on a non-default one) must be told apart in the log, as nginx's `$http_host` does."""

from __future__ import annotations

import io

import orjson
import pytest

from fastgw.client import http_request
from fastgw.observability.accesslog import AccessLog
from fastgw.testing import running_gateway

CONFIG = {"routes": [{"path": "/h", "name": "h", "integration": {"type": "mock", "status": 200, "body": "ok"}}]}


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.parametrize("sent", ["a.example.com:8080", "A.Example.com", "[::1]:9000", "127.0.0.1:80", "shop.test"])
async def test_the_host_is_logged_as_sent(fmt, sent):
    out = io.BytesIO()
    async with running_gateway(CONFIG, access_log=AccessLog(out, format=fmt)) as gw:
        assert (await http_request(gw.port, "GET", "/h", host=sent)).status == 200
    line = out.getvalue().decode()
    if fmt == "json":
        assert orjson.loads(line)["host"] == sent, line
    else:
        assert f" host={sent} route=h " in line, line
