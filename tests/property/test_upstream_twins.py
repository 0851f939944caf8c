"""The upstream connection's pair (`fastgw/core/upstream.py` and `upstream.pyx`): the per-request path (`start`,
`data_received`, `_finish`) does the same on both twins.

Each twin's `UpstreamConn` gets the upstream leg's own behaviour (`fastgw.proxy.upstream.UpstreamConnection`'s
methods and `Deadline`'s: held responses, failures, pauses, timers), a recording transport, target, watch and event
loop, and carries a run of exchanges (a fake exchange of the twin's `ExchangeState`) on one pooled connection:
requests with and without bodies (chunked or with a length, whole or not), HEAD, a slow client; responses with a
length, chunked, close-delimited, 1xx first, no body (204, 304), keep-alive or not, cut into random pieces; routes
plain, with header filters (one that fails), with a body filter (held responses, over the limit or not), checked
for a retry status. Everything either twin writes and calls must be the same, in the same order.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import http as pyhttp
from fastgw.core import phases as pyphases
from fastgw.core import upstream as pyupstream
from fastgw.pipeline import deadline as deadlines
from fastgw.proxy import upstream as proxy_upstream

if not core.COMPILED:
    pytest.skip("compiled core not built (FASTGW_NO_EXTENSIONS or no extension)", allow_module_level=True)

from fastgw import _core  # noqa: E402

# (the twin's upstream connection, its http part, its phases part)
TWINS = {"pure": (pyupstream, pyhttp, pyphases), "compiled": (_core, _core, _core)}


class Log(list):
    pass


class Handle:
    def __init__(self, log: Log, at: float) -> None:
        self.log, self.at = log, at

    def cancel(self) -> None:
        self.log.append(("cancel", self.at))


class Loop:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.now = 100.0

    def time(self) -> float:
        return self.now

    def call_at(self, at: float, cb: Any, *args: Any) -> Handle:
        self.log.append(("call_at", at))
        return Handle(self.log, at)


class Transport:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.closing = False

    def write(self, data: bytes) -> None:
        self.log.append(("up.write", bytes(data)))

    def pause_reading(self) -> None:
        self.log.append(("up.pause_reading",))

    def resume_reading(self) -> None:
        self.log.append(("up.resume_reading",))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.log.append(("up.close",))

    def set_write_buffer_limits(self, high: int) -> None:
        pass


class Outlier:
    def __init__(self) -> None:
        self.in_row = 3


class Watch:
    def __init__(self, log: Log, quiet: bool) -> None:
        self.log = log
        self.quiet = quiet
        self.bad = 500 if quiet else 600
        self.outlier = Outlier()

    def answered(self, status: int) -> None:
        self.log.append(("watch.answered", status))

    def failed(self, why: str, kind: str = "error") -> None:
        self.log.append(("watch.failed", why, kind))


class Target:
    def __init__(self, log: Log, watch: Watch | None, max_idle: int) -> None:
        self.log = log
        self.url = "http://127.0.0.1:9"
        self.read_timeout, self.head_timeout, self.send_timeout = 5.0, 3.0, 2.0
        self.idle: list[Any] = []
        self.max_idle = max_idle
        self.closed = False
        self.watch = watch
        self.open = 0
        self.connecting = 0

    def forget(self, conn: Any) -> None:
        self.log.append(("target.forget",))


class Route:
    name = "r"
    server_line = b"server: fastgw\r\n"
    via = False
    retry = None
    timeout = None
    head_checks = 0


class State:
    closing = False
    access_log = None


def _behaviour() -> dict[str, Any]:
    """The upstream leg's methods (and Deadline's) on top of a twin's fields and per-request path."""
    own = set(vars(pyupstream.UpstreamConn))
    out = {}
    for cls in (deadlines.Deadline, proxy_upstream.UpstreamConnection):
        for name, value in vars(cls).items():
            if callable(value) and name not in own and name != "__init__":
                out[name] = value
    return out


def _retry_status(self: Any, ex: Any) -> bool:
    # (the route's retry policy stands in: a 503 goes to "another target", as UpstreamConnection._retry_status does)
    self.log.append(("retry_status", ex.status))
    if ex.status != 503:
        return False
    ex.response_started = False
    self.sink.out.clear()
    self.held = -1
    self._detach()
    self.close()
    return True


