"""Compiled steps of the built-in plugins: the pure-Python twin (the spec, the test oracle and the fallback) of
`fastgw/core/steps.pyx`.

A step stands in a route's phase tuple where a plugin's Python phase would (`Plugin.step`, asked once per phase
and configuration when the chain is built): the phase loop (`run_phases`, `filter_head`) runs it without a Python
frame, on the compiled side. A step covers the common case of its plugin's phase exactly; a request it does not
cover (a key the step has not met yet, a CORS preflight, an address that is not a plain IPv4 one) it hands to
the plugin's own phase (`fallback(ctx, conf)`), so every refusal and every rare path is the plugin's, byte for byte.
A configuration a step does not cover gets no step at all: the plugin's Python phase runs as it always did.
tests/property/test_steps_twins.py holds each step, both twins, to the plugin's own phase.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from typing import Any

from fastgw.core.phases import Context, _text

__all__ = [
    "AclStep",
    "CorsFilterStep",
    "CorsStep",
    "HeaderStep",
    "IpStep",
    "KeyAuthStep",
    "RequestIdStep",
    "Step",
    "next_request_id",
    "parse_ipv4",
    "upstream_has",
    "upstream_set",
]

# Header operations of a HeaderStep: (REMOVE | SET | ADD, wire name, value bytes).
REMOVE, SET, ADD = 0, 1, 2

_prefix = str(uuid.uuid4()) + "#"
_counter = itertools.count(1)


def _reseed() -> None:
    """In a forked worker: a base of its own, so ids never collide across the workers of one gateway."""
    global _prefix, _counter
    _prefix = str(uuid.uuid4()) + "#"
    _counter = itertools.count(1)


os.register_at_fork(after_in_child=_reseed)


def next_request_id() -> str:
    """A new request id, "uuid#counter": a random UUID per worker process and a counter (unique, and cheap: no
    random bytes per request). The request-id plugin's phase and its step share it."""
    return _prefix + str(next(_counter))


class Step:
    """One phase of one plugin configuration, as the phase loop runs it: `step(ctx, conf)` as a phase is called."""

    __slots__ = ()

    def __call__(self, ctx: Context, conf: Any) -> Any:
        return self.run(ctx)

    def run(self, ctx: Context) -> Any:  # pragma: no cover - every step defines it
        raise NotImplementedError


# -- the upstream request's headers, as the steps change them (without building the header map) ---------------


def upstream_set(ctx: Context, key: bytes, value: bytes | None) -> None:
    """Replace every value of `key` (a valid, lower-case wire name) with `value`, or remove them (None), in the
    upstream request: `ctx.upstream_request.headers.set / remove`, without building the map when nobody has."""
    up = ctx._upstream
    if up is not None and up._headers is not None:
        items = [it for it in up._headers._items if it[0] != key]
        if value is not None:
            items.append((key, value))
        up._headers._items = items
        return
    if up is not None:
        if up._sets is None:
            up._sets = []
        up._sets.append((key, value))
        return
    if ctx._upstream_sets is None:
        ctx._upstream_sets = []
    ctx._upstream_sets.append((key, value))


def upstream_has(ctx: Context, key: bytes) -> bool:
    """`key in ctx.upstream_request.headers`, without building the map."""
    up = ctx._upstream
    if up is not None and up._headers is not None:
        return any(k == key for k, _ in up._headers._items)
    sets = up._sets if up is not None else ctx._upstream_sets
    if sets:
        for k, v in reversed(sets):
            if k == key:
                return v is not None
    return any(k == key for k, _ in ctx._req.headers)


def _first(raw: list[tuple[bytes, bytes]], key: bytes) -> tuple[int, bytes | None]:
    """How many fields named `key` `raw` has, and the first one's value."""
    count, first = 0, None
    for k, v in raw:
        if k == key:
            if first is None:
                first = v
            count += 1
    return count, first


# -- key-auth -------------------------------------------------------------------------------------------------


