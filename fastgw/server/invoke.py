"""`fastgw invoke`: API Gateway's "Test" tab. One request runs through the whole gateway (parsing, limits,
routing, the integration, a function's real worker) over a socket pair instead of a port, and what happened
inside is reported: the event sent to the function, its result or error, its log lines, the response."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from fastgw.client import RawConnection
from fastgw.config.load import LoadedConfig
from fastgw.functions.pool import Outcome
from fastgw.gateway import Gateway
from fastgw.pipeline.exchange import Worker
from fastgw.pipeline.leg import Peer
from fastgw.server.protocol import ClientProtocol

SOURCE_IP = "test-invoke-source-ip"  # what API Gateway's test invoke puts in identity.sourceIp


@dataclass
class Trace:
    """Filled in by the lambda integration while the request runs (`Worker.inspector`)."""

    route: str = ""
    event: dict[str, Any] | None = None
    request_id: str = ""
    outcome: Outcome | None = None
    reason: str = ""


@dataclass
class InvokeResult:
    method: str
    path: str
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    latency_ms: float
    route: str
    trace: Trace = field(default_factory=Trace)
    # What the gateway logged at warning level or above while it ran the request (an upstream that refused, a
    # function that timed out): the reason behind an error answer, which the response itself never says.
    gateway_log: list[str] = field(default_factory=list)

    @property
    def failure(self) -> str:
        """Why the request failed inside the gateway (the integration could not answer), or "" when it did not:
        a status the upstream or the function chose is an answer, not a failure."""
        if self.trace.reason:
            return self.trace.reason
        if self.status >= 500 and self.gateway_log:
            return self.gateway_log[-1]
        return ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request": {"method": self.method, "path": self.path, "headers": self.request_headers,
                        "body": self.request_body.decode("utf-8", "replace")},
            "route": self.route or None,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 2),
            "headers": dict(self.headers),
            "body": self.body.decode("utf-8", "replace"),
        }  # fmt: skip
        t = self.trace
        if t.event is not None:
            fn: dict[str, Any] = {"request_id": t.request_id, "event": t.event}
            if t.outcome is not None:
                o = t.outcome
                fn.update(duration_ms=round(o.duration_ms, 2), cold_start=o.cold_start, logs=o.logs)
                fn["result" if o.ok else "error"] = o.value if o.ok else o.error
            out["function"] = fn
        if self.failure:
            out["error"] = self.failure
        if self.gateway_log:
            out["gateway_log"] = self.gateway_log
        return out

    def to_text(self) -> str:
        """The layout of the console's Test tab: request, status, latency, body, headers, then the log."""
        t = self.trace
        stamp = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime())
        lines = [
            f"Request: {self.method} {self.path}",
            f"Status: {self.status}",
            f"Latency: {self.latency_ms:.0f} ms",
            "",
            "Response body",
            self.body.decode("utf-8", "replace"),
            "",
            "Response headers",
            orjson.dumps(dict(self.headers), option=orjson.OPT_INDENT_2).decode(),
            "",
            "Log",
        ]
        log = [f"Execution log for request {t.request_id or '-'}", f"Starting execution for route: {self.route or '-'}"]
        log.append(f"HTTP Method: {self.method}, Resource Path: {self.path}")
        log.append(f"Method request headers: {orjson.dumps(self.request_headers).decode()}")
        log.append(f"Method request body before transformations: {self.request_body.decode('utf-8', 'replace')}")
        if t.event is not None:
            log.append("Endpoint request body after transformations: " + orjson.dumps(t.event).decode())
        o = t.outcome
        if o is not None:
            log.append(f"Function invoked in {o.duration_ms:.2f} ms{' (cold start)' if o.cold_start else ''}")
            log += [f"Function log: {line}" for line in o.logs]
            shown = o.value if o.ok else o.error
            log.append("Endpoint response body before transformations: " + orjson.dumps(shown).decode())
        log += [f"Gateway log: {line}" for line in self.gateway_log if line != self.failure]
        if self.failure:
            log.append(f"Execution failed: {self.failure}")
        log.append(f"Method completed with status: {self.status}")
        lines += [f"{stamp} : {entry}" for entry in log]
        return "\n".join(lines) + "\n"


async def invoke(
    loaded: LoadedConfig,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 60.0,
) -> InvokeResult:
    """Run one request through `loaded` without opening a port."""
    loop = asyncio.get_running_loop()
    gateway = Gateway(loaded)
    state = Worker(loop, gateway, None)
    trace = state.inspector = Trace()
    # Called when the request is answered (where the access log would be): note which route served it.
    state.access_log = lambda ex: setattr(trace, "route", ex.route.name if ex.route is not None else "")
    hdrs = {"host": "test-invoke.localhost", **(headers or {})}
    lower = {k.lower() for k in hdrs}
    hdrs["connection"] = "close"
    if body and "content-length" not in lower and "transfer-encoding" not in lower:
        hdrs["content-length"] = str(len(body))
    ours, theirs = socket.socketpair()
    collected = _Collect()
    logging.getLogger("fastgw").addHandler(collected)
    try:
        _, proto = await loop.connect_accepted_socket(lambda: ClientProtocol(state), ours)
        proto.peer = Peer(SOURCE_IP)
        proto.peer.ip_b = b"127.0.0.1"  # X-Forwarded-For, should the route proxy to an upstream
        reader, writer = await asyncio.open_connection(sock=theirs)
        conn = RawConnection(reader, writer)
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        t0 = time.perf_counter()
        await conn.send(head.encode("latin-1") + body)
        resp = await conn.response(head_only=method == "HEAD", timeout=timeout)
        latency = (time.perf_counter() - t0) * 1000
        await conn.close()
    finally:
        with contextlib.suppress(OSError):
            theirs.close()
        await gateway.aclose()
        logging.getLogger("fastgw").removeHandler(collected)
    return InvokeResult(
        method, path, hdrs, body, resp.status, resp.headers, resp.body, latency, trace.route, trace, collected.lines
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