def _connection(twin: str, log: Log, target: Target, observed: bool) -> Any:
    upstream, http, _ = TWINS[twin]
    cls = type(
        f"Conn_{twin}",
        (upstream.UpstreamConn,),
        {**_behaviour(), "__slots__": ("log",), "_retry_status": _retry_status},
    )
    conn = cls()
    conn.log = log
    conn.target = target
    conn.state = State()
    deadlines.Deadline.__init__(conn, Loop(log))  # type: ignore[arg-type]
    conn.transport = None
    conn.sink = http.ResponseSink()
    conn.parser = conn.sink.parser = proxy_upstream.HttpResponseParser(conn.sink)
    conn.ex = conn.req = None
    conn.head = b""
    conn.idle_since = 0.0
    conn.served = 0
    conn.closed = False
    conn._req_done = conn._reading_paused = conn._write_paused = False
    conn.filtering = 0
    conn.held = -1
    conn.attempt = None
    conn.observed = observed
    conn.sent_at = 0.0
    conn.date = type("Date", (), {"line": b"date: Wed, 25 Nov 2026 21:00:00 GMT\r\n"})()
    conn.connection_made(Transport(log))
    return conn


def _exchange_class(twin: str) -> type:
    _, http, phases = TWINS[twin]

    class Ex(http.ExchangeState):  # type: ignore[misc, name-defined]
        __slots__ = ("log", "paused", "write", "max_held", "gone", "params")

        def done(self) -> None:
            self.log.append(("ex.done", self.status, self.sent))

        def body_drained(self) -> None:
            self.log.append(("ex.body_drained",))

        def fail(self, status: int, message: str, reason: str) -> None:
            self.log.append(("ex.fail", status, message, reason, self.response_started))

        def filter_head(self, head: bytes) -> bytes:
            return phases.filter_head(self.ctx, head)

        def filter_body(self, body: bytes) -> bytes:
            return body.upper()

        def filter_failed(self, exc: Exception) -> None:
            self.log.append(("ex.filter_failed", exc.name))  # type: ignore[attr-defined]
            self.ctx = None

        def pause_client(self) -> None:
            self.log.append(("ex.pause_client",))

        def resume_client(self) -> None:
            self.log.append(("ex.resume_client",))

    return Ex


EXCHANGES = {twin: _exchange_class(twin) for twin in TWINS}


def _tag(ctx: Any, conf: Any) -> None:
    ctx.response.headers.set("x-filtered", "yes")


def _broken(ctx: Any, conf: Any) -> None:
    raise RuntimeError("broken filter")


def _exchange(twin: str, log: Log, spec: dict[str, Any]) -> Any:
    _, http, phases = TWINS[twin]
    req = http.Request()
    req.method = spec["method"]
    req.method_b = spec["method"].encode()
    req.head_only = spec["method"] == "HEAD"
    body = spec["body"]
    req.chunked = spec["chunked"] and body is not None
    req.content_length = None if body is None or req.chunked else sum(map(len, body))
    req.body = list(body or [])
    req.complete = spec["complete"] or body is None
    plugins = spec["plugins"]
    ctx = None
    if plugins != "none":
        chain = phases.PhaseChain()
        if plugins == "header":
            chain.header_filter = ((_tag, None, False, "tag"),)
        elif plugins == "broken":
            chain.header_filter = ((_broken, None, False, "broken"),)
        elif plugins == "body":
            chain.body_filter = ((None, None, False, "upper"),)
        ctx = phases.new_context(req, "127.0.0.1", {}, None, chain)
        if plugins == "reply":
            ctx.set_response_header("x-set", "1")
    ex = EXCHANGES[twin](req, Route(), None, None, ctx)
    ex.log = log
    ex.paused = spec["paused"]
    ex.write = lambda data: log.append(("ex.write", bytes(data)))
    ex.max_held = spec["max_held"]
    ex.gone = False
    return ex


RESPONSE = st.fixed_dictionaries(
    {
        "status": st.sampled_from([200, 200, 201, 204, 304, 404, 500, 503]),
        "framing": st.sampled_from(["length", "chunked", "close"]),
        "connection": st.sampled_from([None, b"keep-alive", b"close"]),
        "body": st.binary(max_size=40),
        "informational": st.booleans(),
        "date": st.booleans(),
    }
)
REQUEST = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["GET", "GET", "HEAD", "POST"]),
        "body": st.one_of(st.none(), st.lists(st.binary(min_size=1, max_size=8), max_size=3)),
        "chunked": st.booleans(),
        "complete": st.booleans(),
        "plugins": st.sampled_from(["none", "none", "header", "reply", "broken", "body"]),
        "paused": st.booleans(),
        "check": st.booleans(),
        "max_held": st.sampled_from([8, 1 << 20]),
    }
)