class KeyAuthStep(Step):
    """key-auth's access phase where the key is one the plugin has met (`plugin.seen`), found once, in plain form:
    in the one header of the usual configuration, or in one query parameter with nothing to decode. Anything else
    (no key, an unknown key, a key given twice, a query with `%`, `+` or `;`) is the plugin's `access`."""

    __slots__ = ("plugin", "seen", "conf", "fallback", "header", "header_name", "alias", "wire", "query", "in_query")

    def __init__(self, plugin: Any, conf: Any, fallback: Any, header: str | None, wire: frozenset[bytes],
                 query: tuple[str, ...], in_query: bool) -> None:  # fmt: skip
        self.plugin = plugin
        # The plugin's keys met before (key text -> consumer): one dict for the plugin's life, cleared in place
        # when credentials load, so the step holds it.
        self.seen: dict[str, Any] = plugin.seen
        self.conf = conf
        self.fallback = fallback  # the plugin's `access`
        self.header = header.encode("latin-1") if header is not None else None
        self.header_name = header
        self.alias = self.header.replace(b"-", b"_") if self.header is not None and b"-" in self.header else None
        self.wire = wire  # header names (lower-case, `_` spellings too) whose presence sends the query case away
        # The query parameter names, as configured, that can match a name in a query with nothing to decode.
        # (A name beyond Latin-1 is never the name of a parameter read as Latin-1 without escapes.)
        self.query: tuple[tuple[bytes, str], ...] = tuple(
            (n.encode("latin-1"), n) for n in query if n.isascii() or max(map(ord, n)) < 256
        )
        self.in_query = in_query

    def run(self, ctx: Context) -> Any:
        raw = ctx._raw
        if self.header is not None:
            count, value = _first(raw, self.header)
            if count == 1 and (self.alias is None or _first(raw, self.alias)[0] == 0):
                q = ctx._raw_query
                if not (self.in_query and q):
                    consumer = self.seen.get(_text(value))  # type: ignore[arg-type]
                    if consumer is not None:
                        _authenticated(ctx, consumer, self.header_name)
                        return None
            return self.fallback(ctx, self.conf)
        q = ctx._raw_query
        if not q or b"%" in q or b"+" in q or b";" in q or any(k in self.wire for k, _ in raw):
            return self.fallback(ctx, self.conf)
        found = None
        count = 0
        for field in q.split(b"&"):
            name, _, value = field.partition(b"=")
            for n, text in self.query:
                if n == name:
                    found = (value, text)
                    count += 1
                    break
        if count != 1:
            return self.fallback(ctx, self.conf)
        key = found[0].decode("latin-1")  # type: ignore[index]
        consumer = self.seen.get(key) if key else None
        if consumer is None:
            return self.fallback(ctx, self.conf)
        _authenticated(ctx, consumer, found[1])  # type: ignore[index]
        return None


def _authenticated(ctx: Context, consumer: Any, credential: str | None) -> None:
    """`ctx.consumer = consumer; ctx.credential = credential`."""
    ctx._consumer = consumer
    if ctx.chain.per_consumer:
        ctx._switch = ctx.chain.for_consumer(consumer)
    ctx.credential = credential


# -- request-id -----------------------------------------------------------------------------------------------

_SAFE_ID = re.compile(r"[A-Za-z0-9._:/+=#-]{1,200}")


class RequestIdStep(Step):
    """request-id's rewrite phase (the `uuid#counter` generator): the incoming id kept when it is well-formed, or a
    new one; passed upstream, into `ctx.vars["request_id"]`, and echoed on whatever response comes."""

    __slots__ = ("key", "keep", "echo")

    def __init__(self, name: str, keep: bool, echo: bool) -> None:
        self.key = name.lower().encode("latin-1")
        self.keep = keep
        self.echo = echo

    def run(self, ctx: Context) -> Any:
        rid = None
        if self.keep:
            _, value = _first(ctx._raw, self.key)
            # NOTE: fullmatch where the plugin's pattern ends in `$`, which would also take a trailing newline:
            # no header value holds one (the parser refuses it).
            if value is not None and _SAFE_ID.fullmatch(_text(value)):
                rid = value.decode("latin-1")
        if rid is None:
            rid = next_request_id()
        ctx.vars["request_id"] = rid
        value = rid.encode("latin-1")
        upstream_set(ctx, self.key, value)
        if self.echo:
            if ctx._reply_headers is None:
                ctx._reply_headers = []
            ctx._reply_headers.append((self.key, value))
        return None


# -- request-transformer --------------------------------------------------------------------------------------


