"""Response heads made in the gateway, and the Date header every response carries.

A head made in the gateway (a mock's, a plugin's, a function's, an error) is serialized by `gateway_head` and ended
by `fastgw.core.finish_head`, which also ends every proxied head the upstream leg's sink builds: framing and
Connection are written, and keep-alive is decided (`fastgw.core.keep_alive`), in one place for every response.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from email.utils import formatdate
from http import HTTPStatus

import orjson

from fastgw.core import finish_head
from fastgw.core.http import status_line  # a table lookup, the same on both twins

__all__ = ["DATE", "encode_lines", "error_response", "gateway_head", "json_body", "reason", "without_fields"]


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


def encode_lines(headers: Iterable[tuple[str, str]]) -> tuple[bytes, bool]:
    """Header lines for the wire (names as given, values UTF-8), and whether a Server header is among them."""
    parts = []
    has_server = False
    for name, value in headers:
        if not has_server and name.lower() == "server":
            has_server = True
        parts.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("utf-8")))
    return b"".join(parts), has_server


def gateway_head(status: int, lines: bytes, server_line: bytes) -> bytes:
    """The head of a response made in the gateway, before framing: status line, Date, `lines`, the gateway's
    Server line (empty when `lines` has one), the blank line. The route's filters see it as they see a proxied
    head; `finish_head` then frames it."""
    return b"".join((status_line(status), DATE.line, lines, server_line, b"\r\n"))


def without_fields(head: bytes, names: tuple[bytes, ...]) -> bytes:
    """`head` (status line to blank line) without its header lines named in `names` (lower-case): the fields the
    gateway writes itself into this response (`ExchangeState.reply_names`), as the upstream leg's sink drops them from a
    proxied head."""
    lower = head.lower()
    if not any(b"\n" + name + b":" in lower for name in names):
        return head
    lines = head[:-2].split(b"\r\n")
    kept = [lines[0], *(ln for ln in lines[1:] if ln.partition(b":")[0].strip().lower() not in names)]
    return b"\r\n".join(kept) + b"\r\n"


def error_response(status: int, message: str | None = None, *, server: bytes = b"") -> bytes:
    """A whole JSON error response that closes the connection, for a client that has no request to answer (a
    request that never arrived whole: 408)."""
    body = json_body(message or reason(status))
    head = gateway_head(status, b"content-type: application/json\r\n", server)
    return finish_head([head[:-2]], None, b"%d" % len(body), False, False) + body
