"""Prometheus metrics: plain integer counters per worker, turned into metric families only when scraped.

The request path pays one dict lookup and a few integer increments per exchange (`Tally.add` in the compiled core,
called from `Exchange.done` through the `Observer`); no prometheus-client object, lock or label set is touched per
request. A scrape reads the
counters (`Counters.snapshot`), sums the snapshots of every worker, and `GatewayCollector` yields them as metric
families.

With `--workers N` each worker writes its snapshot to `<dir>/<pid>.json` once a second, from its tick (off the
request path), and the supervisor's admin listener sums the files at scrape time. NOTE: prometheus-client's
multiprocess mode was not chosen: it writes an mmap'd file per increment behind a lock, and needs the metrics
declared as prometheus-client objects, which is the per-request cost this module exists to avoid. The price of
snapshots is staleness: a scrape sees each worker's counters as they were up to a second ago. The file of a worker
that died is kept, so the sum over workers never goes down (a counter that goes down reads as a reset).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.core import Observer, Tally, clock
from fastgw.core.observe import BUCKETS  # (fixed bucket bounds, seconds: from 100 us to 10 s)

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange, Worker

# A series' list (fastgw.core.observe.Tally): count, request bytes, response bytes, duration sum (seconds), then one
# count per bucket of BUCKETS and one for +Inf.
_COUNT, _BYTES_IN, _BYTES_OUT, _SUM, _B0 = 0, 1, 2, 3, 4
# Breaker states as a gauge's values.
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class Counters:
    """One worker's counters: the per-exchange ones in a `Tally` (the compiled core's, or its twin), read at scrape
    time with what the worker's live config says (connections, targets, functions)."""

    def __init__(self) -> None:
        self.tally = Tally()
        self.worker: Worker | None = None  # for what is read at scrape time (connections, upstreams, functions)

    def record(self, ex: Exchange) -> None:
        self.add(ex)

    def add(self, ex: Exchange, now: float = 0.0) -> None:
        """Count a finished exchange; `now` is the clock reading every hook shares (0: read it)."""
        # PERF: through `observer` the compiled Observer calls the Tally itself (no Python frame); callgrind,
        # plain proxy: +10.9k instructions an exchange with metrics on when this was Python dicts and lists, +4.1k
        # with the compiled Tally (of which ~1k is the upstream timing in proxy/upstream.py and the dispatcher's t0).
        self.tally.add(ex, now or clock())

    @property
    def series(self) -> dict[tuple[str, str, int], list[Any]]:
        """(route name or "" for a miss, method, status) -> [count, bytes in, bytes out, duration sum, buckets]"""
        return self.tally.series()

    @property
    def upstreams(self) -> dict[Any, list[Any]]:
        """What answered -> [upstream, target, count, latency sum, buckets]"""
        return self.tally.upstreams()

    @property
    def cache(self) -> dict[tuple[str, str], int]:
        return self.tally.cache

    @property
    def limits(self) -> dict[tuple[str, str], int]:
        return self.tally.limits

    def snapshot(self) -> dict[str, Any]:
        """What a scrape needs, as plain data (JSON for the supervisor)."""
        out: dict[str, Any] = {
            "series": [[*k, *v] for k, v in self.series.items()],
            "upstreams": list(self.upstreams.values()),
            "cache": [[*k, n] for k, n in self.cache.items()],
            "limits": [[*k, n] for k, n in self.limits.items()],
            "connections": 0,
            "functions": {},
        }
        worker = self.worker
        if worker is not None:
            out["connections"] = len(worker.connections)
            gateway: Any = worker.gateway
            out.update(_gateway_state(gateway))
        return out

    def write_snapshot(self, directory: Path) -> None:
        """Written whole under a temporary name, then renamed: a scrape never reads half a file."""
        path = directory / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_bytes(orjson.dumps(self.snapshot()))
            os.replace(tmp, path)


