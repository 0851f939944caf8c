"""Targets named by DNS names: each address a target of its own, resolved again every `resolve_interval`.

The system resolver (`getaddrinfo`, asynchronous on the serving loop) does not tell record TTLs, so names are
resolved again at the configured interval rather than by TTL. Until the first resolution (and whenever one
fails) a named target stays one target that connects by name, so a name that resolves later, or a resolver that
hiccups, never empties an upstream. `resolve` is the one place the gateway asks DNS: tests give it their own.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable

log = logging.getLogger("fastgw.upstream")

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, in the resolver's order, without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


resolve: Resolver = system_resolve


def is_name(host: str) -> bool:
    """A host that needs resolving (not an IP literal)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return True
    return False
