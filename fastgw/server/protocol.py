"""The client leg: one asyncio Protocol per client connection, parsing HTTP/1.1 with httptools.

Connection concerns only: the parser's callbacks go to a `RequestSink` (in the compiled core), which records and
validates every request into `queue`; limits and deadlines; requests answered in order (pipelining: while one is
in flight, reading pauses and the next ones wait in `queue`); flow control of this transport. Work on a request
starts after `feed_data` returns, so a request found malformed anywhere in the bytes received so far never
reaches an integration: then `fastgw.pipeline.dispatch` routes it and its `Exchange` owns it until it is done.

The per-request path (`data_received`, `_maybe_start`, `request_done`) is the core's `ClientConn`
(`fastgw/core/conn.py`, compiled in `conn.pyx`), which `ClientProtocol` is built on: what it calls above the core
reaches it through the protocol (its methods, and `dispatch`, `routed`, `refuse` and `Exchange` stored on it at
construction).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import struct
import termios
from collections import deque
from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpRequestParser

from fastgw.core import ClientConn, Reject, Request, RequestSink
from fastgw.core.conn import DEADLINE_BODY, DEADLINE_HEADER, DEADLINE_IDLE, DEADLINE_NONE, DEADLINE_SEND
from fastgw.pipeline.deadline import Deadline
from fastgw.pipeline.dispatch import dispatch, refuse, routed
from fastgw.pipeline.exchange import Exchange
from fastgw.pipeline.head import error_response
from fastgw.pipeline.leg import HIGH_WATER, PAUSE_BUFFER, Peer

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Worker

log = logging.getLogger("fastgw.server")

# The kernel's count of bytes sent on a socket and not yet taken (acknowledged) by the peer (Linux; None elsewhere).
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)


class ClientProtocol(ClientConn, Deadline, asyncio.Protocol):
    """A client connection. Its deadline (fastgw.pipeline.deadline) is one of: the request head's
    (`header_timeout`, 408), the idle keep-alive wait's (`keepalive_timeout`, closed), while a request body is on
    its way, the wait for its next bytes (`body_timeout`, 408), or, while the client is not taking what was written
    to it (its transport's buffer over the high-water mark: writing paused), the wait for it to take any
    (`send_timeout`, cut; it stands before the others, which resume_writing sets again)."""

    # (The fields the per-request path reads are the core's: fastgw.core.conn.ClientConn.)
    __slots__ = ("transport", "write", "send_left")

    def __init__(self, state: Worker) -> None:
        self.state = state
        Deadline.__init__(self, state.loop)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        limits = self.limits = state.gateway.limits
        self.queue: deque[Request] = deque()
        # The parser's callbacks go to the sink (compiled): it records and validates every request into `queue`.
        self.sink = RequestSink(
            self,
            self.queue,
            limits.max_url_length,
            limits.max_header_size,
            limits.max_headers,
            limits.max_body_size,
            HIGH_WATER,
            max_field_size=limits.max_header_field_size,
        )
        self.parser = self.sink.parser = HttpRequestParser(self.sink)
        self.active = False
        self.closed = False
        self.broken = False
        self.write_paused = False
        self._paused = 0
        self._starting = False
        self.deadline_kind = DEADLINE_NONE
        self.peer = Peer("")
        self.exchange: Exchange | None = None  # the exchange of the request in flight
        self.send_left = 0  # bytes the client had still to take when the send deadline was last (re)armed
        # What the core's per-request path calls above it (fastgw.core.conn.ClientConn): the pipeline's.
        self.dispatch = dispatch
        self.routed = routed
        self.refuse = refuse
        self.new_exchange = Exchange

    # -- asyncio.Protocol -------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.write = self.transport.write  # PERF: what exchanges write to, without a method of ours in between
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        peer = transport.get_extra_info("peername")
        ip = peer[0] if isinstance(peer, tuple) else ""
        tls = transport.get_extra_info("sslcontext") is not None  # the connection of a TLS listener, handshake done
        self.peer = Peer(ip, self.state.gateway.is_trusted(ip), b"https" if tls else b"http")
        self.state.connections.add(self)
        self._header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.cancel_deadline()
        self.state.connections.discard(self)
        ex = self.exchange
        if ex is not None:
            self.exchange = None
            ex.client_gone()
        self.queue.clear()
        self.sink.parser = None  # break the parser <-> sink cycle

    def pause_writing(self) -> None:
        self.write_paused = True
        # The client has send_timeout to take any of what it was sent (nginx's send_timeout).
        self.deadline_kind = DEADLINE_SEND
        self.send_left = self._unsent()
        self.set_deadline(self.loop.time() + self.limits.send_timeout)
        if self.exchange is not None:
            self.exchange.client_slow()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.deadline_kind == DEADLINE_SEND:
            self._after_send_wait()
        if self.exchange is not None:
            self.exchange.client_ready()

    def buffer_full(self) -> None:
        """Called by the sink: a request body is buffering faster than the integration takes it."""
        self.pause_reading_for(PAUSE_BUFFER)

    # -- requests, in order (the per-request path is the core's: fastgw.core.conn.ClientConn) --------------------

    def _dispatch_failed(self, req: Request, exc: Exception) -> None:
        """Routing `req` or starting its exchange raised: logged, and the request answered 500 (by its exchange if it
        has one)."""
        log.error("internal error while dispatching %s %r", req.method, req.url, exc_info=exc)
        ex = self.exchange
        if ex is not None and ex.req is req:
            ex.fail(500, "Internal server error", "internal error (logged above)")
        elif self.queue and self.queue[0] is req:  # (not answered: request_done pops it)
            refuse(self, self.state.gateway, req, 500, "Internal server error")

    # -- the exchange's view of this connection (fastgw.pipeline.exchange.ClientLeg) ------------------------

    def abort(self) -> None:
        self.transport.abort()

    def continue_sent(self) -> None:
        """100 Continue went out: the client now owes its body, and `body_timeout` bounds it from here, not from
        the dispatch (the time the gateway spent before asking, an access phase or a cache lock, is not the
        client's)."""
        if self.active and not self.closed:
            self._body_deadline_starts()

    def body_drained(self, req: Request) -> None:
        req.body = []
        req.buffered = 0
        self.resume_reading_for(PAUSE_BUFFER)

    def pause_reading_for(self, reason: int) -> None:
        if not self._paused and not self.closed:
            self.transport.pause_reading()
        self._paused |= reason

    def resume_reading_for(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and not self.closed and not self.broken:
                self.transport.resume_reading()

    # -- errors, timeouts, shutdown ---------------------------------------------------------------------------

    def _parse_error(self, exc: HttpParserError) -> None:
        cause = exc.__context__
        if isinstance(cause, Reject):
            status, message = cause.status, cause.message
        elif cause is not None and not isinstance(cause, HttpParserError):
            log.error("internal error while parsing a request", exc_info=cause)
            status, message = 500, "Internal server error"
        else:
            status, message = 400, "Bad Request"
            log.debug("malformed request from %s: %s", self.peer.ip, exc)
        self.broken = True
        self.transport.pause_reading()
        req = self.sink.parsing
        if req is None:
            req = Request()
            self.queue.append(req)
        req.error = (status, message)
        req.keep_alive = False
        ex = self.exchange
        if self.active and ex is not None and ex.req is req:
            # Broken while its body was already streaming to the integration.
            ex.request_broken(status, message)

    def _upgrade(self, data: bytes, offset: int) -> None:
        """httptools stops at a request asking for an Upgrade (h2c, websocket). The gateway does not switch
        protocols: a body-less request is served as plain HTTP/1.1 (the Upgrade headers are hop-by-hop and
        dropped), and parsing goes on with a fresh parser after it."""
        # httptools has already reported the message complete (without a body) when it stops here.
        req = self.sink.parsing or (self.queue[-1] if self.queue else None)
        self.parser = self.sink.parser = HttpRequestParser(self.sink)
        if req is None or req.method_b == b"CONNECT" or req.chunked or req.content_length:
            if req is not None:
                req.error = (405, "Method Not Allowed") if req.method_b == b"CONNECT" else (400, "Bad Request")
                req.keep_alive = False
            self.broken = True
            self.transport.pause_reading()
            return
        if not req.complete:
            self.sink.on_message_complete()
        rest = data[offset:]
        if rest:
            self.data_received(rest)

    def _header_deadline(self) -> None:
        """From now on, the next request has `header_timeout` to arrive whole (or it gets a 408)."""
        if self.write_paused:
            return  # the send deadline stands; resume_writing sets this one
        self.deadline_kind = DEADLINE_HEADER
        self.set_deadline(self.loop.time() + self.limits.header_timeout)

    def check_deadline(self, now: float) -> None:
        """The deadline passed (`now` >= it): what it bounded decides."""
        if self.deadline_kind == DEADLINE_SEND:
            # (Before `closed`: a connection closed gracefully still waits for the client to take what is left.)
            self._send_deadline(now)
            return
        if self.closed:
            return
        if self.active:
            # NOTE: a request in flight is bounded by its integration's timeouts, and its body by body_timeout.
            if self.deadline_kind == DEADLINE_BODY:
                self._body_deadline(now)
            return
        if self.deadline_kind == DEADLINE_HEADER:
            self.broken = True
            self.transport.write(error_response(408, "Request Timeout", server=self.state.gateway.server_line))
        self.close()

    def _body_deadline_starts(self) -> None:
        """A request whose body is on its way goes in: the client has `body_timeout` to send each next part."""
        if self.write_paused:
            return  # the send deadline stands; resume_writing sets this one
        self.deadline_kind = DEADLINE_BODY
        self.set_deadline(self.loop.time() + self.limits.body_timeout)

    def _body_deadline(self, now: float) -> None:
        ex = self.exchange
        if ex is None or ex.req.complete:
            self.deadline_kind = DEADLINE_NONE  # the body is whole: nothing of the client's to wait for
            return
        timeout = self.limits.body_timeout
        if self._paused:
            # Not reading is the gateway's doing (the integration takes the body slower): the client is not idle.
            self.set_deadline(now + timeout)
            return
        # The client stopped sending its body. Its fault, not the target's: the upstream leg is let go without a
        # word to the target's health, breaker or metrics, and the client gets 408 and a closed connection.
        self.deadline_kind = DEADLINE_NONE
        self.broken = True
        self.transport.pause_reading()
        ex.req.keep_alive = False
        up = ex.body_sink
        if up is not None:
            ex.body_sink = None
            up.abandon()
        ex.fail(408, "Request Timeout", f"the client sent no request body bytes for {timeout:g}s")
        self.close()

    def _after_send_wait(self) -> None:
        """The client takes what it is sent again: the deadline of what the connection waits for now, whole."""
        ex = self.exchange
        if self.active:
            req = ex.req if ex is not None else None
            if req is not None and not req.complete:
                self._body_deadline_starts()
            else:
                self.deadline_kind = DEADLINE_NONE
                self.deadline = 0.0
        elif self.queue:
            self._header_deadline()
        else:
            self.deadline_kind = DEADLINE_IDLE
            self.set_deadline(self.loop.time() + self.limits.keepalive_timeout)

    def _unsent(self) -> int:
        """Bytes written to the client that it has not taken: in the transport's buffer and, where the kernel
        tells, in the socket's send queue (which can hold megabytes a reader drains before the buffer moves)."""
        left = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if _OUTQ is not None and sock is not None:
            with contextlib.suppress(OSError, ValueError):  # (a socket closed meanwhile: the buffer tells enough)
                left += struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
        return left

    def _send_deadline(self, now: float) -> None:
        if self.transport.get_protocol() is not self:
            return  # a tunnel now (Exchange.hand_over): its own deadline bounds it
        timeout = self.limits.send_timeout
        left = self._unsent()
        if left < self.send_left:  # it took some since: a slow reader, not a stalled one
            self.send_left = left
            self.set_deadline(now + timeout)
            return
        # The client took no response bytes for send_timeout. Its doing, not the target's: the upstream leg is let
        # go without a word to the target's health, breaker or metrics, and the connection is cut (a graceful close
        # would wait for the client to read what is buffered, which it does not).
        self.deadline_kind = DEADLINE_NONE
        self.broken = True
        ex = self.exchange
        if ex is not None:
            req = ex.req
            route = ex.route.name if ex.route is not None else "-"
            log.warning("%s %s route=%s: client took no response bytes for %gs, connection cut", req.method,
                        req.path, route, timeout)  # fmt: skip
            up = ex.body_sink
            if up is not None:
                ex.body_sink = None
                up.abandon()
        self.transport.abort()

    def shutdown(self) -> None:
        """Graceful stop: close now if idle; a request in flight finishes and its response says close."""
        if not self.active and not self.queue:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.state.connections.discard(self)
            if self.deadline_kind != DEADLINE_SEND and self.transport.get_write_buffer_size():
                # A graceful close waits for the client to take what is still buffered. Past the high-water mark
                # pause_writing bounded that wait already; below it nothing did, and a client that never reads
                # would hold the connection for ever: send_timeout bounds it too (_send_deadline cuts it).
                self.deadline_kind = DEADLINE_SEND
                self.send_left = self._unsent()
                self.set_deadline(self.loop.time() + self.limits.send_timeout)
            self.transport.close()