def _gateway_state(gateway: Any) -> dict[str, Any]:
    """Read at scrape time from the worker's live config: targets (health, breaker, pool), retries, functions."""
    targets = []  # gauges: [upstream, target, in rotation, breaker state or -1, idle, busy]
    totals = []  # counters: [upstream, target, breaker opens, ejections]
    retries = []  # counters: [upstream, retries done, retries refused by the budget]
    for name, upstream in sorted(getattr(gateway, "upstreams", {}).items()):
        budget = upstream.budget
        retries.append([name, upstream.retries_done, budget.refused])
        for t in upstream.targets:
            watch = t.watch
            breaker = watch.breaker if watch is not None else None
            label = f"{t.host}:{t.port}"
            idle = len(t.idle)
            state = BREAKER_STATES.get(breaker.state, -1) if breaker is not None else -1
            targets.append([name, label, 1 if t.available else 0, state, idle, max(0, t.open - idle)])
            totals.append([name, label, breaker.opened if breaker is not None else 0])
    functions: dict[str, int] = {}
    busy: dict[str, int] = {}
    calls = []  # counters: [function, invocations, errors, throttles]
    for name, pool in sorted(getattr(gateway, "functions", {}).items()):
        functions[name] = pool.size
        busy[name] = max(0, len(pool.workers) - len(pool.idle))
        calls.append([name, pool.invocations, pool.errors, pool.throttles])
    return {
        "targets": targets,
        "target_totals": totals,
        "retries": retries,
        "functions": functions,
        "functions_busy": busy,
        "function_calls": calls,
    }


def read_snapshots(directory: Path, alive: set[int]) -> list[dict[str, Any]]:
    """The snapshots every worker left in `directory`; those of workers not in `alive` are marked dead (their
    counters still count, their gauges no longer do)."""
    out = []
    for path in sorted(directory.glob("*.json")):
        with contextlib.suppress(OSError, ValueError):
            snap = orjson.loads(path.read_bytes())
            snap["dead"] = int(path.stem) not in alive
            out.append(snap)
    return out


