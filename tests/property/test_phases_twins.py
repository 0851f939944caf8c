"""The compiled plugin runtime (fastgw._core) and its pure-Python twin (fastgw.core.phases) give the same answers.

Random sequences of header operations (valid and invalid names and values, on request lists and on response heads
the upstream leg built), the client request's lookups, the upstream request written back into a Request, the
header filter over a response head, the consumer headers, and the phase loop moving to a consumer's own chain:
every result, error and final state must match.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import http as pyhttp
from fastgw.core import phases as pyphases

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402

# (plugin runtime, Request class) per implementation.
IMPLS = ((_core, _core), (pyphases, pyhttp))

NAMES = st.sampled_from(
    ["x-a", "X-A", "X-Request-Id", "content-type", "Content-Length", "date", "connection", "cookie", "bad name",
     "", "x:y", "Transfer-Encoding", "x-b", "Server"]
)  # fmt: skip
VALUES = st.one_of(st.sampled_from(["1", "v", "", "a\r\nb: c", "x\0y", "é", "two words"]), st.text(max_size=8))
OPS = st.lists(
    st.tuples(st.sampled_from(["set", "add", "remove", "rename", "get", "get_all", "contains", "len", "iter"]),
              NAMES, NAMES, VALUES),
    max_size=12,
)  # fmt: skip
RAW = st.lists(
    st.tuples(st.sampled_from([b"host", b"x-a", b"cookie", b"content-type", b"x-b"]),
              st.sampled_from([b"1", b"two", b"\xc3\xa9", b"\xff", b""])),
    max_size=6,
)  # fmt: skip


def chain_of(impl: Any, for_consumer: Any = None, **fields: Any) -> Any:
    """A chain of `impl`'s PhaseChain class with these fields (phase tuples, per_consumer...)."""

    class Chain(impl.PhaseChain):  # type: ignore[name-defined,misc]
        def for_consumer(self, consumer: Any) -> Any:
            return for_consumer

    chain = Chain()
    for name, value in fields.items():
        setattr(chain, name, value)
    return chain


def apply_ops(headers: Any, ops: list[tuple[str, str, str, str]]) -> list[Any]:
    out: list[Any] = []
    for op, name, other, value in ops:
        try:
            if op == "set":
                out.append(headers.set(name, value))
            elif op == "add":
                out.append(headers.add(name, value))
            elif op == "remove":
                out.append(headers.remove(name))
            elif op == "rename":
                out.append(headers.rename(name, other))
            elif op == "get":
                out.append(headers.get(name))
            elif op == "get_all":
                out.append(headers.get_all(name))
            elif op == "contains":
                out.append(name in headers)
            elif op == "len":
                out.append(len(headers))
            else:
                out.append(list(headers))
        except (ValueError, TypeError) as exc:
            out.append((type(exc).__name__, str(exc)))
    return out


@settings(max_examples=300, deadline=None)
@given(raw=RAW, ops=OPS, frozen=st.booleans())
def test_headers_operations(raw, ops, frozen):
    results = []
    for impl, _ in IMPLS:
        h = impl.Headers.from_raw(list(raw), frozen=frozen)
        results.append((apply_ops(h, ops), h.raw(), list(h)))
    assert results[0] == results[1]


HEAD_LINES = st.lists(
    st.sampled_from([b"Server: nginx", b"Content-Type: text/plain", b"content-length: 24", b"X-A: 1",
                     b"Transfer-Encoding: chunked", b"Date: Wed, 25 Nov 2026 21:00:00 GMT", b"x-a: 2",
                     b"Connection: close", b"Set-Cookie: a=b"]),
    max_size=6,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    lines=HEAD_LINES,
    ops=OPS,
    status=st.sampled_from([200, 200, 404, 503]),
    preset=st.lists(st.tuples(NAMES, VALUES), max_size=3),
)
def test_header_filter_over_a_response_head(lines, ops, status, preset):
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
    results = []
    for impl, http in IMPLS:
        seen: list[Any] = []

        def phase(ctx: Any, conf: Any, seen: list[Any] = seen) -> None:
            seen.append(apply_ops(ctx.response.headers, ops))
            ctx.response.status = status

        req = http.Request()
        chain = chain_of(impl, header_filter=((phase, None, False, "p"),))
        ctx = impl.new_context(req, "127.0.0.1", {}, None, chain)
        refused = []
        for name, value in preset:  # headers a rewrite/access phase set for the response
            try:
                ctx.set_response_header(name, value)
            except ValueError as exc:
                refused.append(str(exc))
        results.append((impl.filter_head(ctx, head), seen, refused))
    assert results[0] == results[1]


