"""The router's pure-Python twin (the spec, the test oracle and the fallback) of `fastgw/core/router.pyx`: route
templates, the add -> freeze -> match trie, and `Router.route` (a request's target split, normalized and matched).

The compiled part follows it line for line (tests/property/test_twins.py runs both on the same inputs); the compiled
`Router` runs this twin's own `add` and `freeze` and copies the frozen trie. `FASTGW_NO_EXTENSIONS=1` serves this one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fastgw.core.http import Request, normalize_path

__all__ = ["ANY", "RouteConflict", "Router", "parse_template"]

ANY = "ANY"

# Route template grammar: "/" separated segments; a segment is a literal, "{name}" (one segment), "{name:regex}"
# (one segment the regex matches whole) or "{name+}" (greedy: one or more segments, last position only, as AWS API
# Gateway's "{proxy+}"). A "/" inside a constraint's braces does not split the template.
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\+?)(?::(.*))?\}\Z", re.S)

# Segment kinds in a template's shape; the shape decides conflicts (parameter names do not, constraints do).
LITERAL, PARAM, GREEDY = 0, 1, 2

# Host kinds, also the host-specificity rank (higher wins among routes with the same path template).
HOST_ANY, HOST_WILDCARD, HOST_EXACT = 0, 1, 2


class RouteConflict(ValueError):
    """Two routes would answer the same request; raised by `Router.add`, naming both."""


def _split(path: str) -> list[str]:
    """The template's segments: split at each "/" outside braces (a constraint may hold "/" or "{m,n}")."""
    segments: list[str] = []
    start = depth = i = 0
    n = len(path)
    while i < n:
        c = path[i]
        if c == "\\" and depth:
            i += 2  # an escaped character of a constraint ("\{", "\/") neither nests nor splits
            continue
        if c == "{":
            depth += 1
        elif c == "}" and depth:
            depth -= 1
        elif c == "/" and not depth:
            segments.append(path[start:i])
            start = i + 1
        i += 1
    segments.append(path[start:])
    return [s for s in segments if s]


