"""WebSockets on http routes with `websocket:` set: the upgrade goes to a target, and only after a valid
`101 Switching Protocols` are the two connections tunnelled byte for byte, both ways.

The request phases (auth first) run before the upgrade as on any request. The upgrade request goes on a new
upstream connection (never a pooled one: it will not come back to HTTP) with `Connection: Upgrade` and
`Upgrade: websocket`. The target's answer is parsed before anything of it reaches the client:

- a `101` with `Upgrade: websocket`, `Connection: upgrade` and the `Sec-WebSocket-Accept` that RFC 6455 derives
  from the client's `Sec-WebSocket-Key` makes the connection a tunnel: each side's bytes go to the other, a side
  whose peer reads slowly stops being read (backpressure), and the tunnel closes when either side closes or when
  nothing passed for `idle_timeout` seconds;
- any other answer (404, 426, 200, a 401 ...) is an ordinary response: it goes to the client as a response made in
  the gateway (its status, its end-to-end headers, its body, through the route's filters) and the client
  connection is then closed. Nothing the client sent after its upgrade request is read as anything but HTTP, and
  nothing of it reaches the target; closing (rather than parsing HTTP again) is the one unambiguous end for a
  client that asked to leave HTTP and may already be sending frames;
- a 101 that is not a valid answer to this upgrade (no or another accept key, no `Upgrade: websocket`), a
  malformed answer, or one over `MAX_ANSWER` bytes: 502, and the connection closes.

The decision and the handover are made in `data_received`, in the same call that completes the answer: the
bytes that follow it (frames after a 101, the rest of a refusal's body) can never arrive in between and be lost.
The tunnel takes the client connection's place among the worker's connections, so shutdown closes it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from fastgw.pipeline.deadline import Deadline
from fastgw.pipeline.leg import HIGH_WATER
from fastgw.proxy.route import HttpRoute

if TYPE_CHECKING:
    from fastgw.config.schema import HttpIntegration
    from fastgw.pipeline.exchange import Exchange
    from fastgw.proxy.pool import Target, Upstream

log = logging.getLogger("fastgw.proxy")

UPGRADE_LINES = b"connection: upgrade\r\nupgrade: websocket\r\n\r\n"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_ANSWER = 1024 * 1024  # the target's answer to an upgrade, head and body (a refusal is small)
# Not passed on from a refused upgrade's answer: hop-by-hop fields and the framing (the gateway frames its own),
# and Date (the gateway writes its own).
_NOT_PASSED = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                         "upgrade", "content-length", "date"})  # fmt: skip


def wants_websocket(ex: Exchange) -> bool:
    req = ex.req
    tokens = req.conn_tokens
    if req.method != "GET" or tokens is None or b"upgrade" not in tokens:
        return False
    return any(n == b"upgrade" and v.strip().lower() == b"websocket" for n, v in req.headers)


def accept_for(key: bytes) -> bytes:
    """The `Sec-WebSocket-Accept` a target must answer to `Sec-WebSocket-Key: key` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def client_key(ex: Exchange) -> bytes | None:
    """The request's one `Sec-WebSocket-Key`, when it is a valid one (base64 of 16 bytes); else None."""
    keys = [v for n, v in ex.req.headers if n == b"sec-websocket-key"]
    if len(keys) != 1:
        return None
    try:
        raw = base64.b64decode(keys[0], validate=True)
    except (binascii.Error, ValueError):
        return None
    return keys[0] if len(raw) == 16 else None


class Tunnel(Deadline):
    """Both legs of one WebSocket, after the upgrade. Stands in the worker's connections for the client's."""

    def __init__(self, ex: Exchange, idle_timeout: float) -> None:
        self.state = ex.state
        self.loop = ex.state.loop
        super().__init__(self.loop)
        self.idle_timeout = idle_timeout
        self.last = self.loop.time()
        self.client = _Side(self, "client")
        self.upstream = _Side(self, "upstream")
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.closed = False
        self.transport: asyncio.Transport | None = None  # the client's (what shutdown aborts)

    def start(self) -> None:
        """The tunnel is open: its idle timeout runs."""
        self.set_deadline(self.last + self.idle_timeout)

    # -- what the deadline timer and shutdown call -----------------------------------------------------------

    def check_deadline(self, now: float) -> None:
        if self.closed:
            return
        if now - self.last >= self.idle_timeout:
            log.info("websocket tunnel idle for %gs: closed", self.idle_timeout)
            self.close()
        else:
            self.set_deadline(self.last + self.idle_timeout)  # bytes passed since: the next check then

    def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.cancel_deadline()
        self.state.connections.discard(self)
        for side in (self.client, self.upstream):
            if side.transport is not None:
                side.transport.close()


