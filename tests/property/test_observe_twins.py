"""The per-exchange observation (fastgw.pyobserve, and the compiled section at the end of _core.pyx): both twins
write the same JSON lines, byte for byte, and count the same series, for exchanges of any shape: text with quotes,
backslashes, control characters and non-ASCII, values missing, with and without an upstream, plugins' vars, a
consumer, a traceparent."""

from __future__ import annotations

import time
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import observe as pyobserve
from fastgw.observability.accesslog import trace_id_of

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402

TEXT = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.sampled_from('ab/"\\\x00\x01\x08\t\n\x0c\r\x1f\x7f é\u2028'), max_size=12),
    st.sampled_from(["/v1/users", "api.example.com", "", "x" * 300]),
)
# Lone surrogates aside: orjson refuses them and the access log falls back to the standard library (not twinned).
TEXT = TEXT.filter(lambda s: not any("\ud800" <= c <= "\udfff" for c in s))
HEADER_VALUE = st.one_of(st.binary(max_size=12), st.sampled_from([b"curl/8.0", b'a"b\\c', b"\xff\xe9"]))
TRACEPARENT = st.sampled_from([b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", b"00-zz-yy-01", b"garbage"])
ROUTE_NAMES = st.sampled_from(["r1", "r2", 'q"uote', "é"])


class Target:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


def Exchange(req: object, status: int = 0, t0: float = 0.0, **fields: object) -> object:  # noqa: N802
    """An exchange as the observation reads it: the core's declared `ExchangeState` (the compiled twin reads its C
    fields; the pure one the same fields by name), as fastgw.pipeline.exchange.Exchange is one."""
    take = fields.pop
    ex = _core.ExchangeState(req, take("route", None), take("gw", None), take("peer", None), take("ctx", None), t0)
    ex.status = status
    for name, value in fields.items():
        setattr(ex, name, value)
    return ex


class Peer:
    __slots__ = ("ip",)

    def __init__(self, ip: str | None) -> None:
        self.ip = ip


class Route:  # (hashable by identity, as the gateway's routes are)
    def __init__(self, name: str) -> None:
        self.name = name
        self.upstream = SimpleNamespace(name="backend")


TARGETS = [Target("10.0.0.1", 80), Target("b\\ack", 8080)]
UPSTREAMS = st.one_of(st.none(), st.sampled_from(TARGETS), st.sampled_from(["function:hello", "function:é"]))
VARS = st.dictionaries(
    st.sampled_from(["request_id", "cache_status", "rate_limit", "trace_id", "other"]),
    st.one_of(TEXT, st.integers(-5, 5), st.none()),
    max_size=4,
).map(lambda v: {**v, "trace_id": "0af7651916cd43dd8448eb211c80319c"} if "trace_id" in v else v)


def compiled_context(v: dict, consumer: str | None) -> object:
    """A context of the compiled runtime (the compiled log reads its fields in C)."""
    ctx = _core.new_context(_core.Request(), "127.0.0.1", {}, None, _core.PhaseChain())
    ctx.vars = v
    ctx.consumer = None if consumer is None else SimpleNamespace(name=consumer)
    return ctx


CTX = st.one_of(
    st.none(),
    st.builds(
        lambda v, consumer: SimpleNamespace(
            vars=v, consumer=None if consumer is None else SimpleNamespace(name=consumer)
        ),
        VARS,
        st.one_of(st.none(), TEXT),
    ),
    st.builds(compiled_context, VARS, st.one_of(st.none(), TEXT)),
)
ROUTES = {name: Route(name) for name in ("r1", "r2", 'q"uote', "é")}


@st.composite
def exchanges(draw):
    req = _core.Request()
    req.method = draw(st.sampled_from(["GET", "POST", "DELETE", "PÖST"]))
    req.host = draw(st.one_of(TEXT, st.none()))
    req.host_raw = draw(HEADER_VALUE)  # what the log writes: the Host header as sent, port and all
    req.path = draw(TEXT)
    req.url = draw(st.binary(max_size=20))
    status = draw(st.sampled_from([200, 201, 404, 502]))
    req.body_size = draw(st.integers(0, 10**9))
    headers = []
    if draw(st.booleans()):
        headers.append((b"user-agent", draw(HEADER_VALUE)))
    if draw(st.booleans()):
        headers.append((b"traceparent", draw(TRACEPARENT)))
    headers.append((b"accept", b"*/*"))
    req.headers = draw(st.permutations(headers))
    t0 = draw(st.floats(1000.0, 2000.0))
    start = draw(st.sampled_from([0.0, t0]))
    now = t0 + draw(
        st.one_of(
            st.floats(0.0, 20.0), st.sampled_from([0.0001, 0.00010001, 0.00025, 0.0049999, 0.005, 0.1, 10.0, 10.5])
        )
    )
    up = draw(UPSTREAMS)
    route_name = draw(st.one_of(st.none(), ROUTE_NAMES))
    ip = draw(st.one_of(st.none(), st.sampled_from(["127.0.0.1", "::1"]), TEXT))
    slotted = draw(st.booleans())
    ex = Exchange(
        req=req,
        status=status,
        t0=start,
        route=ROUTES[route_name] if route_name is not None else None,
        gw=draw(st.sampled_from(["gw1", "gw2"])),
        peer=Peer(ip) if slotted else SimpleNamespace(ip=ip),
        sent=draw(st.integers(0, 10**9)),
        upstream=up,
        upstream_s=draw(st.floats(0.0, 30.0)),
        ctx=draw(CTX),
    )
    return ex, now


def fragment(gw, route) -> bytes:
    return orjson.dumps({"route": route.name, "api": gw})[1:-1]


def label(up) -> bytes:
    return orjson.dumps(up if up.__class__ is str else f"{up.host}:{up.port}")


@settings(max_examples=250, deadline=None)
@given(batches=st.lists(st.lists(exchanges(), max_size=8), min_size=1, max_size=3), offset=st.floats(1e9, 2e9))
def test_both_twins_write_the_same_lines_and_count_the_same(batches, offset):
    fast = _core.LogLines(fragment, label, trace_id_of, 64)
    slow = pyobserve.LogLines(fragment, label, trace_id_of, 64)
    fast_tally, slow_tally = _core.Tally(), pyobserve.Tally()
    for batch in batches:
        for ex, now in batch:
            assert fast.add(ex, now) == slow.add(ex, now)
            fast_tally.add(ex, now)
            slow_tally.add(ex, now)
        assert len(fast) == len(slow) == len(batch)
        data = fast.json(offset)
        assert data == slow.json(offset)
        assert len(fast) == len(slow) == 0
        for line in data.splitlines():
            orjson.loads(line)  # every line is JSON
    assert fast_tally.series() == slow_tally.series()
    assert fast_tally.upstreams() == slow_tally.upstreams()
    assert (fast_tally.cache, fast_tally.limits) == (slow_tally.cache, slow_tally.limits)


def test_the_numbers_are_whole_microseconds():
    req = _core.Request()
    ex = Exchange(req=req, t0=100.0, route=None, gw=None, peer=SimpleNamespace(ip=None), sent=0, upstream="function:f",
                  upstream_s=0.0123456, ctx=None)  # fmt: skip
    for impl in (_core, pyobserve):
        lines = impl.LogLines(fragment, label, trace_id_of)
        lines.add(ex, 101.5)
        line = orjson.loads(lines.json(0.0))
        assert (line["duration_ms"], line["upstream_ms"]) == (1500.0, 12.345)


def test_take_hands_back_what_is_held():
    ex = SimpleNamespace()
    for impl in (_core, pyobserve):
        lines = impl.LogLines(fragment, label, trace_id_of, 2)
        assert lines.add(ex, 1.5) is False
        assert lines.add(ex, 2.5) is True
        assert lines.take() == [(ex, 1.5), (ex, 2.5)]
        assert len(lines) == 0


def test_the_compiled_clock_is_perf_counter():
    # CLOCK_MONOTONIC, as CPython's perf_counter reads it on Linux: readings interleave in order.
    a = time.perf_counter()
    b = _core.clock()
    c = time.perf_counter()
    assert a <= b <= c and c - a < 0.5


def test_a_flush_larger_than_the_buffer_grows_it_and_stays_the_same():
    # Paths of control characters print 6 bytes each: 300 lines of them outgrow the first buffer many times over.
    fast = _core.LogLines(fragment, label, trace_id_of, 1000)
    slow = pyobserve.LogLines(fragment, label, trace_id_of, 1000)
    for n in range(300):
        req = _core.Request()
        req.method, req.host, req.path = "GET", "h", "\x01" * (n * 7 % 250) + '"\\'
        req.host_raw = b"h:8080" + b"\x03" * (n % 30)
        req.headers = [(b"user-agent", b"\x02" * (n % 40))]
        ex = Exchange(req=req, t0=1.0, route=ROUTES["r1"], gw="gw", peer=Peer("::1"), sent=n, upstream=TARGETS[n % 2],
                      upstream_s=0.001 * n, ctx=None)  # fmt: skip
        fast.add(ex, 2.0 + n)
        slow.add(ex, 2.0 + n)
    data = fast.json(1e9)
    assert data == slow.json(1e9) and len(data) > 200_000 and data.count(b"\n") == 300


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([1, 100, 511, 512, 513, 4000, 20_000]),
    char=st.sampled_from(['"', "\x01", "a", "é", "\\"]),
    count=st.sampled_from([1, 3, 64]),
)
def test_long_values_grow_the_buffer_and_keep_the_twins_equal(size, char, count):
    # Every variable-length value goes through a checked write: paths, hosts, user agents, route fragments and
    # labels of any length (escaped up to 6 bytes a character) grow the buffer, and the lines stay the twins'.
    route = Route(char * size)
    target = Target(char * size, 1)
    out = []
    for impl in (_core, pyobserve):
        lines = impl.LogLines(fragment, label, trace_id_of, 64)
        for i in range(count):
            req = _core.Request()
            req.method, req.host, req.path = "GET", char * size, "/" + char * size
            req.host_raw = (char * size).encode("latin-1", "replace")
            req.headers = [(b"user-agent", (char * size).encode("latin-1", "replace"))]
            ex = Exchange(req=req, status=200, route=route, gw="gw", peer=SimpleNamespace(ip=char * size), sent=i,
                          upstream=target, upstream_s=0.5, ctx=None)  # fmt: skip
            lines.add(ex, 5.0)
        out.append(lines.json(0.0))
    assert out[0] == out[1]
    assert [orjson.loads(line)["path"] for line in out[0].splitlines()] == ["/" + char * size] * count
