"""JSON access log: one line per answered request, buffered and written off the request path."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange

_FLUSH_AT = 64 * 1024


class AccessLog:
    """Collects lines in memory; the server's tick (4 times a second) or a full buffer writes them out."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        self._buf: list[bytes] = []
        self._size = 0
        self._second = -1
        self._stamp = ""

    def _time(self) -> str:
        now = time.time()
        sec = int(now)
        if sec != self._second:
            self._second = sec
            self._stamp = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._stamp

    def __call__(self, ex: Exchange) -> None:
        """Called by the exchange once its response is complete."""
        req = ex.req
        entry = {
            "time": self._time(),
            "client": ex.peer.ip,
            "method": req.method,
            "path": req.path or req.url.decode("latin-1")[:256],
            "status": req.status,
            "duration_ms": round((time.perf_counter() - req.t0) * 1000, 3) if req.t0 else 0.0,
            "route": ex.route.name if ex.route is not None else None,
            "request_bytes": req.body_size,
        }
        ctx = ex.ctx
        if ctx is not None:
            # What the route's plugins found out: the request id (request-id), who the client is (auth plugins).
            rid = ctx.vars.get("request_id")
            if rid is not None:
                entry["request_id"] = rid
            if ctx.consumer is not None:
                entry["consumer"] = ctx.consumer.name
        line = orjson.dumps(entry) + b"\n"
        self._buf.append(line)
        self._size += len(line)
        if self._size >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stdout must not take the gateway down
            pass
