"""Running the response-side phases besides `header_filter` (the core's `filter_head`, over every response head):
`body_filter` over a whole body, and `log` after the response is out. The exchange (fastgw/pipeline/exchange.py)
decides when each runs; the request-side phases are the core's `run_phases`."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from typing import TYPE_CHECKING, Any

from fastgw.core import Headers, PluginFailed, ResponseHead

if TYPE_CHECKING:
    from fastgw.plugins.base import Context

log = logging.getLogger("fastgw.plugins")


def filter_body(ctx: Context, body: bytes) -> bytes:
    """Run the body_filter phases over a whole response body (after `filter_head` set `ctx.response`). Raises
    PluginFailed."""
    head = ctx.response
    assert head is not None
    head.body = body
    _run_filters(ctx, ctx.chain.body_filter)
    if not isinstance(head.body, bytes):
        raise PluginFailed(ctx.chain.body_filter[-1][3]) from TypeError("ctx.response.body must stay bytes")
    return head.body


def _run_filters(ctx: Context, phases: tuple[Any, ...]) -> None:
    for fn, conf, _, name in phases:
        try:
            fn(ctx, conf)
        except Exception as exc:
            raise PluginFailed(name) from exc


def run_log(ctx: Context, status: int) -> None:
    """The log phases, after the response went out (scheduled off the request path). Failures are logged."""
    if ctx.response is None:
        ctx.response = ResponseHead(status, Headers())
    for fn, conf, _, name in ctx.chain.log:
        try:
            result = fn(ctx, conf)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                task.add_done_callback(functools.partial(_log_task_done, name=name, ctx=ctx))
        except Exception:
            log.exception("plugin %s failed in its log phase (route %s)", name, ctx.route.name)


def _log_task_done(task: asyncio.Future[Any], name: str, ctx: Context) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("plugin %s failed in its log phase (route %s)", name, ctx.route.name, exc_info=task.exception())
