"""WebSockets on http routes with `websocket:` set: the upgrade goes to a target, and after its answer the two
connections are tunnelled byte for byte, both ways.

The request phases (auth first) run before the upgrade as on any request. The upgrade request goes on a new
upstream connection (never a pooled one: it will not come back to HTTP) with `Connection: Upgrade` and
`Upgrade: websocket`. Whatever the target answers (101, or a refusal such as 401 / 403) is passed to the client
as it is, and from then on the connection is a tunnel: each side's bytes go to the other, a side whose peer
reads slowly stops being read (backpressure), and the tunnel closes when either side closes or when nothing
passed for `idle_timeout` seconds (its own deadline timer, fastgw.pipeline.deadline). The tunnel takes the client
connection's place among the worker's connections, so shutdown closes it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fastgw.pipeline.deadline import Deadline
from fastgw.pipeline.leg import HIGH_WATER
from fastgw.proxy.route import HttpRoute

if TYPE_CHECKING:
    from fastgw.config.schema import HttpIntegration
    from fastgw.pipeline.exchange import Exchange
    from fastgw.proxy.pool import Target, Upstream

log = logging.getLogger("fastgw.proxy")

UPGRADE_LINES = b"connection: upgrade\r\nupgrade: websocket\r\n\r\n"
MAX_HEAD = 65536


def wants_websocket(ex: Exchange) -> bool:
    req = ex.req
    tokens = req.conn_tokens
    if req.method != "GET" or tokens is None or b"upgrade" not in tokens:
        return False
    return any(n == b"upgrade" and v.strip().lower() == b"websocket" for n, v in req.headers)


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


class _Side(asyncio.Protocol):
    """One leg of a tunnel: what it reads goes to the other leg's transport."""

    def __init__(self, tunnel: Tunnel, name: str) -> None:
        self.tunnel = tunnel
        self.name = name
        self.peer: _Side | None = None
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()  # the upstream leg, before the tunnel: the target's answer to the upgrade
        self.head_done: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        tunnel.last = tunnel.loop.time()
        done = self.head_done
        if done is not None:  # still the answer to the upgrade
            self.head += data
            if b"\r\n\r\n" in self.head or len(self.head) > MAX_HEAD:
                self.head_done = None
                if not done.done():
                    done.set_result(bytes(self.head))
            return
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)

    def eof_received(self) -> bool | None:
        self.tunnel.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        done = self.head_done
        if done is not None and not done.done():
            done.set_exception(ConnectionError(f"closed by the target{': ' + str(exc) if exc else ''}"))
        self.tunnel.close()

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.pause_reading()  # our peer reads slowly: stop reading what would go to it

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.resume_reading()


async def open_tunnel(ex: Exchange, target: Target, head: bytes, idle_timeout: float) -> None:
    """Send the upgrade to `target`; pass its answer to the client; then tunnel."""
    loop = ex.state.loop
    tunnel = Tunnel(ex, idle_timeout)
    up = tunnel.upstream
    up.head_done = loop.create_future()
    try:
        connect = loop.create_connection(
            lambda: up, target.host, target.port, ssl=target.ssl, server_hostname=target.server_hostname
        )
        await asyncio.wait_for(connect, target.connect_timeout)
    except asyncio.TimeoutError:
        ex.fail(504, "Endpoint request timed out", f"connect to {target.url} timed out (websocket)")
        return
    except OSError as exc:
        ex.fail(502, "Bad Gateway", f"connect to {target.url} failed (websocket): {exc.strerror or exc}")
        return
    assert up.transport is not None
    up.transport.write(head[:-2] + UPGRADE_LINES)
    try:
        answer = await asyncio.wait_for(asyncio.shield(up.head_done), target.head_timeout)
    except asyncio.TimeoutError:
        tunnel.close()
        ex.fail(504, "Endpoint request timed out", f"upstream {target.url} did not answer the websocket upgrade")
        return
    except ConnectionError as exc:
        tunnel.close()
        ex.fail(502, "Bad Gateway", f"upstream {target.url} on the websocket upgrade: {exc}")
        return
    if ex.gone:
        tunnel.close()
        return
    status = answer[9:12]
    req = ex.req
    req.status = int(status) if status.isdigit() else 0
    req.response_started = True
    tunnel.transport = ex.hand_over(tunnel.client, tunnel)
    tunnel.client.transport = tunnel.transport
    tunnel.transport.set_write_buffer_limits(high=HIGH_WATER)
    tunnel.transport.write(answer)  # the head, and any frame the target sent right after it
    tunnel.start()
    if req.status != 101:
        log.info("upstream %s refused the websocket upgrade with %d: passed on", target.url, req.status)


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
        target = self.upstream.only or self.upstream.pick(ex)
        if target is None:
            ex.fail(503, "Service Unavailable", f"upstream {self.upstream.name} has no target in rotation")
            return
        ex.state.loop.create_task(open_tunnel(ex, target, self.head_for(ex, target), self.idle_timeout))