@settings(max_examples=200, deadline=None)
@given(
    raw=RAW,
    query=st.sampled_from([None, b"a=1&a=2&b=", b"q=caf%C3%A9", b"x"]),
    ops=OPS,
    path=st.sampled_from([None, "/v2/x", "no-slash"]),
    lookups=st.lists(NAMES.filter(bool), max_size=4),
    early=st.lists(st.tuples(NAMES, VALUES), max_size=3),
    late=st.lists(st.tuples(NAMES, VALUES), max_size=2),
)
def test_client_and_upstream_requests(raw, query, ops, path, lookups, early, late):
    results = []
    for impl, http in IMPLS:
        req = http.Request()
        req.headers = list(raw)
        req.query = query
        req.complete = True
        ctx = impl.new_context(req, "10.0.0.1", {"id": "7"}, None, chain_of(impl))
        looked = [ctx.request.header(n) for n in lookups] + [ctx.request.query, ctx.request.query_string]
        sets = set_headers(ctx, early)  # before anything built the header map
        up = ctx.upstream_request
        changed = apply_ops(up.headers, ops)
        sets += set_headers(ctx, late)  # after
        up.query["added"] = ["yes"]
        up.path = path
        try:
            up.apply(req)
            applied: Any = (req.headers, req.query)
        except ValueError as exc:
            applied = str(exc)
        # The client's view is what it sent, whatever was changed for the upstream.
        results.append((looked, sets, changed, applied, list(ctx.request.headers), ctx.request.client_ip))
    assert results[0] == results[1]


PUBLIC_NAMES = (
    ("context", "wire_request"), ("context", "upstream_request_if_made"), ("context", "reply_headers"),
    ("request", "raw_query"), ("upstream", "query_if_made"),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    query=st.sampled_from([None, b"", b"a=1&a=2", b"q=caf%C3%A9"]),
    steps=st.lists(st.sampled_from(["reply", "upstream", "query", "path", "request"]), max_size=6),
    keys=st.lists(st.tuples(NAMES, VALUES), max_size=4),
)
def test_the_public_names_plugins_read(query, steps, keys):
    # What docs/plugins.md gives plugins in place of the core's private fields: the same values in both cores,
    # read-only, never making what they look at (an upstream request, a parsed query).
    results = []
    for impl, http in IMPLS:
        req = http.Request()
        req.headers = [(b"x-a", b"1")]
        req.query = query
        ctx = impl.new_context(req, "10.0.0.1", {}, None, chain_of(impl))
        seen: list[Any] = []
        for step in steps:
            if step == "reply":
                ctx.set_response_header("X-Id", str(len(seen)))
            elif step == "upstream":
                ctx.upstream_request  # noqa: B018 - made, nothing changed
            elif step == "query":
                ctx.upstream_request.query["added"] = ["1"]
            elif step == "path":
                ctx.upstream_request.path = "/other"
            else:
                seen.append(("raw_query", ctx.request.raw_query))
            up = ctx.upstream_request_if_made
            seen.append((ctx.wire_request is req, ctx.reply_headers, up is None,
                         up.query_if_made if up is not None else None))  # fmt: skip
        views = {"context": ctx, "request": ctx.request, "upstream": ctx.upstream_request}
        for view, name in PUBLIC_NAMES:
            with pytest.raises(AttributeError):
                setattr(views[view], name, None)
        checked = []
        for name, value in keys:
            try:
                checked.append(impl.header_key(name, value))
            except ValueError as exc:
                checked.append(str(exc))
        results.append((seen, checked))
    assert results[0] == results[1]


