"""The access log: one line per answered request, JSON (orjson) or text, to stdout or a file.

Off the request path: `add` (from `Exchange.done`, through `observer`) appends the exchange and one
`perf_counter` reading to a list, nothing more; the server's tick (4 times a second), a full buffer, a SIGUSR1 or
shutdown turns them into lines and writes them in one go. A file is reopened on SIGUSR1, after logrotate moved it.

The fields, in the spirit of AWS's `$context` variables: time, request_id, client, method, host, path, route, api,
stage, status, request_bytes, response_bytes, duration_ms, upstream (`host:port` of the target, or
`function:NAME`), upstream_ms (from the request sent to the response head; a function's invocation), consumer,
user_agent, trace_id, and cache_status / rate_limit when a plugin publishes them in `ctx.vars` under those names.
Fields nothing set (request_id, api, stage, consumer, upstream, upstream_ms, trace_id, cache_status, rate_limit)
are left out; the others are there, null when unknown.

NOTE: an entry holds its exchange until the next flush (at most a tick, or `_FLUSH_AT` entries), with whatever
the exchange still references (a request body a plugin collected, within `limits.max_body_size`): the price of
taking no values on the request path.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange

_FLUSH_AT = 512  # entries held before the next tick: a burst between ticks stays bounded
_perf = time.perf_counter
# What a string needs to go into JSON as it is: no quote, backslash or control character.
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


def _json(value: Any) -> str:
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # a lone surrogate: the standard library escapes it
        return json.dumps(value, default=str)


_PUBLISHED = ("request_id", "cache_status", "rate_limit")  # from ctx.vars, when a plugin set them

FIELDS = (
    "time", "request_id", "client", "method", "host", "path", "route", "api", "stage", "status", "request_bytes",
    "response_bytes", "duration_ms", "upstream", "upstream_ms", "consumer", "user_agent", "trace_id", "cache_status",
    "rate_limit",
)  # fmt: skip


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


def upstream_label(upstream: Any) -> str | None:
    """What an integration recorded in `Exchange.upstream` as the log names it: a target (`host:port`) or a
    label it wrote itself (`function:NAME`)."""
    if upstream is None or upstream.__class__ is str:
        return upstream
    return f"{upstream.host}:{upstream.port}"


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
        self._buf: list[tuple[Exchange, float]] = []
        self._second = -1
        self._stamp = ""
        self._gw: Any = None
        self._where: dict[Any, tuple[str, dict[str, str] | None]] = {}
        self._labels: dict[Any, str] = {}  # what answered -> its name in JSON (targets: "host:port")
        self._fgw: Any = None
        self._json_where: dict[Any, str] = {}

    def __call__(self, ex: Exchange) -> None:
        self.add(ex, _perf())

    def add(self, ex: Exchange, now: float) -> None:
        """`__call__` with the clock read already (`observer` reads it once for every hook)."""
        # PERF: the exchange itself and the clock, nothing read: 26.3k -> 3.9k instructions per exchange with the
        # flush (bench: plain proxy 70.1k, log on 96.4k before, 74.0k now; callgrind, see the commit).
        buf = self._buf
        buf.append((ex, now))
        if len(buf) >= _FLUSH_AT:
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
            self._where = {r: (r.name, by_label.get(r.name) or None) for r in getattr(gw, "routes", ())}
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
            t0 = req.t0
            e: dict[str, Any] = {
                "time": stamp,
                "client": ex.peer.ip,
                "method": req.method,
                "host": req.host,
                "path": req.path or req.url.decode("latin-1")[:256],
                "route": None,
                "status": req.status,
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

    def json_lines(self, raw: list[tuple[Exchange, float]]) -> list[str]:
        """The JSON lines of `raw`, as pieces to join and encode: what `entries` has, without a dict per entry."""
        # PERF: one f-string per line. A string a client chose (host, path, user agent) goes in as it is when it
        # needs no JSON escaping (one regex search over the three), else through orjson; the route's fields and
        # the targets' names are JSON once per config; milliseconds are made from integer microseconds (float
        # formatting costs ~2k instructions). Callgrind, the flush per entry: ~30k instructions with a dict per
        # entry and orjson, ~19k with a bytes %-format over orjson-escaped values, ~NEWk now.
        offset = time.time() - _perf()  # perf_counter readings to wall-clock time, once per flush
        second, stamp = self._second, self._stamp
        gw: Any = None
        fragments: dict[Any, str] = {}
        labels = self._labels
        unsafe = _UNSAFE.search
        out: list[str] = []
        add = out.append
        for ex, now in raw:
            req = ex.req
            wall = int(now + offset)
            if wall != second:
                second, stamp = wall, self._time(wall)
            ua = ""
            tp = None
            for name, value in req.headers:
                if name == b"user-agent":
                    ua = value.decode("latin-1")
                elif name == b"traceparent":
                    tp = value
            route = ex.route
            if route is None:
                where = '"route":null'
            else:
                if ex.gw is not gw:
                    gw = ex.gw
                    fragments = self._fragments(gw)
                where = fragments.get(route) or self._fragment(fragments, route)
            host = req.host
            path = req.path or req.url.decode("latin-1")[:256]
            if unsafe(host) or unsafe(path) or unsafe(ua):
                host, path, ua = _json(host)[1:-1], _json(path)[1:-1], _json(ua)[1:-1]
            t0 = req.t0
            us = int((now - t0) * 1_000_000) if t0 else 0
            add(
                f'{{"time":"{stamp}","client":"{ex.peer.ip}","method":"{req.method}","host":"{host}","path":"{path}",'
                f'{where},"status":{req.status},"request_bytes":{req.body_size},"response_bytes":{ex.sent},'
                f'"duration_ms":{us // 1000}.{us % 1000:03d},"user_agent":'
            )
            add(f'"{ua}"' if ua else "null")
            up = ex.upstream
            if up is not None:
                label = labels.get(up)
                if label is None:
                    label = labels[up] = _json(upstream_label(up))
                us = int(ex.upstream_s * 1_000_000)
                add(f',"upstream":{label},"upstream_ms":{us // 1000}.{us % 1000:03d}')
            ctx = ex.ctx
            trace_id = None
            if ctx is not None:
                v = ctx.vars
                if v:
                    for key in _PUBLISHED:
                        if (found := v.get(key)) is not None:
                            add(f',"{key}":{_json(found)}')
                    trace_id = v.get("trace_id")
                if ctx.consumer is not None:
                    add(f',"consumer":{_json(ctx.consumer.name)}')
            if trace_id is None and tp is not None:
                trace_id = trace_id_of(tp)
            add(f',"trace_id":{_json(trace_id)}}}\n' if trace_id is not None else "}\n")
        self._second, self._stamp = second, stamp
        return out

    def _fragments(self, gw: Any) -> dict[Any, str]:
        """Per route of `gw`, its fields as JSON (`"route":...,"api":...,"stage":...`), once per config."""
        if gw is not self._fgw:
            self._fgw = gw
            self._json_where = {}
            self._labels.clear()  # targets of the previous config are let go
        return self._json_where

    def _fragment(self, fragments: dict[Any, str], route: Any) -> str:
        name, extra = self._routes(self._fgw).get(route) or (route.name, None)
        fragment = fragments[route] = _json({"route": name, **(extra or {})})[1:-1]
        return fragment

    def text(self, e: dict[str, Any]) -> bytes:
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
        if not self._buf:
            return
        raw, self._buf = self._buf, []
        if self.format == "json":
            data = "".join(self.json_lines(raw)).encode("utf-8", "replace")
        else:
            data = b"".join([self.text(e) for e in self.entries(raw)])
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
