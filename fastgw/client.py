"""A minimal HTTP/1.1 client that shows exactly what came back on the wire: `fastgw invoke` reads its one response
with it, and the test kit (`fastgw.testing`) hands it to tests."""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from typing import Any

import orjson

# How long the client helpers wait for an answer. Generous on purpose: CI machines are often shared and
# throttled, and a test that means "an answer comes" should not fail because the machine paused for seconds.
DEFAULT_TIMEOUT = 15.0

__all__ = ["DEFAULT_TIMEOUT", "RawConnection", "Response", "header_value", "http_request", "read_chunked"]


def header_value(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first value of a header, by case-insensitive name."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    def json(self) -> Any:
        return orjson.loads(self.body)


_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})")


class RawConnection:
    """A client connection that sends bytes as given and parses responses one by one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head_only: bool = False, timeout: float = DEFAULT_TIMEOUT) -> Response:
        return await asyncio.wait_for(self._response(head_only), timeout)

    async def _response(self, head_only: bool) -> Response:
        head = await self.reader.readuntil(b"\r\n\r\n")
        m = _STATUS.match(head)
        if not m:
            raise AssertionError(f"not an HTTP response: {head[:200]!r}")
        status = int(m.group(1))
        headers = []
        for line in head.decode("latin-1").split("\r\n")[1:]:
            if line:
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
        resp = Response(status, headers, b"", head)
        if head_only or status in (204, 304) or 100 <= status < 200:
            return resp
        if (resp.header("transfer-encoding") or "").lower() == "chunked":
            resp.body = await read_chunked(self.reader)
        elif resp.header("content-length") is not None:
            resp.body = await self.reader.readexactly(int(resp.header("content-length") or 0))
        else:
            resp.body = await self.reader.read()
        return resp

    async def closed(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        """True when the server closed the connection (EOF) within `timeout`, with nothing more sent."""
        data = await asyncio.wait_for(self.reader.read(), timeout)
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def http_request(
    port: int,
    method: str = "GET",
    path: str = "/",
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    host: str = "test.local",
    timeout: float = DEFAULT_TIMEOUT,
) -> Response:
    """One request on a new connection (Connection: close)."""
    hdrs = {"host": host, "connection": "close", **(headers or {})}
    if body and "content-length" not in {k.lower() for k in hdrs}:
        hdrs["content-length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    conn = await RawConnection.open(port)
    try:
        await conn.send(head.encode("latin-1") + body)
        return await conn.response(head_only=method == "HEAD", timeout=timeout)
    finally:
        await conn.close()
