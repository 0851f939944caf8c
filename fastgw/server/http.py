"""HTTP/1.1 building blocks: the Date header and responses made by the gateway itself.

Status lines, hop-by-hop rules and path normalization are per-byte work and live in the core (`fastgw.core`,
compiled); they are re-exported here for the modules that build responses.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

import orjson

from fastgw._pycore import HOP_BY_HOP, connection_tokens, status_line
from fastgw.core import normalize_path

__all__ = [
    "DATE",
    "HOP_BY_HOP",
    "connection_tokens",
    "error_response",
    "normalize_path",
    "reason",
    "simple_response",
    "status_line",
]


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class DateHeader:
    """`date: ...\\r\\n`, rebuilt at most once a second (the server's tick calls `refresh`)."""

    __slots__ = ("line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self.line = b""
        self.refresh()

    def refresh(self) -> None:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self.line = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"


DATE = DateHeader()


def json_body(message: str) -> bytes:
    return orjson.dumps({"message": message})


def simple_response(
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    *,
    server: bytes = b"",
    keep_alive: bool = True,
    extra: bytes = b"",
    head_only: bool = False,
) -> bytes:
    """A complete response made by the gateway itself (errors, mocks): one buffer, one write."""
    parts = [
        status_line(status),
        DATE.line,
        server,
        b"content-type: ",
        content_type,
        b"\r\ncontent-length: ",
        str(len(body)).encode(),
        b"\r\n",
        extra,
    ]
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head_only:
        parts.append(body)
    return b"".join(parts)


def error_response(status: int, message: str | None = None, **kw: object) -> bytes:
    return simple_response(status, json_body(message or reason(status)), **kw)  # type: ignore[arg-type]
