"""Idle memory of `fastgw serve`: what each process holds, and what each import adds (issue 22: idle RSS <= 24 MiB).

For each config (the built-in quickstart `fastgw serve` runs with no CONFIG, bench/run.py's plain proxy config with
an upstream served from this script, and the same config as JSON) and each process layout (`--workers 1`: one
process that is the worker; `--workers 2`: the supervisor and two forked workers), the gateway is started on
loopback, answers a few requests, idles for `--idle` seconds, and each process's /proc/PID/smaps_rollup is read:
RSS, PSS and USS (its private pages: what one more worker costs), anonymous and file-backed, and the files it maps
by their resident size (from /proc/PID/smaps).

The import breakdown runs in fresh interpreters, one step after another in one process, reading VmRSS after each
step: the interpreter alone, then each dependency, then fastgw's modules in the order the worker imports them, then
loading the quickstart. (A step's figure depends on what came before it: a module that imports `ssl` pays for
OpenSSL only when nothing before it did.)

Usage: python bench/memory.py [--idle 3] [--pure] [--no-bytecode] [--label before] [--no-write | --out FILE]
The result is written to bench/results/DATE-memory-COMMIT[-pure][-source][-LABEL].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "bench"))

from run import FASTGW_CONFIG, free_port, git_commit, stop  # noqa: E402

KIB = 1024
ROLLUP_KEYS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Shared_Clean", "Shared_Dirty", "Private_Clean",
               "Private_Dirty", "Anonymous")  # fmt: skip

# Fresh-interpreter steps, cumulative: (label, code). The fastgw steps follow the order `fastgw serve` imports in.
IMPORT_STEPS: list[tuple[str, str]] = [
    ("interpreter", "pass"),
    ("asyncio", "import asyncio"),
    ("ssl", "import ssl"),
    ("uvloop", "import uvloop"),
    ("httptools", "import httptools"),
    ("msgspec", "import msgspec"),
    ("orjson", "import orjson"),
    ("yaml", "import yaml"),
    ("fastgw.cli", "import fastgw.cli"),
    ("fastgw.core", "import fastgw.core"),
    ("fastgw.config.schema", "import fastgw.config.schema"),
    ("fastgw.config.load", "import fastgw.config.load"),
    ("fastgw.server.server", "import fastgw.server.server"),
    ("fastgw.server.supervisor", "import fastgw.server.supervisor"),
    ("load the quickstart", "from fastgw.config.load import load_config, default_config_path; "
                            "_loaded = load_config(default_config_path())"),
]  # fmt: skip

_STEP_SCRIPT = r"""
import json, sys
def rss():
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            k, _, v = line.partition(':')
            if k in ('VmRSS', 'RssAnon', 'RssFile'):
                out[k] = int(v.split()[0])
    return out
steps = json.loads(sys.argv[1])
rows = []
before = set(sys.modules)
for label, code in steps:
    seen = set(sys.modules)
    exec(code)
    rows.append({'step': label, **rss(), 'new_modules': len(set(sys.modules) - seen)})
tops = sorted({m.split('.')[0] for m in set(sys.modules) - before})
print(json.dumps({'steps': rows, 'top_level_modules': tops,
                  'fastgw_modules': sorted(m for m in sys.modules if m.startswith('fastgw'))}))
"""


def smaps_rollup(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        if key in ROLLUP_KEYS:
            out[key + "_kib"] = int(rest.split()[0])
    return out


def libraries(pid: int, top: int = 12) -> list[dict[str, Any]]:
    """The mapped files by resident KiB (their text and data), biggest first, and what is anonymous."""
    sizes: dict[str, int] = {}
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            name = head[5] if len(head) > 5 else "[anon]"
        elif line.startswith("Rss:"):
            sizes[name] = sizes.get(name, 0) + int(head[1])
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])[:top]
    return [{"file": os.path.basename(k) if k.startswith("/") else k, "rss_kib": v} for k, v in ranked]


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fastgw exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"fastgw did not listen on {port} within {timeout} s")


class Upstream:
    """A keep-alive HTTP/1.1 upstream on loopback answering 200 with a short body, for the plain config."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, _, buf = buf.partition(b"\r\n\r\n")
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\ncontent-type: text/plain\r\n\r\nhello\n")


def serve(config: Path | None, workers: int, idle: float, paths: list[str], env: dict[str, str]) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, "-m", "fastgw", "serve", "--port", str(port), "--workers", str(workers)]
    if config is not None:
        cmd.insert(4, str(config))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        time.sleep(0.5)  # every worker up (each binds the port with SO_REUSEPORT)
        statuses = []
        for _ in range(3):
            for path in paths:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                        resp.read()
                        statuses.append(resp.status)
                except urllib.error.HTTPError as exc:
                    statuses.append(exc.code)
        time.sleep(idle)
        procs = []
        kids = children(proc.pid)
        for role, pid in [("supervisor" if kids else "worker", proc.pid)] + [("worker", k) for k in kids]:
            procs.append({"role": role, "pid": pid, **smaps_rollup(pid), "libraries": libraries(pid)})
        return {"workers": workers, "statuses": statuses, "processes": procs}
    finally:
        stop([proc])


