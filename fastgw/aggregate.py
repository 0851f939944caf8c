"""The `aggregate` integration: call several backends, merge their JSON answers into one.

Each backend call is an exchange of its own on the backend's `http` route (so balancers, pools, retries, health
and timeouts all apply), whose destination is a collector instead of a client: `Collector` stands where the
client connection would (the exchange's `ClientLeg`), keeps what would have been written, and resolves a future
when the exchange is done. The calls run in parallel; a call whose path uses an earlier backend's answer
(`{resp0.user.id}`) waits for that one first.

Status policy: every backend answered 2xx with JSON -> 200 and `X-Fastgw-Completed: true`; some failed (another
status, no JSON, a timeout, an error) -> what succeeded, with `partial_status` (200 by default, or 502) and
`X-Fastgw-Completed: false`; all failed -> 502 `{"message": "Bad Gateway"}`. With `return_error_details: KEY` the
merged answer (or the 502) also carries, under KEY, each failed backend's status and why (KrakenD's option of that
name). With a single backend its answer passes through as it came: status, headers and body. The client's request
headers go to each backend (the hop-by-hop ones and the body's framing excepted); its body goes, whole, to the
backends whose `method` carries one (POST, PUT, PATCH; GET by default). The merged answer is a response made in the
gateway, so the route's plugins filter it as any other.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from httptools import HttpParserError, HttpResponseParser

from fastgw.config.checks import RESPONSE_REF
from fastgw.config.load import RouteEntry
from fastgw.config.schema import HttpIntegration, LambdaIntegration
from fastgw.core import Request
from fastgw.functions.integration import LambdaRoute
from fastgw.pipeline.body import BodyCollector
from fastgw.pipeline.exchange import Exchange, Route, Worker
from fastgw.proxy.route import HttpRoute

if TYPE_CHECKING:
    from fastgw.config.schema import AggregateBackend, AggregateIntegration
    from fastgw.functions.pool import FunctionPool
    from fastgw.pipeline.leg import Peer
    from fastgw.proxy.pool import Upstream

log = logging.getLogger("fastgw.aggregate")

_NOT_FORWARDED = frozenset({b"content-length", b"transfer-encoding", b"expect", b"accept-encoding"})
_NOT_PASSED = frozenset({"content-length", "transfer-encoding", "date", "connection", "keep-alive"})
_BAD_GATEWAY = {"message": "Bad Gateway"}
# The methods whose backend calls carry the client's body (DELETE and OPTIONS bodies have no defined meaning).
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_DETAIL_BODY_MAX = 4096  # bytes of a failed backend's body shown in the error details


class Collector:
    """The destination of one backend call (a `ClientLeg` for its exchange): collects the response bytes."""

    __slots__ = ("state", "peer", "closed", "write_paused", "exchange", "chunks", "future", "cut", "transport")

    def __init__(self, state: Worker, peer: Peer, future: asyncio.Future[None]) -> None:
        self.state = state
        self.peer = peer
        self.closed = False
        self.write_paused = False
        self.exchange: Exchange | None = None
        self.chunks: list[bytes] = []
        self.future = future
        self.cut = False  # the exchange ended after its head: the answer is incomplete
        self.transport = None  # no connection to hand over: a backend call never becomes a tunnel

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def abort(self) -> None:
        self.cut = True
        self._resolve()

    def request_done(self, req: Request) -> None:
        self._resolve()

    def continue_sent(self) -> None:
        pass  # a backend call's body is whole

    def body_drained(self, req: Request) -> None:
        req.body = []
        req.buffered = 0

    def pause_reading_for(self, reason: int) -> None:
        pass  # the backend call has no body to pause

    def resume_reading_for(self, reason: int) -> None:
        pass

    def _resolve(self) -> None:
        self.closed = True
        if not self.future.done():
            self.future.set_result(None)


class Answer:
    """A backend's response, parsed from what its collector got."""

    __slots__ = ("status", "headers", "body", "_name")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self._name = ""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body += body

    @classmethod
    def parse(cls, data: bytes) -> Answer:
        answer = cls()
        parser = HttpResponseParser(answer)
        parser.feed_data(data)
        answer.status = parser.get_status_code()
        return answer


