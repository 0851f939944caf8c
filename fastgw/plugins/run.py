"""Running the response-side phases: `header_filter` (on every response a route gives: made by the gateway, a
function, or proxied), `body_filter` (on responses made in the gateway) and `log` (after the response is out).
The request-side phases run in `fastgw/server/protocol.py`, where they can answer or go on to the integration."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastgw._pycore import status_line as make_status_line
from fastgw.plugins.base import Headers, ResponseHead

if TYPE_CHECKING:
    from fastgw.plugins.base import Context

log = logging.getLogger("fastgw.plugins")

# Set by the gateway from the framing it chooses; header_filter phases never see or change these.
FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "date"})
_FRAMING_B = frozenset(n.encode() for n in FRAMING)


class PluginFailed(Exception):
    """A phase raised: `name` is the plugin, the cause is chained."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def filter_headers(ctx: Context, status: int, headers: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]]]:
    """Run the route's header_filter phases over a response about to be sent. Raises PluginFailed."""
    head = ctx.response = ResponseHead(status, Headers([(k.lower(), v) for k, v in headers]))
    for fn, conf, _, name in ctx.chain.header_filter:
        try:
            fn(ctx, conf)
        except Exception as exc:
            raise PluginFailed(name) from exc
    return head.status, list(head.headers)


def filter_body(ctx: Context, body: bytes) -> bytes:
    """Run the body_filter phases over a whole response body made in the gateway. Raises PluginFailed."""
    head = ctx.response
    assert head is not None
    head.body = body
    for fn, conf, _, name in ctx.chain.body_filter:
        try:
            fn(ctx, conf)
        except Exception as exc:
            raise PluginFailed(name) from exc
    if not isinstance(head.body, bytes):
        raise PluginFailed(ctx.chain.body_filter[-1][3]) from TypeError("ctx.response.body must stay bytes")
    return head.body


class ProxiedHeaders(Headers):
    """The headers of a response head the upstream leg built, parsed only if a plugin needs more than adding.

    PERF: most response filters only add or set a header that is not there (a request id, CORS headers); that
    costs one search of the head's bytes and an append here, where parsing and rebuilding the head cost ~4 us."""

    __slots__ = ("_block", "_lower", "_framing")

    def __init__(self, block: bytes) -> None:
        self._items = []
        self._frozen = False
        self._block: bytes | None = block  # header lines, each with its CRLF, as the upstream leg wrote them
        self._lower: bytes | None = None
        self._framing: list[bytes] = []

    def _absent(self, key: bytes) -> bool:
        if self._lower is None:
            self._lower = b"\r\n" + self._block.lower()  # type: ignore[union-attr]
        return b"\r\n" + key + b":" not in self._lower

    def _parse(self) -> None:
        block, self._block, self._lower = self._block, None, None
        items = self._items
        for line in block.split(b"\r\n"):  # type: ignore[union-attr]
            if line:
                name, _, value = line.partition(b":")
                lname = name.lower()
                if lname in _FRAMING_B:
                    self._framing.append(line)
                else:
                    items.append((lname, value.lstrip()))

    def _key(self, name: str, value: str = "") -> bytes:
        key = super()._key(name, value)
        if key in _FRAMING_B:
            raise ValueError(f"{name!r} is set by the gateway from the response's framing")
        return key

    def set(self, name: str, value: str) -> None:
        if self._block is not None:
            key = self._key(name, value)
            if self._absent(key):
                self._block += b"%s: %s\r\n" % (key, value.encode("utf-8"))
                self._lower = None
                return
            self._parse()
        super().set(name, value)

    def add(self, name: str, value: str) -> None:
        if self._block is not None:
            self._block += b"%s: %s\r\n" % (self._key(name, value), value.encode("utf-8"))
            self._lower = None
            return
        super().add(name, value)

    # Anything but adding needs the lines parsed first.
    def get(self, name: str, default: str | None = None) -> str | None:
        self._parsed()
        return super().get(name, default)

    def get_all(self, name: str) -> list[str]:
        self._parsed()
        return super().get_all(name)

    def __contains__(self, name: object) -> bool:
        self._parsed()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        self._parsed()
        return super().__iter__()

    def __len__(self) -> int:
        self._parsed()
        return super().__len__()

    def remove(self, name: str) -> None:
        self._parsed()
        super().remove(name)

    def rename(self, old: str, new: str) -> None:
        self._parsed()
        super().rename(old, new)

    def raw(self) -> list[tuple[bytes, bytes]]:
        self._parsed()
        return self._items

    def _parsed(self) -> None:
        if self._block is not None:
            self._parse()

    def block(self) -> bytes:
        """The header lines to send, framing lines included."""
        if self._block is not None:
            return self._block
        parts = [b"%s: %s\r\n" % kv for kv in self._items]
        parts += [line + b"\r\n" for line in self._framing]
        return b"".join(parts)


def filter_proxied_head(ctx: Context, head: bytes) -> bytes:
    """header_filter over a response head the upstream leg has built (status line, header lines, CRLF CRLF).
    If a plugin does more than add headers, names are lower-cased on the way (framing lines stay as they were)."""
    end = head.index(b"\r\n")
    status_line = head[: end + 2]
    status = int(head[9:12])
    headers = ProxiedHeaders(head[end + 2 : -2])
    resp = ctx.response = ResponseHead(status, headers)
    for fn, conf, _, name in ctx.chain.header_filter:
        try:
            fn(ctx, conf)
        except Exception as exc:
            raise PluginFailed(name) from exc
    return b"".join((status_line if resp.status == status else make_status_line(resp.status), headers.block(), b"\r\n"))


def run_log(ctx: Context, status: int) -> None:
    """The log phases, after the response went out (scheduled off the request path). Failures are logged."""
    if ctx.response is None:
        ctx.response = ResponseHead(status, Headers())
    for fn, conf, _, name in ctx.chain.log:
        try:
            result = fn(ctx, conf)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(functools.partial(_log_task_done, name=name, ctx=ctx))
        except Exception:
            log.exception("plugin %s failed in its log phase (route %s)", name, ctx.route.name)


def _log_task_done(task: asyncio.Future[Any], name: str, ctx: Context) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("plugin %s failed in its log phase (route %s)", name, ctx.route.name, exc_info=task.exception())
