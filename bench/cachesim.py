#!/usr/bin/env python3
"""Cache misses per exchange of fastgw's own code with K exchanges in flight, counted by valgrind (cachegrind).

Why plain proxying costs more CPU a request at 200 connections than at 50 (bench/README.md, "200 connections"):
every exchange touches its connections' objects (protocol, sink, parser, upstream connection) and its own
(request, header tuples, exchange), and those were last touched a whole round of the other exchanges ago. Once
K connections' worth of them outgrow the CPU's private cache (L2: 1 MiB a core on the development VMs), each
exchange fetches them again from the shared cache or memory. cachegrind simulates that cache (`--LL`, 1 MiB by
default) for the in-memory loop of `bench/hotpath.py` with K client connections and K pooled upstream connections,
all K exchanges always in flight as under `wrk -cK` (each step answers the oldest one and sends that client its
next request; the event loop turns every 50 steps). Two runs of different lengths cancel start-up out, as in
`bench/instructions.py`: instructions, D1 and last-level misses per exchange.

Usage: python bench/cachesim.py [--connections 50,200] [--exchanges 20000] [--ll 1048576] [--repo DIR]
Needs valgrind. Deterministic (hash seed 0, pymalloc), so two checkouts compare exactly.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_LOOP = """
import asyncio, gc, sys
sys.path.insert(0, sys.argv[3])
import hotpath, uvloop
from fastgw.config.load import load_config_bytes
from fastgw.gateway import Gateway
from fastgw.pipeline.exchange import Worker
from fastgw.proxy.upstream import UpstreamConnection
from fastgw.server.protocol import ClientProtocol

K, ROUNDS = int(sys.argv[1]), int(sys.argv[2])
TARGET = b'targets: ["http://127.0.0.1:9"]'

async def main():
    config = hotpath.CONFIG.replace(TARGET, TARGET + b", pool: {max_idle: 100000}")
    state = Worker(asyncio.get_running_loop(), Gateway(load_config_bytes(config, "<cachesim>.yaml")), None)
    target = state.gateway.upstreams["backend"].targets[0]
    clients = []
    for i in range(K):
        c = ClientProtocol(state)
        c.connection_made(hotpath.MemoryTransport(("127.0.0.1", 40000 + i)))
        clients.append(c)
        u = UpstreamConnection(target, state)
        u.connection_made(hotpath.MemoryTransport(("127.0.0.1", 9)))
        target.release(u, 0.0)
    gc.collect()
    gc.freeze()  # as the server does after loading its config
    for c in clients:
        c.data_received(hotpath.REQUEST)
    for _ in range(ROUNDS):
        for i, c in enumerate(clients):
            c.exchange.req.upstream.data_received(hotpath.RESPONSE)
            c.data_received(hotpath.REQUEST)
            if i % 50 == 49:
                await asyncio.sleep(0)
    assert all(c.exchange is not None for c in clients)

uvloop.run(main())
"""

EVENTS = ("Ir", "I1mr", "ILmr", "Dr", "D1mr", "DLmr", "Dw", "D1mw", "DLmw")


def totals(repo: Path, k: int, rounds: int, ll: int, work: Path) -> dict[str, int]:
    out = work / f"cg.{k}.{rounds}"
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONHASHSEED": "0", "PYTHONMALLOC": "pymalloc"}
    subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=yes", f"--LL={ll},16,64", "--D1=65536,8,64",
         f"--cachegrind-out-file={out}", sys.executable, "-c", _LOOP, str(k), str(rounds), str(ROOT / "bench")],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return dict(zip(EVENTS, map(int, line.split()[1:]), strict=True))
    raise RuntimeError(f"no summary in {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", default="50,200")
    ap.add_argument("--exchanges", type=int, default=20_000, help="counted (the difference of the two runs)")
    ap.add_argument("--ll", type=int, default=1 << 20, help="simulated last-level cache, bytes (default 1 MiB: L2)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure, its core built in place")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fastgw-cachesim-") as tmp:
        for k in (int(c) for c in args.connections.split(",")):
            few, many = max(1, 4000 // k), max(1, 4000 // k) + max(1, args.exchanges // k)
            a = totals(args.repo.resolve(), k, few, args.ll, Path(tmp))
            b = totals(args.repo.resolve(), k, many, args.ll, Path(tmp))
            n = (many - few) * k
            per = {e: (b[e] - a[e]) / n for e in EVENTS}
            print(
                f"{k:5d} connections: {per['Ir']:8.0f} instructions, {per['D1mr'] + per['D1mw']:6.1f} D1 misses, "
                f"{per['DLmr'] + per['DLmw']:6.1f} last-level misses ({args.ll // 1024} KiB) an exchange",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
