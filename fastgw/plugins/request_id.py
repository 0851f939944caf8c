"""`request-id`: every request gets an id, passed upstream, echoed to the client and written in the access log."""

from __future__ import annotations

import itertools
import os
import re
import uuid
from typing import Annotated, Literal

import msgspec

from fastgw.plugins.base import Context, Plugin

# An incoming id is kept only if it looks like one (no spaces, bounded): it ends up in logs and upstream headers.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:/+=#-]{1,200}$")


_base = str(uuid.uuid4())
_counter = itertools.count(1)


def _reseed() -> None:
    """In a forked worker: a base of its own, so ids never collide across the workers of one gateway."""
    global _base, _counter
    _base = str(uuid.uuid4())
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


class RequestIdConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    header_name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9-]+$")] = "X-Request-Id"
    # Keep the id the client (or a proxy in front) sent, when it is well-formed; otherwise make a new one.
    keep_incoming: bool = True
    echo_downstream: bool = True
    # "uuid#counter": a random UUID per worker process and a counter (unique, and cheap: no random bytes per
    # request); "uuid": a fresh random UUID per request.
    generator: Literal["uuid#counter", "uuid"] = "uuid#counter"


class RequestId(Plugin):
    name = "request-id"
    priority = 3950
    Config = RequestIdConfig

    def rewrite(self, ctx: Context, conf: RequestIdConfig) -> None:
        rid = ctx.request.header(conf.header_name) if conf.keep_incoming else None
        if rid is None or not _SAFE_ID.match(rid):
            rid = f"{_base}#{next(_counter)}" if conf.generator == "uuid#counter" else str(uuid.uuid4())
        ctx.vars["request_id"] = rid
        ctx.upstream_request.headers.set(conf.header_name, rid)

    def header_filter(self, ctx: Context, conf: RequestIdConfig) -> None:
        rid = ctx.vars.get("request_id")
        if conf.echo_downstream and rid and ctx.response is not None:
            ctx.response.headers.set(conf.header_name, rid)


PLUGINS = (RequestId,)