class HeaderStep(Step):
    """request-transformer's access phase when it only removes, sets and adds upstream headers with fixed values
    (names valid, values without CR, LF or NUL: checked when the step is made), in the plugin's order."""

    __slots__ = ("ops",)

    def __init__(self, ops: tuple[tuple[int, bytes, bytes | None], ...]) -> None:
        self.ops = ops

    def run(self, ctx: Context) -> Any:
        for kind, key, value in self.ops:
            if kind == REMOVE:
                upstream_set(ctx, key, None)
            elif kind == SET or not upstream_has(ctx, key):
                upstream_set(ctx, key, value)
        return None


# -- acl, ip-restriction, cors --------------------------------------------------------------------------------


class AclStep(Step):
    """acl's access phase: the consumer's groups against the allowed and denied ones. `unauthorized` and
    `forbidden` are the plugin's answers (Responses the exchange only reads)."""

    __slots__ = ("allow", "deny", "unauthorized", "forbidden")

    def __init__(self, allow: frozenset[str], deny: frozenset[str], unauthorized: Any, forbidden: Any) -> None:
        self.allow = allow
        self.deny = deny
        self.unauthorized = unauthorized
        self.forbidden = forbidden

    def run(self, ctx: Context) -> Any:
        consumer = ctx._consumer
        if consumer is None:
            return self.unauthorized
        groups = consumer.groups
        if any(g in self.deny for g in groups) or (self.allow and not any(g in self.allow for g in groups)):
            return self.forbidden
        return None


def parse_ipv4(text: str) -> int:
    """A dotted-quad IPv4 address as `ipaddress.IPv4Address` reads it (four decimal octets, no leading zeros), as
    an integer; -1 for anything else."""
    parts = text.split(".")
    if len(parts) != 4:
        return -1
    out = 0
    for p in parts:
        if not 1 <= len(p) <= 3 or not all("0" <= c <= "9" for c in p) or (len(p) > 1 and p[0] == "0"):
            return -1
        v = int(p)
        if v > 255:
            return -1
        out = out << 8 | v
    return out


class IpStep(Step):
    """ip-restriction's access phase for a client address in dotted-quad IPv4 form (IPv6 networks never hold
    one); any other address is the plugin's `access`. Networks are (network, mask) integers."""

    __slots__ = ("allow", "deny", "any_allow", "refusal", "conf", "fallback")

    def __init__(self, allow: tuple[tuple[int, int], ...], deny: tuple[tuple[int, int], ...], any_allow: bool,
                 refusal: Any, conf: Any, fallback: Any) -> None:  # fmt: skip
        self.allow = allow  # the IPv4 networks of `allow`
        self.deny = deny
        self.any_allow = any_allow  # `allow` lists anything (IPv6 networks too)
        self.refusal = refusal
        self.conf = conf
        self.fallback = fallback

    def run(self, ctx: Context) -> Any:
        addr = parse_ipv4(ctx._client_ip)
        if addr < 0:
            return self.fallback(ctx, self.conf)
        if any(addr & mask == net for net, mask in self.deny):
            return self.refusal
        if self.any_allow and not any(addr & mask == net for net, mask in self.allow):
            return self.refusal
        return None


class CorsStep(Step):
    """cors's rewrite phase: a request that is not a preflight (an OPTIONS with Origin and
    Access-Control-Request-Method) goes on at once; a preflight is the plugin's `rewrite`."""

    __slots__ = ("conf", "fallback")

    def __init__(self, conf: Any, fallback: Any) -> None:
        self.conf = conf
        self.fallback = fallback

    def run(self, ctx: Context) -> Any:
        if ctx._req.method != "OPTIONS":
            return None
        raw = ctx._raw
        if _first(raw, b"origin")[0] == 0 or _first(raw, b"access-control-request-method")[0] == 0:
            return None
        return self.fallback(ctx, self.conf)


class CorsFilterStep(Step):
    """cors's header_filter phase: a response to a request without Origin (or to a preflight) is left as it is;
    any other is the plugin's `header_filter`."""

    __slots__ = ("conf", "fallback")

    def __init__(self, conf: Any, fallback: Any) -> None:
        self.conf = conf
        self.fallback = fallback

    def run(self, ctx: Context) -> Any:
        if ctx.response is None or _first(ctx._raw, b"origin")[0] == 0 or ctx.vars.get("cors_preflight"):
            return None
        return self.fallback(ctx, self.conf)
