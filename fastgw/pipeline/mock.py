"""The `mock` integration: a fixed response, its head lines encoded once at load."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from fastgw.pipeline.exchange import Route
from fastgw.pipeline.head import encode_lines, gateway_head

if TYPE_CHECKING:
    from fastgw.config.schema import MockIntegration
    from fastgw.pipeline.exchange import Exchange


class MockRoute(Route):
    kind = "mock"
    reads_body = False  # answered at once: a body on its way is never read
    __slots__ = ("status", "lines", "body")

    def __init__(self, name: str, integ: MockIntegration, server_line: bytes) -> None:
        super().__init__(name)
        self.status = integ.status
        headers = {k.lower(): v for k, v in integ.headers.items()}
        if isinstance(integ.body, str):
            body = integ.body.encode()
            headers.setdefault("content-type", "text/plain; charset=utf-8")
        elif integ.body is None and "content-type" not in headers and integ.status in (204, 304):
            body = b""
        else:
            body = orjson.dumps(integ.body)
            headers.setdefault("content-type", "application/json")
        lines, has_server = encode_lines(headers.items())
        self.lines = lines + (b"" if has_server else server_line)
        self.body = body if integ.status not in (204, 304) else b""

    def start(self, ex: Exchange) -> None:
        ex.send(gateway_head(self.status, self.lines, b""), self.body)
