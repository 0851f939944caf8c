"""The connections' pair (`fastgw/core/conn.py` and `conn.pyx`): both twins declare the same fields, the compiled one
shows them to Python as plain slots, a `Deadline` built on either keeps and arms its deadline alike, and the client
connection's per-request path (`ClientConn`) takes the same bytes the same way on both: random pipelined requests,
some malformed, cut at random, make the same calls above the core and leave the same state."""

from __future__ import annotations

import asyncio
import types
from collections import deque

import pytest
from httptools import HttpRequestParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastgw import core
from fastgw.core import conn as pyconn
from fastgw.core import http as pyhttp
from fastgw.core import phases as pyphases
from fastgw.core import router as pyrouter
from fastgw.pipeline import deadline as deadlines
from fastgw.pipeline import leg
from fastgw.server.protocol import ClientProtocol

IMPLS = [pytest.param(pyconn, id="pure")]
if core.COMPILED:
    from fastgw import _core

    IMPLS.append(pytest.param(_core, id="compiled"))


def test_both_twins_declare_the_same_fields():
    fields = set(pyconn.DeadlineState.__slots__)
    assert fields == {"deadline", "timer", "timer_at", "loop"}
    if core.COMPILED:
        kinds = {n: type(v).__name__ for n, v in vars(_core.DeadlineState).items() if n[:2] != "__"}
        assert kinds == dict.fromkeys(fields, "member_descriptor")
    assert issubclass(deadlines.Deadline, core.DeadlineState)
    assert deadlines.Deadline.__slots__ == ()  # declared once, on the core's class


@pytest.mark.parametrize("conn", IMPLS)
def test_a_deadline_on_either_twin_is_judged_once_when_it_comes(conn):
    # `Deadline`'s behaviour over either twin's fields: a deadline moved later costs no new timer, and the object
    # is judged once, at or after the deadline it holds then.
    def check_deadline(self, now):
        self.judged.append(now)

    behaviour = {n: v for n, v in vars(deadlines.Deadline).items() if callable(v) and n != "check_deadline"}
    Timed = type(
        "Timed", (conn.DeadlineState,), {**behaviour, "__slots__": ("judged",), "check_deadline": check_deadline}
    )

    async def run():
        loop = asyncio.get_running_loop()
        obj = Timed(loop)
        obj.judged = []
        start = loop.time()
        obj.set_deadline(start + 0.02)
        first = obj.timer
        obj.set_deadline(start + 0.05)  # later: the armed timer stays
        assert obj.timer is first and obj.timer_at == start + 0.02
        await asyncio.sleep(0.15)
        assert obj.timer is None and obj.timer_at == deadlines.INF
        return obj.judged, start

    judged, start = asyncio.run(run())
    assert len(judged) == 1 and judged[0] >= start + 0.05 - deadlines.EARLY


# -- the client connection's per-request path (ClientConn) ---------------------------------------------------------

LIMITS = types.SimpleNamespace(header_timeout=10.0, body_timeout=20.0, keepalive_timeout=30.0)


def test_both_twins_declare_the_same_client_connection_fields():
    fields = set(pyconn.ClientConn.__slots__)
    assert {"queue", "sink", "parser", "active", "closed", "exchange", "deadline_kind", "dispatch"} <= fields
    # The protocol's own slots are none of the core's.
    assert not set(ClientProtocol.__slots__) & (fields | set(pyconn.DeadlineState.__slots__))
    assert ClientProtocol.__mro__[1:4] == (core.ClientConn, deadlines.Deadline, core.DeadlineState)
    if core.COMPILED:
        kinds = {n: type(v).__name__ for n, v in vars(_core.ClientConn).items() if n in fields}
        assert set(kinds) == fields
        # What Python reads per request is a plain slot; the C fields (read off that path) are properties.
        c_fields = {"sink", "deadline_kind", "_paused", "_starting"}
        assert kinds == {n: "getset_descriptor" if n in c_fields else "member_descriptor" for n in fields}


def test_the_cores_constants_are_the_gateways():
    assert pyconn.PAUSE_PIPELINE == leg.PAUSE_PIPELINE  # (the core cannot import the pipeline's)
    assert len({leg.PAUSE_PIPELINE, leg.PAUSE_BUFFER, leg.PAUSE_UPSTREAM_BUSY}) == 3