class _Answer:
    """The target's answer to the upgrade, parsed (httptools callbacks)."""

    __slots__ = ("parser", "status", "headers", "body", "size", "headers_done", "complete", "framed")

    def __init__(self) -> None:
        self.parser = HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.complete = False
        self.framed = False  # a Content-Length or chunked body: it does not end with the connection

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value.strip()))  # names as the target wrote them: passed on so

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:
            self.headers = []  # an interim answer (100 Continue): the final one follows
            return
        self.headers_done = True
        self.framed = any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.headers)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.headers_done:
            self.complete = True

    def field(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name]

    def why_not_accepted(self, key: bytes) -> str | None:
        """Why this 101 is not a valid answer to the upgrade with `key` (RFC 6455 §4.1), or None."""
        upgrade = self.field(b"upgrade")
        if len(upgrade) != 1 or upgrade[0].lower() != b"websocket":
            return "no Upgrade: websocket"
        tokens = {t.strip().lower() for v in self.field(b"connection") for t in v.split(b",")}
        if b"upgrade" not in tokens:
            return "no Connection: upgrade"
        accept = self.field(b"sec-websocket-accept")
        if accept != [accept_for(key)]:
            return "its Sec-WebSocket-Accept does not match the client's key"
        return None


class _Side(asyncio.Protocol):
    """One leg of a tunnel: what it reads goes to the other leg's transport. The upstream leg first reads the
    target's answer to the upgrade (`answer`), and decides what becomes of the exchange (`_answered`)."""

    def __init__(self, tunnel: Tunnel, name: str) -> None:
        self.tunnel = tunnel
        self.name = name
        self.peer: _Side | None = None
        self.transport: asyncio.Transport | None = None
        self.answer: _Answer | None = None  # the upstream leg, before the tunnel
        self.ex: Exchange | None = None
        self.key = b""
        self.settled: asyncio.Future[None] | None = None  # resolved once the answer was dealt with

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        tunnel.last = tunnel.loop.time()
        answer = self.answer
        if answer is not None:  # still the answer to the upgrade
            self._read_answer(answer, data)
            return
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)

    def eof_received(self) -> bool | None:
        if self.answer is not None:
            self._answer_ended("closed the connection")
            return None
        self.tunnel.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None:
            self._answer_ended(f"closed the connection{': ' + str(exc) if exc else ''}")
        self.tunnel.close()

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.pause_reading()  # our peer reads slowly: stop reading what would go to it

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.resume_reading()

    # -- the answer to the upgrade (the upstream leg) ------------------------------------------------------------

    def _read_answer(self, answer: _Answer, data: bytes) -> None:
        answer.size += len(data)
        try:
            answer.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            # httptools stops after a 101 with an Upgrade field: what follows is the first frames.
            self._switch(answer, data[int(exc.args[0]) :])
            return
        except HttpParserError as exc:
            self._invalid(f"answered the websocket upgrade with an invalid response: {exc}")
            return
        if answer.complete:
            if answer.status == 101:
                self._invalid("answered 101 without Upgrade: websocket")
            else:
                self._refused(answer)
        elif answer.size > MAX_ANSWER:
            self._invalid(f"answered the websocket upgrade with over {MAX_ANSWER} bytes and no 101")

    def _answer_ended(self, what: str) -> None:
        answer = self.answer
        if answer is not None and answer.headers_done and not answer.framed and answer.status != 101:
            self._refused(answer)  # a body delimited by the connection's end
        else:
            self._invalid(f"{what} before answering the websocket upgrade")

    def _switch(self, answer: _Answer, rest: bytes) -> None:
        """A 101: a valid one makes the tunnel; any other is refused with 502."""
        why = answer.why_not_accepted(self.key)
        if why is not None:
            self._invalid(f"answered 101 to the websocket upgrade, but {why}")
            return
        ex, tunnel = self._settle()
        if ex is None:
            return
        if ex.gone:
            tunnel.close()
            return
        ex.status = 101
        ex.response_started = True
        head = b"HTTP/1.1 101 Switching Protocols\r\n" + b"".join(
            b"%s: %s\r\n" % (n, v) for n, v in answer.headers
        ) + b"\r\n"  # fmt: skip
        tunnel.transport = transport = ex.hand_over(tunnel.client, tunnel)
        tunnel.client.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        transport.write(head + rest)  # the head, and any frame the target sent right after it
        tunnel.start()

    def _refused(self, answer: _Answer) -> None:
        """Not a 101: an ordinary response, and the client connection closes after it."""
        ex, tunnel = self._settle()
        tunnel.close()  # the target's connection is not kept (it was made for the upgrade)
        if ex is None or ex.gone:
            return
        log.info("upstream refused the websocket upgrade on route %s with %d: passed on, connection closed",
                 ex.route.name if ex.route is not None else "-", answer.status)  # fmt: skip
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in answer.headers]
        headers = [(n, v) for n, v in headers if n.lower() not in _NOT_PASSED]
        ex.req.keep_alive = False
        ex.respond(answer.status, headers, b"".join(answer.body))

    def _invalid(self, reason: str) -> None:
        ex, tunnel = self._settle()
        tunnel.close()
        if ex is not None:
            ex.req.keep_alive = False
            ex.fail(502, "Bad Gateway", f"upstream {reason}")

    def _settle(self) -> tuple[Exchange | None, Tunnel]:
        """The answer is dealt with (once): the exchange it was for, if it still waits for it."""
        ex, self.ex, self.answer = self.ex, None, None
        settled = self.settled
        if settled is not None and not settled.done():
            settled.set_result(None)
        return ex, self.tunnel


