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
        __slots__ = ("log", "paused", "write", "max_held", "gone")

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
    req.content_length = None if body is None or req.chunked else b"%d" % sum(map(len, body))
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


def test_both_twins_declare_the_same_fields():
    fields = set(pyupstream.UpstreamConn.__slots__)
    kinds = {n: type(v).__name__ for n, v in vars(_core.UpstreamConn).items() if n[:2] != "__" and not callable(v)}
    assert set(kinds) == fields
    # What Python reads per request (the pool, the route) is a plain slot on the compiled side.
    assert {kinds[n] for n in ("transport", "closed", "filtering", "target")} == {"member_descriptor"}
    assert issubclass(proxy_upstream.UpstreamConnection, core.UpstreamConn)
    assert proxy_upstream.UpstreamConnection.__slots__ == ()  # declared once, on the core's class
