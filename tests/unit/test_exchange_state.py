"""What an exchange decides lives on the exchange (`fastgw.core.ExchangeState`), not on the client's request: both
twins declare it alike, the client leg's sink hands body chunks to the exchange's body sink only once the exchange
exists, and the observer refuses at build an exchange class without the fields it reads."""

from __future__ import annotations

import types

import pytest
from httptools import HttpRequestParser

from fastgw import core
from fastgw.core import http as pyhttp
from fastgw.core import observe as pyobserve
from fastgw.pipeline.exchange import Exchange

IMPLS = [pytest.param(pyhttp, pyobserve, id="pure")]
if core.COMPILED:
    from fastgw import _core

    IMPLS.append(pytest.param(_core, _core, id="compiled"))

# What the exchange decides: none of it is on the request any more.
DECIDED = ("body_sink", "upstream", "status", "response_started", "retried", "finished", "t0", "reply_lines",
           "reply_names")  # fmt: skip


@pytest.mark.parametrize(("http", "observe"), IMPLS)
def test_the_request_holds_only_what_the_client_sent(http, observe):
    req = http.Request()
    for name in DECIDED:
        assert not hasattr(req, name), name
    ex = http.ExchangeState(req, None, None, None, None)
    assert ex.req is req
    assert (ex.body_sink, ex.status, ex.response_started, ex.retried, ex.finished, ex.t0) == (None, 0, False, False,
                                                                                              False, 0.0)  # fmt: skip
    assert (ex.reply_lines, ex.reply_names, ex.sent, ex.upstream, ex.until) == (None, None, 0, None, float("inf"))


def test_both_twins_declare_the_same_fields():
    fields = set(pyhttp.ExchangeState.__slots__)
    if core.COMPILED:
        # C fields, each exposed to Python as a plain slot (as fast to read as the pure twin's), none left over.
        kinds = {n: type(v).__name__ for n, v in vars(_core.ExchangeState).items() if n[:2] != "__"}
        assert kinds == dict.fromkeys(fields, "member_descriptor")
    assert set(pyobserve.OBSERVED) <= fields


def test_the_pipeline_exchange_is_the_declared_state():
    assert issubclass(Exchange, core.ExchangeState)
    assert not set(Exchange.__slots__) & set(pyhttp.ExchangeState.__slots__)  # declared once, on the base


