"""The access log: one line per answered request, JSON (orjson) or text, to stdout or a file.

Off the request path: `__call__` (from `Exchange.done`) only takes the values it needs into a tuple in a list; the
server's tick (4 times a second), a full buffer, a SIGUSR1 or shutdown turns them into lines and writes them in one
go. A file is reopened on SIGUSR1, after logrotate moved it.

The fields, in the spirit of AWS's `$context` variables: time, request_id, client, method, host, path, route, api,
stage, status, request_bytes, duration_ms, consumer, user_agent, trace_id, and cache_status / rate_limit when a
plugin publishes them in `ctx.vars` under those names. NOTE: bytes sent, upstream latency and the upstream target
are not known at `done()` yet (the http integration in fastgw/proxy/ does not record them); they are left out
rather than logged as zeros.
"""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange

_FLUSH_AT = 512  # entries held before the next tick: a burst between ticks stays bounded

FIELDS = (
    "time", "request_id", "client", "method", "host", "path", "route", "api", "stage", "status", "request_bytes",
    "duration_ms", "consumer", "user_agent", "trace_id", "cache_status", "rate_limit",
)  # fmt: skip
_DROP_WHEN_NONE = frozenset(("request_id", "api", "stage", "consumer", "cache_status", "rate_limit", "trace_id"))


def trace_id_of(traceparent: bytes | None) -> str | None:
    """The trace id of a W3C traceparent (`00-<32 hex>-<16 hex>-<2 hex>`), or None when it is not one."""
    if traceparent is None or len(traceparent) < 55 or traceparent[2:3] != b"-" or traceparent[35:36] != b"-":
        return None
    tid = traceparent[3:35]
    try:
        if int(tid, 16) == 0:
            return None
    except ValueError:
        return None
    return tid.decode("ascii").lower()


class AccessLog:
    """Collects entries in memory; `flush` (the server's tick) formats and writes them."""

    def __init__(self, stream: IO[bytes] | None = None, *, format: str = "json", path: str | None = None) -> None:
        self.path = path
        self.format = format
        self._own = False
        if stream is not None:
            self.stream = stream
        elif path is not None:
            self.stream = open(path, "ab")  # noqa: SIM115  # kept open, closed by reopen/close
            self._own = True
        else:
            self.stream = sys.stdout.buffer
        self._buf: list[tuple[Any, ...]] = []
        self._second = -1
        self._stamp = ""
        self._gw: Any = None
        self._where: dict[str, tuple[str | None, str | None]] = {}

    def __call__(self, ex: Exchange) -> None:
        """Called by the exchange once its response is complete."""
        req = ex.req
        route = ex.route
        ua = tp = None
        for name, value in req.headers:
            if name == b"user-agent":
                ua = value
            elif name == b"traceparent":
                tp = value
        ctx = ex.ctx
        rid = consumer = cache = limit = None
        if ctx is not None:
            # What the route's plugins found out: the request id, who the client is, the cache, the limiter.
            v = ctx.vars
            rid = v.get("request_id")
            cache = v.get("cache_status")
            limit = v.get("rate_limit")
            if ctx.consumer is not None:
                consumer = ctx.consumer.name
            tp = v.get("traceparent", tp)
        self._buf.append(
            (
                time.time(), rid, ex.peer.ip, req.method, req.host, req.path or req.url.decode("latin-1")[:256],
                route, ex.gw, req.status, req.body_size, time.perf_counter() - req.t0 if req.t0 else 0.0, consumer,
                ua, tp, cache, limit,
            )
        )  # fmt: skip
        if len(self._buf) >= _FLUSH_AT:
            self.flush()

    def _time(self, now: float) -> str:
        sec = int(now)
        if sec != self._second:
            self._second = sec
            self._stamp = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._stamp

    def _api_stage(self, gw: Any, route: Any) -> tuple[str | None, str | None]:
        if route is None:
            return None, None
        if gw is not self._gw:  # a reload: the route names' API and stage, once per gateway
            self._gw = gw
            entries = getattr(gw, "entries", ())
            self._where = {e.label: (e.api, e.stage) for e in entries}
        return self._where.get(route.name, (None, None))

    def entry(self, raw: tuple[Any, ...]) -> dict[str, Any]:
        now, rid, ip, method, host, path, route, gw, status, size, dt, consumer, ua, tp, cache, limit = raw
        api, stage = self._api_stage(gw, route)
        out = {
            "time": self._time(now),
            "request_id": rid,
            "client": ip,
            "method": method,
            "host": host,
            "path": path,
            "route": route.name if route is not None else None,
            "api": api,
            "stage": stage,
            "status": status,
            "request_bytes": size,
            "duration_ms": round(dt * 1000, 3),
            "consumer": consumer,
            "user_agent": ua.decode("latin-1") if ua is not None else None,
            "trace_id": trace_id_of(tp if isinstance(tp, bytes) else tp.encode() if tp else None),
            "cache_status": cache,
            "rate_limit": limit,
        }
        return {k: v for k, v in out.items() if v is not None or k not in _DROP_WHEN_NONE}

    def line(self, e: dict[str, Any]) -> bytes:
        if self.format == "json":
            return orjson.dumps(e) + b"\n"
        # Text: the combined log format's order, then what it has no column for as key=value.
        text = (
            f'{e["client"] or "-"} - {e.get("consumer") or "-"} [{e["time"]}] "{e["method"]} {e["path"]}" '
            f'{e["status"]} {e["request_bytes"]} {e["duration_ms"]}ms "{e["user_agent"] or "-"}" '
            f"host={e['host'] or '-'} route={e['route'] or '-'} request_id={e.get('request_id') or '-'} "
            f"trace_id={e.get('trace_id') or '-'}"
        )
        extra = "".join(f" {k}={e[k]}" for k in ("api", "stage", "cache_status", "rate_limit") if e.get(k))
        return (text + extra + "\n").encode("utf-8", "replace")

    def flush(self) -> None:
        if not self._buf:
            return
        raw, self._buf = self._buf, []
        data = b"".join(self.line(self.entry(r)) for r in raw)
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stdout or a full disk must not take the gateway down
            pass

    def reopen(self) -> None:
        """SIGUSR1: what is buffered goes to the old file, then the path is opened again (logrotate moved it)."""
        self.flush()
        if self.path is None or not self._own:
            return
        old = self.stream
        try:
            self.stream = open(self.path, "ab")  # noqa: SIM115
        except OSError:
            return  # keep writing to the old one rather than lose lines
        with contextlib.suppress(OSError):
            old.close()

    def close(self) -> None:
        self.flush()
        if self._own:
            with contextlib.suppress(OSError):
                self.stream.close()
