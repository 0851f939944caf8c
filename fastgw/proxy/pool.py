"""Upstreams, their targets, and a keep-alive connection pool per target."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from fastgw.config.schema import Upstream as UpstreamConfig

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange


class UpstreamConnection(Protocol):
    """What the pool knows of a connection (`fastgw.proxy.upstream.UpstreamConnection`)."""

    closed: bool
    idle_since: float
    transport: asyncio.Transport | None

    def close(self) -> None: ...
    def start(self, ex: Exchange, head: bytes) -> None: ...


class Target:
    """One `http://host:port` of an upstream, with its pool of idle keep-alive connections."""

    __slots__ = (
        "url",
        "host",
        "port",
        "host_header",
        "max_idle",
        "idle_timeout",
        "idle",
        "closed",
        "connect_timeout",
        "read_timeout",
        "send_timeout",
    )

    def __init__(self, url: str, config: UpstreamConfig) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        netloc = parts.netloc.rstrip("/")
        self.host_header = netloc.encode("latin-1")
        self.max_idle = config.pool.max_idle
        self.idle_timeout = config.pool.idle_timeout
        self.connect_timeout = config.connect_timeout
        self.read_timeout = config.read_timeout
        self.send_timeout = config.send_timeout
        # LIFO: the most recently used connection is the likeliest to still be open at the other end.
        self.idle: list[UpstreamConnection] = []
        self.closed = False

    def acquire(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            # Pooled connections always have a transport and no client; the other side may have closed it.
            if not conn.closed and not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
        return None

    def release(self, conn: UpstreamConnection, now: float) -> None:
        """Pool `conn`, which has just finished an exchange (or was just connected and is unused): it has a
        transport and no client."""
        if self.closed or len(self.idle) >= self.max_idle or conn.closed or conn.transport.is_closing():  # type: ignore[union-attr]
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A pooled connection was closed by the other side."""
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def expire(self, now: float) -> None:
        """Close connections idle for longer than `idle_timeout` (called by the server's tick)."""
        if not self.idle:
            return
        deadline = now - self.idle_timeout
        keep = []
        for conn in self.idle:
            if conn.idle_since < deadline:
                conn.close()
            else:
                keep.append(conn)
        self.idle[:] = keep

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


class Upstream:
    """A named set of targets; picks one per request, round-robin."""

    __slots__ = ("name", "config", "targets", "only", "_next")

    def __init__(self, name: str, config: UpstreamConfig) -> None:
        self.name = name
        self.config = config
        self.targets = [Target(url, config) for url in config.targets]
        self.only = self.targets[0] if len(self.targets) == 1 else None  # no choice to make per request
        self._next = 0

    def pick(self) -> Target:
        targets = self.targets
        i = self._next
        self._next = (i + 1) % len(targets)
        return targets[i]

    def expire(self, now: float) -> None:
        for t in self.targets:
            t.expire(now)

    def close(self) -> None:
        for t in self.targets:
            t.close()