def parse_template(path: str) -> tuple[tuple[tuple[int, str], ...], tuple[str, ...]]:
    """Split a route template into its shape ((kind, literal, constraint or "") per segment) and its parameter
    names (without their constraints). A constraint that is not a regular expression raises ValueError."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"route path must start with '/': {path!r}")
    segments = _split(path)
    shape: list[tuple[int, str]] = []
    names: list[str] = []
    for i, seg in enumerate(segments):
        m = _PARAM.match(seg)
        if m is None:
            if "{" in seg or "}" in seg:
                raise ValueError(
                    f"route path {path!r}: segment {seg!r} is not a literal, '{{name}}', '{{name:regex}}' or "
                    "'{name+}' (a parameter must be a whole segment)"
                )
            shape.append((LITERAL, seg))
            continue
        name, plus, constraint = m.group(1), m.group(2), m.group(3)
        if name in names:
            raise ValueError(f"route path {path!r}: parameter {name!r} appears twice")
        if plus and i != len(segments) - 1:
            raise ValueError(f"route path {path!r}: greedy parameter {{{name}+}} must be the last segment")
        if constraint is not None:
            if plus:
                raise ValueError(f"route path {path!r}: greedy parameter {{{name}+}} takes no constraint")
            if not constraint:
                raise ValueError(f"route path {path!r}: parameter {{{name}:}} has an empty constraint")
            try:
                re.compile(constraint)
            except re.error as exc:
                raise ValueError(
                    f"route path {path!r}: constraint of {{{name}}} is not a regular expression ({exc})"
                ) from None
        shape.append((GREEDY if plus else PARAM, constraint or ""))
        names.append(name)
    return tuple(shape), tuple(names)


def _host_kind(host: str | None) -> tuple[int, str]:
    if not host:
        return HOST_ANY, ""
    host = host.lower()
    if host.startswith("*."):
        return HOST_WILDCARD, host[1:]  # ".example.com": any subdomain, not the bare domain
    if "*" in host:
        raise ValueError(f"host {host!r}: only a leading '*.' wildcard is supported")
    return HOST_EXACT, host


class _Entry:
    __slots__ = ("route", "name", "methods", "any_method", "host_kind", "host", "param_names", "order", "priority")

    def __init__(
        self,
        route: object,
        name: str,
        methods: frozenset[str],
        host_kind: int,
        host: str,
        param_names: tuple[str, ...],
        order: int,
        priority: int = 0,
    ) -> None:
        self.route = route
        self.name = name
        self.methods = methods
        self.any_method = ANY in methods
        self.host_kind = host_kind
        self.host = host
        self.param_names = param_names
        self.order = order
        self.priority = priority


class _Node:
    __slots__ = ("literals", "constrained", "param", "entries", "greedy_entries", "constraint", "pattern", "rank")

    def __init__(self, constraint: str = "") -> None:
        self.literals: dict[str, _Node] = {}
        # Children for one segment under a constraint, tried in order (by `rank` once frozen) before `param`.
        self.constrained: list[_Node] = []
        self.param: _Node | None = None
        self.entries: list[_Entry] = []
        self.greedy_entries: list[_Entry] = []
        self.constraint = constraint
        self.pattern = re.compile(constraint) if constraint else None
        # The highest priority and the first order of the routes through this node (a constrained child's rank).
        self.rank = (0, -1)


def _sort_key(e: _Entry) -> tuple[int, int, int, int]:
    # NOTE: host specificity: exact > longest wildcard suffix > any; then the higher priority; ties keep the order
    # routes were added.
    return (-e.host_kind, -len(e.host), -e.priority, e.order)


def _rank_key(node: _Node) -> tuple[int, int]:
    # NOTE: constraints at one position: the one with the highest priority among its routes first, then the one
    # added first (config order). Overlapping regexes are not refused (overlap is undecidable in general).
    return (-node.rank[0], node.rank[1])


class Router:
    """Route table: `add` routes, `freeze`, then `match` (host, method, path) to a route and its params.

    Precedence is literal segment > `{param:constraint}` > `{param}` > `{greedy+}` at each position (with
    backtracking), constraints at one position by their routes' highest `priority`, then config order; then host
    specificity among routes sharing a template, then priority. A request matches when its method is listed or the
    route says ANY; `match` returns `(route, params)`, `(None, allowed_methods)` when the path exists only under
    other methods (answer 405), or `None` (answer 404).
    """

    def __init__(self) -> None:
        self._root = _Node()
        self._static: dict[str, list[_Entry]] = {}
        self._shapes: dict[tuple[object, ...], list[_Entry]] = {}
        self._count = 0
        self._greedy_root = False
        self.frozen = False

    def __len__(self) -> int:
        return self._count

    def add(
        self,
        route: object,
        methods: Iterable[str],
        path: str,
        host: str | None = None,
        name: str | None = None,
        priority: int = 0,
    ) -> None:
        if self.frozen:
            raise RuntimeError("router is frozen; build a new one to change routes")
        mset = frozenset(m.upper() for m in methods)
        if not mset:
            raise ValueError(f"route {path!r}: at least one method is required")
        shape, names = parse_template(path)
        kind, hostkey = _host_kind(host)
        label = name if name is not None else f"{','.join(sorted(mset))} {host or '*'}{path}"
        entry = _Entry(route, label, mset, kind, hostkey, names, self._count, priority)
        key = (kind, hostkey, shape)
        for other in self._shapes.get(key, ()):
            if entry.any_method or other.any_method or (mset & other.methods):
                raise RouteConflict(
                    f"route {label!r} conflicts with route {other.name!r}: same path shape, host and method"
                )
        self._shapes.setdefault(key, []).append(entry)

        node = self._root
        greedy = False
        for seg_kind, literal in shape:
            if seg_kind == LITERAL:
                child = node.literals.get(literal)
                if child is None:
                    child = node.literals[literal] = _Node()
                node = child
            elif seg_kind == PARAM and literal:
                for child in node.constrained:
                    if child.constraint == literal:
                        break
                else:
                    child = _Node(literal)
                    child.rank = (priority, self._count)
                    node.constrained.append(child)
                if priority > child.rank[0]:
                    child.rank = (priority, child.rank[1])
                node = child
            elif seg_kind == PARAM:
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                greedy = True
        (node.greedy_entries if greedy else node.entries).append(entry)
        if all(k == LITERAL for k, _ in shape):
            canon = "/" + "/".join(lit for _, lit in shape)
            self._static.setdefault(canon, []).append(entry)
        self._count += 1

    def freeze(self) -> None:
        stack = [self._root]
        while stack:
            node = stack.pop()
            node.entries.sort(key=_sort_key)
            node.greedy_entries.sort(key=_sort_key)
            node.constrained.sort(key=_rank_key)
            stack.extend(node.literals.values())
            stack.extend(node.constrained)
            if node.param is not None:
                stack.append(node.param)
        static: dict[str, list[_Entry]] = {}
        for path, entries in self._static.items():
            entries.sort(key=_sort_key)
            static[path] = entries
            if path != "/":
                static[path + "/"] = entries
        self._static = static
        root = self._root
        self._greedy_root = not root.literals and not root.constrained and root.param is None
        self.frozen = True

    def match(
        self, method: str, host: str, path: str
    ) -> tuple[object, dict[str, str]] | tuple[None, tuple[str, ...]] | None:
        return self._match(method, host, path, None)

    def match_past(
        self, method: str, host: str, path: str, skip: frozenset[object]
    ) -> tuple[object, dict[str, str]] | tuple[None, tuple[str, ...]] | None:
        """`match` as if the routes in `skip` were not there: the next less specific route for the request (how a
        request falls through routes told apart by headers when none of their conditions hold)."""
        return self._match(method, host, path, skip)

    def _match(
        self, method: str, host: str, path: str, skip: frozenset[object] | None
    ) -> tuple[object, dict[str, str]] | tuple[None, tuple[str, ...]] | None:
        if not self.frozen:
            raise RuntimeError("freeze() the router before matching")
        # PERF: a static path is answered by one dict lookup before the trie walk (none without static routes).
        if self._static:
            entries = self._static.get(path)
            if entries is not None:
                for e in entries:
                    if _host_ok(e, host) and (e.any_method or method in e.methods):
                        if skip is not None and e.route in skip:
                            continue
                        return e.route, {}
        if self._greedy_root:
            # PERF: the root has only greedy routes (`/{proxy+}`): the walk would pick among the root's entries ("/")
            # or its greedy entries with the path's segments joined, so neither split nor walk (the compiled twin,
            # with the skipped static lookup: 55.4k -> 53.6k instructions an exchange, bench/instructions.py).
            rest = _rest(path)
            entries = self._root.greedy_entries if rest else self._root.entries
            allowed: set[str] = set()
            found = _pick(entries, method, host, allowed, skip)
            if found is not None:
                return found.route, ({found.param_names[0]: rest} if rest else {})
            if allowed:
                return None, tuple(sorted(allowed))
            return None
        # NOTE: the compiled twin reads the segments off the path as its walk reaches them (no list); same answers.
        segs = [s for s in path.split("/") if s]
        params: list[str] = []
        allowed = set()
        found = _walk(self._root, segs, 0, len(segs), method, host, params, allowed, skip)
        if found is not None:
            return found.route, dict(zip(found.param_names, params, strict=True))
        if allowed:
            return None, tuple(sorted(allowed))
        return None

    def route(
        self, req: Request, policy: int = 0
    ) -> tuple[object, dict[str, str]] | tuple[None, tuple[str, ...]] | None | bool:
        """Route a request whose target is in origin form (starts with "/"): the query is split off into
        `req.query`, a fragment dropped, the path normalized under `policy` (0: PATH_SLASHES_REJECT) into
        `req.path`, and matched as `match` does. False: the path policy refuses the path (`req.path` stays unset).
        A target in another form is the caller's to parse first."""
        url = req.url
        q = url.find(b"?")
        if q < 0:
            raw = url
        else:
            raw = url[:q]
            req.query = url[q + 1 :]
        h = raw.find(b"#")
        if h >= 0:
            raw = raw[:h]
        path = normalize_path(raw, policy)
        if path is None:
            return False
        req.path = path
        return self.match(req.method, req.host, path)

    def dump(self) -> str:
        """The trie as indented text, one node a line: for reading and for snapshot tests."""
        lines: list[str] = []
        _dump(self._root, "/", 0, lines)
        return "\n".join(lines) + "\n"


