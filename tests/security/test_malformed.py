"""Malformed and ambiguous requests: answered 4xx, connection closed, and the upstream receives nothing."""

from __future__ import annotations

import pytest

from fastgw.testing import RawConnection
from tests.conftest import proxy_config

pytestmark = pytest.mark.asyncio

H = b"Host: a\r\n"

MALFORMED = {
    "duplicate content-length": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "conflicting content-length": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "content-length list": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
    "signed content-length": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc",
    "content-length with transfer-encoding": (
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding xchunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "transfer-encoding chunked, identity": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding twice": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding with space before colon": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding with vertical tab": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding in HTTP/1.0": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n"
    ),
    "chunk data longer than size": (
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
    ),
    "invalid header name": b"GET / HTTP/1.1\r\n" + H + b"Bad(Name): x\r\n\r\n",
    "space in header name": b"GET / HTTP/1.1\r\n" + H + b"Bad Name: x\r\n\r\n",
    "empty header name": b"GET / HTTP/1.1\r\n" + H + b": x\r\n\r\n",
    "NUL in header value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "bare CR in header value": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n",
    "obsolete line folding": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n",
    "bare LF line ending": b"GET / HTTP/1.1\n" + H + b"\n",
    "NUL in request target": b"GET /a\x00b HTTP/1.1\r\n" + H + b"\r\n",
    "space in request target": b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
    "missing host": b"GET / HTTP/1.1\r\n\r\n",
    "duplicate host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "invalid host": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "unknown HTTP version": b"GET / HTTP/1.2\r\n" + H + b"\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\r\n\r\n",
    "encoded NUL in path": b"GET /a%00b HTTP/1.1\r\n" + H + b"\r\n",
    "broken percent escape": b"GET /a%zz HTTP/1.1\r\n" + H + b"\r\n",
    "dot segments above the root": b"GET /../etc/passwd HTTP/1.1\r\n" + H + b"\r\n",
    "encoded dot segments above the root": b"GET /%2e%2e/%2E%2e/etc HTTP/1.1\r\n" + H + b"\r\n",
    "authority-form target": b"GET example.com:80 HTTP/1.1\r\n" + H + b"\r\n",
    "CONNECT": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_request_is_refused_and_never_forwarded(case, upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(MALFORMED[case])
    r = await conn.response()
    assert 400 <= r.status < 500, (case, r.status)
    assert r.header("content-type") == "application/json"
    assert "message" in r.json()
    assert await conn.closed(), "a refused request closes the connection"
    await conn.close()
    assert upstream.received == [], f"{case}: the upstream must not see any of it"
    assert upstream.connections == 0


async def test_bad_chunk_after_streaming_began_never_completes_upstream(upstream, gateway):
    """A chunk error that arrives in a later packet: the head already went upstream, but the upstream never
    receives a complete request (its connection is cut), and the client gets 400."""
    import asyncio

    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    await asyncio.sleep(0.1)
    await conn.send(b"zz\r\n")
    r = await conn.response()
    assert r.status == 400
    await asyncio.sleep(0.1)
    assert upstream.received == []
    await conn.close()


async def test_dot_segments_cannot_slip_past_a_route(upstream, gateway):
    cfg = {
        "upstreams": {"b": {"targets": [upstream.url]}},
        "routes": [
            {"path": "/public/{p+}", "integration": {"type": "http", "upstream": "b"}},
            {"path": "/admin/{p+}", "integration": {"type": "mock", "status": 403, "body": {"message": "no"}}},
        ],
    }
    gw = await gateway(cfg)
    for target in (
        b"/public/../admin/users",
        b"/public/%2e%2e/admin/users",
        b"/public/.%2E/admin/users",
        b"/public//..//admin/users",
        b"/public/./../admin/users",
    ):
        conn = await RawConnection.open(gw.port)
        await conn.send(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r = await conn.response()
        assert r.status == 403, target
        await conn.close()
    assert upstream.received == []
    # The normalized path is what goes upstream.
    conn = await RawConnection.open(gw.port)
    await conn.send(b"GET /public/a/./b/../c%7E%2cd?q=%2e HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await conn.response()).status == 200
    assert upstream.received[0].target == "/public/a/c~%2Cd?q=%2e"
    await conn.close()


async def test_header_values_lose_surrounding_whitespace_both_ways(upstream, gateway):
    """RFC 9110 §5.5: whitespace before and after a field value is not part of it. httptools drops the leading
    whitespace only; the gateway drops the trailing too, so an upstream never sees `v \\t` where a plugin
    compared `v`."""
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"GET /a HTTP/1.1\r\nHost: a\r\nX-Trail: v \t \r\nX-Lead: \t w\r\nX-Inner: a  b\t\r\n\r\n")
    assert (await conn.response()).status == 200
    await conn.close()
    head = upstream.received[0].head
    assert b"\r\nx-trail: v\r\n" in head.lower(), head
    assert b"\r\nx-lead: w\r\n" in head.lower(), head
    assert b"\r\nx-inner: a  b\r\n" in head.lower(), head
