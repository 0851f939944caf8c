"""The `aggregate` integration: call several backends, merge their JSON answers into one.

Each backend call is an exchange of its own on the backend's `http` route (so balancers, pools, retries, health
and timeouts all apply), whose destination is a collector instead of a client: `Collector` stands where the
client connection would (the exchange's `ClientLeg`), keeps what would have been written, and resolves a future
when the exchange is done. The calls run in parallel; a call whose path uses an earlier backend's answer
(`{resp0.user.id}`) waits for that one first.

Status policy: every backend answered 2xx with JSON -> 200 and `X-Fastgw-Completed: true`; some failed (another
status, no JSON, a timeout, an error) -> what succeeded, with `partial_status` (200 by default, or 502) and
`X-Fastgw-Completed: false`; all failed -> 502 `{"message": "Bad Gateway"}`. With a single backend its answer
passes through as it came: status, headers and body. The client's request headers go to each backend (the
hop-by-hop ones and the body's framing excepted); its body does not. The merged answer is a response made in the
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


class Backend:
    """One backend of an aggregate route, resolved at load: its http route and its path template."""

    __slots__ = ("index", "conf", "route", "pieces", "needs")

    def __init__(self, index: int, conf: AggregateBackend, route: Route) -> None:
        self.index = index
        self.conf = conf
        self.route = route
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
    reads_body = False  # backends get no body: one on its way is not read
    __slots__ = ("backends", "partial_status")

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

    def start(self, ex: Exchange) -> None:
        run = AggregateRun(self, ex)
        ex.req.upstream = run  # a client going away reaches the backend calls through it
        run.task = ex.state.loop.create_task(run.run())


class AggregateRun:
    """One aggregate request: its backend calls in flight. Stands in `req.upstream` of the client's request."""

    def __init__(self, route: AggregateRoute, ex: Exchange) -> None:
        self.route = route
        self.ex = ex
        self.calls: dict[int, Exchange] = {}
        self.task: asyncio.Task[None] | None = None
        self.json: dict[int, Any] = {}  # the backends' answers, parsed (what {respN...} and the merge read)
        state = ex.state
        # The backend calls' own worker view: the same loop and config, no access log line of their own.
        self.state = Worker(state.loop, state.gateway, None)
        self.state.closing = state.closing

    # -- what the client's request sees in req.upstream ---------------------------------------------------------

    def send_body(self, chunk: bytes) -> None:
        pass  # backends get no body

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
            ex.req.upstream = None
        if ex.gone:
            return
        backends = self.route.backends
        if len(backends) == 1:
            answer = results[0]
            if isinstance(answer, Answer):
                headers = [(k, v) for k, v in answer.headers if k.lower() not in _NOT_PASSED]
                ex.respond(answer.status, headers, bytes(answer.body))
            elif answer.startswith("timed out"):
                ex.fail(504, "Endpoint request timed out", f"backends[0] {answer}")
            else:
                ex.fail(502, "Bad Gateway", f"backends[0]: {answer}")
            return
        merged: dict[str, Any] = {}
        failed = []
        for backend in backends:
            result = results[backend.index]
            if isinstance(result, str):
                failed.append(f"backends[{backend.index}]: {result}")
                continue
            try:
                _merge(merged, backend, self.json[backend.index])
            except Failed as exc:
                failed.append(f"backends[{backend.index}]: {exc}")
        if failed:
            log.warning("aggregate %s %s route=%s: %s", ex.req.method, ex.req.path, self.route.name, "; ".join(failed))
        completed = [("x-fastgw-completed", "false" if failed else "true")]
        if len(failed) == len(backends):
            ex.respond_json(502, _BAD_GATEWAY, completed)
        else:
            ex.respond_json(self.route.partial_status if failed else 200, merged, completed)

    async def _gather(self) -> list[Answer | str]:
        backends = self.route.backends
        tasks: dict[int, asyncio.Task[Answer | str]] = {}
        loop = self.ex.state.loop
        for backend in backends:
            tasks[backend.index] = loop.create_task(self._call(backend, tasks))
        try:
            return list(await asyncio.gather(*tasks.values()))
        except BaseException:
            for t in tasks.values():
                t.cancel()
            raise

    async def _call(self, backend: Backend, tasks: dict[int, asyncio.Task[Answer | str]]) -> Answer | str:
        """One backend's answer, or why it failed."""
        for n in backend.needs:
            result = await tasks[n]
            if isinstance(result, str) or n not in self.json:
                return f"needs backends[{n}]'s answer, which failed"
        ex = self.ex
        try:
            target = backend.target(ex.req, ex.params, self.json)
        except Failed as exc:
            return str(exc)
        loop = ex.state.loop
        done: asyncio.Future[None] = loop.create_future()
        leg = Collector(self.state, ex.peer, done)
        call = Exchange(leg, ex.gw, _backend_request(ex.req, target), backend.route, ex.params, None)
        self.calls[backend.index] = call
        timeout = backend.conf.timeout
        try:
            backend.route.start(call)
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except asyncio.TimeoutError:
            call.client_gone()
            return f"timed out after {timeout:g}s"
        finally:
            self.calls.pop(backend.index, None)
        if leg.cut:
            return "its answer was cut off"
        try:
            answer = Answer.parse(b"".join(leg.chunks))
        except HttpParserError as exc:
            return f"unreadable answer: {exc}"
        if len(self.route.backends) > 1 or backend.needs:
            if not 200 <= answer.status < 300:
                return f"answered {answer.status}"
            try:
                self.json[backend.index] = orjson.loads(bytes(answer.body))
            except orjson.JSONDecodeError:
                return "answered something that is not JSON"
        return answer


def _backend_request(client: Request, target: str) -> Request:
    """The request of one backend call: GET `target`, with the client's headers."""
    req = Request()
    req.method = "GET"
    req.method_b = b"GET"
    path, _, query = target.partition("?")
    req.path = path
    req.query = query.encode("latin-1") if query else None
    req.url = target.encode("latin-1")
    req.headers = [(n, v) for n, v in client.headers if n not in _NOT_FORWARDED]
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
