"""Test kit for fastgw and for plugin authors: real servers on ephemeral loopback ports.

- `EchoUpstream`: an HTTP/1.1 upstream that answers with what it received (method, path, query, headers, body)
  as JSON and records every request, so a test can assert on what the upstream saw, or that it saw nothing.
  It is written on asyncio streams, independently of fastgw's own server code. Special paths change its
  behaviour: `/status/{code}`, `/sleep/{ms}`, `/bytes/{n}` (n bytes, Content-Length), `/chunked/{n}` (n bytes in
  chunks), `/until-close/{n}` (no length: ends by closing), `/close` (closes without answering),
  `/headers?name=value...` (responds with those headers), `/echo-chunked` (the echo, sent in chunks).
- `running_gateway(config)`: an in-process fastgw on port 0 in the current event loop.
- `http_request(...)` / `RawConnection`: a minimal client that shows exactly what came back on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from fastgw.client import DEFAULT_TIMEOUT, RawConnection, Response, header_value, http_request, read_chunked
from fastgw.config.load import load_config_bytes
from fastgw.server.server import Server

__all__ = [
    "DEFAULT_TIMEOUT",
    "EchoUpstream",
    "RawConnection",
    "Received",
    "Response",
    "http_request",
    "running_gateway",
]


@dataclass
class Received:
    """One request as the upstream saw it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    connection_id: int
    head: bytes = b""  # the request line and header block, byte for byte

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class EchoUpstream:
    """See the module docstring. Use as `async with EchoUpstream() as up: ... up.url ... up.received`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> EchoUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_id = self.connections
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                headers = [tuple(s.strip() for s in ln.split(":", 1)) for ln in lines[1:] if ln]
                req = Received(method, target, version, headers, b"", conn_id, head)  # type: ignore[arg-type]
                if req.header("transfer-encoding") == "chunked":
                    req.body = await read_chunked(reader)
                elif req.header("content-length"):
                    req.body = await reader.readexactly(int(req.header("content-length") or 0))
                self.received.append(req)
                keep = await self._respond(req, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _respond(self, req: Received, writer: asyncio.StreamWriter) -> bool:
        path = req.path
        parts = path.strip("/").split("/")
        status, extra, body = 200, [], b""
        if parts[0] == "close":
            return False
        if parts[0] == "sleep" and len(parts) > 1:
            await asyncio.sleep(int(parts[1]) / 1000)
        if parts[0] == "status" and len(parts) > 1:
            status = int(parts[1])
        if parts[0] == "headers":
            extra = [(k, v) for k, v in parse_qsl(urlsplit(req.target).query)]
        if parts[0] in ("bytes", "chunked", "until-close") and len(parts) > 1:
            n = int(parts[1])
            head = f"HTTP/1.1 {status} OK\r\ncontent-type: application/octet-stream\r\n"
            if parts[0] == "bytes":
                writer.write(f"{head}content-length: {n}\r\n\r\n".encode())
            elif parts[0] == "chunked":
                writer.write(f"{head}transfer-encoding: chunked\r\n\r\n".encode())
            else:
                writer.write(f"{head}connection: close\r\n\r\n".encode())
            if req.method == "HEAD":
                await writer.drain()
                return parts[0] != "until-close"
            block = b"x" * 65536
            left = n
            while left > 0:
                piece = block[: min(left, len(block))]
                left -= len(piece)
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece) if parts[0] == "chunked" else piece)
                await writer.drain()
            if parts[0] == "chunked":
                writer.write(b"0\r\n\r\n")
            await writer.drain()
            return parts[0] != "until-close"
        if status not in (204, 304):
            body = orjson.dumps(
                {
                    "method": req.method,
                    "path": path,
                    "query": urlsplit(req.target).query,
                    "headers": [[k, v] for k, v in req.headers],
                    "body": req.body.decode("utf-8", "replace"),
                    "body_b64": base64.b64encode(req.body).decode() if len(req.body) < 4096 else None,
                    "body_length": len(req.body),
                }
            )
        lines = [f"HTTP/1.1 {status} X", "content-type: application/json", "x-upstream: echo"]
        lines += [f"{k}: {v}" for k, v in extra]
        if parts[0] == "echo-chunked":
            lines.append("transfer-encoding: chunked")
            half = len(body) // 2
            body = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in (body[:half], body[half:])) + b"0\r\n\r\n"
        elif status not in (204, 304):
            lines.append(f"content-length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if req.method == "HEAD" else body))
        await writer.drain()
        return True


@contextlib.asynccontextmanager
async def running_gateway(
    config: str | bytes | dict[str, Any], base_dir: str | Path | None = None, **server_kw: Any
) -> AsyncIterator[Server]:
    """Serve `config` (YAML text, or a dict) with fastgw in this event loop on 127.0.0.1:<free port>. Relative
    paths in it (function code) are taken from `base_dir` (default: the working directory)."""
    if isinstance(config, dict):
        config.setdefault("logging", {}).setdefault("access_log", False)
        raw = orjson.dumps(config)
        source = "<test>.json"
    else:
        raw = config.encode() if isinstance(config, str) else config
        source = "<test>.yaml"
    loaded = load_config_bytes(raw, source, Path(base_dir) if base_dir is not None else None)
    server = Server(loaded, "127.0.0.1", 0, **server_kw)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(timeout=1.0)
