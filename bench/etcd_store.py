#!/usr/bin/env python3
"""Convergence of a fleet on etcd: how soon every gateway's store sees a deployment written through one of them.

An etcd of `--members` members (1, then 3 by default; tests/etcdproc.py starts them on loopback ports, data on
/dev/shm) holds the deployments. `--watchers` EtcdStores (each with its own connections, as separate gateways have)
watch the prefix; `--writes` deployments (`--routes` routes each, a few KB of JSON) are written one after another
through the first store, `--interval` apart, each compared on the revision before it. For every write and every
watcher the time from the start of the write (`put`) to the watcher's store yielding it is recorded: p50, p99, max
per watcher and over all, and the write's own time (the transaction's round trip). Issue 20's target: every gateway
serves a write within 1 s.

Results go to bench/results/<date>-etcd-<commit>.json. The process runs on uvloop, as `fastgw serve` does; the
watchers share its event loop (gateways on separate machines would not), so a watcher's figure includes waiting for
the others' turn on one CPU: an upper bound.

Usage: python bench/etcd_store.py [--members 1 3] [--watchers 3] [--writes 100] [--interval 0.02] [--routes 50]
Needs etcd (apt-get install etcd-server) and `pip install 'fastgw[etcd]'`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import RESULTS, git_commit, machine  # noqa: E402

from fastgw.control.etcd import EtcdStore, store_from_config  # noqa: E402
from fastgw.control.store import Deployment  # noqa: E402
from tests.etcdproc import EtcdCluster  # noqa: E402


def deployment(n: int, routes: int) -> Deployment:
    config = {
        "upstreams": {"backend": {"targets": ["http://127.0.0.1:9000"]}},
        "routes": [
            {"path": f"/v{n}/items/{i}/{{id}}", "methods": ["GET", "POST"],
             "integration": {"type": "http", "upstream": "backend"}, "plugins": {"request-id": {}}}
            for i in range(routes)
        ],
    }  # fmt: skip
    return Deployment(id=f"{n:016x}", config=config, time=datetime.now(timezone.utc).isoformat(), source="bench")


def summary(values_s: list[float]) -> dict[str, float]:
    xs = sorted(values_s)
    pick = lambda q: xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 3), "p99_ms": round(pick(0.99) * 1000, 3),
            "max_ms": round(xs[-1] * 1000, 3), "count": len(xs)}  # fmt: skip


async def converge(endpoints: list[str], args: argparse.Namespace) -> dict[str, Any]:
    stores: list[EtcdStore] = [
        store_from_config({"endpoints": endpoints, "prefix": "/bench", "timeout": 5}) for _ in range(args.watchers)
    ]
    writer = stores[0]
    base = await writer.put(deployment(0, args.routes), expect_revision=None)
    started: dict[int, float] = {}  # revision -> when its put began
    arrived: list[dict[int, float]] = [{} for _ in stores]
    done = asyncio.Event()

    async def follow(i: int, store: EtcdStore) -> None:
        async for stored in store.watch(base):
            arrived[i][stored.revision] = time.perf_counter()
            if all(len(a) >= args.writes for a in arrived):
                done.set()

    tasks = [asyncio.create_task(follow(i, s)) for i, s in enumerate(stores)]
    await asyncio.sleep(0.5)  # every watch open
    puts: list[float] = []
    revision = base
    for n in range(1, args.writes + 1):
        dep = deployment(n, args.routes)
        t0 = time.perf_counter()
        revision = await writer.put(dep, expect_revision=revision)
        puts.append(time.perf_counter() - t0)
        started[revision] = t0
        await asyncio.sleep(args.interval)
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in stores:
            await s.close()
    per_watcher = []
    every: list[float] = []
    for i, got in enumerate(arrived):
        missing = sorted(set(started) - set(got))
        lags = [got[r] - t0 for r, t0 in started.items() if r in got]
        every += lags
        per_watcher.append({"watcher": i, "missing": len(missing), **summary(lags)})
    return {
        "put": summary(puts),
        "convergence": summary(every),  # from the start of a write to each watcher yielding it
        "watchers": per_watcher,
        "within_1s": sum(1 for x in every if x <= 1.0) / len(every),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--watchers", type=int, default=3)
    ap.add_argument("--writes", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--routes", type=int, default=50)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import uvloop

    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    import aiohttp

    results: dict[str, Any] = {}
    for members in args.members:
        cluster = EtcdCluster(members).start()
        try:
            results[f"{members}_members"] = uvloop.run(converge(cluster.endpoints, args))
        finally:
            cluster.stop()
        r = results[f"{members}_members"]
        print(f"{members} member(s): put p50 {r['put']['p50_ms']} ms p99 {r['put']['p99_ms']} ms; "
              f"write -> every watcher p50 {r['convergence']['p50_ms']} ms p99 {r['convergence']['p99_ms']} ms "
              f"max {r['convergence']['max_ms']} ms; within 1 s: {r['within_1s']:.0%}")  # fmt: skip
    size = len(json.dumps(deployment(1, args.routes).config))
    commit = git_commit()
    doc = {
        "scenario": "etcd",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "etcd": etcd_version,
        "client": f"aiohttp {aiohttp.__version__} (etcd's v3 JSON gateway)",
        "watchers": args.watchers,
        "writes": args.writes,
        "interval_s": args.interval,
        "deployment_bytes": size,
        "machine": machine(),
        "results": results,
    }
    out = Path(args.out) if args.out else RESULTS / f"{datetime.now(timezone.utc):%Y-%m-%d}-etcd-{commit}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
