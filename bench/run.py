#!/usr/bin/env python3
"""fastgw against nginx, side by side, proxying to the same upstream.

An nginx upstream answers a small fixed response. fastgw and an nginx reverse proxy both forward to it with
keep-alive connections, each pinned to the same single CPU; wrk (and the upstream) run on the other CPU. The two
proxies are loaded in alternation, several rounds, and the medians are compared. Results go to
bench/results/<date>-<scenario>-<commit>.json and a table is printed.

With `--scenario plugins` a second fastgw serves the same route with a plugin chain (key-auth, request-id and a
request header transform) and is loaded in the same rotation: the result gives the chain's cost as a share of
plain-proxy throughput.

With `--scenario ratelimit` two more fastgw serve the route with a `rate-limit` whose limit is never reached,
one with the `local` policy and one with the `redis` policy (a redis-server the script starts on the load CPU):
the result gives each policy's cost as a share of plain-proxy throughput (target: local under 5%).

With `--scenario cache` the nginx proxy answers from its `proxy_cache` and a second fastgw from its `proxy-cache`
(memory backend); every request after the warm-up is a hit. The result compares cache hits (target: fastgw at
least 0.6x nginx's) and a fastgw hit against a fastgw proxied miss (the plain fastgw).

With `--scenario observability` the second fastgw serves the plain route with the JSON access log (to a file) and
Prometheus counters (the admin listener on, scraped once a second during the runs) turned on: the result gives
their cost as a share of plain-proxy throughput (issue 14's target: under 10%).

With `--scenario chain` a second fastgw serves the route with the chain of issue 22: key-auth (the key in the query
string), request-id, request-transformer (adding a header) and the JSON access log (to a file). Every proxy gets the
same request bytes (the key in the query and in a header; the plain proxies ignore both). The result gives the
chain's CPU time per request beside nginx's plain proxying in the same run (issue 22's target: nginx's at least
0.65x the chain's), and its cost over fastgw's own plain proxy.

With `--scenario tls` nginx and a second fastgw also terminate TLS (TLSv1.2, ECDHE-ECDSA-AES128-GCM-SHA256 on
both, the same P-256 certificate, made here with openssl) and proxy to the same upstream over plain HTTP; wrk keeps
its connections, so the steady state (record encryption, not handshakes) is measured. The result gives fastgw's
TLS throughput against nginx's, and what TLS costs each of them against its own plain proxy.

Usage: python bench/run.py [--duration 10] [--rounds 3] [--connections 50]
       [--scenario proxy|plugins|ratelimit|cache|observability|chain|tls]
Needs nginx and wrk (the script installs them with apt-get when missing and it runs as root), and openssl for tls.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PROXY_CPU = "0"
LOAD_CPU = "1"

UPSTREAM_BODY = "hello from the upstream\n"
# A run compares the proxies only if each kept its CPU this busy and the hypervisor stole at most this much.
MIN_BUSY = 0.85
MAX_STEAL_PCT = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_tools() -> None:
    missing = [t for t in ("nginx", "wrk", "taskset") if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: install them (apt-get install -y nginx wrk) and run again")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "nginx", "wrk"], check=True)


def nginx_conf(prefix: Path, body: str) -> Path:
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log logs/error.log warn;\n"
        "pid logs/nginx.pid;\nevents { worker_connections 4096; }\n"
        "http {\n  access_log off;\n  keepalive_requests 1000000;\n  keepalive_timeout 60s;\n"
        f"{body}\n}}\n"
    )
    return conf


def start(cmd: list[str], cpu: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(["taskset", "-c", cpu, *cmd], stdout=out, stderr=subprocess.STDOUT, env=env)


def stop(procs: list[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    """Stop every process started for a run: all told at once, then each waited for (killed past `timeout`)."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_ready(
    url: str, expect: bytes, timeout: float = 10.0, headers: dict[str, str] | None = None, ca: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    ctx = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, headers=headers or {}), timeout=1, context=ctx
            ) as r:
                body = r.read()
                if expect in body:
                    return
                last = RuntimeError(f"unexpected body {body[:100]!r}")
        except Exception as exc:  # noqa: BLE001 - still starting
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer as expected: {last}")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> dict[str, float]:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise RuntimeError(f"wrk output has no {pct}% latency:\n{out}")
        return float(m.group(1)) * _UNITS[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not rps:
        raise RuntimeError(f"wrk output has no Requests/sec:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock_err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sum(int(x) for x in sock_err.groups()) if sock_err else 0,
    }


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_ticks() -> tuple[int, int]:
    """(steal, total) jiffies over all CPUs: how much of the run the hypervisor took away."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields)


def run_wrk(url: str, duration: int, connections: int, pid: int | None = None) -> dict[str, float]:
    # The API key is sent to every proxy (the plain ones ignore it), so all requests are the same bytes.
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
           "-H", f"apikey: {BENCH_KEY}", url]  # fmt: skip
    cpu0 = cpu_seconds(pid) if pid else 0.0
    st0, tot0 = steal_ticks()
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=duration + 30).stdout
    elapsed = time.monotonic() - t0
    st1, tot1 = steal_ticks()
    res = parse_wrk(out)
    requests = re.search(r"(\d+) requests in", out)
    if pid and requests and int(requests.group(1)):
        used = cpu_seconds(pid) - cpu0
        res["cpu_us_per_request"] = round(used * 1e6 / int(requests.group(1)), 2)
        # Share of its CPU the proxy used. Near 1.0 the proxy was the bottleneck and req/s measures it; well
        # below, something else (the load CPU, the hypervisor) capped the run and the ratio says less.
        res["proxy_cpu_busy"] = round(used / max(elapsed, 1e-9), 3)
    res["steal_pct"] = round(100 * (st1 - st0) / max(1, tot1 - tot0), 1)
    return res


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nginx": nginx_v.replace("nginx version: ", ""),
    }


FASTGW_CONFIG = """\
server: {{host: 127.0.0.1, port: {port}, via: false}}
logging: {{access_log: false, level: warning}}
upstreams:
  backend:
    targets: ["http://127.0.0.1:{upstream}"]
    pool: {{max_idle: 256}}
routes:
  - path: /{{proxy+}}
    integration: {{type: http, upstream: backend}}
  - path: /
    integration: {{type: http, upstream: backend}}
"""


BENCH_KEY = "bench-key-0123456789"
PLUGIN_ROUTE = (
    "    plugins:\n"
    "      key-auth: {}\n"
    "      request-id: {}\n"
    "      request-transformer: {set: {headers: {x-consumer-tier: $consumer.custom.tier}}}\n"
)


def plugins_config(port: int, upstream: int) -> str:
    """The plain config with the plugin chain on both routes, and the consumer whose key wrk sends."""
    plain = FASTGW_CONFIG.format(port=port, upstream=upstream)
    route = "    integration: {type: http, upstream: backend}\n"
    return plain.replace(route, route + PLUGIN_ROUTE) + (
        f"consumers:\n  bench:\n    custom: {{tier: gold}}\n    credentials: {{key-auth: [{{key: {BENCH_KEY}}}]}}\n"
    )


# Never reached: the limiter decides on every request, and every request passes.
RATELIMIT_ROUTE = "    plugins:\n      rate-limit: {{rate: 1000000000, period: 1, policy: {policy}}}\n"
CACHE_ROUTE = "    plugins:\n      proxy-cache: {ttl: 3600}\n"


def with_route_plugins(port: int, upstream: int, plugins: str, top: str = "") -> str:
    """The plain config with `plugins` on both routes, and `top` (more top-level sections)."""
    plain = FASTGW_CONFIG.format(port=port, upstream=upstream)
    route = "    integration: {type: http, upstream: backend}\n"
    return plain.replace(route, route + plugins) + top


def ratelimit_config(port: int, upstream: int, policy: str, redis_port: int) -> str:
    top = f"redis: {{url: 'redis://127.0.0.1:{redis_port}/0'}}\n" if policy != "local" else ""
    return with_route_plugins(port, upstream, RATELIMIT_ROUTE.format(policy=policy), top)


def cache_config(port: int, upstream: int) -> str:
    return with_route_plugins(port, upstream, CACHE_ROUTE)


NGINX_CACHE = (
    "    proxy_cache bench; proxy_cache_valid 200 1h; proxy_cache_lock on;\n"
    "    add_header X-Cache-Status $upstream_cache_status;\n"
)


def observability_config(port: int, upstream: int, admin: int, access_log: Path) -> str:
    """The plain config with the access log (JSON, to a file) and the admin listener's metrics on."""
    plain = FASTGW_CONFIG.format(port=port, upstream=upstream)
    on = f"logging: {{access_log: true, access_log_path: {access_log}, level: warning}}"
    return plain.replace("logging: {access_log: false, level: warning}", on) + (
        f"admin: {{host: 127.0.0.1, port: {admin}}}\n"
    )


# Issue 22's chain: key-auth reading the key from the query only, request-id, a header added for the upstream.
CHAIN_ROUTE = (
    "    plugins:\n"
    "      key-auth: {in_header: false}\n"
    "      request-id: {}\n"
    "      request-transformer: {add: {headers: {x-bench-chain: 'on'}}}\n"
)


def chain_config(port: int, upstream: int, access_log: Path) -> str:
    """The plain config with the chain on both routes, the JSON access log (to a file) on, and the consumer whose
    key wrk sends."""
    plain = FASTGW_CONFIG.format(port=port, upstream=upstream)
    on = f"logging: {{access_log: true, access_log_format: json, access_log_path: {access_log}, level: warning}}"
    route = "    integration: {type: http, upstream: backend}\n"
    return plain.replace("logging: {access_log: false, level: warning}", on).replace(route, route + CHAIN_ROUTE) + (
        f"consumers:\n  bench:\n    credentials: {{key-auth: [{{key: {BENCH_KEY}}}]}}\n"
    )


def last_line(path: Path) -> tuple[int, dict[str, object]]:
    """How many whole lines a JSON lines file has, and the last one parsed ({} when there is none)."""
    count, last = 0, b""
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.endswith(b"\n"):
                    count, last = count + 1, line
    except OSError:
        pass
    return count, (json.loads(last) if last else {})


# TLSv1.2 and one cipher on both proxies: wrk cannot choose them, so the servers do.
TLS_CIPHER = "ECDHE-ECDSA-AES128-GCM-SHA256"


def bench_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 (both proxies serve it; wrk does not verify)."""
    cert, key = folder / "bench.crt", folder / "bench.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=bench.local",
         "-addext", "subjectAltName=DNS:bench.local,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def tls_config(port: int, upstream: int, cert: Path, key: Path) -> str:
    """The plain config with TLS on its port (TLS only), pinned to TLSv1.2 and TLS_CIPHER."""
    plain = FASTGW_CONFIG.format(port=port, upstream=upstream)
    tls = (f"tls: {{cert_file: '{cert}', key_file: '{key}', min_version: TLSv1.2, max_version: TLSv1.2, "
           f"ciphers: {TLS_CIPHER}}}")  # fmt: skip
    return plain.replace("via: false}", f"via: false, {tls}}}")


def nginx_tls_server(port: int, cert: Path, key: Path) -> str:
    return (
        f"  server {{ listen 127.0.0.1:{port} ssl backlog=4096;\n"
        f"    ssl_certificate {cert}; ssl_certificate_key {key};\n"
        f"    ssl_protocols TLSv1.2; ssl_ciphers {TLS_CIPHER}; ssl_prefer_server_ciphers on;\n"
        "    location / { proxy_pass http://backend; proxy_http_version 1.1;\n"
        '      proxy_set_header Connection ""; proxy_buffering on; } }\n'
    )


def negotiated(port: int) -> list[str]:
    """The protocol and cipher a client that would take anything gets from the proxy on `port`."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as conn:
        cipher = conn.cipher()
        return [conn.version() or "", cipher[0] if cipher else ""]


class Scraper:
    """Scrapes /metrics once a second while the observed gateway is loaded, as a Prometheus server would."""

    def __init__(self, port: int) -> None:
        import threading

        self.url = f"http://127.0.0.1:{port}/metrics"
        self.stop = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    resp.read()
                self.scrapes += 1
            except OSError:
                pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (fastgw, nginx) to take medians of")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=2, help="seconds of load on each proxy before measuring")
    ap.add_argument(
        "--scenario",
        default="proxy",
        choices=["proxy", "plugins", "ratelimit", "cache", "observability", "chain", "tls"],
    )
    ap.add_argument("--out", help="result file (default: bench/results/<date>-<scenario>-<commit>.json)")
    args = ap.parse_args()
    ensure_tools()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: one for the proxy under test, one for wrk and the upstream")
    # NOTE: this script (and the /metrics scraper thread it runs) stays off the proxies' CPU, as wrk does: a
    # scraper left to the scheduler ran on the proxy's CPU now and then, and its work (and the caches it took) was
    # charged to the observed fastgw (a plain fastgw measured while another was scraped lost ~7% too).
    os.sched_setaffinity(0, {int(LOAD_CPU)})

    work = Path(tempfile.mkdtemp(prefix="fastgw-bench-"))
    up_port, ngx_port, gw_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    scraper: Scraper | None = None
    try:
        up_conf = nginx_conf(
            work / "upstream",
            f"  server {{ listen 127.0.0.1:{up_port} reuseport backlog=4096;\n"
            f"    location / {{ default_type text/plain; return 200 '{UPSTREAM_BODY}'; }} }}",
        )
        procs.append(start(["nginx", "-p", str(work / "upstream"), "-c", str(up_conf)], LOAD_CPU, work / "up.log"))
        cache = args.scenario == "cache"
        tls = args.scenario == "tls"
        if tls:
            if shutil.which("openssl") is None:
                sys.exit("--scenario tls needs openssl (apt-get install -y openssl)")
            cert, key = bench_certificate(work)
            ngx_tls_port = free_port()
        ngx_conf = nginx_conf(
            work / "proxy",
            (f"  proxy_cache_path {work / 'cache'} levels=1:2 keys_zone=bench:10m;\n" if cache else "")
            + f"  upstream backend {{ server 127.0.0.1:{up_port}; keepalive 256; keepalive_requests 1000000; }}\n"
            f"  server {{ listen 127.0.0.1:{ngx_port} backlog=4096;\n"
            "    location / { proxy_pass http://backend; proxy_http_version 1.1;\n"
            + (NGINX_CACHE if cache else "")
            + '      proxy_set_header Connection ""; proxy_buffering on; } }\n'
            + (nginx_tls_server(ngx_tls_port, cert, key) if tls else ""),
        )
        ngx = start(["nginx", "-p", str(work / "proxy"), "-c", str(ngx_conf)], PROXY_CPU, work / "ngx.log")
        procs.append(ngx)
        gw_cfg = work / "fastgw.yaml"
        gw_cfg.write_text(FASTGW_CONFIG.format(port=gw_port, upstream=up_port))
        env = {k: v for k, v in os.environ.items() if k != "FASTGW_NO_EXTENSIONS"}
        gw = start([sys.executable, "-m", "fastgw", "serve", str(gw_cfg)], PROXY_CPU, work / "gw.log", env)
        procs.append(gw)
        targets = {"fastgw": (gw_port, gw.pid), "nginx": (ngx_port, ngx.pid)}
        if args.scenario == "plugins":
            pl_port = free_port()
            pl_cfg = work / "fastgw-plugins.yaml"
            pl_cfg.write_text(plugins_config(pl_port, up_port))
            pl = start([sys.executable, "-m", "fastgw", "serve", str(pl_cfg)], PROXY_CPU, work / "gw-pl.log", env)
            procs.append(pl)
            targets["plugins"] = (pl_port, pl.pid)
        extra: dict[str, str] = {}
        if args.scenario == "ratelimit":
            if shutil.which("redis-server") is None:
                sys.exit("--scenario ratelimit needs redis-server (apt-get install -y redis-server)")
            redis_port = free_port()
            procs.append(start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], LOAD_CPU, work / "redis.log"))  # fmt: skip
            time.sleep(0.5)
            for policy in ("local", "redis"):
                extra[f"rl-{policy}"] = ratelimit_config(free_port(), up_port, policy, redis_port)
        elif cache:
            extra["cache"] = cache_config(free_port(), up_port)
        for name, text in extra.items():
            port = int(re.search(r"port: (\d+)", text).group(1))  # type: ignore[union-attr]
            path = work / f"fastgw-{name}.yaml"
            path.write_text(text)
            proc = start([sys.executable, "-m", "fastgw", "serve", str(path)], PROXY_CPU, work / f"gw-{name}.log", env)
            procs.append(proc)
            targets[name] = (port, proc.pid)
        if args.scenario == "observability":
            ob_port, admin_port = free_port(), free_port()
            ob_cfg = work / "fastgw-observed.yaml"
            ob_cfg.write_text(observability_config(ob_port, up_port, admin_port, work / "access.log"))
            ob = start([sys.executable, "-m", "fastgw", "serve", str(ob_cfg)], PROXY_CPU, work / "gw-ob.log", env)
            procs.append(ob)
            targets["observed"] = (ob_port, ob.pid)
        if args.scenario == "chain":
            ch_port = free_port()
            ch_cfg = work / "fastgw-chain.yaml"
            ch_cfg.write_text(chain_config(ch_port, up_port, work / "chain-access.log"))
            ch = start([sys.executable, "-m", "fastgw", "serve", str(ch_cfg)], PROXY_CPU, work / "gw-ch.log", env)
            procs.append(ch)
            targets["chain"] = (ch_port, ch.pid)
        # The chain's key-auth reads the key from the query: every proxy gets it there, so all requests are the same.
        query = f"?apikey={BENCH_KEY}" if args.scenario == "chain" else ""
        secure: set[str] = set()  # the targets wrk speaks https to
        if tls:
            tls_port = free_port()
            tls_cfg = work / "fastgw-tls.yaml"
            tls_cfg.write_text(tls_config(tls_port, up_port, cert, key))
            gt = start([sys.executable, "-m", "fastgw", "serve", str(tls_cfg)], PROXY_CPU, work / "gw-tls.log", env)
            procs.append(gt)
            targets["gw-tls"] = (tls_port, gt.pid)
            targets["ngx-tls"] = (ngx_tls_port, ngx.pid)  # the same nginx worker, its TLS server block
            secure = {"gw-tls", "ngx-tls"}

        def url(name: str) -> str:
            return f"{'https' if name in secure else 'http'}://127.0.0.1:{targets[name][0]}/bench{query}"

        body = UPSTREAM_BODY.strip().encode()
        wait_ready(f"http://127.0.0.1:{up_port}/bench", body)
        for name in targets:
            wait_ready(url(name), body, headers={"apikey": BENCH_KEY}, ca=cert if name in secure else None)

        if "observed" in targets:
            wait_ready(f"http://127.0.0.1:{admin_port}/metrics", b"fastgw_requests_total")
            scraper = Scraper(admin_port)

        from fastgw import core

        names = list(targets)
        runs: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        rss: dict[str, int] = dict.fromkeys(names, 0)
        # Warm them all (pools, caches) before measuring.
        for name in targets:
            run_wrk(url(name), args.warmup, args.connections)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]  # each proxy takes each slot in turn
            for name in order:
                port, pid = targets[name]
                res = run_wrk(url(name), args.duration, args.connections, pid)
                runs[name].append(res)
                rss[name] = max(rss[name], rss_kib(pid))
                print(
                    f"round {r + 1} {name:7s} {res['rps']:>10.0f} req/s  p50 {res['p50_ms']:.3f} ms  "
                    f"p99 {res['p99_ms']:.3f} ms  cpu {res.get('cpu_us_per_request', 0):.1f} us/req  "
                    f"busy {res.get('proxy_cpu_busy', 0):.2f}  steal {res['steal_pct']:.1f}%",
                    flush=True,
                )

        summary = {}
        for name, rs in runs.items():
            summary[name] = {
                "rps": statistics.median(x["rps"] for x in rs),
                "p50_ms": statistics.median(x["p50_ms"] for x in rs),
                "p99_ms": statistics.median(x["p99_ms"] for x in rs),
                "rss_kib": rss[name],
                "cpu_us_per_request": statistics.median(x.get("cpu_us_per_request", 0.0) for x in rs),
                "steal_pct": statistics.median(x["steal_pct"] for x in rs),
                "proxy_cpu_busy": statistics.median(x.get("proxy_cpu_busy", 0.0) for x in rs),
                "errors": sum(x["non_2xx"] + x["socket_errors"] for x in rs),
                "runs": rs,
            }
        ratio = summary["fastgw"]["rps"] / summary["nginx"]["rps"]
        # The two runs of a round are back to back, so their ratio cancels the slow drift of a shared VM; the
        # median of those per-round ratios is the steadier figure when the machine's speed wanders.
        paired = statistics.median(
            g["rps"] / max(n["rps"], 1e-9) for g, n in zip(runs["fastgw"], runs["nginx"], strict=True)
        )
        cpu_ratio = summary["nginx"]["cpu_us_per_request"] / max(summary["fastgw"]["cpu_us_per_request"], 1e-9)
        p99_ratio = summary["fastgw"]["p99_ms"] / summary["nginx"]["p99_ms"]
        # The figures compare the proxies only when each one kept its CPU busy and the hypervisor took little.
        warnings = [
            f"{name} used {summary[name]['proxy_cpu_busy']:.0%} of its CPU: it was not the bottleneck"
            for name in names
            if summary[name]["proxy_cpu_busy"] < MIN_BUSY
        ] + [
            f"steal was {summary[name]['steal_pct']}% during the {name} runs: the VM was throttled"
            for name in names
            if summary[name]["steal_pct"] > MAX_STEAL_PCT
        ]
        result = {
            "scenario": args.scenario,
            "description": "plain reverse proxy to an nginx upstream (keep-alive both legs), one proxy CPU"
            + ("; plus fastgw with key-auth, request-id and a request header transform" if "plugins" in names else "")
            + ("; plus fastgw with rate-limit local and redis (never refusing)" if "rl-local" in names else "")
            + ("; nginx answers from proxy_cache, plus fastgw answering from proxy-cache" if cache else "")
            + ("; plus fastgw with the JSON access log and /metrics on" if "observed" in names else "")
            + (
                "; plus fastgw with key-auth (query key), request-id, request-transformer (add a header) and the JSON"
                " access log"
                if "chain" in names
                else ""
            )
            + (f"; plus fastgw and nginx terminating TLS (TLSv1.2, {TLS_CIPHER}, keep-alive)" if tls else ""),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "commit": git_commit(),
            "fastgw_core": "compiled" if core.COMPILED else "pure-python",
            "settings": {
                "duration_s": args.duration,
                "rounds": args.rounds,
                "connections": args.connections,
                "wrk_threads": 1,
                "proxy_cpu": PROXY_CPU,
                "load_cpu": LOAD_CPU,
            },
            "machine": machine(),
            "fastgw": summary["fastgw"],
            "nginx": summary["nginx"],
            "ratio_rps": round(ratio, 3),
            "ratio_rps_paired": round(paired, 3),
            "ratio_p99": round(p99_ratio, 3),
            "ratio_cpu_efficiency": round(cpu_ratio, 3),
            "proxy_bound": not warnings,
            "warnings": warnings,
        }
        if "plugins" in names:
            # Paired by round like the nginx ratio: the plugin chain's cost as a share of plain throughput.
            kept = statistics.median(
                p["rps"] / max(g["rps"], 1e-9) for p, g in zip(runs["plugins"], runs["fastgw"], strict=True)
            )
            result["plugins"] = summary["plugins"]
            result["plugin_overhead"] = round(1 - kept, 3)
            result["plugins_ratio_rps_vs_nginx"] = round(summary["plugins"]["rps"] / summary["nginx"]["rps"], 3)
        for name in extra:
            # Paired by round: each extra fastgw against the plain one (its cost, or for a cache its speed-up).
            kept = statistics.median(
                x["rps"] / max(g["rps"], 1e-9) for x, g in zip(runs[name], runs["fastgw"], strict=True)
            )
            result[name] = summary[name]
            result[f"{name}_vs_plain"] = round(kept, 3)
        if cache:
            # nginx answered from its proxy_cache in this scenario: the hits compared, paired by round.
            result["cache_hits_ratio_vs_nginx"] = round(statistics.median(
                c["rps"] / max(n["rps"], 1e-9) for c, n in zip(runs["cache"], runs["nginx"], strict=True)
            ), 3)  # fmt: skip
        if "observed" in names:
            kept = statistics.median(
                o["rps"] / max(g["rps"], 1e-9) for o, g in zip(runs["observed"], runs["fastgw"], strict=True)
            )
            result["observed"] = summary["observed"]
            result["observability_overhead"] = round(1 - kept, 3)
            result["observed_ratio_rps_vs_nginx"] = round(summary["observed"]["rps"] / summary["nginx"]["rps"], 3)
            result["metrics_scrapes"] = scraper.scrapes if scraper is not None else 0
        if "chain" in names:
            # CPU time per request of the proxy's process, the chain's beside nginx's plain proxying (and fastgw's
            # own plain proxying) in the same run; throughput paired by round against the plain fastgw.
            chain_cpu = max(summary["chain"]["cpu_us_per_request"], 1e-9)
            result["chain"] = summary["chain"]
            result["chain_ratio_cpu_efficiency"] = round(summary["nginx"]["cpu_us_per_request"] / chain_cpu, 3)
            result["chain_cpu_overhead"] = round(chain_cpu / max(summary["fastgw"]["cpu_us_per_request"], 1e-9) - 1, 3)
            result["chain_vs_plain"] = round(statistics.median(
                c["rps"] / max(g["rps"], 1e-9) for c, g in zip(runs["chain"], runs["fastgw"], strict=True)
            ), 3)  # fmt: skip
            result["chain_ratio_rps_vs_nginx"] = round(summary["chain"]["rps"] / summary["nginx"]["rps"], 3)
            lines, last = last_line(work / "chain-access.log")
            result["chain_access_log"] = {"lines": lines, "last": last}
        if tls:
            # Paired by round: TLS against TLS, and each proxy's TLS against its own plain proxying.
            def paired_ratio(a: str, b: str) -> float:
                return round(statistics.median(
                    x["rps"] / max(y["rps"], 1e-9) for x, y in zip(runs[a], runs[b], strict=True)
                ), 3)  # fmt: skip

            result["gw-tls"], result["ngx-tls"] = summary["gw-tls"], summary["ngx-tls"]
            result["tls_ratio_rps"] = round(summary["gw-tls"]["rps"] / summary["ngx-tls"]["rps"], 3)
            result["tls_ratio_rps_paired"] = paired_ratio("gw-tls", "ngx-tls")
            result["tls_cost_fastgw"] = round(1 - paired_ratio("gw-tls", "fastgw"), 3)
            result["tls_cost_nginx"] = round(1 - paired_ratio("ngx-tls", "nginx"), 3)
            result["tls_negotiated"] = {n: negotiated(targets[n][0]) for n in ("gw-tls", "ngx-tls")}
        out = Path(args.out) if args.out else RESULTS / f"{result['date'][:10]}-{args.scenario}-{result['commit']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")

        print()
        print(f"{'':8s}{'req/s':>12s}{'p50 ms':>10s}{'p99 ms':>10s}{'cpu us/req':>12s}{'RSS MiB':>10s}{'errors':>8s}")
        for name in names:
            s = summary[name]
            print(
                f"{name:8s}{s['rps']:>12.0f}{s['p50_ms']:>10.3f}{s['p99_ms']:>10.3f}{s['cpu_us_per_request']:>12.1f}"
                f"{s['rss_kib'] / 1024:>10.1f}{s['errors']:>8d}"
            )
        print(
            f"\nfastgw/nginx: throughput {ratio:.3f}x (paired by round {paired:.3f}x), p99 {p99_ratio:.3f}x, "
            f"CPU per request {1 / cpu_ratio:.2f}x "
            f"(median steal {summary['fastgw']['steal_pct']}%)  ->  {out}"
        )
        if "plugins" in names:
            print(f"plugin chain (key-auth, request-id, request-transformer): {result['plugin_overhead']:.1%} of "
                  "plain-proxy throughput")  # fmt: skip
        for name in extra:
            print(f"{name}: {result[f'{name}_vs_plain']:.3f}x plain-proxy throughput")
        if cache:
            print(f"cache hits fastgw/nginx: {result['cache_hits_ratio_vs_nginx']:.3f}x")
        if "observed" in names:
            print(f"access log + metrics: {result['observability_overhead']:.1%} of plain-proxy throughput "
                  f"({result['metrics_scrapes']} scrapes)")  # fmt: skip
        if "chain" in names:
            print(
                f"chain (key-auth query key, request-id, request-transformer, JSON access log): CPU per request "
                f"{summary['chain']['cpu_us_per_request']:.1f} us, nginx {summary['nginx']['cpu_us_per_request']:.1f}"
                f" us: {result['chain_ratio_cpu_efficiency']:.3f}x; {result['chain_cpu_overhead']:+.1%} CPU per "
                f"request over plain fastgw, {result['chain_vs_plain']:.3f}x its throughput"
            )
        if tls:
            print(
                f"TLS fastgw/nginx: throughput {result['tls_ratio_rps']:.3f}x (paired by round "
                f"{result['tls_ratio_rps_paired']:.3f}x) on {result['tls_negotiated']}; TLS costs fastgw "
                f"{result['tls_cost_fastgw']:.1%}, nginx {result['tls_cost_nginx']:.1%} of its plain throughput"
            )
        for w in warnings:
            print(f"WARNING: {w}; treat the ratio as indicative only")
        return 0
    finally:
        if scraper is not None:
            scraper.stop.set()
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
