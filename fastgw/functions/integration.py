"""The `lambda` integration: collect the body, build the event, invoke the function's pool, turn its return value
into the exchange's response (or into API Gateway's error answer, with the reason in the log)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from fastgw.functions import lambda_proxy as lp
from fastgw.functions.pool import FunctionPool, Outcome, Throttled
from fastgw.pipeline.body import BodyCollector
from fastgw.pipeline.exchange import Route
from fastgw.routing import plain_template

if TYPE_CHECKING:
    from fastgw.config.load import RouteEntry
    from fastgw.config.schema import LambdaIntegration
    from fastgw.pipeline.exchange import Exchange

log = logging.getLogger("fastgw.functions")


class LambdaRoute(Route):
    """A route wired to a function by Lambda proxy integration, everything per-route resolved at load."""

    kind = "lambda"
    __slots__ = ("pool", "version", "rest", "timeout", "resource", "methods", "stage", "stage_variables", "api_id",
                 "target", "binary_types", "catch_all")  # fmt: skip

    def __init__(self, entry: RouteEntry, integ: LambdaIntegration, pool: FunctionPool) -> None:
        super().__init__(entry.label)
        self.pool = pool
        self.version = integ.payload_format or ("1.0" if entry.api_type == "rest" else "2.0")
        self.rest = entry.api_type == "rest"
        self.timeout = integ.timeout
        self.resource = plain_template(entry.route.path)  # as AWS shows it: API Gateway has no constraints
        self.methods = tuple(entry.route.methods)
        self.stage = entry.stage or "$default"
        self.stage_variables = entry.stage_variables or None
        self.api_id = entry.api_id or "local"
        self.target = f"function:{pool.name}"  # what answered, as the access log and the metrics name it
        # A REST API's binary media types decide how bodies cross (lambda_proxy._body, decode_for); an HTTP API (and
        # a route outside APIs) has none and follows its own rule (None).
        self.binary_types = tuple(t.lower() for t in entry.binary_media_types) if self.rest else None
        # An HTTP API's $default route: its events name no path parameters (the router's greedy one is its own).
        self.catch_all = self.resource == lp.DEFAULT_ROUTE

    def event(self, call: lp.Call) -> dict[str, Any]:
        return lp.event_v1(call) if self.version == "1.0" else lp.event_v2(call)

    def response(self, value: Any, accept: bytes | None = None) -> tuple[int, lp.Headers, bytes]:
        """The function's answer as the client gets it; `accept` (the request's Accept header) decides, on a REST
        API, whether a base64 body is decoded (lambda_proxy.decode_for)."""
        decode = lp.decode_for(self.binary_types, accept)
        return lp.response_v1(value, self.rest, decode) if self.version == "1.0" else lp.response_v2(value, decode)

    def error(self) -> tuple[int, bytes]:
        return lp.REST_ERROR if self.rest else lp.HTTP_ERROR

    def start(self, ex: Exchange) -> None:
        """Invoke the function with the request once its body is complete (the event carries the whole body)."""
        req = ex.req
        if req.complete:
            body = b"".join(req.body)
            req.body = []
            self._invoke_soon(ex, body)
            return
        ex.body_sink = BodyCollector(ex, lambda chunks: self._invoke_soon(ex, b"".join(chunks)))
        ex.body_drained()  # the collector holds what was buffered; keep reading the rest

    def _invoke_soon(self, ex: Exchange, body: bytes) -> None:
        ex.state.loop.create_task(invoke(ex, self, body))


async def invoke(ex: Exchange, route: LambdaRoute, body: bytes) -> None:
    """Answer the exchange from the route's function; whatever goes wrong, the client gets an answer."""
    try:
        await _invoke(ex, route, body)
    except Exception:
        req = ex.req
        log.exception("internal error while invoking %s for %s %s", route.pool.name, req.method, req.path)
        ex.fail(500, "Internal server error", "internal error (logged above)")


