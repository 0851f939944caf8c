"""Finding a request's route: the path policy before the router, API Gateway's resource rules after it.

`RouteTable.route` normalizes the raw path under the path policy and matches it; the path it returns is the one
matched and the one forwarded (a route is only ever reached by a path normalized under that route's own policy).
`RouteTable.miss` answers a request that matched no route the way its part of the config would: plain routes
404 / 405, HTTP APIs 404 only, REST APIs 403 Missing Authentication Token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from fastgw.core import (
    ANY,
    PATH_BACKSLASH_SEPARATOR,
    PATH_SLASHES_DECODE,
    PATH_SLASHES_KEEP,
    PATH_SLASHES_REJECT,
    Router,
    normalize_path,
    parse_template,
)
from fastgw.core.router import GREEDY, LITERAL

__all__ = ["MISSING_TOKEN", "HeaderRule", "RouteTable", "plain_template", "policy_flags"]

_SLASHES = {"reject": PATH_SLASHES_REJECT, "keep": PATH_SLASHES_KEEP, "decode": PATH_SLASHES_DECODE}
_JSON = ("content-type", "application/json")
# API Gateway's bytes (docs/functions.md gives the sources): no space after the colon in these.
MISSING_TOKEN = b'{"message":"Missing Authentication Token"}'
_NOT_FOUND = b'{"message":"Not Found"}'
_NOT_ALLOWED = b'{"message":"Method Not Allowed"}'
# NOTE: API Gateway names the error type of its own answers in this header; clients (the AWS SDKs) read it.
_MISSING_TOKEN_HEADERS = [_JSON, ("x-amzn-ErrorType", "MissingAuthenticationTokenException")]

Found = tuple[object, dict[str, str]] | tuple[None, tuple[str, ...]] | None


def policy_flags(escaped_slashes: str | None, backslash: str | None) -> int:
    """The core's policy int for a path policy's two fields (None: the safe default)."""
    flags = _SLASHES[escaped_slashes or "reject"]
    return flags | PATH_BACKSLASH_SEPARATOR if backslash == "separator" else flags


def plain_template(path: str) -> str:
    """A route template with its parameters' constraints left out (`/users/{id:[0-9]+}` -> `/users/{id}`): the
    resource a Lambda event names, as AWS would show it (API Gateway has no constraints)."""
    if ":" not in path:
        return path
    shape, names = parse_template(path)
    params = iter(names)
    out = [text if kind == LITERAL else f"{{{next(params)}{'+' if kind == GREEDY else ''}}}" for kind, text in shape]
    return "/" + "/".join(out)


def _first_segment(path: str) -> str:
    end = path.find("/", 1)
    return path if end < 0 else path[:end]


class RouteTable:
    """The router and what the server needs around it, built once per config load and never changed.

    `routes[i]` describes the router's route `i`: (path template as matched, host, api type or None, policy).
    """

    __slots__ = ("router", "default", "order", "policy_of", "rest", "resources", "resource_of", "resource_type",
                 "rest_prefixes", "rest_only", "simple")  # fmt: skip

    def __init__(
        self,
        router: Router,
        routes: Sequence[tuple[str, str | None, str | None, int]],
        default_policy: int = PATH_SLASHES_REJECT,
        rest_prefixes: frozenset[str] = frozenset(),
    ) -> None:
        self.router = router
        self.default = default_policy
        self.policy_of = tuple(r[3] for r in routes)
        others = sorted({p for p in self.policy_of if p != default_policy})
        # The default policy first: its answer (a refusal, 404, 405) stands when no other policy finds a route.
        self.order = (default_policy, *others) if others else ()
        self.rest = tuple(r[2] == "rest" for r in routes)
        self.rest_prefixes = rest_prefixes
        # A listener serving only REST APIs is like an API's own domain: every miss is Missing Authentication Token.
        self.rest_only = bool(routes) and all(self.rest)
        # The resources: one entry per path template and host, any method; which one a path lands on decides
        # how API Gateway answers (REST: resource first, then method; HTTP API: 404 for a wrong method).
        self.resources: Router | None = None
        self.resource_of: tuple[int, ...] = ()
        self.resource_type: list[str | None] = []
        if any(r[2] is not None for r in routes):
            resources = Router()
            keys: dict[tuple[str, object], int] = {}
            resource_of = []
            for path, host, api_type, _ in routes:
                key = ((host or "").lower(), parse_template(path)[0])
                r = keys.get(key)
                if r is None:
                    r = keys[key] = len(self.resource_type)
                    self.resource_type.append(api_type)
                    resources.add(r, [ANY], path, host=host)
                resource_of.append(r)
            resources.freeze()
            self.resources = resources
            self.resource_of = tuple(resource_of)
        # One path policy and no API resource rules: routing is `router.route(req, default)`, one compiled call.
        self.simple = not self.order and self.resources is None

    def route(self, method: str, host: str, raw: bytes) -> tuple[str | None, Found]:
        """(the normalized path, the router's answer for it); (None, None) when the path policy refuses it."""
        # PERF: with one policy in the config (the usual case), or a path without `%` or `\` (on which every policy
        # agrees), this is one normalize and one match, as before the policy existed. The method call itself costs
        # 55-90 ns a request over calling the two directly (timeit, compiled core, this 2-core machine): well under
        # 1% of a proxied request, so it stays Python rather than moving into the core.
        if self.order and (b"%" in raw or b"\\" in raw):
            return self._route_mixed(method, host, raw)
        path = normalize_path(raw, self.default)
        if path is None:
            return None, None
        found = self.router.match(method, host, path)
        if self.resources is not None and found is not None and found[0] is not None:
            found = self._resource_first(method, host, path, found)
        return path, found

    def _route_mixed(self, method: str, host: str, raw: bytes) -> tuple[str | None, Found]:
        first: tuple[str | None, Found] | None = None
        for policy in self.order:
            path = normalize_path(raw, policy)
            found: Found = None
            if path is not None:
                found = self.router.match(method, host, path)
                if found is not None and found[0] is not None:
                    if self.policy_of[cast(int, found[0])] == policy:
                        if self.resources is not None:
                            found = self._resource_first(method, host, path, found)
                        return path, found
                    path = found = None  # that route reads paths under another policy: refused under this one
            if first is None:
                first = (path, found)
        assert first is not None
        return first

    def _resource_first(self, method: str, host: str, path: str, found: Found) -> Found:
        """REST APIs choose the most specific resource first, then the method: a request never falls through to a
        less specific resource (such as `/{proxy+}`) because the most specific one lacks its method."""
        i = found[0]  # type: ignore[index]
        if not self.rest[i]:  # type: ignore[index]
            return found
        assert self.resources is not None
        res = self.resources.match(method, host, path)
        if res is not None and res[0] != self.resource_of[i] and self.resource_type[res[0]] == "rest":  # type: ignore[index, call-overload]
            # NOTE: "no such method here" rather than "no such path", so a CORS preflight can still find the route
            # of the method it asks about; anything else under the stage answers Missing Authentication Token.
            return None, ()
        return found

    def fall_through(
        self, method: str, host: str, path: str, skip: set[int], origin: int
    ) -> tuple[int, dict[str, str]] | None:
        """The route a request goes on to when none of the routes told apart by headers in router entry `origin`
        takes it: the next less specific one that matches, as `match` would answer were the entries in `skip`
        (`origin`, and more after falling through several) not there. None: no route at all (a miss, answered 404).

        Only a route that reads paths under `origin`'s policy qualifies (`path` was normalized under it), and under a
        REST API the resource rule stands: a request never falls through to a less specific resource.

        NOTE: `origin` is named, not read off `skip`: after one fall-through `skip` also holds entries passed over
        for another policy, and a set of ints iterates from its lowest, which may be one of those."""
        policy = self.policy_of[origin] if self.policy_of else None
        while True:
            found = self.router.match_past(method, host, path, frozenset(skip))
            if found is None or found[0] is None:
                return None
            i = cast(int, found[0])
            if policy is not None and self.policy_of[i] != policy:
                skip.add(i)
                continue
            if self.resources is not None:
                found = self._resource_first(method, host, path, found)
                if found is None or found[0] is None:
                    return None
            return i, cast(dict[str, str], found[1])

    def miss(self, host: str, path: str, found: Found) -> tuple[int, list[tuple[str, str]], bytes]:
        """The answer to a request no route takes: (status, headers, body)."""
        if self.rest_only or (self.rest_prefixes and _first_segment(path) in self.rest_prefixes):
            return 403, list(_MISSING_TOKEN_HEADERS), MISSING_TOKEN
        if found is None:
            return 404, [_JSON], _NOT_FOUND
        if self.resources is not None:
            res = self.resources.match("GET", host, path)
            if res is not None and self.resource_type[res[0]] == "http":  # type: ignore[call-overload]
                return 404, [_JSON], _NOT_FOUND  # HTTP APIs do not answer 405
        return 405, [_JSON, ("allow", ", ".join(found[1]))], _NOT_ALLOWED


_EXACT, _PREFIX, _REGEX, _PRESENT = range(4)


class HeaderRule:
    """A route's `headers` conditions, compiled once at load: `matches` reads the request's header list
    (lower-cased names, raw values; a condition's text is compared as UTF-8, as clients send it). A header sent
    more than once matches when any of its values does."""

    __slots__ = ("conditions", "spec")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        """`spec` is the route's `headers` mapping; raises ValueError(key, message) for a bad condition."""
        self.spec = dict(spec)
        conditions: list[tuple[bytes, int, Any]] = []
        for name, cond in spec.items():
            key = name.lower().encode("latin-1")
            if isinstance(cond, str):
                conditions.append((key, _EXACT, frozenset((cond.encode(),))))
            elif isinstance(cond, list):
                if not cond:
                    raise ValueError(name, "expected at least one value")
                conditions.append((key, _EXACT, frozenset(v.encode() for v in cond)))
            else:
                given = [f for f in ("exact", "prefix", "regex", "present") if getattr(cond, f) is not None]
                if len(given) != 1:
                    raise ValueError(name, "expected exactly one of exact, prefix, regex, present")
                if cond.exact is not None:
                    conditions.append((key, _EXACT, frozenset((cond.exact.encode(),))))
                elif cond.prefix is not None:
                    conditions.append((key, _PREFIX, cond.prefix.encode()))
                elif cond.regex is not None:
                    try:
                        pattern = re.compile(cond.regex.encode())
                    except re.error as exc:
                        raise ValueError(f"{name}.regex", f"not a regular expression ({exc})") from None
                    conditions.append((key, _REGEX, pattern))
                else:
                    conditions.append((key, _PRESENT, bool(cond.present)))
        self.conditions = tuple(conditions)

    def __len__(self) -> int:
        return len(self.conditions)

    def matches(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        for key, kind, want in self.conditions:
            values = [v for k, v in headers if k == key]
            if kind == _PRESENT:
                if bool(values) != want:
                    return False
            elif kind == _EXACT:
                if not any(v in want for v in values):
                    return False
            elif kind == _PREFIX:
                if not any(v.startswith(want) for v in values):
                    return False
            elif not any(want.fullmatch(v) for v in values):
                return False
        return True
