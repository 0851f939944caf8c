"""The http integration end to end: a real gateway and a real echo upstream on loopback ports."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from fastgw.testing import RawConnection, http_request
from tests.conftest import proxy_config

pytestmark = pytest.mark.asyncio


async def test_get_is_proxied_with_forwarding_headers(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    for _ in range(2):  # twice: nothing may leak from one request to the next
        upstream.received.clear()
        r = await http_request(gw.port, "GET", "/users/42?x=1&x=2", headers={"X-Custom": "a b"})
        assert r.status == 200
        assert r.header("x-upstream") == "echo"
        assert r.header("via") == "1.1 fastgw"
        (seen,) = upstream.received
        assert seen.method == "GET" and seen.target == "/users/42?x=1&x=2"
        assert seen.header("x-custom") == "a b"
        assert seen.header("host") == f"127.0.0.1:{upstream.port}"
        assert seen.header("x-forwarded-for") == "127.0.0.1"
        assert seen.header("x-forwarded-proto") == "http"
        assert seen.header("x-forwarded-host") == "test.local"
        assert seen.header("via") == "1.1 fastgw"
        assert seen.header("connection") is None  # hop-by-hop, not forwarded


async def test_hop_by_hop_headers_are_stripped_both_ways(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    r = await http_request(
        gw.port,
        "GET",
        "/headers?keep-alive=timeout%3D5&x-kept=yes&connection=x-secret&x-secret=1&proxy-authenticate=basic",
        headers={
            "Connection": "close, X-Drop-Me",
            "X-Drop-Me": "1",
            "Keep-Alive": "5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic abc",
            "X-Kept": "yes",
            "Upgrade": "websocket",
        },
    )
    assert r.status == 200
    seen = upstream.received[0]
    for name in ("x-drop-me", "keep-alive", "te", "proxy-authorization", "upgrade"):
        assert seen.header(name) is None, name
    assert seen.header("x-kept") == "yes"
    assert r.header("x-kept") == "yes"
    for name in ("keep-alive", "x-secret", "proxy-authenticate"):
        assert r.header(name) is None, name


async def test_untrusted_forwarded_headers_are_replaced(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    await http_request(gw.port, "GET", "/", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"})
    seen = upstream.received[0]
    assert seen.header("x-forwarded-for") == "127.0.0.1"
    assert seen.header("x-forwarded-proto") == "http"


@pytest.mark.parametrize("plugins", [{}, {"request-id": {}}])
async def test_untrusted_real_ip_and_forwarded_are_replaced_or_dropped(plugins, upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, {"plugins": plugins}))
    for _ in range(2):
        upstream.received.clear()
        spoof = {"X-Real-IP": "6.6.6.6", "Forwarded": "for=6.6.6.6;proto=https", "X-Real-IP-Extra": "kept"}
        await http_request(gw.port, "GET", "/", headers=spoof)
        seen = upstream.received[0]
        assert [v for k, v in seen.headers if k.lower() == "x-real-ip"] == ["127.0.0.1"]  # the peer, once
        assert seen.header("forwarded") is None
        assert seen.header("x-real-ip-extra") == "kept"
        # Not sent, not added: the gateway speaks X-Forwarded-For.
        await http_request(gw.port, "GET", "/")
        assert upstream.received[1].header("x-real-ip") is None
        assert upstream.received[1].header("x-forwarded-for") == "127.0.0.1"


async def test_trusted_proxy_real_ip_and_forwarded_are_kept(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, server={"trusted_proxies": ["127.0.0.0/8"]}))
    await http_request(gw.port, "GET", "/", headers={"X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9"})
    seen = upstream.received[0]
    assert seen.header("x-real-ip") == "203.0.113.9"
    assert seen.header("forwarded") == "for=203.0.113.9"


async def test_trusted_proxy_forwarded_headers_are_kept_and_appended(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, server={"trusted_proxies": ["127.0.0.0/8"]}))
    await http_request(
        gw.port,
        "GET",
        "/",
        headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com"},
    )
    seen = upstream.received[0]
    assert seen.header("x-forwarded-for") == "203.0.113.9, 127.0.0.1"
    assert seen.header("x-forwarded-proto") == "https"
    assert seen.header("x-forwarded-host") == "api.example.com"


async def test_post_with_content_length_body(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    body = orjson.dumps({"name": "fastgw", "n": list(range(100))})
    r = await http_request(gw.port, "POST", "/items", body=body, headers={"content-type": "application/json"})
    assert r.status == 200
    assert r.json()["body"] == body.decode()
    assert upstream.received[0].header("content-length") == str(len(body))


async def test_chunked_request_body_is_streamed_chunked(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await asyncio.sleep(0.05)
    await conn.send(b"6\r\n world\r\n0\r\n\r\n")
    r = await conn.response()
    assert r.status == 200
    assert r.json()["body"] == "hello world"
    assert upstream.received[0].header("transfer-encoding") == "chunked"
    await conn.close()


async def test_keep_alive_reuses_upstream_connection(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    for i in range(5):
        await conn.send(f"GET /n/{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        r = await conn.response()
        assert r.status == 200 and r.json()["path"] == f"/n/{i}"
    await conn.close()
    assert len(upstream.received) == 5
    assert {s.connection_id for s in upstream.received} == {1}, "one pooled upstream connection serves all"


async def test_pipelined_requests_are_answered_in_order(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    batch = b"".join(f"GET /p/{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode() for i in range(4))
    batch += b"POST /p/4 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
    batch += b"GET /sleep/50 HTTP/1.1\r\nHost: a\r\n\r\nGET /p/6 HTTP/1.1\r\nHost: a\r\n\r\n"
    await conn.send(batch)
    paths = [(await conn.response()).json()["path"] for _ in range(7)]
    assert paths == ["/p/0", "/p/1", "/p/2", "/p/3", "/p/4", "/sleep/50", "/p/6"]
    assert upstream.received[4].body == b"abc"
    await conn.close()


async def test_a_body_streams_to_its_own_exchange_and_a_pipelined_one_waits_for_its_own(upstream, gateway):
    # The first request's exchange starts while its body is still arriving: the rest streams to its upstream leg.
    # The request pipelined behind it comes in the same bytes, body and all, before its own exchange exists: its
    # body is kept for that exchange, not handed to the first one's.
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"POST /p/a HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc")
    await asyncio.sleep(0.2)  # the exchange of /p/a is on its way upstream with what came so far
    await conn.send(
        b"def" + b"POST /p/b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nwxyzGET /p/c HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    paths = [(await conn.response()).json()["path"] for _ in range(3)]
    assert paths == ["/p/a", "/p/b", "/p/c"]
    assert [(s.path, s.body) for s in upstream.received] == [("/p/a", b"abcdef"), ("/p/b", b"wxyz"), ("/p/c", b"")]
    await conn.close()


async def test_strip_prefix_and_path_rewrite(upstream, gateway):
    cfg = {
        "upstreams": {"b": {"targets": [upstream.url]}},
        "routes": [
            {"path": "/api/{proxy+}", "integration": {"type": "http", "upstream": "b", "strip_prefix": "/api"}},
            {
                "path": "/users/{id}/orders/{order}",
                "integration": {"type": "http", "upstream": "b", "path": "/v2/orders/{order}?user={id}"},
            },
            {"path": "/files/{key+}", "integration": {"type": "http", "upstream": "b", "path": "/store/{key}"}},
        ],
    }
    gw = await gateway(cfg)
    await http_request(gw.port, "GET", "/api/v1/things?q=1")
    await http_request(gw.port, "GET", "/users/7/orders/99")
    await http_request(gw.port, "GET", "/files/a/b/c.txt")
    await http_request(gw.port, "GET", "/apix/nope")  # not under the prefix: no route
    assert [s.target for s in upstream.received] == ["/v1/things?q=1", "/v2/orders/99?user=7", "/store/a/b/c.txt"]


async def test_host_header_options(upstream, gateway):
    cfg = {
        "upstreams": {"b": {"targets": [upstream.url]}},
        "routes": [
            {"path": "/keep", "integration": {"type": "http", "upstream": "b", "preserve_host": True}},
            {"path": "/set", "integration": {"type": "http", "upstream": "b", "host": "internal.svc"}},
        ],
    }
    gw = await gateway(cfg)
    await http_request(gw.port, "GET", "/keep", host="public.example.com")
    await http_request(gw.port, "GET", "/set", host="public.example.com")
    assert [s.header("host") for s in upstream.received] == ["public.example.com", "internal.svc"]


async def test_head_and_no_body_statuses(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: a\r\n\r\n")
    r = await conn.response(head_only=True)
    assert r.status == 200 and r.header("content-length") == "1000"
    # The connection is still usable: the HEAD response had no body on the wire.
    await conn.send(b"GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\n")
    r = await conn.response()
    assert r.status == 204 and r.body == b""
    await conn.send(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
    r = await conn.response()
    assert r.status == 200 and r.json()["path"] == "/ok"
    await conn.close()


async def test_upstream_chunked_and_close_delimited_responses(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"GET /chunked/100000 HTTP/1.1\r\nHost: a\r\n\r\n")
    r = await conn.response()
    assert r.header("transfer-encoding") == "chunked" and r.body == b"x" * 100000
    # No length from the upstream: the gateway re-frames it as chunked and keeps the client connection.
    await conn.send(b"GET /until-close/70000 HTTP/1.1\r\nHost: a\r\n\r\n")
    r = await conn.response()
    assert r.header("transfer-encoding") == "chunked" and r.body == b"x" * 70000
    await conn.send(b"GET /still-open HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await conn.response()).status == 200
    await conn.close()


async def test_http10_client_gets_close_delimited_body(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"GET /chunked/5000 HTTP/1.0\r\n\r\n")
    r = await conn.response()
    assert r.header("transfer-encoding") is None and r.header("connection") == "close"
    assert r.body == b"x" * 5000
    await conn.close()


async def test_expect_100_continue(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"PUT /obj HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = await conn.response()
    assert interim.status == 100
    await conn.send(b"data")
    r = await conn.response()
    assert r.status == 200 and r.json()["body"] == "data"
    assert upstream.received[0].header("expect") is None
    await conn.close()


async def test_round_robin_across_targets(gateway):
    from fastgw.testing import EchoUpstream

    async with EchoUpstream() as a, EchoUpstream() as b:
        cfg = proxy_config(a.url, upstream_opts={"targets": [a.url, b.url]})
        gw = await gateway(cfg)
        for _ in range(4):
            await http_request(gw.port, "GET", "/rr")
        assert len(a.received) == 2 and len(b.received) == 2


async def test_mock_integration(gateway):
    cfg = {
        "routes": [
            {
                "path": "/teapot",
                "methods": ["GET"],
                "integration": {
                    "type": "mock",
                    "status": 418,
                    "headers": {"X-Mock": "yes"},
                    "body": {"short": "stout"},
                },
            },
            {"path": "/text", "integration": {"type": "mock", "body": "plain words"}},
        ]
    }
    gw = await gateway(cfg)
    r = await http_request(gw.port, "GET", "/teapot")
    assert r.status == 418 and r.json() == {"short": "stout"} and r.header("x-mock") == "yes"
    assert r.header("content-type") == "application/json" and r.header("date") and r.header("server") == "fastgw"
    r = await http_request(gw.port, "GET", "/text")
    assert r.body == b"plain words" and r.header("content-type").startswith("text/plain")


async def test_404_405_with_allow(upstream, gateway):
    cfg = {
        "upstreams": {"b": {"targets": [upstream.url]}},
        "routes": [
            {"path": "/only-get", "methods": ["GET", "HEAD"], "integration": {"type": "http", "upstream": "b"}},
        ],
    }
    gw = await gateway(cfg)
    r = await http_request(gw.port, "DELETE", "/only-get")
    assert r.status == 405 and r.header("allow") == "GET, HEAD" and r.json() == {"message": "Method Not Allowed"}
    r = await http_request(gw.port, "GET", "/missing")
    assert r.status == 404 and r.json() == {"message": "Not Found"}
    assert upstream.received == []


async def test_routing_by_host(upstream, gateway):
    cfg = {
        "upstreams": {"b": {"targets": [upstream.url]}},
        "routes": [
            {"path": "/", "host": "api.example.com", "integration": {"type": "mock", "body": "exact"}},
            {"path": "/", "host": "*.example.com", "integration": {"type": "mock", "body": "wildcard"}},
            {"path": "/", "integration": {"type": "mock", "body": "any"}},
        ],
    }
    gw = await gateway(cfg)
    got = [
        (await http_request(gw.port, "GET", "/", host=h)).body
        for h in ("api.example.com:8080", "www.example.com", "example.com", "other.org")
    ]
    assert got == [b"exact", b"wildcard", b"any", b"any"]


async def test_access_log_has_one_json_line_per_request(upstream):
    import io

    from fastgw.observability.accesslog import AccessLog
    from fastgw.testing import running_gateway

    buf = io.BytesIO()
    async with running_gateway(proxy_config(upstream.url), access_log=AccessLog(buf)) as gw:
        await http_request(gw.port, "POST", "/logged?q=1", body=b"12345")
        await http_request(gw.port, "GET", "/", host="x")
        gw.state.access_log.flush()  # type: ignore[union-attr]
    lines = [orjson.loads(line) for line in buf.getvalue().splitlines()]
    assert [(e["method"], e["path"], e["status"], e["request_bytes"]) for e in lines] == [
        ("POST", "/logged", 200, 5),
        ("GET", "/", 200, 0),
    ]
    assert lines[0]["client"] == "127.0.0.1" and lines[0]["route"] == "ANY /{proxy+}" and lines[0]["duration_ms"] >= 0