def set_headers(ctx: Any, pairs: list[tuple[str, str]]) -> list[Any]:
    out: list[Any] = []
    for name, value in pairs:
        try:
            out.append(ctx.set_upstream_header(name, value))
        except ValueError as exc:
            out.append(str(exc))
    return out


@settings(max_examples=100, deadline=None)
@given(
    raw=RAW,
    authenticated=st.booleans(),
    keys=st.sampled_from([None, (b"x-user", b"x-groups"), (b"x-user", None)]),
    sets=st.lists(st.tuples(NAMES, VALUES), max_size=3),
)
def test_consumer_headers(raw, authenticated, keys, sets):
    class Consumer:
        name_b = b"alice"
        groups_b = b"admin,staff"

    results = []
    for impl, http in IMPLS:
        req = http.Request()
        req.headers = list(raw) + [(b"x-user", b"forged")]
        ctx = impl.new_context(req, "127.0.0.1", {}, None, chain_of(impl))
        ctx.consumer = Consumer() if authenticated else None
        refused = set_headers(ctx, sets)  # headers set for the upstream, the header map never built
        impl.finish_phases(ctx, req, frozenset({b"x-user", b"x-groups"}), keys)
        results.append((req.headers, refused))
    assert results[0] == results[1]


PHASE_NAMES = st.sampled_from(["a", "b", "c", "d", "e"])


@settings(max_examples=200, deadline=None)
@given(
    base=st.lists(PHASE_NAMES, min_size=1, max_size=5, unique=True),
    extra=st.lists(PHASE_NAMES, max_size=3, unique=True),
    dropped=st.lists(PHASE_NAMES, max_size=2, unique=True),
    names_at=st.integers(0, 4),
    waits=st.sets(PHASE_NAMES, max_size=2),
)
def test_the_phase_loop_goes_on_with_the_consumers_chain(base, extra, dropped, names_at, waits):
    """A phase names a consumer whose chain differs (plugins added, dropped, reordered): the loop resumes after
    that phase in the consumer's chain, also when the loop was resumed after a phase that returned an awaitable."""
    names_at %= len(base)
    consumer = SimpleNamespace(name="alice")

    def phase(name: str) -> Any:
        def fn(ctx: Any, conf: Any) -> Any:
            ctx.vars.setdefault("ran", []).append(name)
            if name == base[names_at]:
                ctx.consumer = consumer
            return "wait" if name in waits else None

        return fn

    fns = {n: phase(n) for n in "abcde"}

    def phases(order: list[str]) -> tuple[Any, ...]:
        return tuple((fns[n], None, False, n) for n in order)

    kept = [n for n in base if n == base[names_at] or n not in dropped]
    order = sorted(set(kept) | set(extra), key=lambda n: kept.index(n) if n in kept else len(kept) + "abcde".index(n))
    results = []
    for impl, http in IMPLS:
        req = http.Request()
        variant = chain_of(impl, request=phases(order), per_consumer=True)
        ctx = impl.new_context(
            req, "127.0.0.1", {}, None, chain_of(impl, variant, request=phases(base), per_consumer=True)
        )
        steps = []
        i, result = impl.run_phases(ctx, 0, req)
        while i >= 0 and len(steps) < 20:
            steps.append((i, result))
            i, result = impl.run_phases(ctx, i + 1, req)  # as the server does after an awaitable
        results.append((ctx.vars["ran"], steps, [p[3] for p in ctx.chain.request]))
    assert results[0] == results[1]
    ran = results[0][0]
    at = ran.index(base[names_at])
    assert ran[: at + 1] == base[: names_at + 1]
    assert ran[at + 1 :] == order[order.index(base[names_at]) + 1 :]


# What a request phase does in test_request_phases_hands_the_exchange_the_same_outcome: go on, answer (a Response),
# wait (an awaitable), raise, or return something that is neither.
BEHAVIOURS = st.sampled_from(["on", "on", "on", "answer", "wait", "raise", "bad"])
ANSWER = object()  # stands for a Response: request_phases hands it back as it is


