"""`tenant`: every request must name a known tenant in a header; the upstream learns the tenant's plan.

An example of a third-party fastgw plugin: a name, a priority, a msgspec Config checked when the config loads,
work done once in `prepare`, and the phases it needs (`access` and `header_filter`).
"""

from __future__ import annotations

import msgspec

from fastgw.plugins.base import Context, Plugin, Response


class TenantConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenants: dict[str, str]  # tenant id -> plan
    header: str = "X-Tenant"


class Prepared(msgspec.Struct, frozen=True):
    header: str
    plans: dict[str, str]


class Tenant(Plugin):
    name = "tenant"
    priority = 900  # after authentication (2000-2999), before transformation (1000-1999 runs later)
    Config = TenantConfig

    def prepare(self, conf: TenantConfig) -> Prepared:
        if not conf.tenants:
            raise ValueError("tenants: name at least one tenant")
        return Prepared(conf.header, {k.lower(): v for k, v in conf.tenants.items()})

    def access(self, ctx: Context, conf: Prepared) -> Response | None:
        tenant = (ctx.request.header(conf.header) or "").strip().lower()
        plan = conf.plans.get(tenant)
        if plan is None:
            return Response(403, {"message": "Unknown tenant"})
        ctx.vars["tenant"] = tenant
        ctx.upstream_request.headers.set("X-Tenant-Plan", plan)
        return None

    def header_filter(self, ctx: Context, conf: Prepared) -> None:
        tenant = ctx.vars.get("tenant")
        if tenant and ctx.response is not None:
            ctx.response.headers.set("X-Served-Tenant", tenant)
