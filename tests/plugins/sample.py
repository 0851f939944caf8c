"""Plugins used by the tests of the plugin API (loaded through `plugin_modules`, as a user's would be)."""

from __future__ import annotations

import asyncio

import msgspec

from fastgw.plugins.base import Context, Plugin, Response

LOGGED: list[tuple[str, int, str | None]] = []


class TraceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tag: str = "t"
    deny_path: str | None = None


class Tracer(Plugin):
    """Records its order in X-Trace upstream and in the response; refuses `deny_path`; logs every request."""

    name = "tracer"
    priority = 700
    Config = TraceConfig

    def rewrite(self, ctx: Context, conf: TraceConfig) -> None:
        ctx.vars.setdefault("trace", []).append(f"rewrite:{conf.tag}")

    def access(self, ctx: Context, conf: TraceConfig) -> Response | None:
        ctx.vars["trace"].append(f"access:{conf.tag}")
        if conf.deny_path is not None and ctx.request.path == conf.deny_path:
            return Response(418, {"message": "denied by tracer", "trace": ctx.vars["trace"]})
        ctx.upstream_request.headers.set("x-trace", ",".join(ctx.vars["trace"]))
        return None

    def header_filter(self, ctx: Context, conf: TraceConfig) -> None:
        assert ctx.response is not None
        ctx.response.headers.add("x-trace-response", conf.tag)

    def log(self, ctx: Context, conf: TraceConfig) -> None:
        assert ctx.response is not None
        LOGGED.append((conf.tag, ctx.response.status, ctx.vars.get("request_id")))


class Second(Tracer):
    name = "second"
    priority = 600


class Slow(Plugin):
    """An async access phase: waits, then lets the request through with a header."""

    name = "slow"
    priority = 650

    async def access(self, ctx: Context, conf: object) -> None:
        await asyncio.sleep(0.01)
        ctx.upstream_request.headers.set("x-slow", "waited")


class Boom(Plugin):
    name = "boom"

    class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
        where: str = "access"

    def access(self, ctx: Context, conf: Config) -> None:
        if conf.where == "access":
            raise RuntimeError("boom in access")

    def uses(self, phase: str, conf: Config) -> bool:
        return phase == "access" or phase == conf.where

    def header_filter(self, ctx: Context, conf: Config) -> None:
        raise RuntimeError("boom in header_filter")

    def body_filter(self, ctx: Context, conf: Config) -> None:
        raise RuntimeError("boom in body_filter")


class Misspelled(Plugin):
    name = "misspelled"

    def acess(self, ctx: Context, conf: object) -> None:
        pass

    def access(self, ctx: Context, conf: object) -> None:
        pass


class BadSignature(Plugin):
    name = "bad-signature"

    def access(self, ctx: Context) -> None:
        pass


class NoPhases(Plugin):
    name = "no-phases"


class Duplicate(Plugin):
    name = "request-id"

    def access(self, ctx: Context, conf: object) -> None:
        pass


SEEN_VARS: list[tuple[str | None, str | None]] = []


class VarsProbe(Plugin):
    """Logs what the cache and the limiters published for the access log and metrics (it runs after them)."""

    name = "vars-probe"
    priority = 10

    def log(self, ctx: Context, conf: object) -> None:
        SEEN_VARS.append((ctx.vars.get("cache_status"), ctx.vars.get("rate_limit")))
