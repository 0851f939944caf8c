"""A plugin for the observability tests (loaded through `plugin_modules`): publishes `cache_status` and
`rate_limit` in ctx.vars as the proxy-cache and rate-limit plugins do, from the request's `x-cache` and `x-limit`
headers, and refuses with 429 when told to, so the log and the metrics can be checked without those plugins."""

from __future__ import annotations

import msgspec

from fastgw.plugins.base import Context, Plugin, Response


class PublishConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class Publish(Plugin):
    name = "publish-vars"
    priority = 1500
    Config = PublishConfig

    def access(self, ctx: Context, conf: PublishConfig) -> Response | None:
        cache = ctx.request.headers.get("x-cache")
        if cache is not None:
            ctx.vars["cache_status"] = cache
        limit = ctx.request.headers.get("x-limit")
        if limit is not None:
            ctx.vars["rate_limit"] = limit
            if limit == "refused":
                return Response(429, {"message": "Too Many Requests"})
        return None