def _response_bytes(r: dict[str, Any], head_only: bool) -> tuple[bytes, bool]:
    """The upstream's response, and whether it ends only with the connection."""
    status = r["status"]
    lines = [b"HTTP/1.1 %d X" % status]
    if r["date"]:
        lines.append(b"Date: Tue, 01 Dec 2026 00:00:00 GMT")
    if r["connection"] is not None:
        lines.append(b"Connection: " + r["connection"])
    body = r["body"] if status not in (204, 304) else b""
    framing = r["framing"] if status not in (204, 304) else "length"
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
        payload = body
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        payload = (b"%x\r\n%b\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        payload = body
    if head_only:
        payload = b""
    pre = b"HTTP/1.1 100 Continue\r\n\r\n" if r["informational"] else b""
    close_delimited = framing == "close" and not head_only and status not in (204, 304)
    return pre + b"\r\n".join(lines) + b"\r\n\r\n" + payload, close_delimited


def _cut(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p % (len(data) + 1) for p in points})
    pieces, at = [], 0
    for c in [*cuts, len(data)]:
        if c > at:
            pieces.append(data[at:c])
            at = c
    return pieces


def _state(conn: Any, target: Target) -> tuple:
    return (conn.served, conn.closed, conn.held, conn.filtering, conn._req_done, conn._reading_paused,
            conn.ex is None, conn.req is None, conn.deadline, conn.timer_at, conn.idle_since, conn in target.idle,
            conn.sink.done, conn.sink.keep, conn.sink.until_close, conn.head)  # fmt: skip


def _run(twin: str, runs: list[tuple[dict[str, Any], dict[str, Any], list[int]]], observed: bool, watch: str) -> Log:
    log = Log()
    w = None if watch == "none" else Watch(log, watch == "quiet")
    target = Target(log, w, max_idle=2)
    conn = _connection(twin, log, target, observed)
    for spec, resp, points in runs:
        if conn.closed:
            log.append(("new connection",))
            target.idle.clear()
            conn = _connection(twin, log, target, observed)
        elif conn in target.idle:
            target.idle.remove(conn)
        ex = _exchange(twin, log, spec)
        conn.start(ex, b"%s /x HTTP/1.1\r\nhost: h\r\n\r\n" % spec["method"].encode())
        if spec["check"]:
            conn.filtering |= proxy_upstream.CHECK
        log.append(("started", _state(conn, target)))
        data, close_delimited = _response_bytes(resp, ex.req.head_only)
        for piece in _cut(data, points):
            conn.data_received(piece)
            log.append(("fed", _state(conn, target)))
        if close_delimited and conn.ex is not None:
            conn.connection_lost(None)
            log.append(("lost", _state(conn, target)))
        if observed and ex.upstream is not None:
            log.append(("observed", ex.upstream is target, ex.upstream_at == conn.sent_at, ex.upstream_s >= 0, ex.sent))
        log.append(("exchange", ex.status, ex.response_started, ex.body_sink is None, w and w.outlier.in_row))
    return log


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(st.tuples(REQUEST, RESPONSE, st.lists(st.integers(0, 400), max_size=4)), min_size=1, max_size=4),
    observed=st.booleans(),
    watch=st.sampled_from(["none", "quiet", "counting"]),
)
def test_both_twins_carry_the_same_exchanges_alike(runs, observed, watch):
    assert _run("compiled", runs, observed, watch) == _run("pure", runs, observed, watch)


def test_the_run_sees_what_it_compares():
    # The comparison above is only as good as what the run records: a plain keep-alive exchange, a held one.
    plain = {"method": "GET", "body": None, "chunked": False, "complete": True, "plugins": "none", "paused": False,
             "check": False, "max_held": 1 << 20}  # fmt: skip
    resp = {"status": 200, "framing": "length", "connection": None, "body": b"hello", "informational": False,
            "date": True}  # fmt: skip
    held = {**plain, "plugins": "body"}
    for twin in TWINS:
        log = _run(twin, [(plain, resp, [20]), (held, resp, [])], True, "quiet")
        writes = [e[1] for e in log if e[0] == "ex.write"]
        assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[-1].endswith(b"HELLO"), twin
        assert [e for e in log if e[0] in ("ex.done", "up.close")] == [("ex.done", 200, 96)] * 2
        assert [e[0] for e in log if e[0] == "up.write"] == ["up.write"] * 2
        assert log[-1] == ("exchange", 200, True, True, 0)  # (the quiet watch's run of failures ended)