def _client_conn(conn, http, phases, calls):
    """A connection on `conn.ClientConn` whose calls above the core (the protocol's methods, dispatch, refuse)
    are recorded in `calls` and do just enough of what the real ones do for the path to go on."""

    class Loop:
        now = 100.0

        def time(self):
            self.now += 1.0
            return self.now

    class Conn(conn.ClientConn):
        __slots__ = ()

        def close(self):
            calls.append(("close",))
            self.closed = True

        def arm(self, at, confirm=False):
            calls.append(("arm", at))
            self.timer_at = at

        def pause_reading_for(self, reason):
            calls.append(("pause", reason))
            self._paused |= reason

        def resume_reading_for(self, reason):
            calls.append(("resume", reason))
            self._paused &= ~reason

        def buffer_full(self):
            calls.append(("buffer_full",))

        def _upgrade(self, data, offset):
            calls.append(("upgrade", bytes(data[offset:])))
            self.broken = True

        def _parse_error(self, exc):
            calls.append(("parse_error", type(exc).__name__))
            self.broken = True
            req = self.sink.parsing
            if req is None:
                req = http.Request()
                self.queue.append(req)
            req.error = (400, "Bad Request")
            req.keep_alive = False

        def _header_deadline(self):
            calls.append(("header_deadline",))
            self.deadline_kind = pyconn.DEADLINE_HEADER

        def _body_deadline_starts(self):
            calls.append(("body_deadline",))
            self.deadline_kind = pyconn.DEADLINE_BODY

        def _dispatch_failed(self, req, exc):
            calls.append(("dispatch_failed", req.url, str(exc)))

    # The gateway: simple paths (one path policy) routed by the core's router to routes 0 (no plugins), 1 (a chain),
    # 2 (a chain that reads the body first), 3 (a chain whose one plugin has a front, which answers /front/hit); a
    # target not in origin form goes the general way (dispatch), a miss or a refused path to routed.
    class Route:
        def __init__(self, name, chain):
            self.name, self.chain, self.info = name, chain, None

        def start(self, ex):
            calls.append(("start", self.name, ex.req.url, list(ex.req.headers), ex.ctx is None))
            if b"boom" in ex.req.url:
                raise RuntimeError("boom")

    class Ex(http.ExchangeState):
        __slots__ = ()

        def integrate(self):
            calls.append(("integrate", self.req.url, self.ctx is None))

        def run(self, chain):
            calls.append(("run", self.req.url, self.route.name, self.ctx is None))

    def new_exchange(c, gw, req, route, params, ctx, t0):
        calls.append(("exchange", gw is c.state.gateway, req.url, route.name, params, ctx is None, t0))
        if b"noexchange" in req.url:
            return Ex(http.Request(), route, gw, None, ctx)  # (one that does not take the connection's request)
        c.exchange = Ex(req, route, gw, None, ctx)
        return c.exchange

    def front(ex, ip):
        calls.append(("front", ex.req.url, ip))
        return b"hit" in ex.req.url

    def chain(streams=True, front=None):
        made = phases.PhaseChain()
        made.streams, made.front = streams, front
        return made

    rt = (pyrouter if http is pyhttp else http).Router()  # (the router's routes are indices into gw.routes)
    rt.add(0, ["GET", "POST"], "/{proxy+}")
    rt.add(1, ["GET", "POST"], "/chain/{x}")
    rt.add(2, ["GET", "POST"], "/whole/{x}")
    rt.add(3, ["GET", "POST"], "/front/{x}")
    rt.add(0, ["PUT"], "/only-put")
    rt.freeze()
    paths = types.SimpleNamespace(simple=True, router=rt, default=0)
    routes = (Route("plain", None), Route("chained", chain()), Route("whole", chain(False)),
              Route("fronted", chain(front=front)))  # fmt: skip
    gw = types.SimpleNamespace(paths=paths, routes=routes, strip_names=frozenset({b"x-strip"}))

    def dispatch(c, req):
        calls.append(("dispatch", req.method, req.url, req.complete, c.active, c._starting))
        if b"boom" in req.url:
            raise RuntimeError("boom")
        if b"noexchange" not in req.url:
            c.exchange = http.ExchangeState(req, None, None, None, None)

    def routed(c, g, req, found, t0):
        calls.append(("routed", g is gw, req.url, req.path, found, t0))
        if found and found[0] is not None:
            c.exchange = http.ExchangeState(req, None, None, None, None)

    def refuse(c, gw, req, status, message):
        calls.append(("refuse", gw is c.state.gateway, req.url, status, message))

    c = Conn()
    c.loop = Loop()
    c.deadline, c.timer, c.timer_at = 0.0, None, float("inf")
    c.state = types.SimpleNamespace(gateway=gw, closing=False, access_log=None)
    c.limits = LIMITS
    c.queue = deque()
    c.sink = http.RequestSink(c, c.queue, 200, 4096, 20, 1 << 20, 16)
    c.parser = c.sink.parser = HttpRequestParser(c.sink)
    c.exchange = None
    c.active = c.closed = c.broken = c.write_paused = c._starting = False
    c._paused = 0
    c.deadline_kind = pyconn.DEADLINE_HEADER
    c.dispatch, c.routed, c.refuse, c.new_exchange = dispatch, routed, refuse, new_exchange
    c.peer = types.SimpleNamespace(ip="192.0.2.7", trusted=False)
    return c


