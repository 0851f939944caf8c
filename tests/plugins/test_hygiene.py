"""request-id, ip-restriction, cors and request-size-limit on a real gateway with a real echo upstream."""

from __future__ import annotations

import asyncio
import io
import re

import orjson
import pytest

from fastgw.config.load import load_config_bytes
from fastgw.observability.accesslog import AccessLog
from fastgw.server.server import Server
from fastgw.testing import RawConnection, http_request
from tests.plugins.conftest import TWICE, route_config

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
COUNTED = re.compile(rf"^{UUID}#\d+$")


async def test_request_id_on_responses_the_gateway_makes(upstream, gateway, consumers):
    gw = await gateway(route_config(upstream, {"request-id": {}, "key-auth": {}}, consumers=consumers))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x", headers={"X-Request-Id": "refused-1"})
        assert r.status == 401 and r.header("x-request-id") == "refused-1"  # a plugin's answer carries it too
    assert upstream.received == []


async def test_request_id_made_kept_or_replaced(upstream, gateway):
    gw = await gateway(route_config(upstream, {"request-id": {}}))
    seen_ids = set()
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/x")
        rid = r.header("x-request-id")
        assert rid and COUNTED.match(rid) and rid not in seen_ids
        seen_ids.add(rid)
        assert upstream.received[0].header("x-request-id") == rid
        r = await http_request(gw.port, "GET", "/x", headers={"X-Request-Id": "abc-123"})
        assert r.header("x-request-id") == "abc-123" and upstream.received[1].header("x-request-id") == "abc-123"
        r = await http_request(gw.port, "GET", "/x", headers={"X-Request-Id": "bad id with spaces"})
        assert COUNTED.match(r.header("x-request-id") or "")
    gw = await gateway(route_config(upstream, {"request-id": {"generator": "uuid", "keep_incoming": False}}))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x", headers={"X-Request-Id": "abc-123"})
        assert re.match(rf"^{UUID}$", r.header("x-request-id") or "")


async def test_request_id_in_the_access_log(upstream):
    out = io.BytesIO()
    cfg = route_config(upstream, {"request-id": {"header_name": "X-Correlation-Id", "echo_downstream": False}})

    server = Server(load_config_bytes(orjson.dumps(cfg), "t.json"), "127.0.0.1", 0, access_log=AccessLog(out))
    await server.start()
    try:
        r = await http_request(server.port, "GET", "/x", headers={"X-Correlation-Id": "corr-1"})
        assert r.status == 200 and r.header("x-correlation-id") is None
    finally:
        await server.shutdown(timeout=1.0)  # flushes the access log
    line = orjson.loads(out.getvalue().splitlines()[0])
    assert line["request_id"] == "corr-1" and line["status"] == 200


@pytest.mark.parametrize(
    ("conf", "status"),
    [
        ({"allow": ["127.0.0.0/8"]}, 200),
        ({"allow": ["10.0.0.0/8"]}, 403),
        ({"deny": ["127.0.0.1"]}, 403),
        ({"allow": ["127.0.0.0/8"], "deny": ["127.0.0.1/32"]}, 403),
        ({"deny": ["::1", "10.1.2.3"]}, 200),
    ],
)
async def test_ip_restriction(upstream, gateway, conf, status):
    gw = await gateway(route_config(upstream, {"ip-restriction": conf}))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x")
        assert r.status == status
        if status == 403:
            assert r.json() == {"message": "Your IP address is not allowed"}
    assert len(upstream.received) == (2 if status == 200 else 0)


