#!/usr/bin/env python3
"""Time from `fastgw serve template.yaml` to the first answer (issue 21, item 5), for the SAM CLI's own hello-world
templates (python: examples/sam-hello; nodejs: tests/aws/templates/hello-nodejs).

Each run starts a fresh `python -m fastgw serve TEMPLATE --port P` process, connects every 2 ms until the port
accepts, then asks `GET /hello` (one request that waits for the function) until the answer is
`200 {"message": "hello world"}`; the time from the process start to that answer is the figure (the
interpreter starting, the template read and checked, the listener bound, the function's first, cold invocation).
It also records when the port first accepted a connection, and the latency of the next (warm) request. The gateway
is stopped (SIGTERM) after each run. `sam local start-api` is not installed here, so there is no sam column: its
first answer needs a container (Docker pulls and starts the Lambda image: seconds, by its own documentation).

Usage: python bench/sam_start.py [--runs 5] [--out FILE]
Results go to bench/results/<date>-sam-start-<commit>.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import RESULTS, ROOT, free_port, git_commit  # noqa: E402 - the comparison script's helpers

TEMPLATES = {
    "hello-python": ROOT / "examples" / "sam-hello" / "template.yaml",
    "hello-nodejs": ROOT / "tests" / "aws" / "templates" / "hello-nodejs" / "template.yaml",
}


def _get(port: int, timeout: float = 1.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/hello")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def one_run(template: Path, deadline_s: float = 30.0) -> dict[str, float]:
    port = free_port()
    cmd = [sys.executable, "-m", "fastgw", "serve", str(template), "--port", str(port), "--log-level", "warning"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    listening = None
    try:
        while time.perf_counter() - t0 < deadline_s:
            if proc.poll() is not None:
                raise RuntimeError(f"fastgw exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            if listening is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                except OSError:
                    time.sleep(0.002)
                    continue
                listening = time.perf_counter() - t0
            try:
                status, body = _get(port, timeout=deadline_s)
            except OSError:
                time.sleep(0.002)
                continue
            if status == 200 and json.loads(body) == {"message": "hello world"}:
                first = time.perf_counter() - t0
                t1 = time.perf_counter()
                status, body = _get(port)
                warm = time.perf_counter() - t1
                assert status == 200, body
                return {
                    "first_answer_ms": first * 1000,
                    "port_open_ms": listening * 1000,
                    "warm_request_ms": warm * 1000,
                }
            time.sleep(0.002)
        raise RuntimeError(f"no hello world from {template} within {deadline_s}s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    names = ["hello-python"] + (["hello-nodejs"] if shutil.which("node") else [])
    result: dict[str, object] = {
        "scenario": "sam-start",
        "description": "time from `fastgw serve template.yaml` (a new process) to the first 200 hello world, the SAM "
        "CLI's hello-world templates; the first answer includes the function's cold start",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "settings": {"runs": args.runs, "poll_interval_ms": 2, "python": sys.version.split()[0]},
        # This machine is shared: the load average before the runs says how busy it was.
        "loadavg_before": os.getloadavg(),
        "summary": {},
        "runs": {},
    }
    for name in names:
        runs = [one_run(TEMPLATES[name]) for _ in range(args.runs)]
        result["runs"][name] = runs  # type: ignore[index]
        summary = {}
        for key in ("first_answer_ms", "port_open_ms", "warm_request_ms"):
            values = [r[key] for r in runs]
            summary[key] = {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
                            "max": round(max(values), 1)}  # fmt: skip
        result["summary"][name] = summary  # type: ignore[index]
        first, port_open, warm = (summary[k] for k in ("first_answer_ms", "port_open_ms", "warm_request_ms"))
        print(f"{name}: first answer {first['median']} ms median ({first['min']}-{first['max']}), "
              f"port open {port_open['median']} ms, next request {warm['median']} ms")  # fmt: skip
    out = args.out or RESULTS / f"{datetime.now(timezone.utc):%Y-%m-%d}-sam-start-{result['commit']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
