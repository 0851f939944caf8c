#!/usr/bin/env python3
"""The failure drill: three targets behind a proxy under steady load, one killed midway and started again.

Three nginx targets answer a small fixed response. fastgw and an nginx reverse proxy, both configured to survive
a dead target (retry on another one; mark the dead one failed), forward to the same three. Each proxy in turn is
loaded with wrk for `--duration` seconds; a third of the way in target 2 is killed (SIGKILL: connections reset,
then refused), two thirds in it is started again. A wrk script counts answers and errors per second, so the
result shows what clients saw: errors (the target for GET is zero) and the throughput dip around the kill and
the restart. Results go to bench/results/<date>-failover-<commit>.json, fastgw and nginx side by side.

Equivalent settings:
  fastgw: retries {attempts: 2, when: [error, timeout]}, passive checks (3 failures in a row, 5 s ejection),
          active checks every 1 s (GET /, 2 failures down, 2 passes up), connect_timeout 1 s
  nginx:  proxy_next_upstream error timeout; proxy_next_upstream_tries 2; server ... max_fails=3 fail_timeout=5s;
          proxy_connect_timeout 1s (nginx OSS has no active checks: it probes a failed server after fail_timeout)

Usage: python bench/failover.py [--duration 30] [--connections 50]
Needs nginx and wrk (as bench/run.py). The lead runs this; it is not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from run import (
    LOAD_CPU,
    PROXY_CPU,
    RESULTS,
    UPSTREAM_BODY,
    ensure_tools,
    free_port,
    git_commit,
    machine,
    nginx_conf,
    start,
    stop,
    wait_ready,
)

FASTGW_CONFIG = """
server: {{host: 127.0.0.1, port: {port}, via: false}}
logging: {{access_log: false, level: warning}}
upstreams:
  backend:
    targets: [{targets}]
    connect_timeout: 1
    retries: {{attempts: 2, when: [error, timeout]}}
    health:
      passive: {{consecutive_failures: 3, base_ejection: 5, max_ejection: 30}}
      active: {{path: /, interval: 1, timeout: 0.5, unhealthy_threshold: 2, healthy_threshold: 2}}
routes:
  - path: /{{proxy+}}
    integration: {{type: http, upstream: backend}}
