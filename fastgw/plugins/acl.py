"""`acl`: allow or deny authenticated consumers by group. Runs after the auth plugins (lower priority)."""

from __future__ import annotations

from typing import Any

import msgspec

from fastgw.core import AclStep
from fastgw.plugins.base import Context, Plugin, Response

FORBIDDEN = {"message": "You cannot consume this service"}
UNAUTHORIZED = {"message": "Unauthorized"}


class AclConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    allow: list[str] = msgspec.field(default_factory=list)  # when set, a consumer needs one of these groups
    deny: list[str] = msgspec.field(default_factory=list)  # a consumer in any of these is refused


class Acl(Plugin):
    name = "acl"
    priority = 2000
    Config = AclConfig

    def prepare(self, conf: AclConfig) -> Any:
        if not conf.allow and not conf.deny:
            raise ValueError("give at least one of allow or deny")
        return (frozenset(conf.allow), frozenset(conf.deny))

    def step(self, phase: str, prepared: Any) -> Any:
        # The answers made once: the exchange only reads a phase's Response.
        return AclStep(prepared[0], prepared[1], Response(401, UNAUTHORIZED), Response(403, FORBIDDEN))

    def access(self, ctx: Context, prepared: Any) -> Response | None:
        allow, deny = prepared
        consumer = ctx.consumer
        if consumer is None:
            return Response(401, UNAUTHORIZED)  # no auth plugin identified anyone on this route
        groups = consumer.groups
        if any(g in deny for g in groups) or (allow and not any(g in allow for g in groups)):
            return Response(403, FORBIDDEN)
        return None


PLUGINS = (Acl,)
