"""HTTP/1.1 building blocks: status lines, the Date header, gateway-made responses, path normalization."""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

import orjson

# Precomputed status lines; a status unknown to HTTPStatus still gets a valid line.
STATUS_LINES: dict[int, bytes] = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("latin-1") for s in HTTPStatus}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = STATUS_LINES[status] = f"HTTP/1.1 {status} Unknown\r\n".encode("latin-1")
    return line


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

# Hop-by-hop headers (RFC 9110 7.6.1) and the proxy ones: never forwarded in either direction. The framing headers
# (content-length, transfer-encoding) are dropped too and written again by whoever frames the message.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


def connection_tokens(value: bytes) -> set[bytes]:
    """Header names listed in a Connection header (they are hop-by-hop too)."""
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


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


# ----------------------------------------------------------------------------------------------------------------
# Path normalization: done once, before routing, and the result is what goes upstream, so the gateway and the
# service can never disagree about which path was asked for (no `/public/../admin` past a route's plugins).

_HEX = frozenset("0123456789abcdefABCDEF")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def normalize_path(raw: bytes) -> str | None:
    """RFC 3986 normalization of an origin-form path; None when it must be refused (answer 400).

    Percent-encoded unreserved characters are decoded (so `%2e%2e` is `..`), other escapes kept with upper-case
    hex (`%2F` stays inside its segment), empty segments merged, `.` and `..` resolved; `..` above the root, a
    broken escape or an encoded NUL is refused.
    """
    # PERF: the common path has nothing to normalize; three substring scans decide it.
    if b"%" not in raw and b"/." not in raw and b"//" not in raw:
        return raw.decode("latin-1")
    s = raw.decode("latin-1")
    if "%" in s:
        pieces = s.split("%")
        out = [pieces[0]]
        for piece in pieces[1:]:
            if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
                return None
            code = int(piece[:2], 16)
            if code == 0:
                return None
            ch = chr(code)
            out.append((ch if ch in _UNRESERVED else "%" + piece[:2].upper()) + piece[2:])
        s = "".join(out)
    raw_segs = s.split("/")
    segs: list[str] = []
    for seg in raw_segs[1:]:
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if not segs:
                return None
            segs.pop()
            continue
        segs.append(seg)
    path = "/" + "/".join(segs)
    if segs and raw_segs[-1] in ("", ".", ".."):
        path += "/"
    return path
