"""WebSockets through the gateway: a real echo upstream (RFC 6455 framing written here), auth before the upgrade,
a large message, the idle timeout, and routes that do not allow it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct

import pytest

from fastgw.testing import http_request

pytestmark = pytest.mark.asyncio

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(payload: bytes, opcode: int = 2, mask: bool = True) -> bytes:
    n = len(payload)
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if b1 & 0x80 else None
    data = await reader.readexactly(n)
    if key is not None:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


class EchoWebSocket:
    """A WebSocket server that echoes each message; records the upgrade requests it saw."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.port = 0
        self.closed = asyncio.Event()

    async def __aenter__(self) -> EchoWebSocket:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        key = next(
            ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n") if ln.lower().startswith(b"sec-websocket-key")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_for(key) + b"\r\n\r\n"
        )
        try:
            while True:
                opcode, data = await read_frame(reader)
                if opcode == 8:
                    writer.write(frame(data, 8, mask=False))
                    break
                writer.write(frame(data, opcode, mask=False))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            writer.close()


async def ws_connect(port: int, path: str = "/ws", headers: bytes = b"") -> tuple:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n" + headers + b"\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head, key


def ws_config(url: str, **route: object) -> dict:
    return {
        "upstreams": {"ws": {"targets": [url]}},
        "consumers": {"alice": {"credentials": {"key-auth": [{"key": "alice-key"}]}}},
        "routes": [
            {"path": "/ws", "websocket": True, "integration": {"type": "http", "upstream": "ws"}, **route},
            {"path": "/plain", "integration": {"type": "http", "upstream": "ws"}},
        ],
    }


async def test_echo_through_the_gateway_with_a_large_message(gateway):
    async with EchoWebSocket() as up:
        gw = await gateway(ws_config(f"http://127.0.0.1:{up.port}"))
        reader, writer, head, key = await ws_connect(gw.port)
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"Sec-WebSocket-Accept: " + accept_for(key) in head
        upgrade = up.heads[0].lower()
        assert b"upgrade: websocket" in upgrade and b"connection: upgrade" in upgrade
        writer.write(frame(b"hello", 1))
        assert await read_frame(reader) == (1, b"hello")
        big = os.urandom(3 * 1024 * 1024)  # bigger than every buffer on the way: backpressure both ways
        writer.write(frame(big))
        opcode, data = await asyncio.wait_for(read_frame(reader), 20)
        assert opcode == 2 and data == big
        writer.write(frame(b"bye", 8))
        assert (await read_frame(reader))[0] == 8
        await asyncio.wait_for(up.closed.wait(), 5)
        writer.close()


async def test_auth_plugins_run_before_the_upgrade(gateway):
    async with EchoWebSocket() as up:
        gw = await gateway(ws_config(f"http://127.0.0.1:{up.port}", plugins={"key-auth": {}}))
        _, writer, head, _ = await ws_connect(gw.port)
        assert head.startswith(b"HTTP/1.1 401 ")
        assert up.heads == []  # never reached the upstream
        writer.close()
        reader, writer, head, _ = await ws_connect(gw.port, headers=b"apikey: alice-key\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        writer.write(frame(b"x", 1))
        assert await read_frame(reader) == (1, b"x")
        writer.close()


async def test_idle_tunnel_is_closed(gateway):
    async with EchoWebSocket() as up:
        gw = await gateway(ws_config(f"http://127.0.0.1:{up.port}", websocket={"idle_timeout": 0.5}))
        reader, writer, head, _ = await ws_connect(gw.port)
        assert head.startswith(b"HTTP/1.1 101 ")
        await asyncio.wait_for(up.closed.wait(), 5)  # the tunnel closed both ways
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_routes_without_websocket_serve_the_upgrade_as_plain_http(gateway, upstream):
    gw = await gateway(ws_config(upstream.url))
    reader, writer, head, _ = await ws_connect(gw.port, path="/plain")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert upstream.received[0].header("upgrade") is None
    writer.close()
    # and a plain request on a websocket route is proxied as usual
    r = await http_request(gw.port, "GET", "/ws")
    assert r.status == 200
