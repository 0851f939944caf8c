"""`cors`: answers preflight requests at the gateway and adds the CORS headers to actual responses."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from fastgw.core import CorsFilterStep, CorsStep
from fastgw.plugins.base import Context, Plugin, Response


class CorsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Exact origins ("https://app.example.com"), "*", or regular expressions prefixed with "~"
    # ("~^https://[a-z]+\\.example\\.com$").
    origins: list[str] = msgspec.field(default_factory=lambda: ["*"])
    methods: list[str] = msgspec.field(default_factory=lambda: ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"])
    headers: list[str] | None = None  # allowed request headers; None: echo what the preflight asks for
    exposed_headers: list[str] = msgspec.field(default_factory=list)
    credentials: bool = False
    max_age: int | None = None  # seconds a browser may cache the preflight answer
    # Let preflight requests through to the upstream instead of answering them here.
    preflight_continue: bool = False


class Prepared(msgspec.Struct, frozen=True):
    any_origin: bool
    exact: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    methods: tuple[str, ...]
    headers: str | None
    exposed: str | None
    credentials: bool
    max_age: str | None
    preflight_continue: bool


class Cors(Plugin):
    name = "cors"
    priority = 3800
    Config = CorsConfig

    def prepare(self, conf: CorsConfig) -> Prepared:
        patterns = []
        for o in conf.origins:
            if o.startswith("~"):
                try:
                    patterns.append(re.compile(o[1:]))
                except re.error as exc:
                    raise ValueError(f"origins: {o!r} is not a valid regular expression: {exc}") from None
        any_origin = "*" in conf.origins
        if any_origin and conf.credentials:
            raise ValueError("origins '*' cannot be used with credentials: true (browsers refuse it); list them")
        return Prepared(
            any_origin=any_origin,
            exact=frozenset(o for o in conf.origins if not o.startswith("~") and o != "*"),
            patterns=tuple(patterns),
            methods=tuple(dict.fromkeys(m.upper() for m in conf.methods)),
            headers=", ".join(conf.headers) if conf.headers is not None else None,
            exposed=", ".join(conf.exposed_headers) or None,
            credentials=conf.credentials,
            max_age=str(conf.max_age) if conf.max_age is not None else None,
            preflight_continue=conf.preflight_continue,
        )

    def step(self, phase: str, conf: Prepared) -> Any:
        # What every request that is not a preflight, or has no Origin, is spared: the phase's frame.
        if phase == "rewrite":
            return CorsStep(conf, self.rewrite)
        return CorsFilterStep(conf, self.header_filter)

    def _allowed(self, origin: str, conf: Prepared) -> bool:
        return conf.any_origin or origin in conf.exact or any(p.fullmatch(origin) for p in conf.patterns)

    def rewrite(self, ctx: Context, conf: Prepared) -> Response | None:
        req = ctx.request
        origin = req.header("origin")
        if req.method != "OPTIONS" or origin is None or req.header("access-control-request-method") is None:
            return None
        if conf.preflight_continue:
            return None
        headers = [("vary", "Origin")]
        if self._allowed(origin, conf):
            headers.append(("access-control-allow-origin", "*" if conf.any_origin else origin))
            # A route's preflight names only what that route serves: `[GET, PUT]` is not told to try DELETE.
            info = ctx.route
            served = info.methods if info is not None and "ANY" not in info.methods else None
            methods = ", ".join(m for m in conf.methods if served is None or m in served)
            if methods:
                headers.append(("access-control-allow-methods", methods))
            asked = req.header("access-control-request-headers")
            allow_headers = conf.headers if conf.headers is not None else asked
            if allow_headers:
                headers.append(("access-control-allow-headers", allow_headers))
            if conf.credentials:
                headers.append(("access-control-allow-credentials", "true"))
            if conf.max_age is not None:
                headers.append(("access-control-max-age", conf.max_age))
        ctx.vars["cors_preflight"] = True
        return Response(204, headers=headers)

    def header_filter(self, ctx: Context, conf: Prepared) -> None:
        resp = ctx.response
        origin = ctx.request.header("origin")
        if resp is None or origin is None or ctx.vars.get("cors_preflight"):
            return
        if not conf.any_origin:
            resp.headers.add("vary", "Origin")
        if not self._allowed(origin, conf):
            return
        resp.headers.set("access-control-allow-origin", "*" if conf.any_origin else origin)
        if conf.credentials:
            resp.headers.set("access-control-allow-credentials", "true")
        if conf.exposed is not None:
            resp.headers.set("access-control-expose-headers", conf.exposed)


PLUGINS = (Cors,)