def import_steps(env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _STEP_SCRIPT, json.dumps(IMPORT_STEPS)], env=env, capture_output=True, text=True,
        check=True, cwd=tempfile.gettempdir(),
    )  # fmt: skip
    data: dict[str, Any] = json.loads(out.stdout)
    prev = 0
    for row in data["steps"]:
        row["delta_kib"] = row["VmRSS"] - prev
        prev = row["VmRSS"]
    return data


def mib(kib: int) -> str:
    return f"{kib / KIB:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=float, default=3.0, help="seconds idle before reading (default 3)")
    ap.add_argument("--pure", action="store_true", help="FASTGW_NO_EXTENSIONS=1 (the pure-Python core)")
    ap.add_argument(
        "--no-bytecode",
        action="store_true",
        help="fastgw's modules compiled from source at every start (a checkout with PYTHONDONTWRITEBYTECODE=1; "
        "removes fastgw's __pycache__ folders), not from cached bytecode as installed (written by compileall)",
    )
    ap.add_argument("--label", default="", help="appended to the result file's name")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--out", type=Path, help="write the result here instead of bench/results/")
    args = ap.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FASTGW_CONFIG", None)
    if args.no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        for cache in (ROOT / "fastgw").rglob("__pycache__"):
            shutil.rmtree(cache)
    else:
        # NOTE: as installed (pip compiles every module): without cached bytecode each start compiles fastgw's
        # modules from source, and the compiler's memory stays in the process (+1-2 MiB of RSS). Written beside the
        # sources (__pycache__ is ignored by git); PYTHONPYCACHEPREFIX would not do: the interpreter then looks
        # for every module's bytecode there, and compiles the whole standard library at the first start.
        compile_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "fastgw")], env=compile_env, check=True)
    if args.pure:
        env["FASTGW_NO_EXTENSIONS"] = "1"
    else:
        env.pop("FASTGW_NO_EXTENSIONS", None)
    core = subprocess.run([sys.executable, "-m", "fastgw", "--version"], env=env, capture_output=True, text=True)

    upstream = Upstream()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.yaml"
        # The port is replaced by --port; the upstream is this script's.
        plain.write_text(FASTGW_CONFIG.format(port=8000, upstream=upstream.port))
        # The same as JSON: a gateway that reads no YAML does not import PyYAML.
        plain_json = Path(tmp) / "plain.json"
        import yaml  # (only this script's process)

        plain_json.write_text(json.dumps(yaml.safe_load(plain.read_text())))
        for name, config, paths in (
            ("quickstart", None, ["/", "/health", "/api/users/42"]),
            ("plain", plain, ["/", "/x/y"]),
            ("plain-json", plain_json, ["/", "/x/y"]),
        ):
            for workers in (1, 2):
                run = serve(config, workers, args.idle, paths, env)
                run["config"] = name
                runs.append(run)
    breakdown = import_steps(env)

    result = {
        "name": "memory",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(),
        "python": sys.version.split()[0],
        "core": core.stdout.strip(),
        "command": " ".join(["python", "bench/memory.py", *sys.argv[1:]]),
        "idle_seconds": args.idle,
        "bytecode": "compiled from source at each start" if args.no_bytecode else "cached, as installed",
        "runs": runs,
        "imports": breakdown,
    }

    print(f"{result['core']}  commit {result['commit']}")
    # USS: the pages only this process has (what one more worker costs); PSS adds its share of the shared ones.
    print(f"{'config':<11}{'workers':>8}  {'role':<11}{'RSS MiB':>8}{'PSS MiB':>8}{'USS':>6}{'anon':>7}{'file':>7}")
    for run in runs:
        for p in run["processes"]:
            p["Uss_kib"] = p["Private_Clean_kib"] + p["Private_Dirty_kib"]
            print(
                f"{run['config']:<11}{run['workers']:>8}  {p['role']:<11}{mib(p['Rss_kib']):>8}{mib(p['Pss_kib']):>8}"
                f"{mib(p['Uss_kib']):>6}{mib(p['Anonymous_kib']):>7}{mib(p['Rss_kib'] - p['Anonymous_kib']):>7}"
            )
    print(f"\n{'import step (cumulative, fresh interpreter)':<46}{'VmRSS MiB':>10}{'delta':>8}{'modules':>9}")
    for row in breakdown["steps"]:
        print(f"{row['step']:<46}{mib(row['VmRSS']):>10}{mib(row['delta_kib']):>8}{row['new_modules']:>9}")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    elif not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        day = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        suffix = (
            ("-pure" if args.pure else "")
            + ("-source" if args.no_bytecode else "")
            + (f"-{args.label}" if args.label else "")
        )
        path = RESULTS / f"{day}-memory-{result['commit']}{suffix}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwritten {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