class Upstream:
    def __init__(self, log: Log, target: Target | None, several: bool) -> None:
        self.log, self.name = log, "backend"
        self.only = None if several else target
        self.target = target

    def pick(self, ex: Any) -> Target | None:
        self.log.append(("upstream.pick",))
        return self.target


class RouteFields:
    """What `start_route` reads of an HttpRoute, and what it hands back to it (recorded)."""

    def __init__(self, log: Log, upstream: Upstream, spec: dict[str, Any]) -> None:
        self.log = log
        self.upstream = upstream
        self.rewrites = spec["rewrites"]
        self.host = spec["host"]
        self.preserve_host = spec["preserve_host"]
        self.via = spec["via"]
        self.guarded = spec["guarded"]
        self.guard_all = spec["guard_all"]
        self.server_line = b"server: fastgw\r\n"

    def upstream_path(self, path: str, params: dict[str, str]) -> str:
        self.log.append(("route.upstream_path", path, params))
        return "/rewritten" + path

    def _start_guarded(self, ex: Any, target: Any, head: bytes) -> None:
        self.log.append(("route._start_guarded", head))

    def _connect(self, ex: Any, target: Any, head: bytes) -> None:
        self.log.append(("route._connect", head))


class SlottedRoute(RouteFields):  # (the field reads learn a slotted type; the other one has a __dict__)
    __slots__ = ("log", "upstream", "rewrites", "host", "preserve_host", "via", "guarded", "guard_all",
                 "server_line")  # fmt: skip


class ReorderedRoute(RouteFields):  # (the same fields at other offsets)
    __slots__ = ("server_line", "guard_all", "guarded", "via", "preserve_host", "host", "rewrites", "upstream",
                 "log", "spare")  # fmt: skip


ROUTES = {"dict": RouteFields, "slotted": SlottedRoute, "reordered": ReorderedRoute}


class Acquiring(Target):
    def __init__(self, log: Log) -> None:
        super().__init__(log, None, max_idle=4)
        self.host_header = b"127.0.0.1:9"

    def acquire(self) -> Any:
        self.log.append(("target.acquire", len(self.idle)))
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
        return None


ROUTE = st.fixed_dictionaries(
    {
        "rewrites": st.booleans(),
        "host": st.sampled_from([None, b"api.example"]),
        "preserve_host": st.booleans(),
        "via": st.booleans(),
        "guarded": st.booleans(),
        "guard_all": st.booleans(),
        "kind": st.sampled_from(list(ROUTES)),
        "several": st.booleans(),
        "no_target": st.booleans(),
        "pool": st.lists(st.sampled_from(["live", "closed", "closing"]), max_size=3),
        "plugin_path": st.sampled_from([None, "/a b/ü", "/p;q"]),
        "query": st.sampled_from([None, b"x=1"]),
        "host_raw": st.sampled_from([b"", b"client.example"]),
        "trusted": st.booleans(),
        "method": st.sampled_from(["GET", "POST"]),
        "body": st.sampled_from([None, "length", "chunked"]),
    }
)


def _route_run(twin: str, specs: list[dict[str, Any]]) -> Log:
    from fastgw.pipeline.leg import Peer

    upstream_mod, http, phases = TWINS[twin]
    log = Log()
    for spec in specs:
        target = Acquiring(log)
        upstream = Upstream(log, None if spec["no_target"] else target, spec["several"])
        route = ROUTES[spec["kind"]](log, upstream, spec)
        for kind in spec["pool"]:
            conn = _connection(twin, log, target, False)
            conn.closed = kind == "closed"
            conn.transport.closing = kind == "closing"
            target.idle.append(conn)
        req = http.Request()
        req.method = spec["method"]
        req.method_b = spec["method"].encode()
        req.path = "/x"
        req.query = spec["query"]
        req.host_raw = spec["host_raw"]
        req.headers = [(b"accept", b"*/*"), (b"x-forwarded-for", b"10.0.0.9")]
        req.chunked = spec["body"] == "chunked"
        req.content_length = 3 if spec["body"] == "length" else None
        req.complete = True
        ctx = None
        if spec["plugin_path"] is not None:
            ctx = phases.new_context(req, "127.0.0.1", {}, None, phases.PhaseChain())
            ctx.upstream_request.path = spec["plugin_path"]
        ex = EXCHANGES[twin](req, route, None, Peer("192.0.2.1", spec["trusted"]), ctx)
        ex.params = {"id": "7"}
        ex.log = log
        ex.paused = False
        ex.write = lambda data: log.append(("ex.write", bytes(data)))
        upstream_mod.start_route(route, ex)
        log.append(("pool", [(c.served, c.ex is ex) for c in target.idle], ex.body_sink is not None))
    return log


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(ROUTE, min_size=1, max_size=4))
def test_both_twins_start_a_route_alike(specs):
    assert _route_run("compiled", specs) == _route_run("pure", specs)


