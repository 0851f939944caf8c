"""`trace-context`: W3C Trace Context (`traceparent`, `tracestate`) carried to upstreams and functions.

A request that arrives with a valid `traceparent` keeps it (and its `tracestate`): the gateway does not record
spans of its own, so it passes the caller's context through unchanged, as the W3C recommendation lets an
intermediary that does not participate do. A request without one (or with a malformed one, which is dropped)
gets a new trace id and parent id, so the upstream or the function and the access log (`trace_id`) share one id.
With `amzn_trace_id: true` an `X-Amzn-Trace-Id` (`Root=1-<time>-<id>;Parent=<id>;Sampled=<0|1>`) made from the
same ids goes along when the client sent none, as API Gateway passes it to Lambda.

With OpenTelemetry export on (`tracing:` in the config, fastgw.observability.otel) the gateway participates
instead: the trace id is kept (or made), the caller's parent id is remembered (`ctx.vars["parent_id"]`), and the
upstream or the function gets a `traceparent` whose parent id is the gateway's CLIENT span (`ctx.vars["span_id"]`),
as the W3C recommendation has a participating intermediary do; `tracestate` goes on unchanged.

The headers are added to the client request's own header list, as the core adds the consumer headers, because
that list is what both the http integration (the upstream request head) and the lambda integration (the event's
headers) are built from.
"""

from __future__ import annotations

import os
import re
import time

import msgspec

from fastgw.plugins.base import Context, Plugin

# Set by the span export while it runs (one per process): the plugin then makes the gateway's span ids.
_participating = False


def participate(on: bool) -> None:
    global _participating
    _participating = on


_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def parse_traceparent(value: bytes | None) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a valid traceparent, else None (all-zero ids and version ff are invalid;
    a future version may carry more fields after a dash)."""
    if value is None:
        return None
    m = _TRACEPARENT.match(value.strip())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == b"ff" or (version == b"00" and rest) or trace_id == b"0" * 32 or parent_id == b"0" * 16:
        return None
    return trace_id.decode(), parent_id.decode(), flags.decode()


def new_traceparent(sampled: bool) -> str:
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-{'01' if sampled else '00'}"


class TraceContextConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # The sampled flag of a traceparent the gateway makes (one it passes on keeps the caller's).
    sampled: bool = False
    amzn_trace_id: bool = False


class TraceContext(Plugin):
    name = "trace-context"
    priority = 3990  # first: the request id, auth failures and everything after can be logged with the trace id
    Config = TraceContextConfig

    def rewrite(self, ctx: Context, conf: TraceContextConfig) -> None:
        # The request the upstream gets (ctx.wire_request: ctx.request, the client's view, is made only when a phase
        # asks); its headers are written as a copy, so ctx.request keeps what the client sent.
        req = ctx.wire_request
        headers: list[tuple[bytes, bytes]] = list(req.headers)
        req.headers = headers
        incoming = amzn = None
        for name, value in headers:
            if name == b"traceparent":
                incoming = value
            elif name == b"x-amzn-trace-id":
                amzn = value
        parsed = parse_traceparent(incoming)
        caller = parsed[1] if parsed is not None else None
        if parsed is None:
            if incoming is not None:  # a malformed one (and its tracestate) is not passed on
                headers[:] = [(n, v) for n, v in headers if n not in (b"traceparent", b"tracestate")]
            tp = new_traceparent(conf.sampled)
            headers.append((b"traceparent", tp.encode()))
            parsed = (tp[3:35], tp[36:52], tp[53:55])
        else:
            tp = incoming.decode()  # type: ignore[union-attr]
        if _participating:
            # The caller's span is the parent of the gateway's; the upstream's parent is the gateway's CLIENT span.
            ctx.vars["parent_id"] = caller
            span_id = os.urandom(8).hex()
            ctx.vars["span_id"] = span_id
            mine = f"00-{parsed[0]}-{span_id}-{parsed[2]}"
            headers[:] = [(n, v) for n, v in headers if n != b"traceparent"]
            headers.append((b"traceparent", mine.encode()))
            tp = mine
        ctx.vars["traceparent"] = tp
        ctx.vars["trace_id"] = parsed[0]
        if conf.amzn_trace_id and amzn is None:
            trace_id, parent_id, flags = parsed
            # X-Ray's root: 1-<8 hex digits of epoch seconds>-<24 hex digits>; taken from the W3C id's last 24.
            root = f"1-{int(time.time()):08x}-{trace_id[8:]}"
            sampled = int(flags, 16) & 1
            headers.append((b"x-amzn-trace-id", f"Root={root};Parent={parent_id};Sampled={sampled}".encode()))


PLUGINS = (TraceContext,)
