"""Limits (414/431/413/408, idle keep-alive) and upstream faults (502/504): clear JSON answers, gateway stays up."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from fastgw.testing import RawConnection, http_request
from tests.conftest import proxy_config

pytestmark = pytest.mark.asyncio


async def _refused_with(gw, upstream, data: bytes, status: int, message: str) -> None:
    conn = await RawConnection.open(gw.port)
    await conn.send(data)
    r = await conn.response()
    assert r.status == status and r.json() == {"message": message}
    assert await conn.closed()
    await conn.close()
    assert upstream.received == []


async def test_url_too_long_414(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, limits={"max_url_length": 100}))
    await _refused_with(gw, upstream, b"GET /" + b"a" * 200 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "URI Too Long")
    assert (await http_request(gw.port, "GET", "/" + "a" * 90)).status == 200


async def test_header_size_and_count_431(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, limits={"max_header_size": 1024, "max_headers": 10}))
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 2000 + b"\r\n\r\n"
    await _refused_with(gw, upstream, big, 431, "Request Header Fields Too Large")
    many = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(11)) + b"\r\n"
    await _refused_with(gw, upstream, many, 431, "Request Header Fields Too Large")
    assert (await http_request(gw.port, "GET", "/", headers={f"x-{i}": "1" for i in range(8)})).status == 200


async def test_one_header_field_431_at_8_kib_by_default(upstream, gateway):
    # The whole header block may reach 32 KiB, but one field (name and value) no more than 8 KiB.
    gw = await gateway(proxy_config(upstream.url))
    one_too_many = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * (8192 - 5 + 1) + b"\r\n\r\n"
    await _refused_with(gw, upstream, one_too_many, 431, "Request Header Fields Too Large")
    cookie = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: " + b"c" * 9000 + b"\r\n\r\n"
    await _refused_with(gw, upstream, cookie, 431, "Request Header Fields Too Large")
    # At the limit, and several big fields that together stay under the block limit, pass.
    r = await http_request(gw.port, "GET", "/", headers={"X-Big": "v" * (8192 - 5)})
    assert r.status == 200
    r = await http_request(gw.port, "GET", "/", headers={f"X-{i}": "v" * 8000 for i in range(3)})
    assert r.status == 200
    assert [len(s.header("x-0") or "") for s in upstream.received] == [0, 8000]


async def test_one_header_field_limit_is_configurable(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, limits={"max_header_field_size": 100}))
    await _refused_with(gw, upstream, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + b"v" * 98 + b"\r\n\r\n", 431,
                        "Request Header Fields Too Large")  # fmt: skip
    assert (await http_request(gw.port, "GET", "/", headers={"X-A": "v" * 97})).status == 200


async def test_body_too_large_413_by_length_and_by_chunks(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, limits={"max_body_size": 1000}))
    declared = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001
    await _refused_with(gw, upstream, declared, 413, "Payload Too Large")
    chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"3e8\r\n" + b"x" * 1000
    chunked += b"\r\n1\r\nx\r\n0\r\n\r\n"
    await _refused_with(gw, upstream, chunked, 413, "Payload Too Large")
    r = await http_request(gw.port, "POST", "/ok", body=b"y" * 1000)
    assert r.status == 200 and r.json()["body_length"] == 1000


async def test_slow_header_sender_gets_408_and_is_closed(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, limits={"header_timeout": 0.5}))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finishes the head
    # Deadlines fire within two ticks; a throttled VM can stretch ticks, so allow far more than 0.5 s.
    r = await conn.response(timeout=10)
    assert r.status == 408 and r.json() == {"message": "Request Timeout"}
    assert await conn.closed()
    assert upstream.received == []


async def test_idle_keepalive_connection_is_closed(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, limits={"keepalive_timeout": 0.5}))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert (await conn.response()).status == 200
    assert await conn.closed(timeout=10)  # silently, no 408 for an idle connection


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_upstream_refused_is_502_and_gateway_stays_up(gateway):
    gw = await gateway(proxy_config(f"http://127.0.0.1:{_free_port()}"))
    for _ in range(2):
        r = await http_request(gw.port, "GET", "/x")
        assert r.status == 502 and r.json() == {"message": "Bad Gateway"}


async def test_upstream_closing_without_answer_is_502(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    r = await http_request(gw.port, "GET", "/close")
    assert r.status == 502 and r.json() == {"message": "Bad Gateway"}
    assert (await http_request(gw.port, "GET", "/fine")).status == 200


async def test_invalid_upstream_response_is_502():
    async def garbage(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    from fastgw.testing import running_gateway

    async with running_gateway(proxy_config(f"http://127.0.0.1:{port}")) as gw:
        r = await http_request(gw.port, "GET", "/")
        assert r.status == 502 and r.json() == {"message": "Bad Gateway"}
    srv.close()


async def test_upstream_read_timeout_is_504(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url, upstream_opts={"read_timeout": 1.0}))
    r = await http_request(gw.port, "GET", "/sleep/4000", timeout=8)
    assert r.status == 504 and r.json() == {"message": "Endpoint request timed out"}
    assert (await http_request(gw.port, "GET", "/sleep/10")).status == 200


async def test_upstream_connect_timeout_is_504(gateway):
    # A listener whose accept queue is full and never drained: new SYNs are dropped, connect() hangs.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", port))
        fillers.append(s)
    await asyncio.sleep(0.2)
    try:
        gw = await gateway(proxy_config(f"http://127.0.0.1:{port}", upstream_opts={"connect_timeout": 0.5}))
        r = await http_request(gw.port, "GET", "/", timeout=10)
        assert r.status == 504 and r.json() == {"message": "Endpoint request timed out"}
    finally:
        for s in fillers:
            s.close()
        lsock.close()


async def test_stale_pooled_connection_is_retried_for_idempotent_requests(gateway):
    """The upstream closes a keep-alive connection after each response without saying so; the gateway's next
    GET on the pooled connection fails before any byte comes back and is retried once on a new connection."""
    seen = []

    async def one_shot(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b" ")[1])
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.transport.abort()  # no Connection: close, no FIN: just gone (RST)

    srv = await asyncio.start_server(one_shot, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        gw = await gateway(proxy_config(f"http://127.0.0.1:{port}"))
        conn = await RawConnection.open(gw.port)
        for i in range(3):
            await conn.send(f"GET /r{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            r = await conn.response()
            assert r.status == 200 and r.body == b"ok"
            await asyncio.sleep(0.01)  # the pooled connection is reused before its RST is read
        await conn.close()
        assert seen == [b"/r0", b"/r1", b"/r2"]
    finally:
        srv.close()


async def test_client_gone_mid_response_leaves_gateway_healthy(upstream, gateway):
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    await conn.send(b"GET /bytes/20000000 HTTP/1.1\r\nHost: a\r\n\r\n")
    await conn.reader.readexactly(1000)
    conn.writer.transport.abort()
    await asyncio.sleep(0.2)
    assert (await http_request(gw.port, "GET", "/after")).status == 200
    assert all(c.exchange is None for c in gw.state.connections)  # nothing holds the abandoned exchange