def _rest(path: str) -> str:
    """The path's non-empty segments joined by "/": what a greedy parameter at the root takes."""
    rest = path.strip("/")
    if "//" in rest:
        return "/".join(s for s in rest.split("/") if s)
    return rest


def _host_ok(e: _Entry, host: str) -> bool:
    if e.host_kind == HOST_ANY:
        return True
    if e.host_kind == HOST_EXACT:
        return host == e.host
    return host.endswith(e.host) and len(host) > len(e.host)


def _pick(
    entries: list[_Entry], method: str, host: str, allowed: set[str], skip: frozenset[object] | None
) -> _Entry | None:
    for e in entries:
        if not _host_ok(e, host):
            continue
        if skip is not None and e.route in skip:
            continue
        if e.any_method or method in e.methods:
            return e
        allowed.update(e.methods)
    return None


def _walk(
    node: _Node,
    segs: list[str],
    i: int,
    n: int,
    method: str,
    host: str,
    params: list[str],
    allowed: set[str],
    skip: frozenset[object] | None,
) -> _Entry | None:
    if i == n:
        return _pick(node.entries, method, host, allowed, skip) if node.entries else None
    seg = segs[i]
    child = node.literals.get(seg)
    if child is not None:
        found = _walk(child, segs, i + 1, n, method, host, params, allowed, skip)
        if found is not None:
            return found
    for child in node.constrained:
        # NOTE: a constraint matches the whole segment (as normalized), never more than one segment.
        if child.pattern.fullmatch(seg) is not None:  # type: ignore[union-attr]
            params.append(seg)
            found = _walk(child, segs, i + 1, n, method, host, params, allowed, skip)
            if found is not None:
                return found
            params.pop()
    if node.param is not None:
        params.append(seg)
        found = _walk(node.param, segs, i + 1, n, method, host, params, allowed, skip)
        if found is not None:
            return found
        params.pop()
    if node.greedy_entries:
        found = _pick(node.greedy_entries, method, host, allowed, skip)
        if found is not None:
            params.append("/".join(segs[i:]))
            return found
    return None


