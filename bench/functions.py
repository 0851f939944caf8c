#!/usr/bin/env python3
"""Function routes under load: a warm Python and a warm Node.js handler behind fastgw's Lambda proxy integration.

fastgw (one worker) and its function workers are pinned to CPU 0, wrk to CPU 1. For each runtime it measures
light load (one connection: the latency of a warm invocation through the whole gateway) and a loaded run
(4 connections per worker: throughput). A third route sleeps 50 ms in the handler to show that invocations of one
function run concurrently up to its pool size: its throughput divided by 20/s is the number of invocations that
overlapped. There is no nginx column: nginx cannot run a function; the targets are absolute (issue 3: warm
Python p50 under 1 ms, Node.js under 2 ms at light load).

`--scenario authorizer` measures instead a warm invocation behind a Lambda authorizer (issue 21): the same Python
route plain, behind a TOKEN `lambda-authorizer` whose answers are cached (ttl 300: one invocation, then a dictionary
lookup and the policy match), and behind one that is not (ttl 0: the authorizer function is invoked on every request,
two invocations per request), each at light load (one connection) and loaded (4 connections per worker).

Usage: python bench/functions.py [--duration 5] [--out FILE] [--scenario functions|authorizer]
Results go to bench/results/<date>-functions-<commit>.json (or <date>-functions-authorizer-<commit>.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (  # noqa: E402 - the comparison script's helpers
    LOAD_CPU,
    PROXY_CPU,
    RESULTS,
    cpu_seconds,
    ensure_tools,
    free_port,
    git_commit,
    machine,
    parse_wrk,
    start,
    steal_ticks,
    wait_ready,
)

POOL = 2  # workers per function: one per CPU of the development VM
SLEEP_POOL = 4
SLEEP_S = 0.05

PY_HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
PY_SLEEP = (
    "import time\ndef handler(event, context):\n    time.sleep(0.05)\n    return {'statusCode': 200, 'body': 'ok'}\n"
)
NODE_HANDLER = "export const handler = async (event) => ({ statusCode: 200, body: 'ok' });\n"

CONFIG = f"""\
server: {{host: 127.0.0.1, port: {{port}}}}
logging: {{access_log: false, level: warning}}
functions:
  py: {{runtime: python, handler: app.handler, code: py, concurrency: {POOL}, warm: {POOL}}}
  node: {{runtime: nodejs, handler: index.handler, code: node, concurrency: {POOL}, warm: {POOL}}}
  sleepy: {{runtime: python, handler: sleepy.handler, code: py, concurrency: {SLEEP_POOL}, warm: {SLEEP_POOL}}}
routes:
  - {{path: /py, integration: {{type: lambda, function: py}}}}
  - {{path: /node, integration: {{type: lambda, function: node}}}}
  - {{path: /sleep, integration: {{type: lambda, function: sleepy}}}}
"""

# The authorizer allows every method of the API (a wildcard resource, as authorizers behind a cache must).
AUTHORIZER = (
    "def handler(event, context):\n"
    "    arn = event['methodArn'].split('/', 1)[0] + '/*'\n"
    "    return {'principalId': 'bench', 'context': {'tier': 'gold'}, 'policyDocument': {'Version': '2012-10-17',\n"
    "            'Statement': [{'Action': 'execute-api:Invoke', 'Effect': 'Allow', 'Resource': arn}]}}\n"
)
AUTHZ_CONFIG = f"""\
server: {{host: 127.0.0.1, port: {{port}}}}
logging: {{access_log: false, level: warning}}
functions:
  py: {{runtime: python, handler: app.handler, code: py, concurrency: {POOL}, warm: {POOL}}}
  authz: {{runtime: python, handler: authz.handler, code: py, concurrency: {POOL}, warm: {POOL}}}
routes:
  - {{path: /plain, integration: {{type: lambda, function: py}}}}
  - path: /cached
    integration: {{type: lambda, function: py}}
    plugins: {{lambda-authorizer: {{function: authz, ttl: 300}}}}
  - path: /uncached
    integration: {{type: lambda, function: py}}
    plugins: {{lambda-authorizer: {{function: authz, ttl: 0}}}}
