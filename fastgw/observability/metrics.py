"""Prometheus metrics: plain integer counters per worker, turned into metric families only when scraped.

The request path pays one dict lookup and a few integer increments per exchange (`Counters.record`, called from
`Exchange.done`); no prometheus-client object, lock or label set is touched per request. A scrape reads the
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
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange, Worker

# Fixed bucket bounds (seconds), as Prometheus' default ones: each exchange adds 1 to one integer.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A series' list: count, request bytes, duration sum (seconds), then one count per bucket and one for +Inf.
_COUNT, _BYTES_IN, _SUM, _B0 = 0, 1, 2, 3
_WIDTH = _B0 + len(BUCKETS) + 1


class Counters:
    """One worker's counters. `record` is the only thing the request path calls."""

    def __init__(self) -> None:
        # (route name or "" for a miss, method, status) -> [count, bytes in, duration sum, buckets...]
        self.series: dict[tuple[str, str, int], list[Any]] = {}
        self.worker: Worker | None = None  # for the gauges read at scrape time (open connections, pools)

    def record(self, ex: Exchange) -> None:
        req = ex.req
        route = ex.route
        key = (route.name if route is not None else "", req.method, req.status)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0] * _WIDTH
        dt = time.perf_counter() - req.t0
        s[_COUNT] += 1
        s[_BYTES_IN] += req.body_size
        s[_SUM] += dt
        s[_B0 + bisect_left(BUCKETS, dt)] += 1

    def snapshot(self) -> dict[str, Any]:
        """What a scrape needs, as plain data (JSON for the supervisor)."""
        out: dict[str, Any] = {"series": [[*k, *v] for k, v in self.series.items()], "connections": 0, "functions": {}}
        worker = self.worker
        if worker is not None:
            out["connections"] = len(worker.connections)
            functions = getattr(worker.gateway, "functions", {})
            out["functions"] = {name: pool.size for name, pool in functions.items()}
        return out

    def write_snapshot(self, directory: Path) -> None:
        """Written whole under a temporary name, then renamed: a scrape never reads half a file."""
        path = directory / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            tmp.write_bytes(orjson.dumps(self.snapshot()))
            os.replace(tmp, path)


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


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum snapshots: counters over every worker that ever ran, gauges over the live ones."""
    series: dict[tuple[str, str, int], list[Any]] = {}
    connections = 0
    functions: dict[str, int] = {}
    for snap in snapshots:
        for row in snap["series"]:
            key = (row[0], row[1], row[2])
            vals = row[3:]
            s = series.get(key)
            if s is None:
                series[key] = list(vals)
            else:
                for i, v in enumerate(vals):
                    s[i] += v
        if not snap.get("dead"):
            connections += snap.get("connections", 0)
            for name, n in snap.get("functions", {}).items():
                functions[name] = functions.get(name, 0) + n
    return {"series": series, "connections": connections, "functions": functions}


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
        by_route: dict[str, list[Any]] = {}
        for (route, method, status), s in sorted(series.items()):
            requests.add_metric([route, method, str(status)], s[_COUNT])
            acc = by_route.get(route)
            if acc is None:
                by_route[route] = list(s)
            else:
                for i, v in enumerate(s):
                    acc[i] += v
        duration = HistogramMetricFamily(
            "fastgw_request_duration_seconds",
            "Time from the request head to the end of the response, by route",
            labels=["route"],
        )
        for route, s in sorted(by_route.items()):
            received.add_metric([route], s[_BYTES_IN])
            cumulative = 0
            buckets = []
            for bound, n in zip((*BUCKETS, float("inf")), s[_B0:], strict=True):
                cumulative += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            duration.add_metric([route], buckets, s[_SUM])
        yield requests
        yield received
        yield duration
        yield GaugeMetricFamily("fastgw_open_connections", "Open client connections", value=data["connections"])
        workers = GaugeMetricFamily(
            "fastgw_function_workers", "Worker processes of each function (live and starting)", labels=["function"]
        )
        for name, n in sorted(data["functions"].items()):
            workers.add_metric([name], n)
        yield workers


def exposition(source: Callable[[], dict[str, Any]]) -> tuple[bytes, str]:
    """The text format of one scrape, and its content type. Needs the `metrics` extra (prometheus-client)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(source))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def observer(
    access_log: Callable[[Exchange], None] | None, counters: Counters | None
) -> Callable[[Exchange], None] | None:
    """The one hook `Exchange.done` calls (`Worker.access_log`): the access log, the counters, both, or None
    (then the exchange does nothing and the dispatcher takes no time stamp)."""
    if counters is None:
        return access_log
    if access_log is None:
        return counters.record
    record = counters.record

    def both(ex: Exchange) -> None:
        record(ex)
        access_log(ex)

    return both