"""

# Answers and errors per second of wall time, summed over wrk's threads in `done`.
WRK_SCRIPT = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = {}; bad = {} end
function response(status, headers, body)
  local s = os.time()
  if status >= 200 and status < 400 then ok[s] = (ok[s] or 0) + 1 else bad[s] = (bad[s] or 0) + 1 end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for s, n in pairs(t:get("ok")) do io.write(string.format("OK %d %d\n", s, n)) end
    for s, n in pairs(t:get("bad")) do io.write(string.format("BAD %d %d\n", s, n)) end
  end
  local e = summary.errors
  io.write(string.format("SOCKET %d %d %d %d %d\n", e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def target_conf(prefix: Path, port: int) -> Path:
    return nginx_conf(
        prefix,
        f"  server {{ listen 127.0.0.1:{port} reuseport backlog=4096;\n"
        f"    location / {{ default_type text/plain; return 200 '{UPSTREAM_BODY}'; }} }}",
    )


def proxy_conf(prefix: Path, port: int, targets: list[int]) -> Path:
    servers = "".join(f"server 127.0.0.1:{p} max_fails=3 fail_timeout=5s; " for p in targets)
    return nginx_conf(
        prefix,
        f"  upstream backend {{ {servers}keepalive 256; keepalive_requests 1000000; }}\n"
        f"  server {{ listen 127.0.0.1:{port} backlog=4096;\n"
        "    location / { proxy_pass http://backend; proxy_http_version 1.1;\n"
        '      proxy_set_header Connection ""; proxy_connect_timeout 1s;\n'
        "      proxy_next_upstream error timeout; proxy_next_upstream_tries 2; } }",
    )


class Target:
    """One nginx target that can be killed and started again on the same port."""

    def __init__(self, work: Path, index: int) -> None:
        self.port = free_port()
        self.prefix = work / f"target{index}"
        self.conf = target_conf(self.prefix, self.port)
        self.log = work / f"target{index}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = start(["nginx", "-p", str(self.prefix), "-c", str(self.conf)], LOAD_CPU, self.log)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


def drill(url: str, victim: Target, duration: int, connections: int, script: Path) -> dict[str, object]:
    """Load `url` for `duration` s; kill `victim` at 1/3, start it again at 2/3. Per-second counts and totals."""
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(script), url]
    events: list[tuple[str, float]] = []

    def chaos() -> None:
        time.sleep(duration / 3)
        victim.kill()
        events.append(("killed", time.time()))
        time.sleep(duration / 3)
        victim.start()
        events.append(("restarted", time.time()))

    t0 = time.time()
    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 60).stdout
    chaos_thread.join()
    ok: dict[int, int] = {}
    bad: dict[int, int] = {}
    socket_errors = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("OK", "BAD"):
            bucket = ok if parts[0] == "OK" else bad
            bucket[int(parts[1])] = bucket.get(int(parts[1]), 0) + int(parts[2])
        elif parts and parts[0] == "SOCKET":
            socket_errors = dict(
                zip(("connect", "read", "write", "status", "timeout"), map(int, parts[1:]), strict=True)
            )
    seconds = sorted(set(ok) | set(bad))
    series = [{"t": s - int(t0), "ok": ok.get(s, 0), "errors": bad.get(s, 0)} for s in seconds]
    # Whole seconds only: the first and last are partial.
    steady = [p["ok"] for p in series[1:-1]]
    kill_at = next((ts for what, ts in events if what == "killed"), t0) - t0
    before = [p["ok"] for p in series[1:-1] if p["t"] < kill_at - 1] or steady
    baseline = statistics.median(before) if before else 0
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {
        "requests_ok": sum(ok.values()),
        "client_errors": sum(bad.values()) + sum(v for k, v in socket_errors.items() if k != "status"),
        "non_2xx_3xx": sum(bad.values()),
        "socket_errors": socket_errors,
        "rps": float(rps.group(1)) if rps else 0.0,
        "baseline_rps": baseline,
        "worst_second_rps": min(steady) if steady else 0,
        "dip_pct": round(100 * (1 - min(steady) / baseline), 1) if steady and baseline else 0.0,
        "events": [{"what": what, "t": round(ts - t0, 2)} for what, ts in events],
        "per_second": series,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=30, help="seconds of load per proxy")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--out", help="result file (default: bench/results/<date>-failover-<commit>.json)")
    args = ap.parse_args()
    ensure_tools()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: one for the proxy under test, one for wrk and the targets")

    work = Path(tempfile.mkdtemp(prefix="fastgw-failover-"))
    script = work / "count.lua"
    script.write_text(WRK_SCRIPT)
    targets = [Target(work, i) for i in range(3)]
    ngx_port, gw_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for t in targets:
            t.start()
        ngx_conf = proxy_conf(work / "proxy", ngx_port, [t.port for t in targets])
        procs.append(start(["nginx", "-p", str(work / "proxy"), "-c", str(ngx_conf)], PROXY_CPU, work / "ngx.log"))
        gw_cfg = work / "fastgw.yaml"
        urls = ", ".join(f'"http://127.0.0.1:{t.port}"' for t in targets)
        gw_cfg.write_text(FASTGW_CONFIG.format(port=gw_port, targets=urls))
        env = {k: v for k, v in os.environ.items() if k != "FASTGW_NO_EXTENSIONS"}
        procs.append(start([sys.executable, "-m", "fastgw", "serve", str(gw_cfg)], PROXY_CPU, work / "gw.log", env))
        body = UPSTREAM_BODY.strip().encode()
        for port in (*(t.port for t in targets), ngx_port, gw_port):
            wait_ready(f"http://127.0.0.1:{port}/drill", body)

        results = {}
        for name, port in (("fastgw", gw_port), ("nginx", ngx_port)):
            time.sleep(6)  # both proxies start the drill with all three targets healthy and in rotation
            res = drill(f"http://127.0.0.1:{port}/drill", targets[1], args.duration, args.connections, script)
            results[name] = res
            print(
                f"{name:7s} {res['rps']:>9.0f} req/s  client errors {res['client_errors']}  "
                f"worst second {res['worst_second_rps']} vs {res['baseline_rps']} ({res['dip_pct']}% dip)",
                flush=True,
            )

        from fastgw import core

        commit = git_commit()
        doc = {
            "scenario": "failover",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": commit,
            "core": "compiled" if core.COMPILED else "pure",
            "duration_s": args.duration,
            "connections": args.connections,
            "drill": "3 targets; target 2 SIGKILLed at 1/3 of the run and started again at 2/3",
            "machine": machine(),
            "results": results,
        }
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = Path(args.out) if args.out else RESULTS / f"{datetime.now(timezone.utc):%Y-%m-%d}-failover-{commit}.json"
        out.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    finally:
        for t in targets:
            t.kill()
        stop(procs, timeout=5)


if __name__ == "__main__":
    sys.exit(main())