async def _invoke(ex: Exchange, route: LambdaRoute, body: bytes) -> None:
    req = ex.req
    request_id = str(uuid.uuid4())
    call = lp.Call(
        method=req.method,
        path=req.path,
        query=req.query,
        headers=req.headers,
        body=body,
        source_ip=ex.peer.ip,
        http10=req.http10,
        request_id=request_id,
        time_ns=time.time_ns(),
        resource=route.resource,
        methods=route.methods,
        params={} if route.catch_all else ex.params,
        stage=route.stage,
        stage_variables=route.stage_variables,
        api_id=route.api_id,
        host=req.host,
        authorizer=_authorizer(ex, route.version == "2.0"),
        jwt=_jwt(ex),
        binary_types=route.binary_types,
    )
    trace = ex.state.inspector
    try:
        event = route.event(call)
    except Exception:
        log.exception("%s %s route=%s: could not build the event", req.method, req.path, route.name)
        _answer_error(ex, route.error(), request_id)
        return
    if trace is not None:
        trace.event = event
        trace.request_id = request_id
    task = ex.state.loop.create_task(route.pool.invoke(request_id, event))
    ex.upstream = route.target
    ex.upstream_at = sent_at = time.perf_counter()
    ex.upstream_s = 0.0
    try:
        # The invocation goes on past the integration timeout (as a Lambda would); only the client stops waiting.
        outcome: Outcome = await asyncio.wait_for(asyncio.shield(task), route.timeout)
    except asyncio.TimeoutError:
        ex.upstream_s = time.perf_counter() - sent_at
        log.warning("%s %s route=%s request=%s: no answer within the integration timeout (%.1fs)",
                    req.method, req.path, route.name, request_id, route.timeout)  # fmt: skip
        task.add_done_callback(_collect)
        _answer_error(ex, lp.timeout_error(route.rest), request_id)  # REST 504, HTTP API 503
        return
    except Throttled:
        ex.upstream_s = time.perf_counter() - sent_at
        log.warning("%s %s route=%s: function %s is at its concurrency and its queue is full",
                    req.method, req.path, route.name, route.pool.name)  # fmt: skip
        _answer_error(ex, lp.THROTTLED_ERROR, request_id)
        return
    except Exception as exc:  # noqa: BLE001 - a worker that cannot start: the client gets the function error
        ex.upstream_s = time.perf_counter() - sent_at
        log.error("%s %s route=%s: cannot invoke %s: %s", req.method, req.path, route.name, route.pool.name, exc)
        if trace is not None:
            trace.reason = f"cannot invoke {route.pool.name}: {exc}"
        _answer_error(ex, route.error(), request_id)
        return
    ex.upstream_s = time.perf_counter() - sent_at
    if trace is not None:
        trace.outcome = outcome
    if not outcome.ok:
        err = outcome.error or {}
        what = f"{err.get('errorType', 'Error')}: {err.get('errorMessage', '')}"
        log.error("%s %s route=%s request=%s: function %s failed: %s%s",
                  req.method, req.path, route.name, request_id, route.pool.name, what, _stack(err))  # fmt: skip
        if trace is not None:
            trace.reason = f"function error {what}"
        _answer_error(ex, route.error(), request_id)
        return
    try:
        accept = next((v for k, v in req.headers if k == b"accept"), None) if route.binary_types is not None else None
        status, headers, payload = route.response(outcome.value, accept)
    except lp.MalformedResponse as exc:
        log.error("%s %s route=%s request=%s: malformed Lambda proxy response from %s: %s",
                  req.method, req.path, route.name, request_id, route.pool.name, exc)  # fmt: skip
        if trace is not None:
            trace.reason = f"malformed Lambda proxy response: {exc}"
        _answer_error(ex, route.error(), request_id)
        return
    if ex.gone:
        return
    headers.append(("x-amzn-RequestId", request_id))
    ex.respond(status, headers, payload)


def _authorizer(ex: Exchange, v2: bool) -> dict[str, Any] | None:
    ctx = ex.ctx
    if ctx is None:
        return None
    # A Lambda authorizer's answer, as API Gateway passes it: (REST / 1.0 form, HTTP API 2.0 `lambda` form).
    found = ctx.vars.get("lambda_authorizer")
    if found is not None:
        return found[1] if v2 else found[0]
    consumer = ctx.consumer
    if consumer is None:
        return None
    return {
        **consumer.custom,
        "principalId": consumer.name,
        "consumer": consumer.name,
        "groups": ",".join(consumer.groups),
    }


def _jwt(ex: Exchange) -> tuple[dict[str, Any], list[str]] | None:
    ctx = ex.ctx
    if ctx is None or "jwt_claims" not in ctx.vars:
        return None
    return ctx.vars["jwt_claims"], ctx.vars.get("jwt_scopes") or []


def _stack(err: dict[str, Any]) -> str:
    """The error's stack as lines under the log message: Python's `stackTrace` or Node's `trace`."""
    frames = err.get("stackTrace") or err.get("trace") or []
    if not isinstance(frames, list) or not frames:
        return ""
    return "\n" + "\n".join(str(f).rstrip("\n") for f in frames)


def _collect(task: asyncio.Task[Outcome]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so a late failure is not reported as never retrieved


def _answer_error(ex: Exchange, error: tuple[int, bytes], request_id: str) -> None:
    if ex.gone:
        return
    status, body = error
    ex.respond(status, [("content-type", "application/json"), ("x-amzn-RequestId", request_id)], body)