class Sink:
    """A body sink (an upstream connection, a collector): records what it is handed."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.ended = False

    def send_body(self, chunk: bytes) -> None:
        self.got.append(chunk)

    def end_body(self) -> None:
        self.ended = True


def _client_leg(http: types.ModuleType) -> tuple:
    queue: list = []
    owner = types.SimpleNamespace(buffer_full=lambda: None)
    sink = http.RequestSink(owner, queue, 8192, 8192, 100, 0, 1 << 20)
    sink.parser = HttpRequestParser(sink)
    return sink, queue


@pytest.mark.parametrize(("http", "observe"), IMPLS)
def test_body_chunks_reach_the_exchange_only_once_it_exists(http, observe):
    sink, queue = _client_leg(http)
    sink.parser.feed_data(b"POST /a HTTP/1.1\r\nhost: h\r\ncontent-length: 9\r\n\r\nabc")
    (req,) = queue
    assert req.body == [b"abc"]  # no exchange yet: buffered on the request
    ex = http.ExchangeState(req, None, None, None, None)
    sink.exchange = ex  # (the client connection does this once the exchange starts)
    sink.parser.feed_data(b"def")
    assert req.body == [b"abc", b"def"]  # the exchange has no body sink yet: still buffered
    body = ex.body_sink = Sink()
    sink.parser.feed_data(b"ghi")
    assert body.got == [b"ghi"] and body.ended
    assert req.body == [b"abc", b"def"] and req.body_size == 9
    assert sink.exchange is None  # the request is whole: the next one starts without an exchange


@pytest.mark.parametrize(("http", "observe"), IMPLS)
def test_a_pipelined_request_keeps_its_body_until_its_own_exchange(http, observe):
    sink, queue = _client_leg(http)
    sink.parser.feed_data(b"POST /a HTTP/1.1\r\nhost: h\r\ncontent-length: 6\r\n\r\nab")
    first = http.ExchangeState(queue[0], None, None, None, None)
    first.body_sink = Sink()
    sink.exchange = first
    sink.parser.feed_data(b"cdef" + b"POST /b HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\n\r\nwxyz")
    assert first.body_sink.got == [b"cdef"] and first.body_sink.ended
    second = queue[1]
    assert second.body == [b"wxyz"] and second.complete  # its exchange does not exist yet: nothing was sent anywhere


@pytest.mark.parametrize(("http", "observe"), IMPLS)
def test_an_answered_exchange_drops_the_rest_of_the_body(http, observe):
    sink, queue = _client_leg(http)
    sink.parser.feed_data(b"POST /a HTTP/1.1\r\nhost: h\r\ncontent-length: 6\r\n\r\nab")
    ex = http.ExchangeState(queue[0], None, None, None, None)
    sink.exchange = ex
    ex.finished = True
    sink.parser.feed_data(b"cdef")
    assert queue[0].body == [b"ab"] and queue[0].body_size == 6


@pytest.mark.parametrize(("http", "observe"), IMPLS)
def test_the_observer_is_built_only_for_an_exchange_that_declares_what_it_reads(http, observe, monkeypatch):
    observe.Observer(None)  # the core's own exchange: fine
    if http.ExchangeState is core.ExchangeState:
        observe.Observer(None, exchange=Exchange)  # and the pipeline's (made of the chosen core)
    # A field the observer reads that the declaration does not have (renamed there, say): refused at build, never
    # met per request (where the compiled observer could not have read it, and the pure one would have raised).
    monkeypatch.setattr(pyobserve, "OBSERVED", (*pyobserve.OBSERVED, "bytes_sent"))
    with pytest.raises(TypeError, match="bytes_sent"):
        observe.Observer(None)
    monkeypatch.undo()

    class Elsewhere:  # an exchange of another kind, with every field as a slot
        __slots__ = pyhttp.ExchangeState.__slots__

    with pytest.raises(TypeError, match="ExchangeState"):
        observe.Observer(None, exchange=Elsewhere)

    class Shadowed(http.ExchangeState):  # a field that is no longer a declared one (a property in its place)
        __slots__ = ()
        sent = property(lambda self: 0)

    with pytest.raises(TypeError, match="sent"):
        observe.Observer(None, exchange=Shadowed)


def _deleted_fields(source: str, names: set[str]) -> list[str]:
    import ast

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Delete):
            found += [
                f"{t.attr} (line {t.lineno})" for t in node.targets if isinstance(t, ast.Attribute) and t.attr in names
            ]
    return found


@pytest.mark.skipif(not core.COMPILED, reason="the compiled core's plain slots")
def test_no_module_deletes_a_field_the_compiled_core_reads_without_a_check():
    # The compiled core exposes the fields Python reads per exchange as plain slots (http.pyx, _as_slots): as fast
    # as a __slots__ class's, but `del` on one leaves NULL where its C code reads an object (a crash, where the pure
    # twin raises AttributeError). Nothing deletes them; this keeps it so.
    from pathlib import Path

    from fastgw import _core

    names = {n for cls in (_core.ExchangeState, _core.Request, _core.ResponseSink, _core.RequestSink,
                                                 _core.DeadlineState, _core.UpstreamConn, _core.ClientConn)
             for n, d in vars(cls).items() if isinstance(d, types.MemberDescriptorType)}  # fmt: skip
    assert {"req", "status", "complete", "keep_alive", "done", "parsing"} <= names  # (the scan looks for these)
    assert _deleted_fields("del ex.status\ndel x\n", names) == ["status (line 1)"]  # (and finds one)
    root = Path(core.__file__).resolve().parent.parent
    found = {str(p.relative_to(root)): d for p in root.rglob("*.py") if (d := _deleted_fields(p.read_text(), names))}
    assert found == {}
