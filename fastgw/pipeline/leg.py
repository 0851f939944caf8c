"""The client leg's vocabulary, shared by the connection (fastgw/server/protocol.py), the exchange and the
integrations: why reading from a client pauses, the legs' write buffer size, and who the peer is."""

from __future__ import annotations

# Why reading from the client is paused; reading resumes when no reason is left (see ClientLeg).
PAUSE_PIPELINE = 1  # a request is in flight and the next one has begun
PAUSE_BUFFER = 2  # request body buffered while the integration is not taking it yet
PAUSE_UPSTREAM_BUSY = 4  # the upstream is not taking the request body as fast as the client sends it

HIGH_WATER = 64 * 1024  # write buffer high-water mark of both legs (uvicorn's flow control uses the same)


class Peer:
    """Who is at the other end of a client connection: set once per connection."""

    __slots__ = ("ip", "ip_b", "trusted", "proto")

    def __init__(self, ip: str, trusted: bool = False, proto: bytes = b"http") -> None:
        self.ip = ip
        self.ip_b = ip.encode("latin-1")  # for X-Forwarded-For
        self.trusted = trusted  # a trusted proxy: its X-Forwarded-* headers are believed
        self.proto = proto  # the connection's scheme, X-Forwarded-Proto upstream (b"https" on a TLS listener)
