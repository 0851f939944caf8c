"""`ip-restriction`: allow or deny clients by address (CIDR lists)."""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec

from fastgw.core import IpStep
from fastgw.plugins.base import Context, Plugin, Response

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpRestrictionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    allow: list[str] = msgspec.field(default_factory=list)  # when set, only these may pass
    deny: list[str] = msgspec.field(default_factory=list)  # these never pass (checked first)
    status: int = 403
    message: str = "Your IP address is not allowed"


class Prepared(msgspec.Struct, frozen=True):
    allow: tuple[Network, ...]
    deny: tuple[Network, ...]
    status: int
    body: dict[str, str]


class IpRestriction(Plugin):
    """The client address is the connection's peer; behind a proxy listed in `server.trusted_proxies` it is
    the right-most address of X-Forwarded-For that is not itself a trusted proxy."""

    name = "ip-restriction"
    priority = 3900
    Config = IpRestrictionConfig

    def prepare(self, conf: IpRestrictionConfig) -> Prepared:
        def nets(values: list[str], key: str) -> tuple[Network, ...]:
            out = []
            for v in values:
                try:
                    out.append(ipaddress.ip_network(v, strict=False))
                except ValueError:
                    raise ValueError(f"{key}: {v!r} is not an IP address or CIDR") from None
            return tuple(out)

        if not conf.allow and not conf.deny:
            raise ValueError("give at least one of allow or deny")
        return Prepared(nets(conf.allow, "allow"), nets(conf.deny, "deny"), conf.status, {"message": conf.message})

    def step(self, phase: str, conf: Prepared) -> Any:
        def v4(nets: tuple[Network, ...]) -> tuple[tuple[int, int], ...]:
            # An IPv6 network never holds an IPv4 address (`ipaddress` compares versions first).
            return tuple((int(n.network_address), int(n.netmask)) for n in nets if n.version == 4)

        return IpStep(v4(conf.allow), v4(conf.deny), bool(conf.allow), Response(conf.status, conf.body), conf,
                      self.access)  # fmt: skip

    def access(self, ctx: Context, conf: Prepared) -> Response | None:
        try:
            addr: Any = ipaddress.ip_address(ctx.request.client_ip)
        except ValueError:
            return Response(conf.status, conf.body)
        if any(addr in n for n in conf.deny) or (conf.allow and not any(addr in n for n in conf.allow)):
            return Response(conf.status, conf.body)
        return None


PLUGINS = (IpRestriction,)