"""
TOKEN = "Authorization: Bearer bench-token"


def wrk(url: str, duration: int, connections: int, pid: int, header: str | None = None) -> dict[str, float]:
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    cmd += ["-H", header, url] if header else [url]
    cpu0 = cpu_seconds(pid)
    st0, tot0 = steal_ticks()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    st1, tot1 = steal_ticks()
    res = parse_wrk(out)
    res["gateway_cpu_s"] = round(cpu_seconds(pid) - cpu0, 3)
    res["steal_pct"] = round(100 * (st1 - st0) / max(1, tot1 - tot0), 1)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--out", help="result file (default: bench/results/<date>-functions-<commit>.json)")
    ap.add_argument("--scenario", choices=("functions", "authorizer"), default="functions")
    args = ap.parse_args()
    ensure_tools()
    if args.scenario == "authorizer":
        return authorizer(args)
    if shutil.which("node") is None:
        sys.exit("needs node for the nodejs runtime (apt-get install -y nodejs)")

    work = Path(tempfile.mkdtemp(prefix="fastgw-fbench-"))
    gw = None
    try:
        (work / "py").mkdir()
        (work / "py" / "app.py").write_text(PY_HANDLER)
        (work / "py" / "sleepy.py").write_text(PY_SLEEP)
        (work / "node").mkdir()
        (work / "node" / "index.mjs").write_text(NODE_HANDLER)
        port = free_port()
        cfg = work / "fastgw.yaml"
        cfg.write_text(CONFIG.replace("{port}", str(port)))
        gw = start([sys.executable, "-m", "fastgw", "serve", str(cfg)], PROXY_CPU, work / "gw.log")
        for path in ("py", "node", "sleep"):
            wait_ready(f"http://127.0.0.1:{port}/{path}", b"ok")
        results: dict[str, dict[str, object]] = {}
        for name in ("py", "node"):
            url = f"http://127.0.0.1:{port}/{name}"
            wrk(url, 1, 1, gw.pid)  # warm-up
            light = wrk(url, args.duration, 1, gw.pid)
            loaded = wrk(url, args.duration, POOL * 4, gw.pid)
            results["python" if name == "py" else "nodejs"] = {"light_c1": light, f"loaded_c{POOL * 4}": loaded}
            print(
                f"{name:5s} light: {light['rps']:8.0f} req/s  p50 {light['p50_ms']:.3f} ms  "
                f"p99 {light['p99_ms']:.3f} ms"
                f"   loaded: {loaded['rps']:8.0f} req/s  p50 {loaded['p50_ms']:.3f} ms  p99 {loaded['p99_ms']:.3f} ms",
                flush=True,
            )
        url = f"http://127.0.0.1:{port}/sleep"
        conc = {}
        for c in (1, SLEEP_POOL, SLEEP_POOL * 2):
            r = wrk(url, args.duration, c, gw.pid)
            r["overlapping_invocations"] = round(r["rps"] * SLEEP_S, 2)
            conc[f"c{c}"] = r
            print(f"sleep 50 ms, {c} connections: {r['rps']:.0f} req/s -> {r['overlapping_invocations']} at once")
        results["concurrency_50ms_handler"] = {"pool": SLEEP_POOL, **conc}

        summary = {
            "python_light_p50_ms": results["python"]["light_c1"]["p50_ms"],  # type: ignore[index]
            "nodejs_light_p50_ms": results["nodejs"]["light_c1"]["p50_ms"],  # type: ignore[index]
            "python_loaded_rps": results["python"][f"loaded_c{POOL * 4}"]["rps"],  # type: ignore[index]
            "nodejs_loaded_rps": results["nodejs"][f"loaded_c{POOL * 4}"]["rps"],  # type: ignore[index]
            "overlapping_at_pool_size": conc[f"c{SLEEP_POOL}"]["overlapping_invocations"],
            "targets": {"python_p50_ms": 1.0, "nodejs_p50_ms": 2.0, "overlap": SLEEP_POOL},
        }
        summary["targets_met"] = (
            summary["python_light_p50_ms"] < 1.0
            and summary["nodejs_light_p50_ms"] < 2.0
            and summary["overlapping_at_pool_size"] >= SLEEP_POOL * 0.8
        )
        result = {
            "scenario": "functions",
            "description": "Lambda proxy integration (payload 2.0) to warm python and nodejs workers; gateway and "
            "workers on CPU 0, wrk on CPU 1",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": git_commit(),
            "settings": {"duration_s": args.duration, "pool": POOL, "proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU},
            "machine": machine(),
            "summary": summary,
            "runs": results,
        }
        out = Path(args.out) if args.out else RESULTS / f"{result['date'][:10]}-functions-{result['commit']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"\nwarm p50 at light load: python {summary['python_light_p50_ms']:.3f} ms (target < 1), nodejs "
            f"{summary['nodejs_light_p50_ms']:.3f} ms (target < 2); {summary['overlapping_at_pool_size']} of "
            f"{SLEEP_POOL} invocations overlapped  ->  {out}"
        )
        return 0
    finally:
        if gw is not None:
            gw.terminate()
            try:
                gw.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gw.kill()
        time.sleep(0.2)
        shutil.rmtree(work, ignore_errors=True)


def authorizer(args: argparse.Namespace) -> int:
    """A warm Python route plain, behind a cached Lambda authorizer, and behind an uncached one."""
    work = Path(tempfile.mkdtemp(prefix="fastgw-abench-"))
    gw = None
    try:
        (work / "py").mkdir()
        (work / "py" / "app.py").write_text(PY_HANDLER)
        (work / "py" / "authz.py").write_text(AUTHORIZER)
        port = free_port()
        cfg = work / "fastgw.yaml"
        cfg.write_text(AUTHZ_CONFIG.replace("{port}", str(port)))
        gw = start([sys.executable, "-m", "fastgw", "serve", str(cfg)], PROXY_CPU, work / "gw.log")
        wait_ready(f"http://127.0.0.1:{port}/plain", b"ok")
        results: dict[str, dict[str, object]] = {}
        for name in ("plain", "cached", "uncached"):
            url = f"http://127.0.0.1:{port}/{name}"
            header = None if name == "plain" else TOKEN
            wrk(url, 1, 1, gw.pid, header)  # warm-up (and, for /cached, the one invocation the cache keeps)
            light = wrk(url, args.duration, 1, gw.pid, header)
            loaded = wrk(url, args.duration, POOL * 4, gw.pid, header)
            if light["non_2xx"] or loaded["non_2xx"]:
                sys.exit(f"/{name} answered non-2xx under load: see {work / 'gw.log'}")
            results[name] = {"light_c1": light, f"loaded_c{POOL * 4}": loaded}
            print(
                f"{name:8s} light: {light['rps']:8.0f} req/s  p50 {light['p50_ms']:.3f} ms  "
                f"p99 {light['p99_ms']:.3f} ms"
                f"   loaded: {loaded['rps']:8.0f} req/s  p50 {loaded['p50_ms']:.3f} ms  p99 {loaded['p99_ms']:.3f} ms",
                flush=True,
            )
        p50 = {name: r["light_c1"]["p50_ms"] for name, r in results.items()}  # type: ignore[index]
        summary = {
            "plain_light_p50_ms": p50["plain"],
            "cached_light_p50_ms": p50["cached"],
            "uncached_light_p50_ms": p50["uncached"],
            "cached_added_p50_ms": round(p50["cached"] - p50["plain"], 3),  # type: ignore[operator]
            "uncached_added_p50_ms": round(p50["uncached"] - p50["plain"], 3),  # type: ignore[operator]
            "loaded_rps": {name: r[f"loaded_c{POOL * 4}"]["rps"] for name, r in results.items()},  # type: ignore[index]
        }
        result = {
            "scenario": "functions-authorizer",
            "description": "a warm python route (Lambda proxy, payload 2.0) plain, behind a TOKEN lambda-authorizer "
            "(python) with its answers cached (ttl 300), and uncached (ttl 0: two invocations per request); gateway "
            "and workers on CPU 0, wrk on CPU 1",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": git_commit(),
            "settings": {"duration_s": args.duration, "pool": POOL, "proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU},
            "machine": machine(),
            "summary": summary,
            "runs": results,
        }
        default = RESULTS / f"{result['date'][:10]}-functions-authorizer-{result['commit']}.json"
        out = Path(args.out) if args.out else default
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(
            f"\nwarm p50 at light load: plain {p50['plain']:.3f} ms, cached authorizer {p50['cached']:.3f} ms, "
            f"uncached {p50['uncached']:.3f} ms  ->  {out}"
        )
        return 0
    finally:
        if gw is not None:
            gw.terminate()
            try:
                gw.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gw.kill()
        time.sleep(0.2)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