class Failed(Exception):
    pass


class Miss:
    """A backend call that failed: the status it answered (504 when it timed out, 502 when there was no answer to
    read) and why; the answer, when there was one."""

    __slots__ = ("status", "why", "answer")

    def __init__(self, why: str, status: int = 502, answer: Answer | None = None) -> None:
        self.why = why
        self.status = status
        self.answer = answer

    def detail(self) -> dict[str, Any]:
        """What `return_error_details` shows of it: status, message and, when it answered, its body (JSON as
        JSON; other bodies as text, cut at 4 KiB)."""
        out: dict[str, Any] = {"status": self.status, "message": self.why}
        if self.answer is not None and self.answer.body:
            raw = bytes(self.answer.body)
            try:
                out["body"] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                out["body"] = raw[:_DETAIL_BODY_MAX].decode("utf-8", "replace")
        return out


class Backend:
    """One backend of an aggregate route, resolved at load: its http route and its path template."""

    __slots__ = ("index", "conf", "route", "pieces", "needs", "name", "method", "method_b", "with_body")

    def __init__(self, index: int, conf: AggregateBackend, route: Route) -> None:
        self.index = index
        self.conf = conf
        self.route = route
        self.name = conf.group or f"backends[{index}]"  # its key in the error details
        self.method = conf.method
        self.method_b = conf.method.encode("ascii")
        self.with_body = conf.method in _WITH_BODY
        # "/orders?user={id}" -> ["/orders?user=", "id", ""]: literals at even indices, references at odd ones.
        # None: the client's path (a function backend without a path of its own).
        self.pieces = _split(conf.path) if conf.path is not None else None
        refs = self.pieces[1::2] if self.pieces is not None else []
        self.needs = sorted({int(m.group(1)) for r in refs if (m := RESPONSE_REF.match(r))})

    def target(self, client: Request, params: dict[str, str], answers: dict[int, Any]) -> str:
        if self.pieces is None:
            return client.path + ("?" + client.query.decode("latin-1") if client.query else "")
        out = []
        for i, piece in enumerate(self.pieces):
            if not i % 2:
                out.append(piece)
                continue
            m = RESPONSE_REF.match(piece)
            if m is None:
                out.append(quote(params[piece.rstrip("+")], safe="/" if piece.endswith("+") else ""))
                continue
            value = _walk(answers[int(m.group(1))], m.group(2)[1:])
            if value is None or isinstance(value, (dict, list)):
                raise Failed(f"{{{piece}}} is not a value in backend {m.group(1)}'s answer")
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            out.append(quote(text, safe=""))
        return "".join(out)


def _split(template: str) -> list[str]:
    pieces, rest = [], template
    while (start := rest.find("{")) >= 0 and (end := rest.find("}", start)) >= 0:
        pieces += [rest[:start], rest[start + 1 : end]]
        rest = rest[end + 1 :]
    return [*pieces, rest]


def _walk(value: Any, path: str) -> Any:
    for key in path.split("."):
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


