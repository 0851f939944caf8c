"""A config compiled for serving: routes with their integrations, upstreams with their pools.

Built once per config load (at start and on reload) and never mutated afterwards: a reload builds a new
`Gateway` and the server swaps one reference. Everything a request needs is precomputed here.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import orjson

from fastgw.config.load import TEMPLATE_REF, LoadedConfig
from fastgw.config.schema import HttpIntegration, LambdaIntegration, MockIntegration
from fastgw.functions.integration import LambdaRoute
from fastgw.functions.pool import FunctionPool
from fastgw.plugins.base import RouteInfo
from fastgw.proxy.pool import Upstream
from fastgw.server.http import DATE, status_line

if TYPE_CHECKING:
    from fastgw.core import Router
    from fastgw.plugins.chain import Chain

KIND_MOCK = 0
KIND_HTTP = 1


class MockRoute:
    """A fixed response; everything but the Date and Connection lines is prebuilt."""

    kind = KIND_MOCK
    __slots__ = ("name", "status", "head", "body", "headers", "chain", "info")

    def __init__(self, name: str, integ: MockIntegration, server_line: bytes) -> None:
        self.name = name
        self.status = integ.status
        headers = {k.lower(): v for k, v in integ.headers.items()}
        if isinstance(integ.body, str):
            body = integ.body.encode()
            headers.setdefault("content-type", "text/plain; charset=utf-8")
        elif integ.body is None and "content-type" not in headers and integ.status in (204, 304):
            body = b""
        else:
            body = orjson.dumps(integ.body)
            headers.setdefault("content-type", "application/json")
        lines = [status_line(integ.status), server_line]
        for k, v in headers.items():
            lines.append(f"{k}: {v}\r\n".encode("latin-1"))
        if integ.status not in (204, 304):
            lines.append(b"content-length: %d\r\n" % len(body))
        self.head = b"".join(lines)
        self.body = body if integ.status not in (204, 304) else b""
        self.headers = list(headers.items())  # for routes whose plugins filter the response
        self.chain: Chain | None = None
        self.info: RouteInfo | None = None

    def render(self, keep_alive: bool, http10: bool, head_only: bool) -> bytes:
        if not keep_alive:
            conn = b"connection: close\r\n"
        elif http10:
            conn = b"connection: keep-alive\r\n"
        else:
            conn = b""
        return b"".join((self.head, DATE.line, conn, b"\r\n", b"" if head_only else self.body))


class HttpRoute:
    """Proxy to an upstream, with the path rewrite rules resolved into a small plan."""

    kind = KIND_HTTP
    __slots__ = ("name", "upstream", "strip_prefix", "path_pieces", "rewrites", "preserve_host", "host", "chain",
                 "info")  # fmt: skip

    def __init__(self, name: str, integ: HttpIntegration, upstream: Upstream) -> None:
        self.name = name
        self.upstream = upstream
        prefix = integ.strip_prefix
        self.strip_prefix = prefix.rstrip("/") if prefix and prefix != "/" else None
        # "/v1/{id}/x" -> ["/v1/", "id", "/x"]: literal pieces at even indices, parameter names at odd ones.
        self.path_pieces: list[str] | None = TEMPLATE_REF.split(integ.path) if integ.path else None
        self.rewrites = self.path_pieces is not None or self.strip_prefix is not None
        self.preserve_host = integ.preserve_host
        self.host = integ.host.encode("latin-1") if integ.host else None
        self.chain: Chain | None = None
        self.info: RouteInfo | None = None

    def upstream_path(self, path: str, params: dict[str, str]) -> str:
        pieces = self.path_pieces
        if pieces is not None:
            return "".join(params[p] if i % 2 else p for i, p in enumerate(pieces))
        prefix = self.strip_prefix
        if prefix is not None and path.startswith(prefix):
            rest = path[len(prefix) :]
            if not rest:
                return "/"
            if rest[0] == "/":
                return rest
        return path


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
        self.upstreams = {name: Upstream(name, up) for name, up in cfg.upstreams.items()}
        self.functions = {name: self._pool(name, loaded, previous) for name in cfg.functions}
        # First path segments of REST API stages: a miss under one answers 403 Missing Authentication Token.
        self.rest_prefixes = loaded.rest_prefixes
        self.paths = loaded.paths  # issue 11: the path policy and API Gateway's answers around the router
        routes: list[MockRoute | HttpRoute | LambdaRoute] = []
        for entry in loaded.entries:
            integ = entry.integration
            if isinstance(integ, MockIntegration):
                routes.append(MockRoute(entry.label, integ, self.server_line))
            elif isinstance(integ, LambdaIntegration):
                routes.append(LambdaRoute(entry, integ, self.functions[integ.function]))
            else:
                routes.append(HttpRoute(entry.label, integ, self.upstreams[integ.upstream]))
        setup = loaded.plugins
        chains = setup.chains if setup is not None else (None,) * len(routes)
        for route, entry, chain in zip(routes, loaded.entries, chains, strict=True):
            route.chain = chain
            route.info = RouteInfo(
                entry.label, entry.route.path, tuple(entry.route.methods), entry.api, entry.stage,
                entry.stage_variables,
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
        return FunctionPool(name, spec, code)

    def start(self) -> None:
        """Called on the serving loop: start each function's warm workers."""
        for pool in self.functions.values():
            pool.start_warm()

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
