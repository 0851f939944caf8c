"""OpenTelemetry export (the `otel` extra): one SERVER span per request and a CLIENT child span for the upstream
call or the function invocation, sent over OTLP/HTTP by the SDK's BatchSpanProcessor.

Nothing on the request path but what the access log does: `add` (from `Exchange.done`, through `observer`)
appends the exchange and a clock reading to a list. A timer on the serving loop (every `TICK` while there is
something to send), a full buffer or the process' exit builds the spans and hands them to the processor, whose own
thread batches and posts them; a collector that is slow or gone costs that thread, never the loop (the
processor's queue is bounded and drops when full, as the SDK does).

Span ids: with export on, the `trace-context` plugin (fastgw.observability.tracing) participates in the trace: it
keeps the caller's trace id (or makes one), remembers the caller's parent id, and sends the upstream or the
function a `traceparent` whose parent id is the gateway's CLIENT span. So the upstream's spans hang under the
gateway's CLIENT span, which hangs under the SERVER span, which hangs under the caller's span. A route without
the plugin still gets its spans, from the caller's `traceparent` when there is one (the upstream then sees that
header unchanged, so the trace id is the same) or a new trace id.

Sampling: `sample_ratio` of the trace ids (their lower 64 bits, as the SDK's TraceIdRatioBased), so every
gateway with the same ratio keeps the same traces.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

from fastgw.observability import tracing
from fastgw.observability.accesslog import served_routes, upstream_label
from fastgw.observability.tracing import parse_traceparent

if TYPE_CHECKING:
    from fastgw.config.schema import TracingConfig
    from fastgw.pipeline.exchange import Exchange

MISSING = "OpenTelemetry export needs the otel extra: pip install 'fastgw[otel]'"
TICK = 0.25  # seconds between builds of the spans buffered (the server's tick rate)
_FLUSH_AT = 512
_perf = time.perf_counter


def available() -> bool:
    """The SDK and the OTLP/HTTP exporter import."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
        import opentelemetry.sdk.trace.export  # noqa: F401
    except ImportError:
        return False
    return True