def _describe(entries: list[_Entry], greedy: bool) -> str:
    parts = []
    for e in entries:
        host = {HOST_ANY: "*", HOST_WILDCARD: "*" + e.host, HOST_EXACT: e.host}[e.host_kind]
        prio = f" priority {e.priority}" if e.priority else ""
        parts.append(f"{'+' if greedy else ''}{','.join(sorted(e.methods))}@{host}{prio} -> {e.name}")
    return " [" + "; ".join(parts) + "]"


def _dump_lines(label: str, depth: int, entries: list[_Entry], greedy_entries: list[_Entry]) -> str:
    """One line of `Router.dump()`; shared with the compiled twin so both print the same tree."""
    line = "  " * depth + label
    if entries:
        line += _describe(entries, False)
    if greedy_entries:
        line += _describe(greedy_entries, True)
    return line


def _dump(node: _Node, label: str, depth: int, lines: list[str]) -> None:
    lines.append(_dump_lines(label, depth, node.entries, node.greedy_entries))
    for lit in sorted(node.literals):
        _dump(node.literals[lit], lit, depth + 1, lines)
    for child in node.constrained:  # in the order they are tried
        _dump(child, "{:" + child.constraint + "}", depth + 1, lines)
    if node.param is not None:
        _dump(node.param, "{}", depth + 1, lines)
