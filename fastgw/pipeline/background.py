"""A background exchange: the rest of a request that a plugin already answered, run again for a copy of it, whose
response goes through the route's filters into nowhere (a cache that answered with a stale entry refreshes it so,
as nginx's `proxy_cache_background_update` does with a subrequest). `Exchange.refresh` starts one; this module
holds what it stands on: the copy of the request and the leg that discards what would reach a client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastgw.core import Request

if TYPE_CHECKING:
    from fastgw.pipeline.leg import Peer


class Discard:
    """The destination of a background exchange (a `ClientLeg`): what would be written is counted, not kept."""

    __slots__ = ("state", "peer", "closed", "write_paused", "exchange", "transport", "written")

    def __init__(self, state: Any, peer: Peer) -> None:
        self.state = state
        self.peer = peer
        self.closed = False
        self.write_paused = False
        self.exchange: Any = None
        self.transport = None  # never a tunnel
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def abort(self) -> None:
        self.closed = True

    def request_done(self, req: Request) -> None:
        self.closed = True

    def continue_sent(self) -> None:
        pass  # a copy has its body whole

    def body_drained(self, req: Request) -> None:
        req.body = []
        req.buffered = 0

    def pause_reading_for(self, reason: int) -> None:
        pass  # no client to read from

    def resume_reading_for(self, reason: int) -> None:
        pass


def request_copy(client: Request) -> Request:
    """The request of a background exchange: a GET (a HEAD's answer could not be stored) of the client's target,
    with the client's headers and no body."""
    req = Request()
    req.method = "GET"
    req.method_b = b"GET"
    req.path = client.path
    req.query = client.query
    req.url = client.url
    req.headers = list(client.headers)
    req.host_raw = client.host_raw
    req.host = client.host
    req.conn_tokens = client.conn_tokens
    req.http10 = client.http10
    req.headers_done = req.complete = True
    return req
