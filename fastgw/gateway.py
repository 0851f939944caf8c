"""A config compiled for serving: routes with their integrations, upstreams with their pools.

Built once per config load (at start and on reload) and never mutated afterwards: a reload builds a new
`Gateway` and the server swaps one reference. Everything a request needs is precomputed here.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from fastgw.config.load import LoadedConfig
from fastgw.config.schema import (
    AggregateIntegration,
    HttpIntegration,
    LambdaIntegration,
    MockIntegration,
    WebSocketConfig,
)
from fastgw.core import Router
from fastgw.functions import ACCOUNT_ID, REGION
from fastgw.pipeline.exchange import Route
from fastgw.pipeline.mock import MockRoute
from fastgw.pipeline.switch import HeaderSwitch
from fastgw.plugins.base import RouteInfo
from fastgw.proxy.pool import Upstream
from fastgw.proxy.route import HttpRoute
from fastgw.routing import plain_template

if TYPE_CHECKING:
    from fastgw.functions.pool import FunctionPool

# NOTE: the integrations a config may not have (functions, aggregation, WebSockets) are imported where a route needs
# one: a gateway of HTTP and mock routes does not keep the functions runtime in each worker (bench/README.md, "Idle
# memory").


class Gateway:
    """Everything one worker serves from one config."""

    def __init__(self, loaded: LoadedConfig, previous: Gateway | None = None) -> None:
        cfg = loaded.config
        self.source = loaded.source
        self.config = cfg
        self.router: Router = loaded.router
        self.limits = cfg.limits
        server_header = cfg.server.server_header
        self.server_line = f"server: {server_header}\r\n".encode("latin-1") if server_header else b""
        self.via = cfg.server.via
        self.trusted_proxies = tuple(ipaddress.ip_network(c, strict=False) for c in cfg.server.trusted_proxies)
        # A reload keeps the warm connections of the targets that survive it (Target.adopt).
        before: dict[str, Upstream] = previous.upstreams if previous is not None else {}
        self.upstreams: dict[str, Upstream] = {
            name: Upstream(name, up, before.get(name), loaded.base_dir) for name, up in cfg.upstreams.items()
        }
        self.functions = {name: self._pool(name, loaded, previous) for name in cfg.functions}
        self.entries = loaded.entries  # each route's API and stage, for the access log
        self.paths = loaded.paths  # the path policy, the router, and API Gateway's answers to misses
        routes: list[Route] = []
        for entry in loaded.entries:
            integ = entry.integration
            if isinstance(integ, MockIntegration):
                routes.append(MockRoute(entry.label, integ, self.server_line))
            elif isinstance(integ, LambdaIntegration):
                from fastgw.functions.integration import LambdaRoute

                routes.append(LambdaRoute(entry, integ, self.functions[integ.function]))
            elif isinstance(integ, AggregateIntegration):
                from fastgw.aggregate import AggregateRoute

                routes.append(AggregateRoute(entry, integ, self.upstreams, self.functions, self.server_line, self.via))
            else:
                assert isinstance(integ, HttpIntegration)
                upstream = self.upstreams[integ.upstream]
                ws = entry.route.websocket
                if ws:
                    from fastgw.proxy.websocket import WebSocketRoute

                    idle = ws.idle_timeout if isinstance(ws, WebSocketConfig) else WebSocketConfig().idle_timeout
                    routes.append(WebSocketRoute(entry.label, integ, upstream, self.server_line, self.via, idle))
                else:
                    routes.append(HttpRoute(entry.label, integ, upstream, self.server_line, self.via))
        setup = loaded.plugins
        chains = setup.chains if setup is not None else (None,) * len(routes)
        for route, entry, chain in zip(routes, loaded.entries, chains, strict=True):
            route.chain = chain
            route.info = RouteInfo(
                entry.label, entry.route.path, tuple(entry.route.methods), entry.api, entry.stage,
                entry.stage_variables, entry.api_id or "local", self.functions, entry.prefix,
                plain_template(entry.route.path),
                f"arn:aws:execute-api:{REGION}:{ACCOUNT_ID}:{entry.api_id or 'local'}/{entry.stage or '$default'}/",
            ) if chain is not None else None  # fmt: skip
        self.routes = tuple(routes)
        self.consumers = setup.consumers if setup is not None else {}
        ch = cfg.consumer_headers
        # With consumers configured, the consumer headers the upstream trusts are only ever set by the gateway.
        self.consumer_headers: tuple[bytes | None, bytes | None] | None = (
            (
                ch.username.lower().encode("latin-1") if ch.username else None,
                ch.groups.lower().encode("latin-1") if ch.groups else None,
            )
            if self.consumers
            else None
        )
        self.strip_names = frozenset(n for n in self.consumer_headers or () if n)
        for route in routes:
            if route.chain is not None:
                route.chain.strip = self.strip_names
                route.chain.consumer_keys = self.consumer_headers
        if loaded.header_routes:  # the router's entry of routes told apart by headers is their switch
            for first, members in loaded.header_routes.items():
                routes[first] = HeaderSwitch(routes[first].name, [(rule, routes[i]) for rule, i in members], first)
            self.routes = tuple(routes)

    def _pool(self, name: str, loaded: LoadedConfig, previous: Gateway | None) -> FunctionPool:
        """A reload keeps the running workers of a function whose definition did not change."""
        spec = loaded.config.functions[name]
        code = (loaded.base_dir / spec.code).resolve() if spec.code else loaded.base_dir
        old = previous.functions.get(name) if previous is not None else None
        if old is not None and old.spec == spec and old.code == code and not old.closed:
            # NOTE: taken out of the previous gateway's table so that closing it leaves this pool running; its
            # routes hold the pool itself, so requests it is still serving are not affected.
            previous.functions.pop(name)  # type: ignore[union-attr]
            return old
        from fastgw.functions.pool import FunctionPool

        return FunctionPool(name, spec, code)

    def start(self) -> None:
        """Called on the serving loop: start each function's warm workers and the upstreams' active checks."""
        for pool in self.functions.values():
            pool.start_warm()
        for up in self.upstreams.values():
            up.start()

    def upstream_status(self) -> dict[str, dict[str, object]]:
        """Every upstream's state as data (`Upstream.status`), for the metrics and the admin API."""
        return {name: up.status() for name, up in self.upstreams.items()}

    def is_trusted(self, peer_ip: str | None) -> bool:
        if not self.trusted_proxies or not peer_ip:
            return False
        try:
            addr = ipaddress.ip_address(peer_ip)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted_proxies)

    def close(self) -> None:
        """Close idle upstream connections; busy ones close when their exchange ends."""
        for up in self.upstreams.values():
            up.close()
        for pool in self.functions.values():
            pool.close()

    async def aclose(self) -> None:
        """`close`, then wait for the function workers to exit (at shutdown, so no process outlives the server)."""
        self.close()
        for pool in self.functions.values():
            await pool.wait_closed()
