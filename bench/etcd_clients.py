#!/usr/bin/env python3
"""The etcd clients fastgw could use, timed on what the etcd store does (the record behind the choice written in
fastgw/control/etcd.py and docs/operations.md, "Running a fleet").

On one etcd member (tests/etcdproc.py), on uvloop, each client in turn (`--rounds` rounds, the clients alternating
so the machine's drift falls on all alike) times `--n` of each:
- txn put: the store's write, a transaction compared on a key's mod revision putting a deployment-sized value;
- range: reading that key;
- watch delivery: from the start of a plain put to a watch on the key yielding the event (`--n` / 3 of them).
Clients: `aiohttp` and `httpx` over etcd's v3 JSON gateway, `aetcd` (gRPC through grpcio's asyncio API). One not
installed is left out and named so (`pip install aetcd httpx` in a scratch folder, then PYTHONPATH=that folder).
Results go to bench/results/<date>-etcd-clients-<commit>.json: per client the median over rounds of each p50 and
p99, in ms.

Usage: python bench/etcd_clients.py [--rounds 3] [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib.metadata
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import RESULTS, git_commit, machine  # noqa: E402

from tests.etcdproc import EtcdCluster  # noqa: E402

VALUE = json.dumps({"routes": [{"path": f"/r{i}", "integration": {"type": "mock"}} for i in range(50)]}).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def stats(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    return {"p50_ms": xs[len(xs) // 2] * 1000, "p99_ms": xs[max(0, int(len(xs) * 0.99) - 1)] * 1000}


async def timed(n: int, op: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        await op()
        lat.append(time.perf_counter() - t)
    return stats(lat)


async def json_gateway(kind: str, url: str, n: int) -> dict[str, dict[str, float]]:
    key = f"/bench/{kind}".encode()
    if kind == "aiohttp":
        import aiohttp

        session: Any = aiohttp.ClientSession()

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(url + path, json=body) as r:
                return dict(await r.json(content_type=None))

        async def stream(body: dict[str, Any], out: asyncio.Queue[float], ready: asyncio.Event) -> None:
            timeout = aiohttp.ClientTimeout(total=None)
            async with session.post(url + "/v3/watch", json=body, timeout=timeout) as r:
                buf = b""
                async for chunk in r.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        result = json.loads(line)["result"]
                        ready.set()
                        for _ in result.get("events", []):
                            out.put_nowait(time.perf_counter())
    else:
        import httpx

        session = httpx.AsyncClient()

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            return dict((await session.post(url + path, json=body)).json())

        async def stream(body: dict[str, Any], out: asyncio.Queue[float], ready: asyncio.Event) -> None:
            async with session.stream("POST", url + "/v3/watch", json=body, timeout=None) as r:
                async for line in r.aiter_lines():
                    if line.strip():
                        result = json.loads(line)["result"]
                        ready.set()
                        for _ in result.get("events", []):
                            out.put_nowait(time.perf_counter())

    try:
        await post("/v3/kv/put", {"key": b64(key), "value": b64(b"x")})
        rev = int((await post("/v3/kv/range", {"key": b64(key)}))["kvs"][0]["mod_revision"])

        async def txn() -> None:
            nonlocal rev
            compare = [{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev}]
            success = [{"request_put": {"key": b64(key), "value": b64(VALUE)}}]
            r = await post("/v3/kv/txn", {"compare": compare, "success": success})
            assert r.get("succeeded"), r
            rev = int(r["header"]["revision"])

        async def read() -> None:
            r = await post("/v3/kv/range", {"key": b64(key)})
            base64.b64decode(r["kvs"][0]["value"])

        out: dict[str, dict[str, float]] = {"txn_put": await timed(n, txn), "range": await timed(n, read)}
        arrivals: asyncio.Queue[float] = asyncio.Queue()
        ready = asyncio.Event()
        task = asyncio.create_task(stream({"create_request": {"key": b64(key)}}, arrivals, ready))
        await asyncio.wait_for(ready.wait(), 5)
        lat = []
        for _ in range(n // 3):
            t = time.perf_counter()
            await post("/v3/kv/put", {"key": b64(key), "value": b64(VALUE)})
            lat.append(await arrivals.get() - t)
        out["watch_delivery"] = stats(lat)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return out
    finally:
        await (session.close() if kind == "aiohttp" else session.aclose())


async def grpc_aetcd(port: int, n: int) -> dict[str, dict[str, float]]:
    import aetcd

    async with aetcd.Client(host="127.0.0.1", port=port, timeout=5) as c:
        key = b"/bench/aetcd"
        await c.put(key, b"x")
        rev = (await c.get(key)).mod_revision

        async def txn() -> None:
            nonlocal rev
            ok, _ = await c.transaction(compare=[c.transactions.mod(key) == rev],
                                        success=[c.transactions.put(key, VALUE)], failure=[])  # fmt: skip
            assert ok
            rev += 1  # nothing else writes: the next revision is known (aetcd does not hand back the header)

        async def read() -> None:
            (await c.get(key)).value  # noqa: B018

        out = {"txn_put": await timed(n, txn), "range": await timed(n, read)}
        arrivals: asyncio.Queue[float] = asyncio.Queue()
        watch = await c.watch(key)

        async def follow() -> None:
            async for _ in watch:
                arrivals.put_nowait(time.perf_counter())

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        lat = []
        for _ in range(n // 3):
            t = time.perf_counter()
            await c.put(key, VALUE)
            lat.append(await arrivals.get() - t)
        out["watch_delivery"] = stats(lat)
        await watch.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    import uvloop

    clients = [c for c in ("aiohttp", "aetcd", "httpx") if importlib.util.find_spec(c) is not None]
    missing = [c for c in ("aiohttp", "aetcd", "httpx") if c not in clients]
    versions = {c: importlib.metadata.version(c) for c in clients}
    cluster = EtcdCluster(1).start()
    runs: dict[str, list[dict[str, dict[str, float]]]] = {c: [] for c in clients}
    try:
        member = cluster.members[0]
        for _ in range(args.rounds):
            for c in clients:
                if c == "aetcd":
                    runs[c].append(uvloop.run(grpc_aetcd(member.client_port, args.n)))
                else:
                    runs[c].append(uvloop.run(json_gateway(c, member.url, args.n)))
    finally:
        cluster.stop()
    results: dict[str, Any] = {}
    for c, rounds in runs.items():
        results[c] = {
            op: {q: round(statistics.median(r[op][q] for r in rounds), 3) for q in ("p50_ms", "p99_ms")}
            for op in rounds[0]
        }
        print(c, json.dumps(results[c]))
    commit = git_commit()
    doc = {
        "scenario": "etcd-clients",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "versions": versions,
        "not_installed": missing,
        "rounds": args.rounds,
        "n": args.n,
        "value_bytes": len(VALUE),
        "machine": machine(),
        "results": results,
    }
    out = Path(args.out) if args.out else RESULTS / f"{datetime.now(timezone.utc):%Y-%m-%d}-etcd-clients-{commit}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