def _snapshot(c):
    return (
        c.active, c.closed, c.broken, c.write_paused, c._paused, c._starting, c.deadline_kind, c.deadline, c.timer_at,
        len(c.queue), c.exchange is None, c.sink.exchange is None, c.sink.exchange is c.exchange,
    )  # fmt: skip


REQUESTS = st.sampled_from(
    [
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /b?q=1 HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
        b"POST /body HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /expect HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
        b"GET /close HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"GET /old HTTP/1.0\r\n\r\n",
        b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n",  # dispatch raises: the internal-error path
        b"GET /noexchange HTTP/1.1\r\nHost: h\r\n\r\n",  # answered at once, without an exchange
        b"GET /bad HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n",  # malformed: a parse error
        b"GET /" + b"x" * 300 + b" HTTP/1.1\r\nHost: h\r\n\r\n",  # refused by the sink (414)
        b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\n" + b"z" * 40,  # over the sink's high water
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframes",
        b"GET /s?x=1 HTTP/1.1\r\nHost: h\r\nX-Strip: 1\r\nX-Keep: 2\r\n\r\n",  # a header the gateway strips
        b"GET /chain/7 HTTP/1.1\r\nHost: h\r\n\r\n",  # a route with plugins
        b"POST /whole/8 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",  # its plugins read the body first
        b"GET /front/hit HTTP/1.1\r\nHost: h\r\n\r\n",  # its plugin's front answers
        b"GET /front/miss HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",  # the front goes on
        b"DELETE /only-put HTTP/1.1\r\nHost: h\r\n\r\n",  # 405: routed
        b"GET /a/../../up HTTP/1.1\r\nHost: h\r\n\r\n",  # refused by the path policy: routed (False)
        b"GET http://h/abs HTTP/1.1\r\nHost: h\r\n\r\n",  # absolute form: the general way (dispatch)
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",  # neither: the general way
    ]
)
# After each piece of bytes: finish the request in flight (request_done, as its exchange does once it is
# answered), the gateway starts closing, the client stops taking what it is sent (writing paused), the peer turns
# out a trusted proxy, or nothing.
STEPS = st.lists(st.sampled_from(["done", "done", "closing", "write_paused", "write_resumed", "trusted"]), max_size=3)


@pytest.mark.skipif(not core.COMPILED, reason="compiled core not built (FASTGW_NO_EXTENSIONS or no extension)")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(REQUESTS, min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    head_cuts=st.lists(st.booleans(), min_size=5, max_size=5),
    steps=st.lists(STEPS, min_size=1, max_size=8),
    idle=st.booleans(),
)
def test_both_twins_take_the_same_bytes_the_same_way(requests, cuts, head_cuts, steps, idle):
    # One or several pipelined requests, some malformed, cut into random pieces: each twin's data_received,
    # _maybe_start and request_done make the same calls above the core, with the same arguments, in the same
    # order, and leave the connection in the same state after each step.
    data = b"".join(requests)
    # Some pieces end where a request's head does (its body, if any, comes in a later piece).
    ends = [sum(map(len, requests[:i])) + r.find(b"\r\n\r\n") + 4 for i, r in enumerate(requests) if head_cuts[i]]
    bounds = sorted({min(c, len(data)) for c in cuts} | set(ends) | {0, len(data)})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    runs = []
    for conn, http, phases in ((pyconn, pyhttp, pyphases), (_core, _core, _core)):
        calls: list = []
        c = _client_conn(conn, http, phases, calls)
        if idle:
            c.deadline_kind = pyconn.DEADLINE_IDLE
        trace = []
        for i, piece in enumerate(pieces):
            c.data_received(piece)
            trace.append((list(calls), _snapshot(c)))
            calls.clear()
            for step in steps[i % len(steps)]:
                if step == "done":
                    if c.active and c.queue:
                        c.request_done(c.queue[0])
                elif step == "closing":
                    c.state.closing = True
                elif step == "trusted":  # (the peer a trusted proxy: its client's address is for routed to find)
                    c.peer.trusted = True
                else:
                    c.write_paused = step == "write_paused"
                trace.append((step, list(calls), _snapshot(c)))
                calls.clear()
        while c.active and c.queue and not c.closed:  # the rest answered in order
            c.request_done(c.queue[0])
            trace.append(("done", list(calls), _snapshot(c)))
            calls.clear()
        c._maybe_start()
        trace.append(("start", list(calls), _snapshot(c)))
        runs.append(trace)
    assert runs[0] == runs[1]
