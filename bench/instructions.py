#!/usr/bin/env python3
"""Instructions per exchange on the hot path, counted by valgrind (callgrind): a measure that a busy or throttled VM
cannot disturb, for comparing two versions of the request path where timings drown in noise.

Runs `bench/hotpath.py`'s loop (in-memory transports, one keep-alive exchange per iteration) twice under callgrind,
with few and with many exchanges, and divides the difference of the two totals by the difference of the counts, so
start-up (imports, config loading) cancels out. Hash randomization is off and pymalloc forced (under valgrind
CPython would otherwise hand allocations to malloc), so two runs of the same code agree to a few instructions.
Counts are not time: a cache miss costs more than an addition. Compare versions with it; quote `bench/run.py`.

Usage: python bench/instructions.py [--plugins] [--repo DIR]   (DIR: another checkout to measure, e.g. a worktree
of the previous commit with its core built in place)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEW, MANY = 1_000, 11_000

_LOOP = """
import asyncio, importlib.util, sys
spec = importlib.util.spec_from_file_location("hotpath", sys.argv[1])
hotpath = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hotpath)
import uvloop
uvloop.run(hotpath.measure(int(sys.argv[2]) // 50, 50, sys.argv[3] == "1"))
"""


def instructions(repo: Path, exchanges: int, plugins: bool) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONMALLOC": "pymalloc", "PYTHONPATH": str(repo)}
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", _LOOP]
    cmd += [str(repo / "bench" / "hotpath.py"), str(exchanges), "1" if plugins else "0"]
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=True).stderr
    m = re.search(r"Collected : (\d+)", out)
    if m is None:
        sys.exit(f"callgrind gave no count:\n{out[-2000:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugins", action="store_true", help="the route carries the benchmark's plugin chain")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing: apt-get install -y valgrind")
    repo = args.repo.resolve()
    few = instructions(repo, FEW, args.plugins)
    many = instructions(repo, MANY, args.plugins)
    per = (many - few) / (MANY - FEW)
    what = "with the plugin chain" if args.plugins else "plain proxy"
    print(f"{repo}: {per:,.0f} instructions per exchange ({what}; callgrind, {MANY - FEW} exchanges)")


if __name__ == "__main__":
    main()