def _add_rows(into: dict[tuple[Any, ...], list[Any]], rows: Iterable[list[Any]], width: int) -> None:
    """Sum rows of `width` key columns then values into `into` (key -> values)."""
    for row in rows:
        key = tuple(row[:width])
        vals = row[width:]
        s = into.get(key)
        if s is None:
            into[key] = list(vals)
        else:
            for i, v in enumerate(vals):
                s[i] += v


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum snapshots: counters over every worker that ever ran, gauges over the live ones."""
    series: dict[tuple[Any, ...], list[Any]] = {}
    upstreams: dict[tuple[Any, ...], list[Any]] = {}
    cache: dict[tuple[Any, ...], list[Any]] = {}
    limits: dict[tuple[Any, ...], list[Any]] = {}
    totals: dict[tuple[Any, ...], list[Any]] = {}
    retries: dict[tuple[Any, ...], list[Any]] = {}
    calls: dict[tuple[Any, ...], list[Any]] = {}
    targets: dict[tuple[Any, ...], list[Any]] = {}
    connections = 0
    functions: dict[str, int] = {}
    busy: dict[str, int] = {}
    for snap in snapshots:
        _add_rows(series, snap["series"], 3)
        _add_rows(upstreams, snap.get("upstreams", ()), 2)
        _add_rows(cache, snap.get("cache", ()), 2)
        _add_rows(limits, snap.get("limits", ()), 2)
        _add_rows(totals, snap.get("target_totals", ()), 2)
        _add_rows(retries, snap.get("retries", ()), 1)
        _add_rows(calls, snap.get("function_calls", ()), 1)
        if not snap.get("dead"):
            connections += snap.get("connections", 0)
            for name, n in snap.get("functions", {}).items():
                functions[name] = functions.get(name, 0) + n
            for name, n in snap.get("functions_busy", {}).items():
                busy[name] = busy.get(name, 0) + n
            for row in snap.get("targets", ()):
                # Health: a target is counted in rotation when it is in any live worker's; the breaker's worst
                # state; pools summed.
                key = (row[0], row[1])
                t = targets.get(key)
                if t is None:
                    targets[key] = list(row[2:])
                else:
                    t[0] = max(t[0], row[2])
                    t[1] = max(t[1], row[3])
                    t[2] += row[4]
                    t[3] += row[5]
    return {
        "series": series,
        "upstreams": upstreams,
        "cache": cache,
        "limits": limits,
        "target_totals": totals,
        "retries": retries,
        "function_calls": calls,
        "targets": targets,
        "connections": connections,
        "functions": functions,
        "functions_busy": busy,
    }


def _buckets(counts: Iterable[int]) -> list[tuple[str, float]]:
    cumulative = 0
    out: list[tuple[str, float]] = []
    for bound, n in zip((*BUCKETS, float("inf")), counts, strict=True):
        cumulative += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return out


class GatewayCollector:
    """A prometheus-client custom collector: `source()` returns the summed counters at each scrape."""

    def __init__(self, source: Callable[[], dict[str, Any]]) -> None:
        self.source = source

    def describe(self) -> list[Any]:
        return []  # NOTE: no describe at registration: the registry would otherwise call collect() to find names

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        data = self.source()
        series: dict[tuple[str, str, int], list[Any]] = data["series"]
        requests = CounterMetricFamily(
            "fastgw_requests", "Requests answered, by route, method and status", labels=["route", "method", "status"]
        )
        received = CounterMetricFamily(
            "fastgw_request_bytes", "Request body bytes received, by route", labels=["route"]
        )
        sent = CounterMetricFamily(
            "fastgw_response_bytes", "Response bytes sent to clients (heads included), by route", labels=["route"]
        )
        for (route, method, status), s in sorted(series.items()):
            requests.add_metric([route, method, str(status)], s[_COUNT])
        by_route: dict[tuple[Any, ...], list[Any]] = {}
        _add_rows(by_route, ([route, *s] for (route, _, _), s in series.items()), 1)
        duration = HistogramMetricFamily(
            "fastgw_request_duration_seconds",
            "Time from the request head to the end of the response, by route",
            labels=["route"],
        )
        for (route,), s in sorted(by_route.items()):
            received.add_metric([route], s[_BYTES_IN])
            sent.add_metric([route], s[_BYTES_OUT])
            duration.add_metric([route], _buckets(s[_B0:]), s[_SUM])
        yield requests
        yield received
        yield sent
        yield duration
        yield from _upstream_families(data, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily)
        yield GaugeMetricFamily("fastgw_open_connections", "Open client connections", value=data["connections"])
        yield from _function_families(data, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily)
        cache = CounterMetricFamily(
            "fastgw_cache_responses", "Responses by cache status (HIT, MISS, ...), by route", labels=["route", "status"]
        )
        for (route, status), (n,) in sorted(data.get("cache", {}).items()):
            cache.add_metric([route, status], n)
        yield cache
        limits = CounterMetricFamily(
            "fastgw_rate_limit_decisions",
            "Rate-limit decisions (allowed, refused), by route",
            labels=["route", "decision"],
        )
        for (route, decision), (n,) in sorted(data.get("limits", {}).items()):
            limits.add_metric([route, decision], n)
        yield limits


def _upstream_families(data: dict[str, Any], counter: Any, gauge: Any, histogram: Any) -> Iterator[Any]:
    latency = histogram(
        "fastgw_upstream_duration_seconds",
        "Time from the request sent to the upstream to its response head, by upstream",
        labels=["upstream"],
    )
    by_upstream: dict[str, list[Any]] = {}
    for (upstream, _), s in sorted(data.get("upstreams", {}).items()):
        if upstream.startswith("function:"):
            continue  # fastgw_function_duration_seconds
        acc = by_upstream.get(upstream)
        if acc is None:
            by_upstream[upstream] = list(s)
        else:
            for i, v in enumerate(s):
                acc[i] += v
    for upstream, s in sorted(by_upstream.items()):
        latency.add_metric([upstream], _buckets(s[2:]), s[1])
    yield latency
    healthy = gauge(
        "fastgw_upstream_target_healthy",
        "1 while the target is in rotation (active checks up, not ejected, breaker not open)",
        labels=["upstream", "target"],
    )
    breaker = gauge(
        "fastgw_upstream_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", labels=["upstream", "target"]
    )
    conns = gauge(
        "fastgw_upstream_connections",
        "Upstream connections by state (idle in the pool, busy with a request)",
        labels=["upstream", "target", "state"],
    )
    for (upstream, target), (up, state, idle, busy) in sorted(data.get("targets", {}).items()):
        healthy.add_metric([upstream, target], up)
        if state >= 0:
            breaker.add_metric([upstream, target], state)
        conns.add_metric([upstream, target, "idle"], idle)
        conns.add_metric([upstream, target, "busy"], busy)
    yield healthy
    yield breaker
    yield conns
    opens = counter("fastgw_upstream_breaker_opens", "Times the target's breaker opened", labels=["upstream", "target"])
    for (upstream, target), (n,) in sorted(data.get("target_totals", {}).items()):
        opens.add_metric([upstream, target], n)
    yield opens
    retries = counter("fastgw_upstream_retries", "Retries sent to another target, by upstream", labels=["upstream"])
    refused = counter(
        "fastgw_upstream_retries_refused", "Retries the retry budget refused, by upstream", labels=["upstream"]
    )
    for (upstream,), (done, no) in sorted(data.get("retries", {}).items()):
        retries.add_metric([upstream], done)
        refused.add_metric([upstream], no)
    yield retries
    yield refused


def _function_families(data: dict[str, Any], counter: Any, gauge: Any, histogram: Any) -> Iterator[Any]:
    workers = gauge(
        "fastgw_function_workers", "Worker processes of each function (live and starting)", labels=["function"]
    )
    for name, n in sorted(data["functions"].items()):
        workers.add_metric([name], n)
    yield workers
    busy = gauge("fastgw_function_workers_busy", "Function workers running an invocation", labels=["function"])
    for name, n in sorted(data.get("functions_busy", {}).items()):
        busy.add_metric([name], n)
    yield busy
    invocations = counter("fastgw_function_invocations", "Function invocations", labels=["function"])
    errors = counter(
        "fastgw_function_errors", "Invocations that failed (function error, timeout, crash)", labels=["function"]
    )
    throttles = counter(
        "fastgw_function_throttles", "Invocations refused: every worker busy and the queue full", labels=["function"]
    )
    for (name,), (n, failed, throttled) in sorted(data.get("function_calls", {}).items()):
        invocations.add_metric([name], n)
        errors.add_metric([name], failed)
        throttles.add_metric([name], throttled)
    yield invocations
    yield errors
    yield throttles
    duration = histogram(
        "fastgw_function_duration_seconds", "Invocation time as the gateway waits for it", labels=["function"]
    )
    for (upstream, _), s in sorted(data.get("upstreams", {}).items()):
        if upstream.startswith("function:"):
            duration.add_metric([upstream[9:]], _buckets(s[2:]), s[1])
    yield duration


def exposition(source: Callable[[], dict[str, Any]]) -> tuple[bytes, str]:
    """The text format of one scrape, and its content type. Needs the `metrics` extra (prometheus-client)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(source))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def observer(access_log: Any, counters: Counters | None, spans: Any = None) -> Callable[[Exchange], None] | None:
    """The one hook `Exchange.done` calls (`Worker.access_log`): a compiled `Observer` over the counters, the access
    log and the span export (fastgw.observability.otel), those that are on, or None (then the exchange does nothing
    and the dispatcher takes no time stamp). One clock reading for all of them. An access log without `lines`
    (any callable taking the exchange) is called as a hook. `flush()` on the observer flushes the access log."""
    hooks: list[Callable[[Exchange, float], Any]] = []
    log = None
    if access_log is not None:
        if getattr(access_log, "lines", None) is not None:
            log = access_log
        else:
            call = access_log

            def each(ex: Exchange, now: float) -> None:
                call(ex)

            hooks.append(each)
    if spans is not None:
        hooks.append(spans.add)
    if counters is None and log is None and not hooks:
        return None
    return Observer(counters.tally if counters is not None else None, log, tuple(hooks))
