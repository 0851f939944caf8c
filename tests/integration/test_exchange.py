"""The exchange's surface is the integrations' only way back: an exchange whose client leg is memory (as an
aggregate integration's backends will be) gets the same answers as a socket, from the real http integration
talking to a real upstream, from a mock, and from the plugins' filters, and it ends the same way."""

from __future__ import annotations

import asyncio
from collections import deque

import orjson
import pytest
from httptools import HttpRequestParser, HttpResponseParser

from fastgw.config.load import load_config_bytes
from fastgw.core import Request, RequestSink
from fastgw.gateway import Gateway
from fastgw.pipeline.dispatch import dispatch
from fastgw.pipeline.exchange import Exchange, Worker
from fastgw.pipeline.leg import Peer
from tests.conftest import proxy_config

pytestmark = pytest.mark.asyncio


class MemoryLeg:
    """A ClientLeg that keeps what the exchange writes and says when the exchange is done."""

    def __init__(self, state: Worker) -> None:
        self.state = state
        self.peer = Peer("127.0.0.1")
        self.closed = False
        self.write_paused = False
        self.exchange: Exchange | None = None
        self.written: list[bytes] = []
        self.finished = asyncio.Event()
        self.done_with: list[Request] = []
        self.ended: list[Exchange] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        raise AssertionError("nothing here should cut the connection")

    def request_done(self, req: Request) -> None:
        self.done_with.append(req)
        self.ended.append(self.exchange)  # type: ignore[arg-type]
        self.exchange = None
        self.finished.set()

    def body_drained(self, req: Request) -> None:
        req.body = []

    def pause_reading_for(self, reason: int) -> None:
        pass

    def resume_reading_for(self, reason: int) -> None:
        pass


class _Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body += body


def parse_request(raw: bytes) -> Request:
    queue: deque[Request] = deque()
    sink = RequestSink(None, queue, 8192, 65536, 100, 1 << 20, 65536)
    sink.parser = HttpRequestParser(sink)
    sink.parser.feed_data(raw)
    (req,) = queue
    return req


def parse_response(data: bytes) -> _Response:
    resp = _Response()
    parser = HttpResponseParser(resp)
    parser.feed_data(data)
    resp.status = parser.get_status_code()
    return resp


async def _exchange(config: dict, raw: bytes) -> tuple[MemoryLeg, _Response]:
    loaded = load_config_bytes(orjson.dumps({"logging": {"access_log": False}, **config}), "<test>.json")
    gateway = Gateway(loaded)
    state = Worker(asyncio.get_running_loop(), gateway, None)
    seen: list[Exchange] = []
    state.access_log = seen.append  # the one place every response ends: it sees each exchange once
    leg = MemoryLeg(state)
    try:
        dispatch(leg, parse_request(raw))
        await asyncio.wait_for(leg.finished.wait(), 10)
    finally:
        await gateway.aclose()
    assert len(seen) == 1 and seen[0].req is leg.done_with[0]
    return leg, parse_response(b"".join(leg.written))


async def test_the_http_integration_answers_into_memory_through_the_exchange(upstream):
    for _ in range(2):
        upstream.received.clear()
        leg, resp = await _exchange(
            proxy_config(upstream.url), b"GET /users/7?q=1 HTTP/1.1\r\nHost: api.test\r\nX-Trace: t1\r\n\r\n"
        )
        (seen,) = upstream.received
        assert seen.target == "/users/7?q=1" and seen.header("x-trace") == "t1"
        assert seen.header("x-forwarded-for") == "127.0.0.1"  # the leg's peer, not a socket's
        assert resp.status == 200 and orjson.loads(resp.body)["path"] == "/users/7"
        assert leg.exchange is None and leg.ended[0].finished and leg.ended[0].req is leg.done_with[0]


async def test_filters_see_a_proxied_response_collected_in_memory(upstream):
    config = proxy_config(
        upstream.url,
        route={"plugins": {"response-transformer": {"set": {"headers": {"x-filtered": "yes"}}}}},
    )
    _, resp = await _exchange(config, b"GET /a HTTP/1.1\r\nHost: api.test\r\n\r\n")
    assert resp.status == 200 and resp.headers[b"x-filtered"] == b"yes"


async def test_a_mock_and_a_miss_end_the_same_way():
    config = {"routes": [{"path": "/health", "methods": ["GET"], "integration": {"type": "mock", "body": {"ok": 1}}}]}
    _, resp = await _exchange(config, b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n")
    assert resp.status == 200 and orjson.loads(resp.body) == {"ok": 1}
    _, resp = await _exchange(config, b"DELETE /health HTTP/1.1\r\nHost: a\r\n\r\n")
    assert resp.status == 405 and resp.headers[b"allow"] == b"GET"
    _, resp = await _exchange(config, b"GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n")
    assert resp.status == 404 and orjson.loads(resp.body) == {"message": "Not Found"}


async def test_an_upstream_that_is_gone_fails_the_exchange_with_a_json_502(upstream):
    config = proxy_config("http://127.0.0.1:9")  # discard port: nothing listens
    _, resp = await _exchange(config, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert resp.status == 502 and orjson.loads(resp.body) == {"message": "Bad Gateway"}