def test_the_route_run_sees_what_it_compares():
    spec = {"rewrites": False, "host": None, "preserve_host": False, "via": True, "guarded": False,
            "guard_all": False, "kind": "slotted", "several": False, "no_target": False, "pool": ["closed", "live"],
            "plugin_path": None, "query": b"x=1", "host_raw": b"", "trusted": False, "method": "GET",
            "body": None}  # fmt: skip
    for twin in TWINS:
        log = _route_run(twin, [spec, {**spec, "kind": "dict", "pool": []}, {**spec, "kind": "reordered"}])
        heads = [e[1] for e in log if e[0] in ("up.write", "route._connect")]
        assert len(heads) == 3 and heads[0].startswith(b"GET /x?x=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\n"), twin
        assert [e[0] for e in log if e[0].startswith("route.")] == ["route._connect"]


def test_both_twins_declare_the_same_fields():
    fields = set(pyupstream.UpstreamConn.__slots__)
    kinds = {n: type(v).__name__ for n, v in vars(_core.UpstreamConn).items() if n[:2] != "__" and not callable(v)}
    assert set(kinds) == fields
    # What Python reads per request (the pool, the route) is a plain slot on the compiled side.
    assert {kinds[n] for n in ("transport", "closed", "filtering", "target")} == {"member_descriptor"}
    assert issubclass(proxy_upstream.UpstreamConnection, core.UpstreamConn)
    assert proxy_upstream.UpstreamConnection.__slots__ == ()  # declared once, on the core's class


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the compiled field reads learn on CPython 3.11+ only")
def test_the_compiled_field_reads_learn_and_follow_a_type_changed_since(monkeypatch):
    # The compiled route start reads the route's fields at the offsets it learned (upstream.pyx, _field): it does
    # learn (else the cache costs a miss a read), and a type changed since (a property over a slot) is read through
    # its new descriptor, as the pure twin reads it, never at the old offset.
    class Changing(SlottedRoute):
        __slots__ = ()

    monkeypatch.setitem(ROUTES, "changing", Changing)
    spec = {"rewrites": False, "host": None, "preserve_host": False, "via": True, "guarded": False,
            "guard_all": False, "kind": "changing", "several": False, "no_target": False, "pool": ["live"],
            "plugin_path": None, "query": None, "host_raw": b"", "trusted": False, "method": "GET",
            "body": None}  # fmt: skip

    def heads(twin: str) -> list[bytes]:
        return [e[1] for e in _route_run(twin, [spec]) if e[0] in ("up.write", "route._connect")]

    before = heads("compiled")
    assert before == heads("pure") and b"via: " in before[0].lower()
    assert _core._learned_sites() > 0
    slot = vars(SlottedRoute)["via"]  # (the new property keeps the value in the old slot, where a stale read finds it)
    monkeypatch.setattr(Changing, "via", property(lambda self: False, slot.__set__), raising=False)
    after = heads("compiled")
    assert after == heads("pure") and b"via: " not in after[0].lower()


@pytest.mark.parametrize("twin", list(TWINS))
def test_a_field_left_none_is_an_attribute_error_on_both_twins_never_a_crash(twin):
    # The compiled path reads its typed fields (the sink, the exchange's request) as C structs: with None there it
    # raises AttributeError as the pure twin does (upstream.pyx's nonecheck), where it would read past None.
    log = Log()
    conn = _connection(twin, log, Target(log, None, max_idle=2), False)
    spec = {"method": "GET", "body": None, "chunked": False, "complete": True, "plugins": "none", "paused": False,
            "check": False, "max_held": 8}  # fmt: skip
    conn.start(_exchange(twin, log, spec), b"GET / HTTP/1.1\r\n\r\n")  # (the sink began: it parses as usual)
    conn.sink = None
    with pytest.raises(AttributeError):
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    conn.sink = TWINS[twin][1].ResponseSink()
    ex = _exchange(twin, log, spec)
    ex.req = None  # (an exchange without its request: the compiled cast to Request refuses it as a TypeError)
    with pytest.raises((AttributeError, TypeError)):
        conn.start(ex, b"GET / HTTP/1.1\r\n\r\n")
