#!/usr/bin/env python3
"""fastgw's own Python cost per proxied request, without sockets or the event loop.

Drives ClientProtocol and UpstreamConnection with in-memory transports through one complete keep-alive
exchange per iteration (parse the client request, route, build the upstream head, parse the upstream response,
frame it for the client, return the connection to the pool) and reports microseconds per exchange: the median
over many small batches, since on a throttled VM any long measurement catches stalls that have nothing to do
with the code. Used to compare hot-path changes where end-to-end runs are noisy; `bench/run.py` stays the
measure that counts.

With `--plugins` the route carries the plugin chain of `bench/run.py --scenario plugins` (key-auth, request-id,
a request header transform) and the request sends the consumer's key: the difference is what the chain costs.
With `--observe` the exchange is counted for /metrics and written to the JSON access log (into memory, never
flushed to a file): the difference is what observability costs per request.

Usage: python bench/hotpath.py [--batches 2000] [--batch 50] [--plugins] [--observe]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import uvloop

from fastgw.config.load import load_config_bytes
from fastgw.gateway import Gateway
from fastgw.observability.accesslog import AccessLog
from fastgw.observability.metrics import Counters, observer
from fastgw.pipeline.exchange import Worker
from fastgw.proxy.upstream import UpstreamConnection
from fastgw.server.protocol import ClientProtocol

CONFIG = b"""
logging: {access_log: false}
server: {via: false}
upstreams:
  backend: {targets: ["http://127.0.0.1:9"]}
routes:
  - path: /{proxy+}
    integration: {type: http, upstream: backend}
"""
PLUGINS = b"""
    plugins:
      key-auth: {}
      request-id: {}
      request-transformer: {set: {headers: {x-consumer-tier: $consumer.custom.tier}}}
consumers:
  bench: {custom: {tier: gold}, credentials: {key-auth: [{key: bench-key-0123456789}]}}
"""
REQUEST = (
    b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n"
    b"apikey: bench-key-0123456789\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 21:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 24\r\nConnection: keep-alive\r\n\r\nhello from the upstream\n"
)


class MemoryTransport:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str) -> object:
        return self.peer if name == "peername" else None

    def set_write_buffer_limits(self, high: int) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise AssertionError("the benchmark exchange must stay keep-alive")


class NullStream:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass


async def measure(batches: int, batch: int, plugins: bool, observe: bool = False) -> list[float]:
    loaded = load_config_bytes(CONFIG + PLUGINS if plugins else CONFIG, "<hotpath>.yaml")
    hook = observer(AccessLog(NullStream()), Counters()) if observe else None  # type: ignore[arg-type]
    state = Worker(asyncio.get_running_loop(), Gateway(loaded), hook)
    client = ClientProtocol(state)
    client.connection_made(MemoryTransport(("127.0.0.1", 40000)))  # type: ignore[arg-type]
    target = state.gateway.upstreams["backend"].targets[0]
    up = UpstreamConnection(target, state)
    up.connection_made(MemoryTransport(("127.0.0.1", 9)))  # type: ignore[arg-type]
    target.release(up, 0.0)
    results = []
    clock = time.perf_counter
    for _ in range(batches):
        start = clock()
        for _ in range(batch):
            client.data_received(REQUEST)
            up.data_received(RESPONSE)
        results.append((clock() - start) / batch * 1e6)
    assert client.transport.written > 0 and not client.queue  # type: ignore[attr-defined]
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=50, help="exchanges per timed batch")
    ap.add_argument("--plugins", action="store_true", help="the route carries the benchmark's plugin chain")
    ap.add_argument("--observe", action="store_true", help="metrics counters and the JSON access log on")
    args = ap.parse_args()
    results = sorted(
        uvloop.run(measure(args.batches, args.batch, args.plugins, args.observe))
    )  # the loop `fastgw serve` runs on
    n = len(results)
    print(
        f"hot path: median {results[n // 2]:.2f} us per proxied request "
        f"(p10 {results[n // 10]:.2f}, p90 {results[n * 9 // 10]:.2f}; {n} batches of {args.batch})"
    )


if __name__ == "__main__":
    main()
