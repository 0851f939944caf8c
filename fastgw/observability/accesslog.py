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
import sys
import time
from typing import IO, TYPE_CHECKING, Any

import orjson

from fastgw.observability.tracing import parse_traceparent

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange

# Entries held before the next tick: a burst stays bounded, and so does what the held exchanges keep alive
# (PERF: 512 -> 64 took ~5k instructions an exchange off, callgrind: fewer objects for the collector to walk).
_FLUSH_AT = 64
_perf = time.perf_counter
# A JSON line's fields every entry has; the others follow when set, then `}` and the newline.
_LINE = (
    b'{"time":%b,"client":%b,"method":%b,"host":%b,"path":%b,%b,"status":%d,"request_bytes":%d,'
    b'"response_bytes":%d,"duration_ms":%.3f,"user_agent":%b'
)
_LINE_UP = _LINE + b',"upstream":%b,"upstream_ms":%.3f'
_LINE_UP_END = _LINE_UP + b"}\n"
_PUBLISHED = ("request_id", "cache_status", "rate_limit")  # from ctx.vars, when a plugin set them

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
        self._labels: dict[Any, bytes] = {}  # what answered -> its name in JSON (targets: "host:port")
        self._methods: dict[str, bytes] = {}
        self._fgw: Any = None
        self._json_where: dict[Any, bytes] = {}
        self._stamp_b = b""
        self._memo: dict[Any, bytes] = {}  # strings (and user agents as bytes) seen lately -> as JSON

    def __call__(self, ex: Exchange) -> None:
        self.add(ex)

    def add(self, ex: Exchange, now: float = 0.0) -> None:
        """Log a finished exchange; `now` is the clock reading `observer` took for every hook (0: read it)."""
        # PERF: the exchange itself and the clock, nothing read here. The JSON log on costs 21.8k instructions an
        # exchange, flush included (callgrind, bench/hotpath's loop: plain proxy 70.8k, log on ~93k); it cost
        # 38.5k when this took the fields into a tuple and the flush built a dict per entry.
        buf = self._buf
        buf.append((ex, now or _perf()))
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

    def json_lines(self, raw: list[tuple[Exchange, float]]) -> list[bytes]:
        """The JSON lines of `raw`, as pieces to join: what `entries` has, without a dict per entry."""
        # PERF: one bytes %-format per line over values orjson escaped one by one (the client's address, host,
        # path and user agent, each kept escaped while it repeats: a keep-alive client sends the same ones) or
        # that are safe as they are (numbers, the time stamp), with the route's fields and the targets' names
        # serialized once; the header scan is a plain loop (cheaper than dict(headers) for a handful of headers).
        # Callgrind, the flush per entry (500 entries flushed 20 times): a dict per entry then orjson ~30k
        # instructions; this without the memo 19.4k, with it 17.5k. (An f-string per line with a regex deciding
        # what to escape was slower: 26.2k, format specs and regex calls cost more than orjson does.)
        offset = time.time() - _perf()  # perf_counter readings to wall-clock time, once per flush
        second, stamp = self._second, self._stamp_b
        gw: Any = None
        fragments: dict[Any, bytes] = {}
        labels = self._labels
        methods = self._methods
        dumps = orjson.dumps
        line, line_up, line_up_end = _LINE, _LINE_UP, _LINE_UP_END
        memo = self._memo
        if len(memo) > 1024:  # bounded: distinct values stop being remembered past a flush that saw many
            memo.clear()
        escaped = memo.get
        out: list[bytes] = []
        add = out.append
        for ex, now in raw:
            req = ex.req
            wall = int(now + offset)
            if wall != second:
                second = wall
                stamp = b'"%b"' % self._time(wall).encode()
                self._stamp_b = stamp
            ua = tp = None
            for name, value in req.headers:
                if name == b"user-agent":
                    ua = value
                elif name == b"traceparent":
                    tp = value
            route = ex.route
            if route is None:
                where = b'"route":null'
            else:
                if ex.gw is not gw:
                    gw = ex.gw
                    fragments = self._fragments(gw)
                where = fragments.get(route) or self._fragment(fragments, route)
            method = methods.get(req.method)
            if method is None:
                method = methods[req.method] = dumps(req.method)
            t0 = req.t0
            ctx = ex.ctx
            up = ex.upstream
            ip = ex.peer.ip
            if (ip_j := escaped(ip)) is None:
                ip_j = memo[ip] = dumps(ip)
            host = req.host
            if (host_j := escaped(host)) is None:
                host_j = memo[host] = dumps(host)
            path = req.path or req.url.decode("latin-1")[:256]
            if (path_j := escaped(path)) is None:
                path_j = dumps(path)
                if len(path) <= 256:  # (a long one is not worth the memory)
                    memo[path] = path_j
            ua_j: bytes | None
            if ua is None:
                ua_j = b"null"
            elif (ua_j := escaped(ua)) is None:
                ua_j = memo[ua] = dumps(ua.decode("latin-1"))  # (bytes and str keys never collide)
            values: tuple[Any, ...] = (
                stamp, ip_j, method, host_j, path_j, where, req.status, req.body_size, ex.sent,
                (now - t0) * 1000 if t0 else 0.0, ua_j,
            )  # fmt: skip
            if up is not None:
                label = labels.get(up)
                if label is None:
                    label = labels[up] = dumps(upstream_label(up))
                values += (label, ex.upstream_s * 1000)
                if ctx is None and tp is None:
                    add(line_up_end % values)  # PERF: the plain proxy's line in one piece
                    continue
                add(line_up % values)
            else:
                add(line % values)
            trace_id = None
            if ctx is not None:
                v = ctx.vars
                if v:
                    for key in _PUBLISHED:
                        if (found := v.get(key)) is not None:
                            add(b',"%b":%b' % (key.encode(), dumps(found, default=str)))
                    trace_id = v.get("trace_id")
                if ctx.consumer is not None:
                    add(b',"consumer":%b' % dumps(ctx.consumer.name))
            if trace_id is None and tp is not None:
                trace_id = trace_id_of(tp)
            add(b',"trace_id":"%b"}\n' % trace_id.encode() if trace_id is not None else b"}\n")
        self._second = second
        return out

    def _fragments(self, gw: Any) -> dict[Any, bytes]:
        """Per route of `gw`, its fields as JSON (`"route":...,"api":...,"stage":...`), once per config."""
        if gw is not self._fgw:
            self._fgw = gw
            self._json_where = {}
            self._labels.clear()  # targets of the previous config are let go
        return self._json_where

    def _fragment(self, fragments: dict[Any, bytes], route: Any) -> bytes:
        name, extra = self._routes(self._fgw).get(route) or (route.name, None)
        fields = {"route": name, **(extra or {})}
        fragment = fragments[route] = orjson.dumps(fields)[1:-1]
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
            try:
                data = b"".join(self.json_lines(raw))
            except orjson.JSONEncodeError:  # a lone surrogate somewhere (orjson refuses it): the standard library
                data = "".join(json.dumps(e, default=str) + "\n" for e in self.entries(raw)).encode()
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
