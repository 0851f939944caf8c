"""Routes told apart by request headers (a route's `headers:`): one router entry, one switch, several routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from fastgw.core import new_context, request_phases
from fastgw.pipeline.dispatch import client_ip, is_preflight
from fastgw.pipeline.exchange import Exchange, Route

if TYPE_CHECKING:
    from fastgw.core import Request
    from fastgw.routing import HeaderRule


class HeaderSwitch(Route):
    """Where the router sends a request for routes that share a host, path and methods: the first route whose
    header conditions all hold takes it (the config's loader put the most specific first and the route without
    conditions last); when none does, the request falls through to the next less specific route that matches its
    path (`/users/{id}` told apart by headers -> `/users/{proxy+}` or `/{proxy+}`), as Kong's router does, and
    when there is none it is answered as a miss (404).

    NOTE: 404, not 405, when no route's headers hold and nothing less specific takes the request: the request's
    method is served here (with other headers), so a 405 would have to leave its own method out of Allow, which is
    untrue, or name it, which contradicts the status; Kong answers a route whose headers do not match as no route at
    all (404 "no Route matched with those values"), and API Gateway's HTTP APIs never answer 405. Under a REST API
    stage the miss is its 403 Missing Authentication Token, as any miss there. A method these routes do not serve
    never reaches the switch: the group is one router entry with exactly the methods its routes list
    (config/load.py), so the router answers it as for plain routes, 405 with Allow naming the methods of every route
    on the path, these included.

    To dispatch it is a route without plugins, so its exchange starts here, with nothing run yet.
    PERF: the switch is a route rather than a check in dispatch: reading one more attribute of every matched
    route cost ~580 instructions per exchange under callgrind (bench/instructions.py: 70.7k against 70.1k),
    and only routes told apart by headers should pay for them."""

    kind: ClassVar[str] = "headers"
    reads_body: ClassVar[bool] = False  # `Expect: 100-continue` is the picked route's to answer
    __slots__ = ("candidates", "index")

    def __init__(self, name: str, candidates: Sequence[tuple[HeaderRule | None, Route]], index: int = -1) -> None:
        super().__init__(name)
        self.candidates = tuple(candidates)
        self.index = index  # its router entry (gw.routes[index] is this switch): what a fall-through skips

    def pick(self, req: Request) -> Route | None:
        headers = req.headers
        for rule, route in self.candidates:
            if rule is None or rule.matches(headers):
                return route
        if req.method == "OPTIONS" and is_preflight(headers):
            # A CORS preflight carries none of the headers the real request will (it names them in
            # Access-Control-Request-Headers): the first of these routes with the cors plugin answers it. Any other
            # OPTIONS is a request like the rest: it would pass the cors plugin on to a route whose headers do not
            # hold, so it is a miss.
            for _, route in self.candidates:
                if "cors" in getattr(route.chain, "names", ()):  # (names: the chain's plugins, plugins.chain)
                    return route
        return None

    def fall_through(self, ex: Exchange) -> Route | None:
        """The next less specific route that takes the request (its params replace the exchange's), or None."""
        req = ex.req
        gw = ex.gw
        skip = {self.index}
        while True:
            found = gw.paths.fall_through(req.method, req.host, req.path, skip, self.index)
            if found is None:
                return None
            index, params = found
            route = gw.routes[index]
            ex.params = params
            if not isinstance(route, HeaderSwitch):
                return route
            picked = route.pick(req)  # another path's routes told apart by headers: theirs decide
            if picked is not None:
                return picked
            skip.add(index)

    def start(self, ex: Exchange) -> None:
        req = ex.req
        route = self.pick(req)
        if route is None:
            route = self.fall_through(ex)
        ex.route = route
        if route is None:
            ex.respond(*ex.gw.paths.miss(req.host, req.path, None))
            return
        chain = route.chain
        # NOTE: the rest of the core's start_exchange (fastgw.core.conn), for the route picked, on the exchange made
        # already (the same request): without a front, which is only a shortcut of the phases (Plugin.front).
        if chain is None:
            if req.expect_continue:
                ex.integrate()
            else:
                route.start(ex)
            return
        peer = ex.peer
        ip = peer.ip if not peer.trusted else client_ip(ex.gw, req, peer.ip)
        ex.ctx = new_context(req, ip, ex.params, route.info, chain)
        if chain.streams:
            request_phases(ex, 0)  # (the core's, as start_exchange calls it: no frame of the exchange's)
        else:
            ex.run(chain)
