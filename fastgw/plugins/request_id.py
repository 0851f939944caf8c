"""`request-id`: every request gets an id, passed upstream, echoed to the client and written in the access log."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

import msgspec

from fastgw.core import RequestIdStep, next_request_id
from fastgw.core.phases import FRAMING
from fastgw.plugins.base import Context, Plugin

# An incoming id is kept only if it looks like one (no spaces, bounded): it ends up in logs and upstream headers.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:/+=#-]{1,200}$")


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

    def prepare(self, conf: RequestIdConfig) -> tuple[str, bool, bool, bool]:
        # PERF: the phases unpack one tuple instead of reading four attributes of the config per request.
        return (conf.header_name, conf.keep_incoming, conf.generator == "uuid#counter", conf.echo_downstream)

    def step(self, phase: str, conf: tuple[str, bool, bool, bool]) -> Any:
        name, keep, counted, echo = conf
        if not counted or (echo and name.lower().encode("latin-1") in FRAMING):
            return None  # a fresh UUID per request, or a name the response cannot take (the phase says why)
        return RequestIdStep(name, keep, echo)

    def rewrite(self, ctx: Context, conf: tuple[str, bool, bool, bool]) -> None:
        name, keep, counted, _ = conf
        rid = ctx.request.header(name) if keep else None
        if rid is None or not _SAFE_ID.match(rid):
            rid = next_request_id() if counted else str(uuid.uuid4())
        ctx.vars["request_id"] = rid
        ctx.set_upstream_header(name, rid)
        if conf[3]:
            ctx.set_response_header(name, rid)  # on whatever response comes: proxied, made here, an error


PLUGINS = (RequestId,)
