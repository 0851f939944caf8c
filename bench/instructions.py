#!/usr/bin/env python3
"""Instructions per exchange on the hot path, counted by valgrind (callgrind): a measure that a busy or throttled VM
cannot disturb, for comparing two versions of the request path where timings drown in noise.

Runs `bench/hotpath.py`'s loop (in-memory transports, one keep-alive exchange per iteration) twice under callgrind,
with few and with many exchanges, and divides the difference of the two totals by the difference of the counts, so
start-up (imports, config loading) cancels out. Hash randomization is off and pymalloc forced (under valgrind
CPython would otherwise hand allocations to malloc), so two runs of the same code agree to a few instructions.
Counts are not time: a cache miss costs more than an addition. Compare versions with it; quote `bench/run.py`.

`--scenario` picks the route's plugins as `bench/run.py`'s scenarios configure them:
- `proxy` (the default) and `plugins` (`--plugins` is the same): `bench/hotpath.py`'s loop, as before;
- `ratelimit-local`, `ratelimit-redis`: one `rate-limit` that is never reached (`redis` starts a redis-server,
  outside valgrind, and waits for each exchange's upstream request; the client's instructions are counted);
- `cache-hit`: `proxy-cache` (memory backend), one miss to fill it, then only hits (no upstream leg at all);
- `cache-miss`: `proxy-cache`, every request a new key (a miss that goes upstream and is stored);
- `log`, `metrics`, `observed`: the plain route with the JSON access log (to /dev/null, flushed every 64 entries
  as the server's does between ticks), the Prometheus counters, or both (issue 14's observability scenario);
- `chain`: issue 22's chain as `bench/run.py --scenario chain` configures it: key-auth (the key in the query
  string, which every request of this scenario carries), request-id, request-transformer (adding a header) and the
  JSON access log (to /dev/null, as `log`);
- `timeout`: the plain route with a total `timeout` (30 s) on its integration (issue 19's route timeout: the
  guarded start and the deadline it keeps, against `loop`);
- `loop`: the plain route in the loop of the ones above, their baseline (the event loop turns once per batch of
  50 exchanges, so that what exchanges schedule with call_soon, the log phases, runs and is counted).

Usage: python bench/instructions.py [--scenario NAME | --plugins] [--repo DIR]   (DIR: another checkout to measure,
e.g. a worktree of the previous commit with its core built in place)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEW, MANY = 1_000, 11_000
SCENARIOS = (
    "proxy", "plugins", "loop", "ratelimit-local", "ratelimit-redis", "cache-hit", "cache-miss", "log", "metrics",
    "observed", "chain", "timeout",
)  # fmt: skip

_LOOP = """
import asyncio, importlib.util, sys
spec = importlib.util.spec_from_file_location("hotpath", sys.argv[1])
hotpath = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hotpath)
import uvloop
uvloop.run(hotpath.measure(int(sys.argv[2]) // 50, 50, sys.argv[3] == "1"))
"""

# The scenarios of bench/run.py, in the same loop: hotpath's transports and messages, the route's plugins from
# run.py's constants (so both measure the same configuration).
_SCENARIO = """
import asyncio, gc, importlib.util, os, sys
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
bench = sys.argv[1]
hotpath = load("hotpath", bench + "/hotpath.py")
run = load("run", bench + "/run.py")
exchanges, scenario, redis_url = int(sys.argv[2]), sys.argv[3], sys.argv[4]
import uvloop
from fastgw.config.load import load_config_bytes
from fastgw.gateway import Gateway
from fastgw.observability.accesslog import AccessLog
from fastgw.observability.metrics import Counters, observer
from fastgw.pipeline.exchange import Worker
from fastgw.proxy.upstream import UpstreamConnection
from fastgw.server.protocol import ClientProtocol

class Signalled(hotpath.MemoryTransport):
    event = None
    def write(self, data):
        self.written += len(data)
        if self.event is not None:
            self.event.set()

async def main():
    plugins, top = "", ""
    if scenario.startswith("ratelimit"):
        plugins = run.RATELIMIT_ROUTE.format(policy=scenario.split("-")[1])
        if redis_url:
            top = "redis: {url: '%s'}\\n" % redis_url
    elif scenario.startswith("cache"):
        plugins = run.CACHE_ROUTE
    elif scenario == "chain":
        plugins = run.CHAIN_ROUTE
        top = "consumers:\\n  bench: {credentials: {key-auth: [{key: %s}]}}\\n" % run.BENCH_KEY
    route = "    integration: {type: http, upstream: backend}\\n"
    config = hotpath.CONFIG.decode().replace(route, route + plugins) + top
    if scenario == "timeout":
        config = config.replace(route, "    integration: {type: http, upstream: backend, timeout: 30}\\n")
    loaded = load_config_bytes(config.encode(), "<instructions>.yaml")
    log = counters = None
    if scenario in ("log", "observed", "chain"):
        log = AccessLog(open(os.devnull, "wb"), format="json")
    if scenario in ("metrics", "observed"):
        counters = Counters()
    state = Worker(asyncio.get_running_loop(), Gateway(loaded), observer(log, counters))
    client = ClientProtocol(state)
    client.connection_made(hotpath.MemoryTransport(("127.0.0.1", 40000)))
    target = state.gateway.upstreams["backend"].targets[0]
    up = UpstreamConnection(target, state)
    up.connection_made(Signalled(("127.0.0.1", 9)))
    target.release(up, 0.0)
    request, response = hotpath.REQUEST, hotpath.RESPONSE
    if scenario == "chain":
        request = request.replace(b"GET /bench ", b"GET /bench?apikey=" + run.BENCH_KEY.encode() + b" ")
    if scenario == "cache-hit":
        client.data_received(request)
        up.data_received(response)  # the one miss, stored
        await asyncio.sleep(0)
        before = up.transport.written
    gc.collect()
    gc.freeze()  # start-up's objects out of the collector's way: a full collection in one run only would count
    wait = scenario == "ratelimit-redis"
    if wait:
        event = up.transport.event = asyncio.Event()
    for b in range(exchanges // 50):
        for i in range(50):
            if scenario == "cache-miss":
                request = hotpath.REQUEST.replace(b"/bench", b"/bench/%d" % (b * 50 + i))
            client.data_received(request)
            if scenario == "cache-hit":
                continue
            if wait:
                await event.wait()
                event.clear()
            up.data_received(response)
        await asyncio.sleep(0)  # what the exchanges scheduled (log phases) runs
    await asyncio.sleep(0)
    assert client.transport.written > 0 and not client.queue
    if log is not None:
        log.flush()
    if scenario == "cache-hit":
        assert up.transport.written == before, "a hit went upstream"
    if scenario == "chain":
        assert up.transport.written > exchanges * len(request), "the chain did not let the requests through"

uvloop.run(main())
"""


def _redis() -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("--scenario ratelimit-redis needs redis-server (apt-get install -y redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def instructions(repo: Path, exchanges: int, scenario: str, redis_url: str = "") -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONMALLOC": "pymalloc", "PYTHONPATH": str(repo)}
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c"]
    if scenario in ("proxy", "plugins"):
        cmd += [_LOOP, str(repo / "bench" / "hotpath.py"), str(exchanges), "1" if scenario == "plugins" else "0"]
    else:
        cmd += [_SCENARIO, str(repo / "bench"), str(exchanges), scenario, redis_url]
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False).stderr
    m = re.search(r"Collected : (\d+)", out)
    if m is None or "Traceback" in out:
        sys.exit(f"callgrind gave no count:\n{out[-3000:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plugins", action="store_true", help="the route carries the benchmark's plugin chain")
    ap.add_argument("--scenario", choices=SCENARIOS, default=None, help="what the route carries (default: proxy)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    ap.add_argument("--exchanges", type=int, default=MANY - FEW, help=f"counted (default {MANY - FEW}; fewer: quicker)")
    args = ap.parse_args()
    scenario = args.scenario or ("plugins" if args.plugins else "proxy")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is missing: apt-get install -y valgrind")
    repo = args.repo.resolve()
    proc, url = _redis() if scenario == "ratelimit-redis" else (None, "")
    try:
        few = instructions(repo, FEW, scenario, url)
        many = instructions(repo, FEW + args.exchanges, scenario, url)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    per = (many - few) / args.exchanges
    what = {"proxy": "plain proxy", "plugins": "with the plugin chain"}.get(scenario, scenario)
    print(f"{repo}: {per:,.0f} instructions per exchange ({what}; callgrind, {args.exchanges} exchanges)")


if __name__ == "__main__":
    main()
