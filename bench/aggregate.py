#!/usr/bin/env python3
"""Aggregation of two backends, benched beside the two sequential client calls it replaces.

Two nginx upstreams answer small JSON objects. fastgw serves `/agg` (an aggregate of both, merged under two
groups) and `/users`, `/orders` (plain proxy routes to each). wrk loads `/agg`, then `/users` and `/orders` in
turn on each connection (a client making the two calls one after the other); a logical answer is one `/agg`
response or two plain ones. The result (bench/results/<date>-aggregate-<commit>.json) gives logical answers per
second and the latency of one: the aggregate's p50/p99, and twice the plain p50/p99 for the sequential client.

Usage: python bench/aggregate.py [--duration 10] [--rounds 3] [--connections 50]
Needs nginx and wrk (as bench/run.py). The lead runs this; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from run import (
    LOAD_CPU,
    PROXY_CPU,
    RESULTS,
    ensure_tools,
    free_port,
    git_commit,
    machine,
    nginx_conf,
    parse_wrk,
    start,
    stop,
    wait_ready,
)

FASTGW_CONFIG = """
server: {{host: 127.0.0.1, port: {port}, via: false}}
logging: {{access_log: false, level: warning}}
upstreams:
  users: {{targets: ["http://127.0.0.1:{users}"]}}
  orders: {{targets: ["http://127.0.0.1:{orders}"]}}
routes:
  - path: /agg
    integration:
      type: aggregate
      backends:
        - {{upstream: users, path: /users, group: user}}
        - {{upstream: orders, path: /orders, group: orders}}
  - {{path: /users, integration: {{type: http, upstream: users}}}}
  - {{path: /orders, integration: {{type: http, upstream: orders}}}}
"""

# Each connection alternates /users and /orders: two sequential calls per logical answer.
SEQUENTIAL = r"""
local n = 0
request = function()
  n = n + 1
  if n % 2 == 1 then return wrk.format("GET", "/users") else return wrk.format("GET", "/orders") end
end
"""


def json_upstream(prefix: Path, port: int, body: str) -> Path:
    return nginx_conf(
        prefix,
        f"  server {{ listen 127.0.0.1:{port} reuseport backlog=4096;\n"
        f"    location / {{ default_type application/json; return 200 '{body}'; }} }}",
    )


def wrk(url: str, duration: int, connections: int, script: Path | None = None) -> dict[str, float]:
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    return parse_wrk(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--out")
    args = ap.parse_args()
    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="fastgw-aggregate-"))
    users, orders, gw_port = free_port(), free_port(), free_port()
    script = work / "sequential.lua"
    script.write_text(SEQUENTIAL)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name, port, body in (("users", users, '{"id":1,"name":"ada"}'), ("orders", orders, '{"count":3}')):
            conf = json_upstream(work / name, port, body)
            procs.append(start(["nginx", "-p", str(work / name), "-c", str(conf)], LOAD_CPU, work / f"{name}.log"))
        cfg = work / "fastgw.yaml"
        cfg.write_text(FASTGW_CONFIG.format(port=gw_port, users=users, orders=orders))
        env = {k: v for k, v in os.environ.items() if k != "FASTGW_NO_EXTENSIONS"}
        procs.append(start([sys.executable, "-m", "fastgw", "serve", str(cfg)], PROXY_CPU, work / "gw.log", env))
        wait_ready(f"http://127.0.0.1:{gw_port}/agg", b'"orders"')
        base = f"http://127.0.0.1:{gw_port}"
        agg_runs, seq_runs = [], []
        wrk(f"{base}/agg", 2, args.connections)
        wrk(f"{base}/users", 2, args.connections, script)
        for _ in range(args.rounds):
            agg_runs.append(wrk(f"{base}/agg", args.duration, args.connections))
            seq_runs.append(wrk(f"{base}/users", args.duration, args.connections, script))

        def med(runs: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        result = {
            "scenario": "aggregate",
            "description": "aggregate of two nginx JSON backends vs. the same two calls made one after the other",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": git_commit(),
            "settings": {"duration_s": args.duration, "rounds": args.rounds, "connections": args.connections},
            "machine": machine(),
            "aggregate": {
                "answers_per_s": med(agg_runs, "rps"),
                "p50_ms": med(agg_runs, "p50_ms"),
                "p99_ms": med(agg_runs, "p99_ms"),
                "runs": agg_runs,
            },
            "sequential": {
                "answers_per_s": med(seq_runs, "rps") / 2,  # two requests per logical answer
                "p50_ms_two_calls": 2 * med(seq_runs, "p50_ms"),
                "p99_ms_two_calls": 2 * med(seq_runs, "p99_ms"),
                "runs": seq_runs,
            },
        }
        out = Path(args.out) if args.out else RESULTS / f"{result['date'][:10]}-aggregate-{result['commit']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: result[k] for k in ("aggregate", "sequential")}, indent=2, default=str)[:2000])
        print(f"wrote {out}")
        return 0
    finally:
        stop(procs, timeout=5)


if __name__ == "__main__":
    sys.exit(main())
