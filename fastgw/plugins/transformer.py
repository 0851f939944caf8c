"""`request-transformer` and `response-transformer`: change headers, query parameters, the path and JSON bodies on
the way in, and headers and JSON bodies on the way out.

Values may use templates over the request and its context: `$request.header.NAME`, `$request.query.NAME`,
`$request.path.PARAM`, `$consumer.username`, `$consumer.groups`, `$consumer.custom.FIELD`,
`$stageVariables.NAME`, `$context.request_id`, `$context.client_ip`, `$context.method`, `$context.path`
(`${...}` delimits one inside other text). An operation whose template names something absent is skipped.
Operations run in this order: remove, rename, set (replace or add), add (only if absent), append (another value).

Both edit JSON bodies by dotted path (`body: {set: {"order.source": "gateway"}}`): the body is collected first,
edited, and sent with its new length (a response body in the body_filter phase, so only a configuration with
`body` makes the gateway hold responses). A body that is not a JSON object (or is compressed) passes unchanged,
with a log line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from fastgw.core import HeaderStep
from fastgw.core.steps import ADD, REMOVE, SET
from fastgw.plugins.base import Context, Headers, Plugin, header_key

# Anything that looks like a reference is one: a misspelled one is refused when the config loads, never sent
# as literal text.
_REF = re.compile(r"\$\{([^}]*)\}|\$((?:request|consumer|stageVariables|context)(?:\.[\w-]+)+)")
Getter = Callable[[Context], "str | None"]
log = logging.getLogger("fastgw.plugins.transformer")


def _getter(ref: str) -> Getter:
    parts = ref.split(".")
    head = parts[0]
    if head == "request" and len(parts) == 3:
        kind, name = parts[1], parts[2]
        if kind == "header":
            return lambda ctx: ctx.request.header(name)
        if kind == "query":
            return lambda ctx: next(iter(ctx.request.query.get(name) or ()), None)
        if kind == "path":
            return lambda ctx: ctx.request.params.get(name)
    if head == "consumer" and len(parts) >= 2:
        if parts[1] == "username" and len(parts) == 2:
            return lambda ctx: ctx.consumer.name if ctx.consumer else None
        if parts[1] == "groups" and len(parts) == 2:
            return lambda ctx: ",".join(ctx.consumer.groups) if ctx.consumer else None
        if parts[1] == "custom" and len(parts) == 3:
            return lambda ctx: ctx.consumer.custom.get(parts[2]) if ctx.consumer else None
    if head == "stageVariables" and len(parts) == 2:
        return lambda ctx: ctx.route.stage_variables.get(parts[1])
    if head == "context" and len(parts) == 2:
        if parts[1] == "request_id":
            return lambda ctx: ctx.vars.get("request_id")
        if parts[1] == "client_ip":
            return lambda ctx: ctx.request.client_ip
        if parts[1] == "method":
            return lambda ctx: ctx.request.method
        if parts[1] == "path":
            return lambda ctx: ctx.request.path
    raise ValueError(f"unknown template reference ${{{ref}}}")


class Template:
    """A value with `$...` references, parsed once when the config loads."""

    __slots__ = ("parts", "static", "single")

    def __init__(self, text: str) -> None:
        parts: list[str | Getter] = []
        pos = 0
        for m in _REF.finditer(text):
            if m.start() > pos:
                parts.append(text[pos : m.start()])
            parts.append(_getter(m.group(1) or m.group(2)))
            pos = m.end()
        if pos < len(text):
            parts.append(text[pos:])
        self.parts = tuple(parts)
        self.static = text if all(isinstance(p, str) for p in parts) else None
        # PERF: a value that is exactly one reference ("$consumer.username") is the getter's answer.
        first = parts[0] if len(parts) == 1 else None
        self.single: Getter | None = None if first is None or isinstance(first, str) else first

    def render(self, ctx: Context) -> str | None:
        if self.static is not None:
            return self.static
        if self.single is not None:
            return self.single(ctx)
        out = []
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                value = p(ctx)
                if value is None:
                    return None  # a reference to something absent: the operation is skipped
                out.append(value)
        return "".join(out)


class Ops(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    query: dict[str, str] = msgspec.field(default_factory=dict)


class Removals(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    headers: list[str] = msgspec.field(default_factory=list)
    query: list[str] = msgspec.field(default_factory=list)


class BodyOps(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """JSON body edits by dotted path ("a.b.c"); string values are templates, other JSON values literal."""

    remove: list[str] = msgspec.field(default_factory=list)
    rename: dict[str, str] = msgspec.field(default_factory=dict)
    set: dict[str, Any] = msgspec.field(default_factory=dict)
    add: dict[str, Any] = msgspec.field(default_factory=dict)  # only where nothing is


class RequestTransformerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    remove: Removals = msgspec.field(default_factory=Removals)
    rename: Ops = msgspec.field(default_factory=Ops)  # old name -> new name
    set: Ops = msgspec.field(default_factory=Ops)
    add: Ops = msgspec.field(default_factory=Ops)
    append: Ops = msgspec.field(default_factory=Ops)
    path: str | None = None  # the upstream path (a template); replaces the route's own rewrite
    body: BodyOps | None = None


class ResponseHeaderOps(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class ResponseRemovals(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    headers: list[str] = msgspec.field(default_factory=list)


class ResponseTransformerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    remove: ResponseRemovals = msgspec.field(default_factory=ResponseRemovals)
    rename: ResponseHeaderOps = msgspec.field(default_factory=ResponseHeaderOps)
    set: ResponseHeaderOps = msgspec.field(default_factory=ResponseHeaderOps)
    add: ResponseHeaderOps = msgspec.field(default_factory=ResponseHeaderOps)
    append: ResponseHeaderOps = msgspec.field(default_factory=ResponseHeaderOps)
    body: BodyOps | None = None


Plan = tuple[
    tuple[str, ...],  # remove
    tuple[tuple[str, str], ...],  # rename
    tuple[tuple[str, Template], ...],  # set
    tuple[tuple[str, Template], ...],  # add
    tuple[tuple[str, Template], ...],  # append
]


def _plan(remove: list[str], rename: dict[str, str], set_: dict[str, str], add: dict[str, str],
          append: dict[str, str], header: bool) -> Plan:  # fmt: skip
    def name(n: str) -> str:
        if header and (not n or any(c in n for c in " \t\r\n:")):
            raise ValueError(f"invalid header name {n!r}")
        return n.lower() if header else n

    def values(ops: dict[str, str]) -> tuple[tuple[str, Template], ...]:
        return tuple((name(k), Template(v)) for k, v in ops.items())

    return (
        tuple(name(n) for n in remove),
        tuple((name(a), name(b)) for a, b in rename.items()),
        values(set_),
        values(add),
        values(append),
    )


def _apply_headers(ctx: Context, headers: Headers, plan: Plan) -> None:
    remove, rename, set_, add, append = plan
    if remove:
        for n in remove:
            headers.remove(n)
    if rename:
        for old, new in rename:
            headers.rename(old, new)
    for n, t in set_:
        v = t.render(ctx)
        if v is not None:
            headers.set(n, v)
    for n, t in add:
        if n not in headers:
            v = t.render(ctx)
            if v is not None:
                headers.add(n, v)
    for n, t in append:
        v = t.render(ctx)
        if v is not None:
            headers.add(n, v)


def _apply_query(ctx: Context, query: dict[str, list[str]], plan: Plan) -> None:
    remove, rename, set_, add, append = plan
    for n in remove:
        query.pop(n, None)
    for old, new in rename:
        if old in query:
            query[new] = query.pop(old)
    for n, t in set_:
        v = t.render(ctx)
        if v is not None:
            query[n] = [v]
    for n, t in add:
        if n not in query:
            v = t.render(ctx)
            if v is not None:
                query[n] = [v]
    for n, t in append:
        v = t.render(ctx)
        if v is not None:
            query.setdefault(n, []).append(v)


class RequestTransformer(Plugin):
    name = "request-transformer"
    priority = 1100
    Config = RequestTransformerConfig

    def prepare(self, conf: RequestTransformerConfig) -> Any:
        headers = _plan(conf.remove.headers, conf.rename.headers, conf.set.headers, conf.add.headers,
                        conf.append.headers, header=True)  # fmt: skip
        query = _plan(conf.remove.query, conf.rename.query, conf.set.query, conf.add.query, conf.append.query,
                      header=False)  # fmt: skip
        path = Template(conf.path) if conf.path is not None else None
        if conf.path is not None and not conf.path.startswith(("/", "$")):
            raise ValueError(f"path: expected a path starting with '/', got {conf.path!r}")
        body = _body_plan(conf.body)
        # PERF: the common configuration only sets headers; it gets a loop of its own, without the other kinds.
        only_set = headers[2] if any(headers) and not any(headers[i] for i in (0, 1, 3, 4)) else None
        if any(query) or path is not None or body is not None:
            only_set = None
        return (headers if any(headers) else None, query if any(query) else None, path, body, only_set)

    def needs_body(self, prepared: Any) -> bool:
        return prepared[3] is not None

    def step(self, phase: str, prepared: Any) -> Any:
        """The compiled step (fastgw.core.steps.HeaderStep) of a configuration that only removes, sets and adds
        upstream headers with fixed values; any other runs `access`."""
        headers, query, path, body, _ = prepared
        if headers is None or query is not None or path is not None or body is not None:
            return None
        remove, rename, set_, add, append = headers
        if rename or append:
            return None
        ops: list[tuple[int, bytes, bytes | None]] = []
        try:
            ops += [(REMOVE, header_key(n), None) for n in remove]
            for kind, pairs in ((SET, set_), (ADD, add)):
                for n, t in pairs:
                    if t.static is None:
                        return None  # a template: `access` renders it
                    ops.append((kind, header_key(n, t.static), t.static.encode("utf-8")))
        except ValueError:
            return None  # refused per request, as `access` does
        return HeaderStep(tuple(ops))

    def access(self, ctx: Context, prepared: Any) -> None:
        only_set = prepared[4]
        if only_set is not None:
            for n, t in only_set:
                v = t.static if t.static is not None else t.single(ctx) if t.single is not None else t.render(ctx)
                if v is not None:
                    ctx.set_upstream_header(n, v)
            return
        headers, query, path, body, _ = prepared
        if body is not None and ctx.request.body:
            edited = _edit_json(ctx, ctx.request.body, body, "request")
            if edited is not None:
                ctx.upstream_request.body = edited
        up = ctx.upstream_request
        if headers is not None:
            _apply_headers(ctx, up.headers, headers)
        if query is not None:
            _apply_query(ctx, up.query, query)
        if path is not None:
            value = path.render(ctx)
            if value is not None:
                up.path = value


def _dotted(path: str) -> tuple[str, ...]:
    parts = tuple(path.split("."))
    if not all(parts):
        raise ValueError(f"body: {path!r} is not a dotted path like 'a.b.c'")
    return parts


BodyPlan = tuple[
    tuple[tuple[str, ...], ...],  # remove
    tuple[tuple[tuple[str, ...], tuple[str, ...]], ...],  # rename
    tuple[tuple[tuple[str, ...], Any], ...],  # set
    tuple[tuple[tuple[str, ...], Any], ...],  # add
]


def _body_plan(ops: BodyOps | None) -> BodyPlan | None:
    if ops is None:
        return None

    def value(v: Any) -> Any:
        return Template(v) if isinstance(v, str) else v

    return (
        tuple(_dotted(p) for p in ops.remove),
        tuple((_dotted(a), _dotted(n)) for a, n in ops.rename.items()),
        tuple((_dotted(p), value(v)) for p, v in ops.set.items()),
        tuple((_dotted(p), value(v)) for p, v in ops.add.items()),
    )


def _edit_json(ctx: Context, data: bytes, ops: BodyPlan, what: str) -> bytes | None:
    """`data` (a JSON object) after the edits of `ops`, or None (logged) when it is not a JSON object."""
    remove, rename, set_, add = ops
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        log.info("%s-transformer: the %s body on route %s is not JSON; sent unchanged", what, what, ctx.route.name)
        return None
    if not isinstance(doc, dict):
        log.info("%s-transformer: the JSON %s body on route %s is not an object; sent unchanged", what, what,
                 ctx.route.name)  # fmt: skip
        return None
    for p in remove:
        parent = _walk(doc, p[:-1], create=False)
        if parent is not None:
            parent.pop(p[-1], None)
    for old, new in rename:
        parent = _walk(doc, old[:-1], create=False)
        if parent is not None and old[-1] in parent:
            moved = parent.pop(old[-1])
            target = _walk(doc, new[:-1], create=True)
            if target is not None:
                target[new[-1]] = moved
    for p, v in set_:
        _put(ctx, doc, p, v, replace=True)
    for p, v in add:
        _put(ctx, doc, p, v, replace=False)
    return orjson.dumps(doc)


def _walk(doc: dict[str, Any], path: tuple[str, ...], create: bool) -> dict[str, Any] | None:
    node: Any = doc
    for key in path:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            if not create or nxt is not None:
                return None  # a path through something that is not an object is left alone
            nxt = node[key] = {}
        node = nxt
    return node


def _put(ctx: Context, doc: dict[str, Any], path: tuple[str, ...], value: Any, replace: bool) -> None:
    parent = _walk(doc, path[:-1], create=True)
    if parent is None or (not replace and path[-1] in parent):
        return
    if isinstance(value, Template):
        value = value.render(ctx)
        if value is None:
            return
    parent[path[-1]] = value


class ResponseTransformer(Plugin):
    name = "response-transformer"
    priority = 1000
    Config = ResponseTransformerConfig

    def prepare(self, conf: ResponseTransformerConfig) -> tuple[Plan | None, BodyPlan | None]:
        headers = _plan(conf.remove.headers, conf.rename.headers, conf.set.headers, conf.add.headers,
                        conf.append.headers, header=True)  # fmt: skip
        return (headers if any(headers) else None, _body_plan(conf.body))

    def uses(self, phase: str, prepared: tuple[Plan | None, BodyPlan | None]) -> bool:
        # PERF: a body_filter phase makes the gateway hold proxied responses whole; only `body` edits need that.
        return prepared[0 if phase == "header_filter" else 1] is not None

    def header_filter(self, ctx: Context, prepared: tuple[Plan | None, BodyPlan | None]) -> None:
        headers = prepared[0]
        if headers is not None and ctx.response is not None:
            _apply_headers(ctx, ctx.response.headers, headers)

    def body_filter(self, ctx: Context, prepared: tuple[Plan | None, BodyPlan | None]) -> None:
        resp, ops = ctx.response, prepared[1]
        if resp is None or ops is None or not resp.body:
            return
        ctype = (resp.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if not (ctype == "application/json" or ctype.endswith("+json")):
            log.info("response-transformer: the response on route %s is %s, not JSON; sent unchanged",
                     ctx.route.name, ctype or "without a content type")  # fmt: skip
            return
        if resp.headers.get("content-encoding") not in (None, "identity"):
            log.info("response-transformer: the response on route %s is compressed; sent unchanged", ctx.route.name)
            return
        edited = _edit_json(ctx, resp.body, ops, "response")
        if edited is not None:
            resp.body = edited


PLUGINS = (RequestTransformer, ResponseTransformer)
