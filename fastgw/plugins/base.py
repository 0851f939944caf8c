"""The plugin API: what a plugin class looks like, and what its phases see (`Context`) and return (`Response`).

A plugin is a class with a `name`, a `priority` (higher runs first), a nested msgspec `Config`, and any subset of
the phases `rewrite`, `access`, `header_filter`, `body_filter`, `log`, each `def phase(self, ctx, conf)` (or
`async def`). A phase returns None to go on, or (`rewrite` and `access` only) a `Response` to answer at once.
The gateway checks a plugin class once, when it is registered; the phase chains of each route are built when the
config loads. See docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import msgspec
import orjson

# What phases see: compiled (fastgw._core) or the pure twin (fastgw.core.phases), as fastgw.core chose.
from fastgw.core import ClientRequest, Context, Headers, ResponseHead, UpstreamRequest, header_key

if TYPE_CHECKING:
    from fastgw.core import Request
    from fastgw.plugins.consumers import Consumer

__all__ = [
    "ClientRequest",
    "Context",
    "Early",
    "EmptyConfig",
    "Headers",
    "Plugin",
    "Response",
    "ResponseHead",
    "RouteInfo",
    "UpstreamRequest",
    "header_key",
]

PHASES = ("rewrite", "access", "header_filter", "body_filter", "log")


class Plugin:
    """Base class of plugins. Subclasses set `name`, `priority` and `Config`, and define phases."""

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 500  # third-party plugins run in the 1-999 band unless they say otherwise
    Config: ClassVar[type[msgspec.Struct]]
    # Credentials consumers may hold for this plugin (`consumers.NAME.credentials.<plugin name>`): a Struct type.
    Credential: ClassVar[type[msgspec.Struct] | None] = None

    def prepare(self, conf: Any) -> Any:
        """Called once per configuration of the plugin when the config loads; what it returns is the `conf`
        the phases receive (precompile patterns, hash keys... here, never per request)."""
        return conf

    def credentials(self, creds: list[tuple[Consumer, Any]]) -> None:
        """Called once at load with every consumer's credentials for this plugin (index them here)."""

    def front(self, conf: Any) -> Callable[[Early, str], bool] | None:
        """Called once per configuration (prepared) when the plugin is the only one of a route's chain: a callable
        that sees each request before a context exists, `front(ex, client_ip)`, and returns True when it took
        the request over (answered it, or started the integration itself), False to let the chain run as usual.
        For the few plugins whose common case is cheaper than the phase machinery (a cache hit, one local
        limit); None (the default): the chain always runs."""
        return None

    def step(self, phase: str, conf: Any) -> Any:
        """Called once per phase the class defines and configuration (prepared) when a chain is built: a compiled
        step of the core (`fastgw.core.steps`: `KeyAuthStep`, `HeaderStep`...) that stands in for this phase, run
        by the phase loop without a Python frame, or None (the default): the phase runs as it is. The built-in
        plugins give one for the configurations their steps cover; a step hands what it does not cover to the
        phase itself, so both always give the same answers (tests/property/test_steps_twins.py)."""
        return None

    def uses(self, phase: str, conf: Any) -> bool:
        """Called once per phase the class defines and configuration (prepared): False leaves the phase out of
        the chains of that configuration (a body_filter that is not needed makes the gateway hold bodies)."""
        return True


class Early(Protocol):
    """What a plugin's `front` sees of the exchange (`fastgw.pipeline.exchange.Exchange`, which the plugins may not
    import)."""

    req: Request
    route: Any  # the served route: `.info` is its RouteInfo, `.chain` its chain
    params: Any
    ctx: Context | None
    gw: Any  # the gateway the request started on (`server_line`)
    leg: Any  # the client connection: `.state` is the worker (`access_log`, `loop`)
    write: Callable[[bytes], None]  # where the response's bytes go

    def send_ready(self, status: int, parts: list[bytes], body: bytes) -> None: ...
    def respond(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...
    def integrate(self) -> None: ...


class EmptyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


Plugin.Config = EmptyConfig


class RouteInfo:
    """What a plugin may know of the route that matched."""

    __slots__ = ("name", "path", "methods", "api", "stage", "stage_variables", "api_id", "functions", "prefix",
                 "resource", "arn_base")  # fmt: skip

    def __init__(
        self,
        name: str,
        path: str,
        methods: tuple[str, ...],
        api: str | None,
        stage: str | None,
        stage_variables: dict[str, str] | None,
        api_id: str = "local",
        functions: Mapping[str, Any] | None = None,
        prefix: str = "",
        resource: str | None = None,
        arn_base: str = "",
    ) -> None:
        self.name = name
        self.path = path  # the template, without the stage
        self.methods = methods
        self.api = api
        self.stage = stage
        self.stage_variables = stage_variables or {}
        self.api_id = api_id  # the API's id as its ARNs and events name it ("local" outside any API)
        # The function pools (fastgw.functions.pool.FunctionPool) of the gateway serving the route, by name: what a
        # plugin that invokes functions (lambda-authorizer) invokes, through the same workers the routes use.
        self.functions: Mapping[str, Any] = functions or {}
        # The stage prefix the route is served under ("/Prod"), or "" (an API served at the root, as `sam local`
        # serves a template, or a $default stage): what a request's path starts with that is not the resource's.
        self.prefix = prefix
        self.resource = path if resource is None else resource  # the template as AWS shows it (no constraints)
        # `arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/`: the fixed part of the route's method ARNs.
        self.arn_base = arn_base


class Response:
    """A phase's answer: `Response(401, {"message": "Unauthorized"}, headers={"WWW-Authenticate": "Basic"})`.

    A dict or list body is sent as JSON, a str as UTF-8 text, bytes as they are; `content_type` overrides.

    `refresh`: None (the request ends with this answer), or `ctx.vars` for a background run of the rest of the
    request (the phases after this one, the integration, the response filters) whose response reaches no client:
    how proxy-cache refreshes the stale entry it answered with (stale-while-revalidate)."""

    __slots__ = ("status", "headers", "body", "refresh")

    def __init__(
        self,
        status: int = 200,
        body: Any = b"",
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> None:
        if not 200 <= status <= 599:
            raise ValueError(f"a plugin's response status must be 200-599, got {status}")
        self.status = status
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or ())
        if isinstance(body, (bytes, bytearray)):
            data, ctype = bytes(body), "application/octet-stream"
        elif isinstance(body, str):
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = orjson.dumps(body), "application/json"
        self.body = data
        if content_type is not None:
            ctype = content_type
        if data and not any(k.lower() == "content-type" for k, _ in items):
            items.append(("content-type", ctype))
        self.headers = items
        self.refresh: dict[str, Any] | None = None
