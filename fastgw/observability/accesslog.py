"""The access log: one line per answered request, JSON (orjson) or text, to stdout or a file.

Off the request path: the compiled `Observer` (from `Exchange.done`, see metrics.observer) appends the exchange and
one clock reading to the log's `LogLines` (fastgw.core), nothing more; the server's tick (4 times a second), a full
buffer, a SIGUSR1 or shutdown turns them into lines (`LogLines.json`, in the compiled core) and writes them in one
go. A file is reopened on SIGUSR1, after logrotate moved it.

The fields, in the spirit of AWS's `$context` variables: time, request_id, client, method, host, path, route, api,
stage, status, request_bytes, response_bytes, duration_ms, upstream (`host:port` of the target, or
`function:NAME`), upstream_ms (from the request sent to the response head; a function's invocation), consumer,
user_agent, trace_id, and cache_status / rate_limit when a plugin publishes them in `ctx.vars` under those names.
Fields nothing set (request_id, api, stage, consumer, upstream, upstream_ms, trace_id, cache_status, rate_limit)
are left out; the others are there, null when unknown. duration_ms and upstream_ms are whole microseconds printed
with three decimals (`12.345`), truncated.

NOTE: an entry holds its exchange until the next flush (at most a tick, or `_FLUSH_AT` entries), with whatever
the exchange still references (a request body a plugin collected, within `limits.max_body_size`): the price of
taking no values on the request path.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import IO, TYPE_CHECKING, Any

import orjson

from fastgw.core import LogLines, clock
from fastgw.observability.tracing import parse_traceparent

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange

# Entries held before the next tick: a burst stays bounded, and so does what the held exchanges keep alive
# (PERF: 512 -> 64 took ~5k instructions an exchange off, callgrind: fewer objects for the collector to walk).
_FLUSH_AT = 64
_perf = clock

FIELDS = (
    "time", "request_id", "client", "method", "host", "path", "route", "api", "stage", "status", "request_bytes",
    "response_bytes", "duration_ms", "upstream", "upstream_ms", "consumer", "user_agent", "trace_id", "cache_status",
    "rate_limit",
)  # fmt: skip


def trace_id_of(traceparent: bytes | None) -> str | None:
    """The trace id of a valid W3C traceparent, or None. NOTE: strict (tracing.parse_traceparent): the id is
    written into log lines unescaped and read back as a number by the span export, with the parent id after it."""
    parsed = parse_traceparent(traceparent)
    return parsed[0] if parsed is not None else None


def served_routes(gw: Any) -> list[Any]:
    """Every route `gw` serves: its routes, and for a switch of routes told apart by headers (its place in
    `gw.routes` is the switch's, fastgw.pipeline.switch) the routes it picks from."""
    out = []
    for route in getattr(gw, "routes", ()):
        out.append(route)
        out.extend(r for _, r in getattr(route, "candidates", ()))
    return out


def upstream_label(upstream: Any) -> str | None:
    """What an integration recorded in `Exchange.upstream` as the log names it: a target (`host:port`) or a
    label it wrote itself (`function:NAME`)."""
    if upstream is None or upstream.__class__ is str:
        return upstream
    return f"{upstream.host}:{upstream.port}"


def _label(upstream: Any) -> bytes:
    return orjson.dumps(upstream_label(upstream))


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
        # What is held until the next flush, and the JSON lines of it (the compiled core's, or its twin).
        self.lines = LogLines(self._fragment, _label, trace_id_of, _FLUSH_AT)
        self._second = -1
        self._stamp = ""
        self._gw: Any = None
        self._where: dict[Any, tuple[str, dict[str, str] | None]] = {}

    def __call__(self, ex: Exchange) -> None:
        self.add(ex)

    def add(self, ex: Exchange, now: float = 0.0) -> None:
        """Log a finished exchange; `now` is the clock reading `observer` took for every hook (0: read it)."""
        # PERF: the exchange itself and the clock, nothing read here (through `observer` the compiled Observer
        # calls `lines` itself). Callgrind, bench/instructions.py --scenario log over loop, flush included: 38.5k
        # when this took the fields into a tuple and the flush built a dict per entry, 23.1k with the lines made
        # by a bytes %-format in Python, 6.6k with the compiled LogLines (bench/README.md).
        if self.lines.add(ex, now or _perf()):
            self.flush()

    def _time(self, sec: int) -> str:
        """The time stamp of a second (UTC), kept for the next entries of the same second."""
        self._second = sec
        self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))
        return self._stamp

    def _routes(self, gw: Any) -> dict[Any, tuple[str, dict[str, str] | None]]:
        """Per route of `gw`: its name and what else every line of it carries (api, stage), once per config."""
        if gw is not self._gw:  # a reload: the routes' API and stage, once per gateway
            self._gw = gw
            entries = getattr(gw, "entries", ())
            by_label = {e.label: {k: v for k, v in (("api", e.api), ("stage", e.stage)) if v} for e in entries}
            self._where = {r: (r.name, by_label.get(r.name) or None) for r in served_routes(gw)}
        return self._where

    def entries(self, raw: list[tuple[Exchange, float]]) -> list[dict[str, Any]]:
        """The entries as the JSON lines carry them (the text format reads the same)."""
        # PERF: one pass of plain bytecode per entry: no method calls, no round() (a float to 3 decimals through
        # int arithmetic is ~4x cheaper), the route's constant fields and the targets' labels cached, the
        # headers scanned by a loop (cheaper than dict(headers) for a handful of them).
        offset = time.time() - _perf()  # perf_counter readings to wall-clock time, once per flush
        second, stamp = self._second, self._stamp
        routes: dict[Any, tuple[str, dict[str, str] | None]] = {}
        gw: Any = None
        labels: dict[Any, str | None] = {}
        out: list[dict[str, Any]] = []
        append = out.append
        for ex, now in raw:
            req = ex.req
            wall = int(now + offset)
            if wall != second:
                second, stamp = wall, self._time(wall)
            ua = tp = None
            for name, value in req.headers:
                if name == b"user-agent":
                    ua = value.decode("latin-1")
                elif name == b"traceparent":
                    tp = value
            t0 = ex.t0
            e: dict[str, Any] = {
                "time": stamp,
                "client": ex.peer.ip,
                "method": req.method,
                "host": req.host_raw.decode("latin-1"),  # as the client sent it, port included
                "path": req.path or req.url.decode("latin-1")[:256],
                "route": None,
                "status": ex.status,
                "request_bytes": req.body_size,
                "response_bytes": ex.sent,
                "duration_ms": int((now - t0) * 1_000_000) / 1000 if t0 else 0.0,
                "user_agent": ua,
            }
            route = ex.route
            if route is not None:
                if ex.gw is not gw:
                    gw = ex.gw
                    routes = self._routes(gw)
                where = routes.get(route)
                if where is None:
                    e["route"] = route.name
                else:
                    e["route"], extra = where
                    if extra is not None:
                        e.update(extra)
            up = ex.upstream
            if up is not None:
                label = labels.get(up)
                if label is None:
                    label = labels[up] = upstream_label(up)
                e["upstream"] = label
                e["upstream_ms"] = int(ex.upstream_s * 1_000_000) / 1000
            ctx = ex.ctx
            trace_id = None
            if ctx is not None:
                # What the route's plugins found out: the request id, who the client is, the cache, the limiter.
                v = ctx.vars
                if v:
                    if (rid := v.get("request_id")) is not None:
                        e["request_id"] = rid
                    if (cache := v.get("cache_status")) is not None:
                        e["cache_status"] = cache
                    if (limit := v.get("rate_limit")) is not None:
                        e["rate_limit"] = limit
                    trace_id = v.get("trace_id")
                if ctx.consumer is not None:
                    e["consumer"] = ctx.consumer.name
            if trace_id is None and tp is not None:
                trace_id = trace_id_of(tp)
            if trace_id is not None:
                e["trace_id"] = trace_id
            append(e)
        return out

    def _fragment(self, gw: Any, route: Any) -> bytes:
        """A route's fields as JSON (`"route":...,"api":...,"stage":...`): `LogLines` asks once per route and
        config."""
        name, extra = self._routes(gw).get(route) or (route.name, None)
        return orjson.dumps({"route": name, **(extra or {})})[1:-1]

    def text(self, e: dict[str, Any]) -> bytes:
        """A text line: the text format (and the JSON fallback) read `entries`, which print durations as floats."""
        # The combined log format's order, then what it has no column for as key=value.
        text = (
            f'{e["client"] or "-"} - {e.get("consumer") or "-"} [{e["time"]}] "{e["method"]} {e["path"]}" '
            f'{e["status"]} {e["response_bytes"]} {e["duration_ms"]}ms "{e["user_agent"] or "-"}" '
            f"host={e['host'] or '-'} route={e['route'] or '-'} request_id={e.get('request_id') or '-'} "
            f"trace_id={e.get('trace_id') or '-'} request_bytes={e['request_bytes']}"
        )
        extra = "".join(
            f" {k}={e[k]}" for k in ("api", "stage", "upstream", "upstream_ms", "cache_status", "rate_limit") if k in e
        )
        return (text + extra + "\n").encode("utf-8", "replace")

    def flush(self) -> None:
        lines = self.lines
        if not len(lines):
            return
        if self.format == "json":
            try:
                data = lines.json(time.time() - _perf())  # (perf_counter readings to wall-clock time)
            except orjson.JSONEncodeError:  # a lone surrogate somewhere (orjson refuses it): the standard library
                raw = lines.take()
                data = "".join(json.dumps(e, default=str) + "\n" for e in self.entries(raw)).encode()
        else:
            data = b"".join([self.text(e) for e in self.entries(lines.take())])
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
