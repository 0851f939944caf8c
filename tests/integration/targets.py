"""Upstream targets the resilience tests start, stop, slow down, reset and make answer 5xx.

`FlakyTarget(name)` is a real HTTP/1.1 server on a loopback port. It answers 200 with `{"target": name, ...}`
(so a test sees which target answered) and records each request; `mode` changes what it does from the next
request on: "ok", "status:CODE", "reset" (a TCP reset before any response byte), "reset-mid-body" (a head and a
few body bytes, then a reset), "slow:MS" (waits, then answers), "hang" (reads, never answers). `stop()` closes
the listener and every connection (connections are then refused); `start()` binds the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

import orjson

from fastgw.client import header_value, read_chunked


class FlakyTarget:
    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.host = host
        self.mode = "ok"
        self.port = port
        self.hits = 0
        self.requests: list[tuple[str, str, bytes]] = []  # (method, target, body)
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FlakyTarget:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> FlakyTarget:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @staticmethod
    def _reset(writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [tuple(s.strip() for s in ln.split(":", 1)) for ln in lines[1:] if ln]
                body = b""
                if header_value(headers, "transfer-encoding") == "chunked":  # type: ignore[arg-type]
                    body = await read_chunked(reader)
                elif n := int(header_value(headers, "content-length") or 0):  # type: ignore[arg-type]
                    body = await reader.readexactly(n)
                self.hits += 1
                self.requests.append((method, target, body))
                mode = self.mode
                if mode == "reset":
                    self._reset(writer)
                    return
                if mode == "hang":
                    while await reader.read(65536):  # never answers; returns when the gateway closes
                        pass
                    return
                if mode.startswith("slow:"):
                    await asyncio.sleep(int(mode[5:]) / 1000)
                if mode == "reset-mid-body":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 10)
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    self._reset(writer)
                    return
                status = int(mode[7:]) if mode.startswith("status:") else 200
                payload = orjson.dumps({"target": self.name, "path": target, "body": body.decode("latin-1")})
                writer.write(
                    b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b"
                    % (status, len(payload), payload)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


def refused_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def upstream_config(urls: list, route: dict | None = None, **opts: object) -> dict:
    """One catch-all route to the upstream `backend` made of `urls` (strings or {url, weight})."""
    integ = {"type": "http", "upstream": "backend", **(route or {})}
    return {
        "upstreams": {"backend": {"targets": urls, **opts}},
        "routes": [{"path": "/{proxy+}", "integration": integ}, {"path": "/", "integration": integ}],
    }
