"""What the gateway observes of each finished exchange: the metrics counters (`Tally`), the access log's buffer and
its JSON lines (`LogLines`), and the one hook `Exchange.done` calls (`Observer`).

The pure-Python twin (the spec, the test oracle and the fallback) of `fastgw/core/observe.pyx` (served through
`fastgw.core`): same API, same counters, same bytes (tests/property/test_observe_twins.py). The modules around
them (`fastgw.observability.metrics`, `.accesslog`) keep what is not per exchange: the families a scrape yields,
the snapshots, the text format, the files.

Numbers in the JSON lines: `duration_ms` and `upstream_ms` are whole microseconds (truncated) printed as
`%d.%03d`, so that both twins print them the same way without a float formatter.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

import orjson

from fastgw.core.http import ExchangeState

__all__ = ["LogLines", "Observer", "Tally", "clock"]

# The fields of an exchange the observer reads, all declared by `fastgw.core.http.ExchangeState` (the compiled
# observer reads them as its C fields). An observer is built only for an exchange class that has them all
# (`check_exchange`): a field renamed in the declaration, or an exchange of another kind, is refused then, never met
# per request.
OBSERVED = ("req", "route", "gw", "peer", "ctx", "status", "t0", "sent", "upstream", "upstream_s")

# Fixed bucket bounds (seconds): each exchange adds 1 to one integer. NOTE: from 100 us, not Prometheus' default
# 5 ms: a proxied request takes well under 5 ms, and with the default bounds every one fell in the first bucket, so a
# p50 or p99 from histogram_quantile could only say "somewhere below 5 ms". 1-2.5-5 steps up to 10 s as before.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A series' list: count, request bytes, response bytes, duration sum (seconds), then one count per bucket and one
# for +Inf.
_COUNT, _BYTES_IN, _BYTES_OUT, _SUM, _B0 = 0, 1, 2, 3, 4
WIDTH = _B0 + len(BUCKETS) + 1
# What answered: upstream name, target, then count, latency sum (seconds), buckets (the same bounds).
_UCOUNT, _USUM, _UB0 = 2, 3, 4
UWIDTH = _UB0 + len(BUCKETS) + 1
# ctx.vars a plugin publishes for the log line, in the line's order (then consumer and trace_id).
PUBLISHED = ("request_id", "cache_status", "rate_limit")
# The longest duration a line prints (microseconds, ~31 years): past it (or not a number) the clamp keeps both
# twins' integer conversions defined.
_MAX_US = 10**15

# The clock every hook of an exchange shares; the compiled twin reads CLOCK_MONOTONIC itself, which is what
# perf_counter reads on Linux (tests/property/test_observe_twins.py checks they agree).
clock = time.perf_counter


def micros(seconds: float) -> int:
    """Seconds as whole microseconds (truncated), clamped to [0, 10**15]."""
    us = seconds * 1_000_000
    if not us > 0:  # (NaN too)
        return 0
    return int(us) if us < _MAX_US else _MAX_US


def stamp(sec: int) -> bytes:
    """The time field of a second (UTC), quoted."""
    return b'"%b"' % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec)).encode()


def check_exchange(cls: type, base: type) -> None:
    """Refuse (TypeError) an exchange class the observer cannot read: not a `base` (the core's `ExchangeState`), or
    missing a field of `OBSERVED` as a declared field (a slot or a C field, not a property or a plain attribute)."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"the observer reads exchanges of the core's ExchangeState, not {cls!r}")
    missing = [name for name in OBSERVED if type(getattr(cls, name, None)).__name__ not in _FIELD_KINDS]
    if missing:
        raise TypeError(f"{cls.__qualname__} does not declare the exchange fields the observer reads: {missing}")


# A slot of a Python class (`member_descriptor`); a C field of a compiled class (`getset_descriptor`).
_FIELD_KINDS = frozenset({"member_descriptor", "getset_descriptor"})


def target_names(ex: Any, up: Any) -> tuple[str, str]:
    """What answered as the upstream series names it: by its upstream (the http route's) and its target
    (`host:port`), or by the function (`function:NAME`, no target)."""
    if up.__class__ is str:
        return up, ""
    upstream = getattr(ex.route, "upstream", None)
    return getattr(upstream, "name", ""), f"{up.host}:{up.port}"


class Tally:
    """One worker's per-exchange counters. `add` is the only thing the request path calls; the rest is read at
    scrape (or snapshot) time."""

    def __init__(self) -> None:
        # (route name or "" for a miss, method, status) -> [count, bytes in, bytes out, duration sum, buckets...]
        self._series: dict[tuple[str, str, int], list[Any]] = {}
        # What answered (`Exchange.upstream`: a target, or "function:NAME") -> [upstream, target, count, sum, buckets]
        self._upstreams: dict[Any, list[Any]] = {}
        # (route, value) -> count, of what the cache and rate-limit plugins publish in ctx.vars
        self.cache: dict[tuple[str, str], int] = {}
        self.limits: dict[tuple[str, str], int] = {}

    def add(self, ex: Any, now: float) -> None:
        """Count a finished exchange; `now` is the clock reading (`clock()`) every hook shares."""
        req = ex.req
        route = ex.route
        name = route.name if route is not None else ""
        key = (name, req.method, ex.status)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = [0] * WIDTH
            s[_SUM] = 0.0
        dt = now - ex.t0
        s[_COUNT] += 1
        s[_BYTES_IN] += req.body_size
        s[_BYTES_OUT] += ex.sent
        s[_SUM] += dt
        s[_B0 + bisect_left(BUCKETS, dt)] += 1
        up = ex.upstream
        if up is not None:
            u = self._upstreams.get(up)
            if u is None:
                u = self._upstreams[up] = [*target_names(ex, up), *[0] * (UWIDTH - 2)]
                u[_USUM] = 0.0
            dt = ex.upstream_s
            u[_UCOUNT] += 1
            u[_USUM] += dt
            u[_UB0 + bisect_left(BUCKETS, dt)] += 1
        ctx = ex.ctx
        if ctx is not None:
            v = ctx.vars
            if v:
                cache = v.get("cache_status")
                if cache is not None:
                    k = (name, str(cache))
                    self.cache[k] = self.cache.get(k, 0) + 1
                limit = v.get("rate_limit")
                if limit is not None:
                    k = (name, str(limit))
                    self.limits[k] = self.limits.get(k, 0) + 1

    def series(self) -> dict[tuple[str, str, int], list[Any]]:
        """(route, method, status) -> [count, bytes in, bytes out, duration sum, one count per bucket and +Inf]."""
        return {k: list(v) for k, v in self._series.items()}

    def upstreams(self) -> dict[Any, list[Any]]:
        """What answered -> [upstream, target, count, latency sum, one count per bucket and +Inf]."""
        return {k: list(v) for k, v in self._upstreams.items()}


class LogLines:
    """The access log's buffer: finished exchanges with their clock readings, turned into JSON lines by `json`.

    `fragment(gw, route)` gives a route's fields as JSON (`"route":...,"api":...`), `label(upstream)` what
    answered as a JSON string, `trace_id(traceparent)` the trace id of a header (or None); each is asked once
    per value and config (a reload lets go of what they gave)."""

    def __init__(
        self,
        fragment: Callable[[Any, Any], bytes],
        label: Callable[[Any], bytes],
        trace_id: Callable[[bytes], str | None],
        size: int = 64,
    ) -> None:
        self.size = size
        self._fragment = fragment
        self._label = label
        self._trace_id = trace_id
        self._raw: list[tuple[Any, float]] = []
        self._second = -1
        self._stamp = b""
        self._gw: Any = None
        self._fragments: dict[Any, bytes] = {}
        self._labels: dict[Any, bytes] = {}
        self._memo: dict[Any, bytes] = {}  # strings (and user agents as bytes) seen lately -> as JSON

    def add(self, ex: Any, now: float) -> bool:
        """Hold a finished exchange; True when the buffer is full (`size`): time to flush."""
        raw = self._raw
        raw.append((ex, now))
        return len(raw) >= self.size

    def __len__(self) -> int:
        return len(self._raw)

    def take(self) -> list[tuple[Any, float]]:
        """What is held, let go of: (exchange, clock reading) pairs."""
        raw, self._raw = self._raw, []
        return raw

    def json(self, offset: float) -> bytes:
        """The JSON lines of what is held (then let go of), `offset` turning clock readings into wall-clock time.
        Raises orjson.JSONEncodeError (a lone surrogate) and keeps what is held."""
        # PERF: the spec, not the fast one: values are escaped by orjson one by one and remembered while they
        # repeat (a keep-alive client sends the same ones), the route's fields and the targets' names once.
        second, stamp_b = self._second, self._stamp
        dumps = orjson.dumps
        memo = self._memo
        if len(memo) > 1024:  # bounded: distinct values stop being remembered past a flush that saw many
            memo.clear()
        escaped = memo.get
        out: list[bytes] = []
        add = out.append
        for ex, now in self._raw:
            req = ex.req
            wall = int(now + offset)
            if wall != second:
                second, stamp_b = wall, stamp(wall)
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
                gw = ex.gw
                if gw is not self._gw:
                    self._gw = gw
                    self._fragments = {}
                    self._labels = {}  # targets of the previous config are let go
                where = self._fragments.get(route)  # type: ignore[assignment]
                if where is None:
                    where = self._fragments[route] = self._fragment(gw, route)
            ip = ex.peer.ip
            if (ip_j := escaped(ip)) is None:
                ip_j = memo[ip] = dumps(ip)
            method = req.method
            if (method_j := escaped(method)) is None:
                method_j = memo[method] = dumps(method)
            # The Host header as the client sent it, port included (`req.host`, what routing matched, has none).
            host = req.host_raw
            if (host_j := escaped(host)) is None:
                host_j = memo[host] = dumps(host.decode("latin-1"))  # (bytes and str keys never collide)
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
            t0 = ex.t0
            us = micros(now - t0) if t0 else 0
            add(
                b'{"time":%b,"client":%b,"method":%b,"host":%b,"path":%b,%b,"status":%d,"request_bytes":%d,'
                b'"response_bytes":%d,"duration_ms":%d.%03d,"user_agent":%b'
                % (stamp_b, ip_j, method_j, host_j, path_j, where, ex.status, req.body_size, ex.sent,
                   us // 1000, us % 1000, ua_j)
            )  # fmt: skip
            up = ex.upstream
            if up is not None:
                label = self._labels.get(up)
                if label is None:
                    label = self._labels[up] = self._label(up)
                us = micros(ex.upstream_s)
                add(b',"upstream":%b,"upstream_ms":%d.%03d' % (label, us // 1000, us % 1000))
            ctx = ex.ctx
            trace_id = None
            if ctx is not None:
                v = ctx.vars
                if v:
                    for key in PUBLISHED:
                        if (found := v.get(key)) is not None:
                            add(b',"%b":%b' % (key.encode(), dumps(found, default=str)))
                    trace_id = v.get("trace_id")
                consumer = ctx.consumer
                if consumer is not None:
                    add(b',"consumer":%b' % dumps(consumer.name))
            if trace_id is None and tp is not None:
                trace_id = self._trace_id(tp)
            add(b',"trace_id":"%b"}\n' % trace_id.encode() if trace_id is not None else b"}\n")
        data = b"".join(out)
        self._second, self._stamp = second, stamp_b
        self._raw = []
        return data


class Observer:
    """The one hook `Exchange.done` calls (`Worker.access_log`): one clock reading, then the counters, the access
    log's buffer (flushed by `log.flush()` when full) and any other hooks (`hook(ex, now)`), those that are on.
    `exchange`: the class of the exchanges it sees, refused here when it does not declare `OBSERVED`."""

    def __init__(
        self,
        tally: Tally | None,
        log: Any = None,
        hooks: tuple[Callable[[Any, float], Any], ...] = (),
        exchange: type = ExchangeState,
    ) -> None:
        check_exchange(exchange, ExchangeState)  # the class of the exchanges it will see (`OBSERVED`)
        self.tally = tally
        self.log = log  # with `lines` (a LogLines) and `flush()`: fastgw.observability.accesslog.AccessLog
        self._lines: LogLines | None = log.lines if log is not None else None
        self.hooks = tuple(hooks)

    def __call__(self, ex: Any) -> None:
        now = clock()
        if self.tally is not None:
            self.tally.add(ex, now)
        if self._lines is not None and self._lines.add(ex, now):
            self.log.flush()
        for hook in self.hooks:
            hook(ex, now)

    def flush(self) -> None:
        """The access log's flush (tests call `Worker.access_log.flush()`)."""
        if self.log is not None:
            self.log.flush()
