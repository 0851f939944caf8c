"""`request-size-limit`: refuse request bodies larger than a route allows (413), before they reach the upstream.

A body with a Content-Length is judged by it at once. A chunked body is collected up to the limit first (the
route's plugins then see it whole) and refused as soon as it passes the limit."""

from __future__ import annotations

from typing import Annotated

import msgspec

from fastgw.plugins.base import Context, Plugin, Response


class RequestSizeLimitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_bytes: Annotated[int, msgspec.Meta(ge=0)]


TOO_LARGE = {"message": "Request size limit exceeded"}


class RequestSizeLimit(Plugin):
    name = "request-size-limit"
    priority = 3700
    Config = RequestSizeLimitConfig

    def body_limit(self, conf: RequestSizeLimitConfig) -> int:
        """The gateway collects a chunked body up to this many bytes before the phases run (see Chain)."""
        return conf.max_bytes

    def access(self, ctx: Context, conf: RequestSizeLimitConfig) -> Response | None:
        length = ctx.request.content_length
        if length is not None and length > conf.max_bytes:
            return Response(413, TOO_LARGE)
        return None


PLUGINS = (RequestSizeLimit,)
