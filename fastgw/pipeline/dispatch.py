"""From a parsed request to its exchange: the request target, the path policy, the route match, and the answers
to requests that match nothing."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from httptools import parse_url

from fastgw.core import start_exchange
from fastgw.pipeline.exchange import Exchange

if TYPE_CHECKING:
    from fastgw.core import Request
    from fastgw.pipeline.exchange import ClientLeg, Served
    from fastgw.routing import Found


def dispatch(leg: ClientLeg, req: Request) -> None:
    """Route `req` (its head is complete) and start its exchange; a request that matches nothing is answered.

    NOTE: a client connection routes its requests itself where paths are simple (`fastgw.core.ClientConn`: the
    first branch below, compiled), and hands anything else to `routed` or here."""
    state = leg.state
    gw = state.gateway
    # The exchange's start, taken before routing. NOTE: only when the worker observes its exchanges
    # (fastgw.core.LimitFront reads `ex.t0` as "observed").
    t0 = time.perf_counter() if state.access_log is not None else 0.0
    url = req.url
    paths = gw.paths
    found: Any  # the router's answer (see Router.match), or False: refused
    if paths.simple and url[:1] == b"/":
        # PERF: one path policy and no API resource rules (the usual config): the target's split, the policy and
        # the match in one compiled call, ~1.3k instructions less per request than the general way below.
        found = paths.router.route(req, paths.default)
    else:
        found = _route(leg, gw, req, url, t0)
        if found is False:
            return
    routed(leg, gw, req, found, t0)


def routed(leg: ClientLeg, gw: Served, req: Request, found: Any, t0: float) -> None:
    """The rest of `dispatch` once `req` is routed: `found` is the router's answer (see Router.match), or False
    (the simple way's path policy refused the target: 400)."""
    if found is False:
        refuse(leg, gw, req, 400, "Bad Request", t0)
        return
    if found is None or found[0] is None:
        path = req.path
        if found is not None and req.method == "OPTIONS":
            found = _preflight_route(gw, req, path) or found
        if found is None or found[0] is None:
            _miss(leg, gw, req, path, found, t0)
            return
    index, params = found
    route = gw.routes[index]
    ip = ""
    if route.chain is not None:
        peer = leg.peer
        ip = peer.ip if not peer.trusted else client_ip(gw, req, peer.ip)
    start_exchange(leg, gw, req, route, params, t0, Exchange, ip)


def _route(leg: ClientLeg, gw: Served, req: Request, url: bytes, t0: float) -> Found | bool:
    """The general way: origin- or absolute-form targets, any mix of path policies, API resource rules. False:
    the request was refused."""
    if url[:1] == b"/":
        q = url.find(b"?")
        if q < 0:
            raw = url
        else:
            raw, req.query = url[:q], url[q + 1 :]
    elif url[:7].lower() == b"http://" or url[:8].lower() == b"https://":
        parsed = parse_url(url)  # absolute-form: its authority replaces Host (RFC 9112 3.2.2)
        raw, req.query = parsed.path or b"/", parsed.query
        if parsed.host:
            req.host_raw = parsed.host + (b":%d" % parsed.port if parsed.port else b"")
            req.host = parsed.host.decode("latin-1").lower()
    else:
        refuse(leg, gw, req, 400, "Bad Request: request target must be a path", t0)
        return False
    h = raw.find(b"#")
    if h >= 0:
        raw = raw[:h]
    path, found = gw.paths.route(req.method, req.host, raw)  # the path policy, then the router
    if path is None:
        refuse(leg, gw, req, 400, "Bad Request", t0)
        return False
    req.path = path
    return found


def _miss(
    leg: ClientLeg, gw: Served, req: Request, path: str, found: tuple[None, tuple[str, ...]] | None, t0: float
) -> None:
    # 404 / 405 for plain routes, as API Gateway answers for APIs (fastgw/routing.py).
    Exchange(leg, gw, req, None, None, None, t0).respond(*gw.paths.miss(req.host, path, found))


def refuse(leg: ClientLeg, gw: Served, req: Request, status: int, message: str, t0: float = 0.0) -> None:
    """Answer a request that cannot be served at all (malformed): the connection closes after the answer. `t0`:
    the exchange's start, when it was taken (dispatch)."""
    req.keep_alive = False
    Exchange(leg, gw, req, None, None, None, t0).respond_json(status, {"message": message})


def is_preflight(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """An OPTIONS the cors plugin answers as a CORS preflight: both Origin and Access-Control-Request-Method sent.
    Any other OPTIONS would pass that plugin on to the route's integration, so it is routed as the method it is."""
    names = {k for k, _ in headers}
    return b"origin" in names and b"access-control-request-method" in names


def _preflight_route(gw: Served, req: Request, path: str) -> tuple[int, dict[str, str]] | None:
    """A CORS preflight for a path whose routes do not take OPTIONS: it belongs to the route of the method it
    asks about, if that route has the cors plugin (which answers it before any auth runs)."""
    if not is_preflight(req.headers):
        return None  # an OPTIONS to a route that does not take it: 405, as for any other method
    asked = next(v for k, v in req.headers if k == b"access-control-request-method")
    found = gw.router.match(asked.decode("latin-1").strip().upper(), req.host, path)
    if found is None or found[0] is None:
        return None
    route = gw.routes[found[0]].pick(req)  # type: ignore[call-overload]
    chain = route.chain if route is not None else None
    return found if chain is not None and "cors" in chain.names else None  # type: ignore[return-value]


def client_ip(gw: Served, req: Request, peer_ip: str) -> str:
    """The client's address behind a trusted proxy: the right-most X-Forwarded-For address that is not itself a
    trusted proxy."""
    hops = [h.strip() for k, v in req.headers if k == b"x-forwarded-for" for h in v.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if hop and not gw.is_trusted(hop):
            return hop
    return hops[0] if hops and hops[0] else peer_ip
