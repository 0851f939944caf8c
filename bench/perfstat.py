#!/usr/bin/env python3
"""Per-request CPU, syscalls and GC of fastgw's plain proxy beside nginx's, counted by the kernel (perf stat).

The same set-up as bench/run.py (an nginx upstream on the load CPU, nginx's proxy and fastgw pinned to the proxy
CPU, wrk on the load CPU), but instead of timing it counts, over each wrk run, what the proxy's process did and
divides by the requests wrk completed:

- `cpu_us`: its task-clock (perf stat), `user_us` / `sys_us`: its utime / stime (/proc/PID/stat, 10 ms ticks);
- `cs`: context switches; `wakeups`: tasks the proxy woke (sched_wakeup in its context: wrk or the upstream
  asleep in epoll when it wrote to them, each an IPI to the other CPU); `syscalls`: all system calls entered, and
  `by_call`: read, write, writev, sendto,
  recvfrom, epoll_wait/epoll_pwait, epoll_ctl, ... (syscall tracepoints, in a second wrk run of their own so the
  tracepoints' cost does not touch the CPU figures);
- for fastgw, with `--gc`: cyclic GC collections per 1,000 requests per generation, and the share of its CPU spent
  collecting (gc.callbacks in the worker, written to a file after each collection after each one).

Counts of events per request hardly move with the machine's load, unlike req/s; the CPU figures still do (this
VM's hypervisor exposes no hardware counters, so `instructions:u`/`instructions:k` read "not supported" and
the user/kernel split comes from utime/stime).

Several fastgw can be measured in one run (before/after a change): `--fastgw NAME=REPO` (a worktree with its core
built in place; its package is imported through PYTHONPATH), repeatable; the default is this checkout as `fastgw`.
`--record N` also records N seconds of `perf record -g` on each fastgw at each connection count (call graphs by
frame pointers), and saves `perf report`'s top symbols beside the result.

Usage: python bench/perfstat.py [--connections 50,200] [--duration 5] [--repeats 3] [--gc] [--record 5]
       [--fastgw before=/tmp/old --fastgw after=.] [--no-nginx] [--out FILE] [--keep]
Needs nginx, wrk and perf (linux-perf), root or perf_event_paranoid <= 0 for the tracepoints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the servers, their configs and the CPU split)

CALLS = ("read", "recvfrom", "write", "writev", "sendto", "sendmsg", "epoll_wait", "epoll_pwait", "epoll_ctl",
         "accept4", "connect", "close", "ioctl", "getsockopt", "setsockopt", "futex")  # fmt: skip

# Run inside a fastgw worker with --gc: counts collections and the time they take, per generation, in a JSON file
# the script reads before and after each wrk run.
GC_WATCH = """
import gc, json, os, runpy, sys, time
_path = os.environ["FASTGW_GC_STATS"]
_stats = {"count": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "collected": [0, 0, 0]}
_t = [0.0]
def _watch(phase, info, _pc=time.perf_counter, _st=_stats, _t=_t):
    if phase == "start":
        _t[0] = _pc()
        return
    g = info["generation"]
    _st["count"][g] += 1
    _st["seconds"][g] += _pc() - _t[0]
    _st["collected"][g] += info["collected"]
    # (Collections are rare, a few per 1,000 requests: the file is written after each, so a reading is exact.)
    _st["thresholds"] = gc.get_threshold()
    _st["counts"] = gc.get_count()
    with open(_path + ".tmp", "w") as f:
        json.dump(_st, f)
    os.replace(_path + ".tmp", _path)