class SpanExport:
    """Buffers finished exchanges; `flush` turns them into spans for the processor."""

    def __init__(self, conf: TracingConfig, processor: Any = None) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        if processor is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            exporter = OTLPSpanExporter(endpoint=conf.otlp_endpoint, headers=dict(conf.headers), timeout=conf.timeout)
            processor = BatchSpanProcessor(
                exporter,
                max_queue_size=conf.max_queue,
                schedule_delay_millis=conf.flush_interval * 1000,
                max_export_batch_size=min(conf.max_batch, conf.max_queue),
            )
        self.processor = processor
        self.conf = conf
        self.resource = Resource.create({"service.name": conf.service_name, **conf.resource_attributes})
        self.scope = InstrumentationScope("fastgw")
        self._span = ReadableSpan
        self._context = SpanContext
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._error = Status(StatusCode.ERROR)
        self._unset = Status(StatusCode.UNSET)
        self._bound = int(conf.sample_ratio * (1 << 64))
        self._buf: list[tuple[Exchange, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._templates: dict[Any, str] = {}
        self._gw: Any = None
        tracing.participate(True)
        atexit.register(self.close)

    def add(self, ex: Exchange, now: float = 0.0) -> None:
        buf = self._buf
        if not buf and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TICK, self._due)
        buf.append((ex, now or _perf()))
        if len(buf) >= _FLUSH_AT:
            self.flush()

    def __call__(self, ex: Exchange) -> None:
        self.add(ex, _perf())

    def _due(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        raw, self._buf = self._buf, []
        if not raw:
            return
        offset = time.time() - _perf()  # perf_counter readings to wall-clock time, once per flush
        on_end = self.processor.on_end
        for ex, now in raw:
            for span in self.spans(ex, now, offset):
                on_end(span)

    def _template(self, ex: Exchange) -> str:
        """The route's path template (http.route), once per route and config."""
        route = ex.route
        gw = ex.gw
        if gw is not self._gw:
            self._gw = gw
            by_label = {e.label: e.route.path for e in getattr(gw, "entries", ())}
            self._templates = {r: by_label.get(r.name, r.name) for r in served_routes(gw)}
        return self._templates.get(route) or route.name  # type: ignore[union-attr]

    def spans(self, ex: Exchange, now: float, offset: float) -> list[Any]:
        """The SERVER span of one exchange and its CLIENT child, or none when its trace is not sampled."""
        req = ex.req
        ctx = ex.ctx
        trace_hex = parent_hex = client_hex = None
        if ctx is not None and (trace_hex := ctx.vars.get("trace_id")) is not None:
            parent_hex = ctx.vars.get("parent_id")  # the caller's span, None when the gateway began the trace
            client_hex = ctx.vars.get("span_id")  # what the upstream got as its parent
        else:
            tp = dict(req.headers).get(b"traceparent") if req.headers else None
            parsed = parse_traceparent(tp)  # strict: both ids are hex, read as numbers below
            if parsed is not None:
                trace_hex, parent_hex = parsed[0], parsed[1]
        trace_id = int(trace_hex, 16) if trace_hex else int.from_bytes(os.urandom(16), "big") or 1
        if trace_id & 0xFFFFFFFFFFFFFFFF >= self._bound:
            return []
        sampled = self._sampled
        server = self._context(trace_id, _span_id(), False, sampled)
        parent = self._context(trace_id, int(parent_hex, 16), True, sampled) if parent_hex else None
        start = int((ex.t0 + offset) * 1e9) if ex.t0 else int((now + offset) * 1e9)
        end = int((now + offset) * 1e9)
        status = ex.status
        route = ex.route
        name = route.name if route is not None else f"{req.method} (no route)"
        attributes: dict[str, Any] = {
            "http.request.method": req.method,
            "url.path": req.path or req.url.decode("latin-1")[:256],
            "http.response.status_code": status,
            "client.address": ex.peer.ip or "",
            "server.address": req.host,
            "http.request.body.size": req.body_size,
            "http.response.body.size": ex.sent,  # NOTE: the bytes sent, head included
        }
        if route is not None:
            attributes["http.route"] = self._template(ex)
            attributes["fastgw.route"] = route.name
        if ctx is not None and ctx.consumer is not None:
            attributes["fastgw.consumer"] = ctx.consumer.name
        failed = status >= 500
        out = [self._make(name, server, parent, attributes, self._server, failed, start, end)]
        up = ex.upstream
        if up is not None:
            label = upstream_label(up) or ""
            sent_at = ex.upstream_at
            client_start = int((sent_at + offset) * 1e9)
            client_end = int((sent_at + ex.upstream_s + offset) * 1e9)
            if label.startswith("function:"):
                client_name = f"invoke {label[9:]}"
                client_attrs: dict[str, Any] = {"faas.invoked_name": label[9:], "faas.invoked_provider": "fastgw"}
            else:
                host, _, port = label.rpartition(":")
                client_name = f"{req.method} {label}"
                client_attrs = {"http.request.method": req.method, "server.address": host, "server.port": int(port)}
                client_attrs["http.response.status_code"] = status
            client = self._context(trace_id, int(client_hex, 16) if client_hex else _span_id(), False, sampled)
            end = max(client_start, client_end)
            out.append(self._make(client_name, client, server, client_attrs, self._client, failed, client_start, end))
        return out

    def _make(
        self, name: str, context: Any, parent: Any, attributes: dict[str, Any], kind: Any, failed: bool,
        start: int, end: int,
    ) -> Any:  # fmt: skip
        """One finished span of this gateway's resource and scope."""
        return self._span(
            name,
            context=context,
            parent=parent,
            resource=self.resource,
            attributes=attributes,
            kind=kind,
            status=self._error if failed else self._unset,
            start_time=start,
            end_time=end,
            instrumentation_scope=self.scope,
        )

    def close(self) -> None:
        """What is buffered goes to the processor, which sends what it holds and stops (at exit)."""
        atexit.unregister(self.close)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        tracing.participate(False)
        self.processor.shutdown()

    async def aclose(self, timeout: float) -> None:
        """The server's shutdown: the spans built on the loop, then sent from a thread for at most `timeout`
        seconds (a collector that is gone does not hold the shutdown longer)."""
        atexit.unregister(self.close)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        tracing.participate(False)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(self.processor.shutdown), timeout)


def _span_id() -> int:
    return int.from_bytes(os.urandom(8), "big") or 1


def span_export(conf: TracingConfig | None) -> SpanExport | None:
    """The exporter a config asks for (the config loader has checked the extra is installed)."""
    if conf is None:
        return None
    if not available():
        raise RuntimeError(MISSING)
    return SpanExport(conf)
