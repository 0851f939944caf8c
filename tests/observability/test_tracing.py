"""W3C trace context through the gateway: the upstream and a function see a traceparent (the client's, or a new
one when it sent none or a malformed one), and the access log carries its trace id."""

from __future__ import annotations

import io
import re

import orjson

from fastgw.client import http_request
from fastgw.observability.accesslog import AccessLog
from fastgw.observability.tracing import parse_traceparent
from fastgw.testing import EchoUpstream, running_gateway
from tests.conftest import proxy_config

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
_NEW = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-00$")


async def test_the_upstream_sees_the_clients_traceparent_or_a_new_one():
    out = io.BytesIO()
    async with EchoUpstream() as up:
        cfg = proxy_config(up.url, plugins={"trace-context": {}})
        async with running_gateway(cfg, access_log=AccessLog(out)) as gw:
            await http_request(gw.port, "GET", "/a", headers={"traceparent": TP, "tracestate": "vendor=x"})
            await http_request(gw.port, "GET", "/b")
            await http_request(gw.port, "GET", "/c", headers={"traceparent": "00-zz-bad", "tracestate": "v=1"})
            await http_request(gw.port, "GET", "/d")
        seen = up.received
    assert seen[0].header("traceparent") == TP and seen[0].header("tracestate") == "vendor=x"
    made = [r.header("traceparent") for r in seen[1:]]
    assert all(t is not None and _NEW.match(t) for t in made), made
    assert len(set(made)) == 3  # a new trace per request
    assert seen[2].header("tracestate") is None  # the state of a malformed parent is not passed on
    logged = [orjson.loads(line)["trace_id"] for line in out.getvalue().splitlines()]
    assert logged == ["4bf92f3577b34da6a3ce929d0e0e4736", *(t[3:35] for t in made)]  # type: ignore[index]


async def test_a_function_sees_the_traceparent_and_an_amzn_trace_id(tmp_path):
    (tmp_path / "h.py").write_text(
        "import json\n"
        "def handler(event, context):\n"
        "    return {'statusCode': 200, 'body': json.dumps(event['headers'])}\n"
    )
    cfg = {
        "functions": {"echo": {"runtime": "python", "handler": "h.py:handler", "warm": 1, "concurrency": 1}},
        "routes": [{"path": "/f", "integration": {"type": "lambda", "function": "echo"}}],
        "plugins": {"trace-context": {"sampled": True, "amzn_trace_id": True}},
    }
    async with running_gateway(cfg, base_dir=tmp_path) as gw:
        given = (await http_request(gw.port, "GET", "/f", headers={"traceparent": TP}, timeout=30)).json()
        made = (await http_request(gw.port, "GET", "/f", timeout=30)).json()
    given = {k.lower(): v for k, v in given.items()}
    made = {k.lower(): v for k, v in made.items()}
    assert given["traceparent"] == TP
    # X-Ray's root is the epoch seconds and the W3C trace id's last 24 digits; the parent and sampling carry over.
    pattern = r"Root=1-[0-9a-f]{8}-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
    assert re.fullmatch(pattern, given["x-amzn-trace-id"]), given
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", made["traceparent"])  # sampled: true
    assert made["traceparent"][11:35] in made["x-amzn-trace-id"]


def test_parse_traceparent_follows_the_w3c_rules():
    assert parse_traceparent(TP.encode()) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    assert parse_traceparent(b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01") is None
    assert parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-" + b"0" * 16 + b"-01") is None
    assert parse_traceparent(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") is None
    assert parse_traceparent(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01") is None  # upper case
    assert parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") is None
    assert parse_traceparent(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") is not None


def test_the_clients_request_never_shows_the_traceparent_the_gateway_made():
    # trace-context writes the upstream request's traceparent; a later phase reading ctx.request (a header_filter,
    # the log phase) still sees what the client sent: none, or its own malformed one. Both cores.
    from fastgw import core
    from fastgw.core import http as pyhttp
    from fastgw.core import phases as pyphases
    from fastgw.observability.tracing import TraceContext, TraceContextConfig
    from fastgw.plugins.base import RouteInfo

    pairs = [(pyphases, pyhttp)]
    if core.COMPILED:
        from fastgw import _core

        pairs.append((_core, _core))
    for sent in ([(b"host", b"a")], [(b"host", b"a"), (b"traceparent", b"junk")]):
        for runtime, http in pairs:
            req = http.Request()
            req.headers = list(sent)
            req.complete = True
            ctx = runtime.new_context(
                req, "10.0.0.1", {}, RouteInfo("r", "/", ("GET",), None, None, {}), runtime.PhaseChain()
            )
            TraceContext().rewrite(ctx, TraceContextConfig())
            made = [v for n, v in req.headers if n == b"traceparent"]
            assert len(made) == 1 and parse_traceparent(made[0]) is not None  # the upstream gets a fresh one...
            assert list(ctx.request.headers.raw()) == sent  # ...the client's request is what it sent