class AggregateRoute(Route):
    kind = "aggregate"
    __slots__ = ("backends", "partial_status", "error_details", "body_to")

    def __init__(
        self,
        entry: RouteEntry,
        integ: AggregateIntegration,
        upstreams: dict[str, Upstream],
        functions: dict[str, FunctionPool],
        server_line: bytes,
        via: bool,
    ) -> None:
        super().__init__(entry.label)
        self.partial_status = integ.partial_status
        self.error_details = integ.return_error_details
        self.backends = []
        for i, b in enumerate(integ.backends):
            label = f"{entry.label} backends[{i}]"
            route: Route
            if b.upstream is not None:
                route = HttpRoute(label, HttpIntegration(upstream=b.upstream), upstreams[b.upstream], server_line, via)
            else:
                assert b.function is not None
                lam = LambdaIntegration(function=b.function)
                # The function sees the aggregate's route (resource, stage) with the backend's path.
                at = f"{entry.at}.integration.backends[{i}]"
                sub = RouteEntry(entry.route, lam, entry.path, label, at, entry.api, entry.api_type, entry.api_id,
                                 entry.stage, entry.stage_variables)  # fmt: skip
                route = LambdaRoute(sub, lam, functions[b.function])
            self.backends.append(Backend(i, b, route))
        self.body_to = any(b.with_body for b in self.backends)

    # a class constant elsewhere: here it depends on the backends' methods
    @property
    def reads_body(self) -> bool:  # type: ignore[override]
        """Only a route with a backend that sends the client's body reads one (and answers 100-continue)."""
        return self.body_to

    def start(self, ex: Exchange) -> None:
        req = ex.req
        if not self.body_to or req.complete:
            self._run(ex, b"".join(req.body) if self.body_to else b"")
            return
        # The backends get the body whole (each a copy): collect what is still on its way first.
        ex.body_sink = BodyCollector(ex, lambda chunks: self._run(ex, b"".join(chunks)))
        ex.body_drained()

    def _run(self, ex: Exchange, body: bytes) -> None:
        if ex.gone:
            return
        run = AggregateRun(self, ex, body)
        ex.body_sink = run  # a client going away reaches the backend calls through it
        run.task = ex.state.loop.create_task(run.run())


