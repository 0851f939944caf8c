#!/usr/bin/env python3
"""A reload of a 10,000-route config under load (issue 20, item 1): does traffic pause?

Generates a config of `--routes` routes (each `/rN/{id}` with a rate-limit plugin) plus the route the load hits
(`/hot`, a mock), measures `fastgw check` on it, then serves it with fastgw (pinned to one CPU, `--workers N`)
while wrk loads `/hot` for `--duration` seconds from the other CPU; at a third and at two thirds of the run the
config is changed (every route renamed, so each reload is a new deployment of all 10,000) and `POST /reload`
is called. The result is what clients saw across both reloads: p50/p99 latency, failed requests (non-2xx, socket
errors), and how long each reload took to answer. Results go to bench/results/<date>-reload-<commit>.json.

Targets: `fastgw check` <= 1.5 s; p99 <= 50 ms and 0 failed requests across the reloads.

Usage: python bench/reload.py [--routes 10000] [--duration 12] [--connections 50] [--workers 1]
       [--tree PATH  (another checkout's fastgw, e.g. main before the control plane, for a before/after)]
Needs wrk. The lead runs this; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import LOAD_CPU, PROXY_CPU, RESULTS, free_port, git_commit, machine, parse_wrk, wait_ready  # noqa: E402


def config_yaml(routes: int, port: int, admin: int, version: str) -> str:
    out = [
        f"server: {{host: 127.0.0.1, port: {port}, via: false}}",
        "logging: {access_log: false, level: warning}",
        f"admin: {{host: 127.0.0.1, port: {admin}, metrics: false}}",
        "routes:",
        f"  - {{name: hot, path: /hot, methods: [GET], integration: {{type: mock, body: {version}}}}}",
    ]
    for i in range(routes):
        out.append(
            f"  - name: r{i}-{version}\n    path: /r{i}/{{id}}\n    methods: [GET]\n"
            f"    integration: {{type: mock, body: r{i}}}\n"
            f"    plugins: {{rate-limit: {{rate: 1000000, key: ip}}}}"
        )
    return "\n".join(out) + "\n"


def check_seconds(python: str, path: Path, env: dict[str, str], runs: int = 3) -> tuple[list[float], list[float]]:
    """Wall seconds of each `fastgw check`, and the CPU seconds (user + system) it used: on a machine shared with
    other work the wall time measures the neighbours too."""
    import resource

    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        # NOTE: run from the config's folder: `python -m` puts the working directory first on sys.path, which
        # would pick this checkout's fastgw over --tree's.
        subprocess.run([python, "-m", "fastgw", "check", str(path)], env=env, check=True, capture_output=True,
                       cwd=path.parent)  # fmt: skip
        times.append(round(time.monotonic() - t0, 3))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 3))
    return times, cpu


def reload(admin: int) -> tuple[int, float, str]:
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=120)
    try:
        conn.request("POST", "/reload", headers={"host": f"127.0.0.1:{admin}"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
    finally:
        conn.close()
    return resp.status, round(time.monotonic() - t0, 3), body[:300]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--routes", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=12, help="seconds of wrk load (two reloads inside)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reloads", type=int, default=2, help="reloads during the run (0: the same load, no reload)")
    ap.add_argument("--tree", help="run the fastgw of this checkout instead (PYTHONPATH), for a before/after")
    ap.add_argument("--label", default="", help="kept in the result (e.g. 'before')")
    args = ap.parse_args()
    root = Path(args.tree).resolve() if args.tree else Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or git_commit()  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="fastgw-reload-bench-"))
    port, admin = free_port(), free_port()
    cfg = folder / "gw.yaml"
    cfg.write_text(config_yaml(args.routes, port, admin, "a"))
    print(f"config: {args.routes} routes, {cfg.stat().st_size} bytes", flush=True)
    checks, checks_cpu = check_seconds(sys.executable, cfg, env)
    print(f"fastgw check: {checks} s ({checks_cpu} s CPU)", flush=True)

    log = open(folder / "gw.log", "wb")  # noqa: SIM115 - closed below
    gw = subprocess.Popen(
        ["taskset", "-c", PROXY_CPU, sys.executable, "-m", "fastgw", "serve", str(cfg), "--workers", str(args.workers)],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder,
    )  # fmt: skip
    result: dict[str, object] = {}
    try:
        wait_ready(f"http://127.0.0.1:{port}/hot", b"a", timeout=120)
        reloads: list[dict[str, object]] = []

        def reloader() -> None:
            for version in "bcdefgh"[: args.reloads]:
                time.sleep(args.duration / (args.reloads + 1))
                cfg.write_text(config_yaml(args.routes, port, admin, version))
                status, took, body = reload(admin)
                reloads.append({"status": status, "answered_after_s": took, "answer": body})
                print(f"reload {version}: {status} in {took} s", flush=True)

        probe: list[float] = []
        probing = threading.Event()

        def prober() -> None:
            """One more client, one request every 20 ms on a connection of its own, each timed to its answer
            however late: wrk reports only the requests that finished within its run, so a stall that outlasts
            the run never shows in its figures."""
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while not probing.is_set():
                t0 = time.monotonic()
                try:
                    conn.request("GET", "/hot")
                    conn.getresponse().read()
                except OSError:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                    probe.append(float("inf"))
                    continue
                probe.append((time.monotonic() - t0) * 1000)
                time.sleep(0.02)
            conn.close()

        p = threading.Thread(target=prober)
        p.start()
        t = threading.Thread(target=reloader)
        t.start()
        cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
               f"http://127.0.0.1:{port}/hot"]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=args.duration + 60).stdout
        t.join()
        probing.set()
        p.join()
        wrk = parse_wrk(out)
        ordered = sorted(probe)
        requests = re.search(r"(\d+) requests in", out)
        m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", out, re.M)  # avg, stdev, max
        served = subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/hot"], capture_output=True, text=True).stdout
        result = {
            "scenario": "reload",
            "label": args.label,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": commit,
            "machine": machine(),
            "load_average": os.getloadavg(),
            "routes": args.routes,
            "config_bytes": cfg.stat().st_size,
            "workers": args.workers,
            "reloads_asked": args.reloads,
            "check_seconds": checks,
            "check_seconds_median": statistics.median(checks),
            "check_cpu_seconds": checks_cpu,
            "wrk": {**wrk, "requests": int(requests.group(1)) if requests else None, "max": m.group(1) if m else ""},
            "failed_requests": int(wrk["non_2xx"]) + int(wrk["socket_errors"]) + probe.count(float("inf")),
            "probe": {
                "requests": len(probe),
                "p99_ms": round(ordered[int(len(ordered) * 0.99)], 2) if ordered else None,
                "max_ms": round(ordered[-1], 2) if ordered else None,
            },
            "reloads": reloads,
            "serving_after": served,
            "targets": {"check_seconds": 1.5, "p99_ms": 50, "failed_requests": 0},
            "wrk_output": out,
        }  # fmt: skip
    finally:
        gw.terminate()
        try:
            gw.wait(30)
        except subprocess.TimeoutExpired:
            gw.kill()
        log.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{datetime.now(timezone.utc):%Y-%m-%d}-reload-{commit}{'-' + args.label if args.label else ''}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("check_seconds", "failed_requests", "reloads")}, indent=1))
    print(
        f"p50 {result['wrk']['p50_ms']} ms, p99 {result['wrk']['p99_ms']} ms, max {result['wrk']['max']}; "
        f"probe {result['probe']}; written to bench/results/{name}"
    )  # type: ignore[index]
    return 0


if __name__ == "__main__":
    sys.exit(main())
