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