class Waiting:
    def __await__(self) -> Any:
        yield
        return None


WAITING = Waiting()


def recording_exchange(impl_http: Any, req: Any, ctx: Any, calls: list[Any]) -> Any:
    """An exchange of `impl_http`'s ExchangeState whose methods request_phases calls record what they were given."""

    class Recorder(impl_http.ExchangeState):  # type: ignore[misc,name-defined]
        def integrate(self) -> None:
            calls.append(("integrate",))

        def phase_stopped(self, i: int, result: Any) -> None:
            calls.append(("stopped", i, result))

        def _plugin_failed(self, name: str, why: Any, exc: Any) -> None:
            calls.append(("failed", name, why, type(exc).__name__, str(exc)))

    ex = Recorder.__new__(Recorder)  # (no __init__: the fields request_phases reads are set here)
    ex.req, ex.ctx = req, ctx
    ex.route = SimpleNamespace(start=lambda started: calls.append(("start", started is ex)))
    return ex


@settings(max_examples=200, deadline=None)
@given(behaviours=st.lists(BEHAVIOURS, max_size=5), start=st.integers(0, 5), expect=st.booleans())
def test_request_phases_hands_the_exchange_the_same_outcome(behaviours, start, expect):
    """request_phases, compiled and pure: every phase went on (the route started, or integrate() for a request
    that expects 100-continue), a Response or an awaitable stops the phases (phase_stopped), a phase that raises is
    the plugin's failure (_plugin_failed with its cause), a bad return goes to phase_stopped to be judged."""
    start %= len(behaviours) + 1

    def phase(n: int, what: str) -> Any:
        def fn(ctx: Any, conf: Any) -> Any:
            ctx.vars.setdefault("ran", []).append(n)
            if what == "raise":
                raise ValueError(f"phase {n} broke")
            return {"on": None, "answer": ANSWER, "wait": WAITING, "bad": 42}[what]

        return fn

    phases = tuple((phase(n, what), None, False, f"p{n}") for n, what in enumerate(behaviours))
    results = []
    for impl, http in IMPLS:
        req = http.Request()
        req.expect_continue = expect
        req.headers = [(b"x-a", b"1")]
        ctx = impl.new_context(req, "127.0.0.1", {}, None, chain_of(impl, request=phases))
        ctx.set_upstream_header("x-b", "2")  # written into the request once every phase went on
        calls: list[Any] = []
        impl.request_phases(recording_exchange(http, req, ctx, calls), start)
        results.append((calls, ctx.vars.get("ran"), req.headers))
    assert results[0] == results[1]
    calls, ran, headers = results[0]
    stops = [n for n in range(start, len(behaviours)) if behaviours[n] != "on"]
    if not stops:
        assert calls == [("integrate",) if expect else ("start", True)]
        assert (b"x-b", b"2") in headers
    elif behaviours[stops[0]] == "raise":
        assert calls == [("failed", f"p{stops[0]}", None, "ValueError", f"phase {stops[0]} broke")]
    else:
        expected = {"answer": ANSWER, "wait": WAITING, "bad": 42}[behaviours[stops[0]]]
        assert calls == [("stopped", stops[0], expected)]
    assert (ran or []) == list(range(start, stops[0] + 1 if stops else len(behaviours)))


def test_the_compiled_request_phases_keeps_no_reference_to_the_request():
    """The compiled request_phases gives back every reference it takes to the exchange's request (a leak here kept
    every Request of a plugin route, and its headers, alive: the heap grew an exchange at a time)."""
    import sys

    req = _core.Request()
    ctx = _core.new_context(
        req, "127.0.0.1", {}, None, chain_of(_core, request=((lambda c, conf: None, None, False, "a"),))
    )
    calls: list[Any] = []
    ex = recording_exchange(_core, req, ctx, calls)
    before = sys.getrefcount(req), sys.getrefcount(ctx)
    for _ in range(1000):
        _core.request_phases(ex, 0)
    assert (sys.getrefcount(req), sys.getrefcount(ctx)) == before
    assert len(calls) == 1000