class AggregateRun:
    """One aggregate request: its backend calls in flight. Stands in the client's exchange as its `body_sink`."""

    def __init__(self, route: AggregateRoute, ex: Exchange, body: bytes) -> None:
        self.route = route
        self.ex = ex
        self.body = body  # the client's, for the backends whose method carries one
        self.calls: dict[int, Exchange] = {}
        self.task: asyncio.Task[None] | None = None
        self.json: dict[int, Any] = {}  # the backends' answers, parsed (what {respN...} and the merge read)
        state = ex.state
        # The backend calls' own worker view: the same loop and config, no access log line of their own.
        self.state = Worker(state.loop, state.gateway, None)
        self.state.closing = state.closing

    # -- what the client's exchange sees in its body_sink -------------------------------------------------------

    def send_body(self, chunk: bytes) -> None:
        pass  # the body the backends get was collected before the calls started

    def end_body(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass  # the merged answer is written whole

    def resume_reading(self) -> None:
        pass

    def abandon(self) -> None:
        for call in list(self.calls.values()):
            call.client_gone()
        if self.task is not None:
            self.task.cancel()

    # -- the calls --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        ex = self.ex
        try:
            results = await self._gather()
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("aggregate route %s failed", self.route.name)
            ex.fail(500, "Internal server error", "internal error in aggregate (logged above)")
            return
        finally:
            ex.body_sink = None
        if ex.gone:
            return
        backends = self.route.backends
        if len(backends) == 1:
            answer = results[0]
            if isinstance(answer, Answer):
                headers = [(k, v) for k, v in answer.headers if k.lower() not in _NOT_PASSED]
                ex.respond(answer.status, headers, bytes(answer.body))
            elif answer.status == 504:
                ex.fail(504, "Endpoint request timed out", f"backends[0] {answer.why}")
            else:
                ex.fail(502, "Bad Gateway", f"backends[0]: {answer.why}")
            return
        merged: dict[str, Any] = {}
        failed: list[tuple[Backend, Miss]] = []
        for backend in backends:
            result = results[backend.index]
            if isinstance(result, Miss):
                failed.append((backend, result))
                continue
            try:
                _merge(merged, backend, self.json[backend.index])
            except Failed as exc:
                failed.append((backend, Miss(str(exc), result.status, result)))
        if failed:
            why = "; ".join(f"backends[{b.index}]: {miss.why}" for b, miss in failed)
            log.warning("aggregate %s %s route=%s: %s", ex.req.method, ex.req.path, self.route.name, why)
        completed = [("x-fastgw-completed", "false" if failed else "true")]
        key = self.route.error_details
        if len(failed) == len(backends):
            out: dict[str, Any] = dict(_BAD_GATEWAY)
            if key is not None:
                out[key] = {b.name: miss.detail() for b, miss in failed}
            ex.respond_json(502, out, completed)
        else:
            if failed and key is not None:
                merged[key] = {b.name: miss.detail() for b, miss in failed}  # NOTE: set last, over any field
            ex.respond_json(self.route.partial_status if failed else 200, merged, completed)

    async def _gather(self) -> list[Answer | Miss]:
        backends = self.route.backends
        tasks: dict[int, asyncio.Task[Answer | Miss]] = {}
        loop = self.ex.state.loop
        for backend in backends:
            tasks[backend.index] = loop.create_task(self._call(backend, tasks))
        try:
            return list(await asyncio.gather(*tasks.values()))
        except BaseException:
            for t in tasks.values():
                t.cancel()
            raise

    async def _call(self, backend: Backend, tasks: dict[int, asyncio.Task[Answer | Miss]]) -> Answer | Miss:
        """One backend's answer, or why it failed."""
        for n in backend.needs:
            result = await tasks[n]
            if isinstance(result, Miss) or n not in self.json:
                return Miss(f"needs backends[{n}]'s answer, which failed")
        ex = self.ex
        try:
            target = backend.target(ex.req, ex.params, self.json)
        except Failed as exc:
            return Miss(str(exc))
        loop = ex.state.loop
        done: asyncio.Future[None] = loop.create_future()
        leg = Collector(self.state, ex.peer, done)
        req = _backend_request(ex.req, target, backend, self.body)
        call = Exchange(leg, ex.gw, req, backend.route, ex.params, None)
        self.calls[backend.index] = call
        timeout = backend.conf.timeout
        try:
            backend.route.start(call)
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except asyncio.TimeoutError:
            call.client_gone()
            return Miss(f"timed out after {timeout:g}s", 504)
        finally:
            self.calls.pop(backend.index, None)
        if leg.cut:
            return Miss("its answer was cut off")
        try:
            answer = Answer.parse(b"".join(leg.chunks))
        except HttpParserError as exc:
            return Miss(f"unreadable answer: {exc}")
        if len(self.route.backends) > 1 or backend.needs:
            if not 200 <= answer.status < 300:
                return Miss(f"answered {answer.status}", answer.status, answer)
            try:
                self.json[backend.index] = orjson.loads(bytes(answer.body))
            except orjson.JSONDecodeError:
                return Miss("answered something that is not JSON", answer.status, answer)
        return answer


def _backend_request(client: Request, target: str, backend: Backend, body: bytes) -> Request:
    """The request of one backend call: the backend's method to `target`, with the client's headers, and the
    client's body when the method carries one."""
    req = Request()
    req.method = backend.method
    req.method_b = backend.method_b
    path, _, query = target.partition("?")
    req.path = path
    req.query = query.encode("latin-1") if query else None
    req.url = target.encode("latin-1")
    if backend.with_body:
        req.headers = [(n, v) for n, v in client.headers if n not in _NOT_FORWARDED]
        req.content_length = len(body)
        if body:
            req.body = [body]
            req.body_size = req.buffered = len(body)
    else:
        # NOTE: no body, so none of its description either (a GET that says `content-type: application/json`).
        req.headers = [(n, v) for n, v in client.headers if n not in _NOT_FORWARDED and n != b"content-type"]
    req.host_raw = client.host_raw
    req.host = client.host
    req.conn_tokens = client.conn_tokens
    req.headers_done = req.complete = True
    return req


def _merge(merged: dict[str, Any], backend: Backend, value: Any) -> None:
    conf = backend.conf
    if conf.target is not None:
        value = _walk(value, conf.target)
        if value is None:
            raise Failed(f"no {conf.target!r} in its answer")
    if conf.allow is not None or conf.rename:
        if not isinstance(value, dict):
            raise Failed("its answer is not an object (allow and rename need one)")
        if conf.allow is not None:
            value = {k: value[k] for k in conf.allow if k in value}
        for old, new in conf.rename.items():
            if old in value:
                value[new] = value.pop(old)
    if conf.group is not None:
        merged[conf.group] = value
    elif isinstance(value, dict):
        merged.update(value)
    else:
        raise Failed("its answer is not an object: give the backend a group")