async def test_ip_restriction_behind_a_trusted_proxy_uses_x_forwarded_for(upstream, gateway):
    cfg = route_config(upstream, {"ip-restriction": {"deny": ["203.0.113.0/24"]}})
    cfg["server"] = {"trusted_proxies": ["127.0.0.1"]}
    gw = await gateway(cfg)
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x", headers={"X-Forwarded-For": "203.0.113.9, 127.0.0.1"})
        assert r.status == 403
        r = await http_request(gw.port, "GET", "/x", headers={"X-Forwarded-For": "198.51.100.7"})
        assert r.status == 200
    # Without trust, a client cannot pick its address: the peer (127.0.0.1) is judged.
    gw2 = await gateway(route_config(upstream, {"ip-restriction": {"allow": ["203.0.113.0/24"]}}))
    r = await http_request(gw2.port, "GET", "/x", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status == 403


CORS = {"cors": {"origins": ["https://app.example.com", "~^https://[a-z]+\\.example\\.org$"], "credentials": True,
                 "max_age": 600, "exposed_headers": ["X-Total"]}, "key-auth": {}}  # fmt: skip


async def test_cors_preflight_is_answered_before_auth_even_on_a_get_only_route(upstream, gateway, consumers):
    cfg = route_config(upstream, {}, consumers=consumers)
    cfg["routes"] = [{"path": "/items", "methods": ["GET"], "plugins": CORS,
                      "integration": {"type": "http", "upstream": "backend"}}]  # fmt: skip
    gw = await gateway(cfg)
    pre = {"Origin": "https://shop.example.org", "Access-Control-Request-Method": "GET",
           "Access-Control-Request-Headers": "apikey, content-type"}  # fmt: skip
    for _ in TWICE:
        r = await http_request(gw.port, "OPTIONS", "/items", headers=pre)
        assert r.status == 204 and r.body == b""
        assert r.header("access-control-allow-origin") == "https://shop.example.org"
        assert r.header("access-control-allow-methods") == "GET"  # what this route serves, not cors' whole list
        assert r.header("access-control-allow-headers") == "apikey, content-type"
        assert r.header("access-control-allow-credentials") == "true"
        assert r.header("access-control-max-age") == "600"
        r = await http_request(gw.port, "OPTIONS", "/items", headers={**pre, "Origin": "https://evil.test"})
        assert r.status == 204 and r.header("access-control-allow-origin") is None
        # Not a preflight: a plain OPTIONS on a GET-only route is still 405.
        r = await http_request(gw.port, "OPTIONS", "/items")
        assert r.status == 405
    assert upstream.received == []


async def test_cors_preflight_names_the_methods_of_its_route(upstream, gateway, consumers):
    cfg = route_config(upstream, {}, consumers=consumers)
    integ = {"type": "http", "upstream": "backend"}
    cfg["routes"] = [
        {"path": "/items", "methods": ["GET", "PUT"], "plugins": CORS, "integration": integ},
        {"path": "/any", "plugins": CORS, "integration": integ},
        {"path": "/few", "methods": ["GET", "DELETE"], "integration": integ,
         "plugins": {**CORS, "cors": {**CORS["cors"], "methods": ["GET", "POST"]}}},
    ]  # fmt: skip
    gw = await gateway(cfg)
    for path, methods in (("/items", "GET, PUT"), ("/any", "GET, HEAD, PUT, PATCH, POST, DELETE"), ("/few", "GET")):
        pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
        r = await http_request(gw.port, "OPTIONS", path, headers=pre)
        assert r.status == 204, path
        assert r.header("access-control-allow-methods") == methods, path
    assert upstream.received == []


async def test_cors_headers_on_actual_and_refused_responses(upstream, gateway, consumers):
    gw = await gateway(route_config(upstream, CORS, consumers=consumers))
    for _ in TWICE:
        r = await http_request(gw.port, "GET", "/x", headers={"Origin": "https://app.example.com", "apikey": "bob-key"})
        assert r.status == 200
        assert r.header("access-control-allow-origin") == "https://app.example.com"
        assert r.header("access-control-expose-headers") == "X-Total" and r.header("vary") == "Origin"
        r = await http_request(gw.port, "GET", "/x", headers={"Origin": "https://app.example.com"})
        assert r.status == 401 and r.header("access-control-allow-origin") == "https://app.example.com"
        r = await http_request(gw.port, "GET", "/x", headers={"Origin": "http://app.example.com", "apikey": "bob-key"})
        assert r.status == 200 and r.header("access-control-allow-origin") is None


async def test_request_size_limit_by_content_length_and_while_chunked(upstream, gateway):
    gw = await gateway(route_config(upstream, {"request-size-limit": {"max_bytes": 100}}))
    for _ in TWICE:
        upstream.received.clear()
        r = await http_request(gw.port, "POST", "/x", body=b"a" * 100)
        assert r.status == 200 and upstream.received[0].body == b"a" * 100
        r = await http_request(gw.port, "POST", "/x", body=b"a" * 101)
        assert (r.status, r.json()) == (413, {"message": "Request size limit exceeded"})
        assert len(upstream.received) == 1
        # Chunked and small: collected, then forwarded whole.
        conn = await RawConnection.open(gw.port)
        await conn.send(b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
        await asyncio.sleep(0.02)
        await conn.send(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        r = await conn.response()
        assert r.status == 200 and upstream.received[-1].body == b"hello world"
        # Chunked and too big: refused as soon as it passes the limit, with the rest never read.
        await conn.send(b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
        await conn.send(b"40\r\n" + b"b" * 64 + b"\r\n")
        await asyncio.sleep(0.02)
        await conn.send(b"40\r\n" + b"b" * 64 + b"\r\n")
        r = await conn.response()
        assert (r.status, r.json()) == (413, {"message": "Request size limit exceeded"})
        assert r.header("connection") == "close" and await conn.closed()
        await conn.close()
        assert len(upstream.received) == 2
