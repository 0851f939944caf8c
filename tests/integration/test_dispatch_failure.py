"""A request whose dispatch raises (a bug in the gateway, not the client's doing) is logged and answered 500
`{"message": "Internal server error"}`, and nothing of it reaches the upstream. Before its exchange exists it is
refused (the connection closes after the answer, the requests pipelined behind it unserved); once its exchange
exists, the exchange fails it and the connection goes on with the next request."""

from __future__ import annotations

import logging

import pytest

from fastgw.pipeline import dispatch as dispatching
from fastgw.pipeline.exchange import Exchange
from fastgw.server import protocol
from fastgw.testing import RawConnection, http_request
from tests.conftest import proxy_config

pytestmark = pytest.mark.asyncio


class FailingExchange(Exchange):
    """The exchange of a routed request to /crash fails to be made, one to /half is made and then the bug."""

    __slots__ = ()

    def __init__(self, leg, gw, req, route, *args):
        if route is not None and req.url.startswith(b"/crash"):
            raise RuntimeError("a bug")
        super().__init__(leg, gw, req, route, *args)
        if route is not None and req.url.startswith(b"/half"):
            raise RuntimeError("a bug after the exchange")


@pytest.mark.parametrize(("path", "closes"), [("/crash", True), ("/half", False)])
async def test_a_dispatch_that_raises_is_logged_and_answered_500(upstream, gateway, monkeypatch, caplog, path, closes):
    # (Where the exchange of a routed request is made: the connection's core, given it by the protocol, and the
    # pipeline's dispatch.)
    monkeypatch.setattr(protocol, "Exchange", FailingExchange, raising=False)
    monkeypatch.setattr(dispatching, "Exchange", FailingExchange)
    gw = await gateway(proxy_config(upstream.url))
    conn = await RawConnection.open(gw.port)
    with caplog.at_level(logging.ERROR, logger="fastgw.server"):
        await conn.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        r = await conn.response()
        assert (r.status, r.json()) == (500, {"message": "Internal server error"})
        if closes:
            assert await conn.closed()
        else:
            r = await conn.response()
            assert r.status == 200 and r.json()["path"] == "/next"
    await conn.close()
    (record,) = [r for r in caplog.records if "internal error while dispatching" in r.getMessage()]
    assert path in record.getMessage() and record.exc_info is not None and "a bug" in str(record.exc_info[1])
    assert [s.path for s in upstream.received] == ([] if closes else ["/next"])
    assert (await http_request(gw.port, "GET", "/ok")).status == 200  # the gateway serves on