gc.callbacks.append(_watch)
sys.argv = ["fastgw", *sys.argv[1:]]
runpy.run_module("fastgw", run_name="__main__")
"""


def proc_times(pid: int) -> tuple[float, float]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def perf_stat(pid: int, events: list[str], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", run.LOAD_CPU, "perf", "stat", "-x", ",", "-o", str(out), "-e", ",".join(events),
         "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def read_perf(out: Path) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in out.read_text().splitlines():
        parts = line.split(",")
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            counts[parts[2]] = float(parts[0])
        except ValueError:
            counts[parts[2]] = float("nan")  # <not supported> / <not counted>
    return counts


def wrk(url: str, duration: int, connections: int) -> int:
    cmd = ["taskset", "-c", run.LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    m = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} non-2xx answers:\n{out}")
    return int(m.group(1)) if m else 0


def measured(pid: int, url: str, duration: int, connections: int, events: list[str], work: Path) -> dict:
    out = work / "perf.csv"
    perf = perf_stat(pid, events, out)
    time.sleep(0.3)  # perf attached before the load starts
    u0, s0 = proc_times(pid)
    t0 = time.monotonic()
    n = wrk(url, duration, connections)
    wall = time.monotonic() - t0
    u1, s1 = proc_times(pid)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=10)
    counts = read_perf(out)
    return {"requests": n, "rps": round(n / wall), "counts": counts, "user_s": u1 - u0, "sys_s": s1 - s0}


def gc_read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"count": [0, 0, 0], "seconds": [0.0, 0.0, 0.0], "collected": [0, 0, 0]}


def record(pid: int, url: str, seconds: int, connections: int, work: Path, name: str) -> str:
    data = work / f"{name}.perf.data"
    perf = subprocess.Popen(
        ["taskset", "-c", run.LOAD_CPU, "perf", "record", "-g", "-F", "2000", "-o", str(data), "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.3)
    wrk(url, seconds, connections)
    perf.send_signal(signal.SIGINT)
    perf.wait(timeout=30)
    rep = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none", "--percent-limit", "0.4",
         "--sort", "dso,symbol"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    by_dso = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none", "--sort", "dso"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return "\n".join(x for x in (rep.stdout + by_dso.stdout).splitlines() if x and not x.startswith("#"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", default="50,200", help="comma-separated wrk connection counts")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gc", action="store_true", help="count the fastgw workers' collections (gc.callbacks)")
    ap.add_argument("--record", type=int, default=0, help="seconds of perf record -g per fastgw and connections")
    ap.add_argument("--no-nginx", action="store_true")
    ap.add_argument("--fastgw", action="append", default=[], help="NAME=REPO, repeatable (default fastgw=.)")
    ap.add_argument("--out", help="result file (default bench/results/<date>-perfstat-<commit>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, perf.data for perf report)")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    variants = [v.split("=", 1) for v in args.fastgw] or [["fastgw", str(run.ROOT)]]
    os.sched_setaffinity(0, {int(run.LOAD_CPU)})

    work = Path(tempfile.mkdtemp(prefix="fastgw-perfstat-"))
    up_port, ngx_port = run.free_port(), run.free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_conf = run.nginx_conf(
            work / "upstream",
            f"  server {{ listen 127.0.0.1:{up_port} reuseport backlog=4096;\n"
            f"    location / {{ default_type text/plain; return 200 '{run.UPSTREAM_BODY}'; }} }}",
        )
        procs.append(run.start(["nginx", "-p", str(work / "upstream"), "-c", str(up_conf)], run.LOAD_CPU,
                               work / "up.log"))  # fmt: skip
        targets: dict[str, tuple[int, int]] = {}
        if not args.no_nginx:
            ngx_conf = run.nginx_conf(
                work / "proxy",
                f"  upstream backend {{ server 127.0.0.1:{up_port}; keepalive 256; keepalive_requests 1000000; }}\n"
                f"  server {{ listen 127.0.0.1:{ngx_port} backlog=4096;\n"
                "    location / { proxy_pass http://backend; proxy_http_version 1.1;\n"
                '      proxy_set_header Connection ""; proxy_buffering on; } }\n',
            )
            ngx = run.start(["nginx", "-p", str(work / "proxy"), "-c", str(ngx_conf)], run.PROXY_CPU, work / "n.log")
            procs.append(ngx)
            targets["nginx"] = (ngx_port, ngx.pid)
        gc_files: dict[str, Path] = {}
        commits: dict[str, str] = {}
        for name, repo in variants:
            port = run.free_port()
            cfg = work / f"{name}.yaml"
            cfg.write_text(run.FASTGW_CONFIG.format(port=port, upstream=up_port))
            env = {k: v for k, v in os.environ.items() if k != "FASTGW_NO_EXTENSIONS"}
            env["PYTHONPATH"] = str(Path(repo).resolve())
            env["PYTHONHASHSEED"] = "0"
            cmd = [sys.executable, "-m", "fastgw", "serve", str(cfg)]
            if args.gc:
                gc_files[name] = work / f"{name}.gc.json"
                env["FASTGW_GC_STATS"] = str(gc_files[name])
                cmd = [sys.executable, "-c", GC_WATCH, "serve", str(cfg)]
            p = run.start(cmd, run.PROXY_CPU, work / f"{name}.log", env)
            procs.append(p)
            targets[name] = (port, p.pid)
            commits[name] = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                                           text=True).stdout.strip()  # fmt: skip

        def url(name: str) -> str:
            return f"http://127.0.0.1:{targets[name][0]}/bench"

        body = run.UPSTREAM_BODY.strip().encode()
        run.wait_ready(f"http://127.0.0.1:{up_port}/bench", body)
        for name in targets:
            run.wait_ready(url(name), body)
        cpu_events = ["task-clock", "context-switches", "cpu-migrations", "page-faults", "instructions:u",
                      "instructions:k", "cycles"]  # fmt: skip
        # sched_wakeup counted in the proxy's context: the peers (wrk, the upstream) it woke by writing to them.
        sys_events = ["raw_syscalls:sys_enter", "sched:sched_wakeup", *(f"syscalls:sys_enter_{c}" for c in CALLS)]
        names = list(targets)
        rows: dict[str, dict[int, list[dict]]] = {n: {c: [] for c in conns} for n in names}
        for name in names:
            wrk(url(name), 2, max(conns))  # warm: pools, caches
        for rep in range(args.repeats):
            for c in conns:
                order = names[rep % len(names) :] + names[: rep % len(names)]
                for name in order:
                    pid = targets[name][1]
                    wrk(url(name), 1, c)  # the connections of this count made, and the pool grown to them
                    g0 = gc_read(gc_files[name]) if name in gc_files else None
                    a = measured(pid, url(name), args.duration, c, cpu_events, work)
                    g1 = gc_read(gc_files[name]) if name in gc_files else None
                    b = measured(pid, url(name), args.duration, c, sys_events, work)
                    n, ca, cb = a["requests"], a["counts"], b["counts"]
                    row = {
                        "rps": a["rps"],
                        "requests": n,
                        "cpu_us": round(ca.get("task-clock", 0) * 1e3 / n, 2),  # task-clock is in ms
                        "user_us": round(a["user_s"] * 1e6 / n, 2),
                        "sys_us": round(a["sys_s"] * 1e6 / n, 2),
                        "cs": round(ca.get("context-switches", 0) / n, 4),
                        "instructions_u": ca.get("instructions:u"),
                        "instructions_k": ca.get("instructions:k"),
                        "syscalls": round(cb.get("raw_syscalls:sys_enter", 0) / b["requests"], 3),
                        "wakeups": round(cb.get("sched:sched_wakeup", 0) / b["requests"], 3),
                        "by_call": {
                            c_: round(cb.get(f"syscalls:sys_enter_{c_}", 0) / b["requests"], 3)
                            for c_ in CALLS
                            if cb.get(f"syscalls:sys_enter_{c_}", 0)
                        },
                        "rps_syscall_run": b["rps"],
                    }
                    if g0 is not None and g1 is not None:
                        k = n / 1000
                        row["gc_per_1k"] = [round((g1["count"][i] - g0["count"][i]) / k, 3) for i in range(3)]
                        row["gc_us_per_request"] = round(
                            sum(g1["seconds"][i] - g0["seconds"][i] for i in range(3)) * 1e6 / n, 3
                        )
                        row["gc_us_by_generation"] = [
                            round((g1["seconds"][i] - g0["seconds"][i]) * 1e6 / n, 3) for i in range(3)
                        ]
                    rows[name][c].append(row)
                    print(f"rep {rep + 1} c={c:<4d} {name:10s} {row['rps']:>7d} req/s  cpu {row['cpu_us']:6.2f} us"
                          f" (user {row['user_us']:.1f} sys {row['sys_us']:.1f})  cs {row['cs']:.3f}  syscalls "
                          f"{row['syscalls']:.2f} wakeups {row['wakeups']:.3f} {row['by_call']}"
                          + (f"  gc/1k {row['gc_per_1k']} {row['gc_us_per_request']} us" if "gc_per_1k" in row
                             else ""), flush=True)  # fmt: skip
        profiles: dict[str, str] = {}
        if args.record:
            for name in names:
                for c in conns:
                    wrk(url(name), 1, c)
                    profiles[f"{name}-c{c}"] = record(targets[name][1], url(name), args.record, c, work,
                                                      f"{name}-c{c}")  # fmt: skip

        def med(rs: list[dict], key: str) -> float:
            return round(statistics.median(r[key] for r in rs), 3)

        summary: dict[str, dict[int, dict]] = {}
        for name in names:
            summary[name] = {}
            for c in conns:
                rs = rows[name][c]
                s = {k: med(rs, k) for k in ("rps", "cpu_us", "user_us", "sys_us", "cs", "syscalls", "wakeups")}
                s["by_call"] = {k: round(statistics.median(r["by_call"].get(k, 0) for r in rs), 3)
                                for k in sorted({k for r in rs for k in r["by_call"]})}  # fmt: skip
                if "gc_per_1k" in rs[0]:
                    s["gc_per_1k"] = [round(statistics.median(r["gc_per_1k"][i] for r in rs), 3) for i in range(3)]
                    s["gc_us_per_request"] = med(rs, "gc_us_per_request")
                summary[name][c] = s
        print()
        head = ("", "conns", "req/s", "cpu us", "user", "sys", "cs", "sysc", "wake")
        print(f"{head[0]:12s}" + "".join(f"{h:>7s}" for h in head[1:]) + "  by call")
        for name in names:
            for c in conns:
                s = summary[name][c]
                print(
                    f"{name:12s}{c:>6d}{s['rps']:>8.0f}{s['cpu_us']:>8.2f}{s['user_us']:>7.2f}{s['sys_us']:>7.2f}"
                    f"{s['cs']:>7.3f}{s['syscalls']:>7.2f}{s['wakeups']:>7.3f}  {s['by_call']}"
                    + (f"  gc/1k {s['gc_per_1k']} {s['gc_us_per_request']} us" if "gc_per_1k" in s else "")
                )
        commit = run.git_commit()
        result = {
            "scenario": "perfstat",
            "description": "plain proxy, per-request counts over fixed wrk runs: perf stat task-clock and context "
            "switches, utime/stime, syscall tracepoints (a separate run), GC collections (gc.callbacks)",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": commit,
            "fastgw_commits": commits,
            "settings": {
                "duration_s": args.duration,
                "repeats": args.repeats,
                "connections": conns,
                "proxy_cpu": run.PROXY_CPU,
                "load_cpu": run.LOAD_CPU,
            },  # fmt: skip
            "machine": run.machine(),
            "load_average": os.getloadavg(),
            "summary": {n: {str(c): s for c, s in v.items()} for n, v in summary.items()},
            "runs": {n: {str(c): rs for c, rs in v.items()} for n, v in rows.items()},
            "profiles": profiles,
        }
        out = Path(args.out) if args.out else run.RESULTS / f"{result['date'][:10]}-perfstat-{commit}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"-> {out}")
        return 0
    finally:
        run.stop(procs)
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
