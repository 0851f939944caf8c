#!/usr/bin/env python3
"""Convergence of a fleet of gateway processes: how soon every gateway serves a write made through one of them.

An etcd of `--members` members (tests/etcdproc.py: loopback ports, data on /dev/shm) and `--gateways` gateways,
each a process `python -m fastgw serve CONFIG --store etcd://.../PREFIX` with its own admin API (one worker each).
The config has `--routes` routes (mock answers, a plugin each). `--writes` writes go one after another through the
first gateway's admin API (`PUT /routes/w`, a new body each time, each with the ETag it got from the last, so a
lost race would show as a 409), `--interval` apart. From each write's answer, every gateway is polled (`GET /w`,
one request after the other, no pause) until it answers the new body: that time, per gateway, is the convergence.
The writer itself answers only once it serves the write, so its figure is ~0 (one request); the others' is the way
through etcd: the store's transaction, the watch, the deployment checked and swapped in.

Reported: p50, p99, max per gateway and over the others, the write's own answer time (PUT /routes/w: checked,
stored with compare-and-swap, swapped in on the writer), and the share of writes every gateway served within 1 s
(issue 20's target). Results go to bench/results/<date>-fleet-<commit>.json. Everything shares this machine:
the gateways, etcd and the polling client compete for its CPUs, so the figures are upper bounds; the load average
before and after is kept in the result.

Usage: python bench/fleet.py [--members 3] [--gateways 3] [--writes 100] [--interval 0.05] [--routes 50]
Needs etcd (apt-get install etcd-server) and `pip install 'fastgw[etcd]'`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import orjson  # noqa: E402
from run import RESULTS, git_commit, machine  # noqa: E402

from fastgw.client import http_request  # noqa: E402
from tests.etcdproc import EtcdCluster  # noqa: E402
from tests.integration.gwprocess import GatewayProcess  # noqa: E402

_ADMIN = re.compile(r"admin API listening on http://127\.0\.0\.1:(\d+)")
_SERVING = re.compile(r"fastgw listening on http://127\.0\.0\.1:(\d+)")


def config(routes: int) -> str:
    lines = ["admin: {host: 127.0.0.1, port: 0}", "logging: {access_log: false}", "routes:"]
    lines += [f"  - {{name: r{i}, path: '/items/{i}/{{id}}', plugins: {{request-id: {{}}}}, "
              f"integration: {{type: mock, body: item-{i}}}}}" for i in range(routes)]  # fmt: skip
    lines.append("  - {name: w, path: /w, integration: {type: mock, body: start}}")
    return "\n".join(lines) + "\n"


async def gateway(path: Path, url: str) -> tuple[GatewayProcess, int, int]:
    """A gateway process, its port and its admin API's (both read from its log)."""
    proc = await GatewayProcess(path, "--store", url).start()
    port = admin = 0
    deadline = time.monotonic() + 30
    while not (port and admin):
        for line in proc.log:
            if m := _ADMIN.search(line):
                admin = int(m.group(1))
            elif m := _SERVING.search(line):
                port = int(m.group(1))
        if time.monotonic() > deadline:
            raise SystemExit("a gateway did not start:\n" + "\n".join(proc.log))
        await asyncio.sleep(0.02)
    return proc, port, admin


async def until(port: int, body: bytes, since: float, limit: float = 10.0) -> float:
    while True:
        if (await http_request(port, "GET", "/w")).body == body:
            return time.monotonic() - since
        if time.monotonic() - since > limit:
            return float("inf")


def summary(values_s: list[float]) -> dict[str, float]:
    xs = sorted(values_s)
    pick = lambda q: xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1000, 2), "p99_ms": round(pick(0.99) * 1000, 2),
            "max_ms": round(xs[-1] * 1000, 2), "count": len(xs)}  # fmt: skip


async def converge(cluster: EtcdCluster, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    url = f"{cluster.url}/bench-{uuid.uuid4().hex[:8]}"
    path = folder / "fleet.yaml"
    path.write_text(config(args.routes))
    gateways = []
    try:
        for _ in range(args.gateways):
            gateways.append(await gateway(path, url))
        ports = [port for _, port, _ in gateways]
        writer_admin = gateways[0][2]
        hdrs = {"content-type": "application/json"}
        r = await http_request(writer_admin, "GET", "/config", host="127.0.0.1")
        etag = r.header("etag") or ""
        for port in ports:  # every gateway serves the first deployment
            await until(port, b"start", time.monotonic(), 30)
        per_gateway: list[list[float]] = [[] for _ in ports]
        puts, refused = [], []
        for n in range(args.writes):
            body = f"write-{n}"
            began = time.monotonic()
            r = await http_request(writer_admin, "PUT", "/routes/w", body=orjson.dumps(
                {"path": "/w", "integration": {"type": "mock", "body": body}}),
                headers={**hdrs, "if-match": etag}, host="127.0.0.1")  # fmt: skip
            answered = time.monotonic()
            if r.status != 200:
                refused.append((n, r.status, r.body.decode(errors="replace")))
                r = await http_request(writer_admin, "GET", "/config", host="127.0.0.1")
                etag = r.header("etag") or ""
                continue
            puts.append(answered - began)
            etag = r.header("etag") or ""
            took = await asyncio.gather(*(until(port, body.encode(), answered) for port in ports))
            for i, t in enumerate(took):
                per_gateway[i].append(t)
            await asyncio.sleep(args.interval)
        followers = [t for times in per_gateway[1:] for t in times]
        within = sum(1 for n in range(len(puts)) if all(times[n] <= 1.0 for times in per_gateway))
        return {
            "put": summary(puts),
            "convergence_followers": summary(followers) if followers else {},
            "per_gateway": [
                {"gateway": i, "role": "writer" if i == 0 else "follower", **summary(times)}
                for i, times in enumerate(per_gateway)
            ],  # fmt: skip
            "within_1s": within / len(puts) if puts else 0.0,
            "refused": refused,
        }
    finally:
        for proc, _, _ in gateways:
            await proc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--gateways", type=int, default=3)
    ap.add_argument("--writes", type=int, default=100)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--routes", type=int, default=50)
    ap.add_argument("--label", default="", help="kept in the result and its file name (e.g. 'before')")
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import uvloop

    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    load_before = os.getloadavg()
    cluster = EtcdCluster(args.members).start()
    try:
        with tempfile.TemporaryDirectory(prefix="fastgw-fleet-") as folder:
            result = uvloop.run(converge(cluster, args, Path(folder)))
    finally:
        cluster.stop()
    commit = git_commit()
    doc = {
        "scenario": "fleet",
        "label": args.label,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "etcd": etcd_version,
        "members": args.members,
        "gateways": args.gateways,
        "writes": args.writes,
        "interval_s": args.interval,
        "routes": args.routes,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine(),
        **result,
    }
    f = result["convergence_followers"]
    print(f"{args.gateways} gateways on {args.members} etcd member(s), {result['put']['count']} "
          f"writes: PUT p50 {result['put']['p50_ms']} ms p99 {result['put']['p99_ms']} ms; write answered -> each "
          f"other gateway serving it: p50 {f.get('p50_ms')} ms p99 {f.get('p99_ms')} ms max {f.get('max_ms')} ms; "
          f"all within 1 s: {result['within_1s']:.0%}; refused {len(result['refused'])}")  # fmt: skip
    label = f"-{args.label}" if args.label else ""
    name = f"{datetime.now(timezone.utc):%Y-%m-%d}-fleet-{commit}{label}.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