async def open_tunnel(ex: Exchange, target: Target, head: bytes, key: bytes, idle_timeout: float) -> None:
    """Send the upgrade to `target`; its answer decides (`_Side._read_answer`): a tunnel, or a response."""
    loop = ex.state.loop
    tunnel = Tunnel(ex, idle_timeout)
    up = tunnel.upstream
    up.answer, up.ex, up.key = _Answer(), ex, key
    settled = up.settled = loop.create_future()
    try:
        connect = loop.create_connection(
            lambda: up, target.host, target.port, ssl=target.ssl, server_hostname=target.server_hostname
        )
        await asyncio.wait_for(connect, target.connect_timeout)
    except asyncio.TimeoutError:
        up.answer = up.ex = None
        ex.fail(504, "Endpoint request timed out", f"connect to {target.url} timed out (websocket)")
        return
    except OSError as exc:
        up.answer = up.ex = None
        ex.fail(502, "Bad Gateway", f"connect to {target.url} failed (websocket): {exc.strerror or exc}")
        return
    if settled.done():
        return  # (closed by the target at once: dealt with already)
    assert up.transport is not None
    up.transport.write(head[:-2] + UPGRADE_LINES)
    try:
        await asyncio.wait_for(asyncio.shield(settled), target.head_timeout)
    except asyncio.TimeoutError:
        if up.ex is None:
            return
        up.answer = up.ex = None
        tunnel.close()
        ex.req.keep_alive = False
        ex.fail(504, "Endpoint request timed out", f"upstream {target.url} did not answer the websocket upgrade")


class WebSocketRoute(HttpRoute):
    """An http route with `websocket:` set: an upgrade request becomes a tunnel (fastgw.proxy.websocket); any
    other request is proxied as on any http route. A subclass, so routes without WebSockets pay nothing."""

    __slots__ = ("idle_timeout",)

    def __init__(self, name: str, integ: HttpIntegration, upstream: Upstream, server_line: bytes, via: bool,
                 idle_timeout: float) -> None:  # fmt: skip
        super().__init__(name, integ, upstream, server_line, via)
        self.idle_timeout = idle_timeout

    def start(self, ex: Exchange) -> None:
        if not wants_websocket(ex):
            super().start(ex)
            return
        key = client_key(ex)
        if key is None:
            # Without one valid key the target's 101 cannot be checked: no tunnel can be opened safely.
            ex.req.keep_alive = False
            ex.fail(400, "Bad Request", "websocket upgrade without one valid Sec-WebSocket-Key")
            return
        target = self.upstream.only or self.upstream.pick(ex)
        if target is None:
            ex.fail(503, "Service Unavailable", f"upstream {self.upstream.name} has no target in rotation")
            return
        ex.state.loop.create_task(open_tunnel(ex, target, self.head_for(ex, target), key, self.idle_timeout))
