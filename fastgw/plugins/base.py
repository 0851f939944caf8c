"""The plugin API: what a plugin class looks like, and what its phases see (`Context`) and return (`Response`).

A plugin is a class with a `name`, a `priority` (higher runs first), a nested msgspec `Config`, and any subset of
the phases `rewrite`, `access`, `header_filter`, `body_filter`, `log`, each `def phase(self, ctx, conf)` (or
`async def`). A phase returns None to go on, or (`rewrite` and `access` only) a `Response` to answer at once.
The gateway checks a plugin class once, when it is registered; the phase chains of each route are built when the
config loads. See docs/plugins.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl, urlencode

import msgspec
import orjson

if TYPE_CHECKING:
    from fastgw.core import Request
    from fastgw.plugins.chain import Chain
    from fastgw.plugins.consumers import Consumer

PHASES = ("rewrite", "access", "header_filter", "body_filter", "log")
REQUEST_PHASES = ("rewrite", "access")


class Plugin:
    """Base class of plugins. Subclasses set `name`, `priority` and `Config`, and define phases."""

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 500  # third-party plugins run in the 1-999 band unless they say otherwise
    Config: ClassVar[type[msgspec.Struct]]
    # Credentials consumers may hold for this plugin (`consumers.NAME.credentials.<plugin name>`): a Struct type.
    Credential: ClassVar[type[msgspec.Struct] | None] = None

    def prepare(self, conf: Any) -> Any:
        """Called once per configuration of the plugin when the config loads; what it returns is the `conf`
        the phases receive (precompile patterns, hash keys... here, never per request)."""
        return conf

    def credentials(self, creds: list[tuple[Consumer, Any]]) -> None:
        """Called once at load with every consumer's credentials for this plugin (index them here)."""


class EmptyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


Plugin.Config = EmptyConfig


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class Headers:
    """A case-insensitive multi-map of header names to values, in order, as plugins see it: names and values
    are str at the API, kept as the bytes the wire uses inside (names lower-cased), so a plugin that reads or
    sets one header costs one scan, not a conversion of them all."""

    __slots__ = ("_items", "_frozen")

    def __init__(self, items: list[tuple[str, str]] | None = None, frozen: bool = False) -> None:
        self._items: list[tuple[bytes, bytes]] = [
            (k.lower().encode("latin-1"), v.encode("utf-8")) for k, v in items or ()
        ]
        self._frozen = frozen

    @classmethod
    def from_raw(cls, raw: list[tuple[bytes, bytes]], frozen: bool = False) -> Headers:
        """Over wire headers with lower-cased names; copied on the first change (the original stays as it was)."""
        h = cls.__new__(cls)
        h._items = raw if frozen else list(raw)
        h._frozen = frozen
        return h

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower().encode("latin-1")
        for k, v in self._items:
            if k == key:
                return _text(v)
        return default

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [_text(v) for k, v in self._items if k == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower().encode("latin-1")
        return any(k == key for k, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter([(k.decode("latin-1"), _text(v)) for k, v in self._items])

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def _key(self, name: str, value: str = "") -> bytes:
        if self._frozen:
            raise TypeError("these headers are read-only (change ctx.upstream_request.headers instead)")
        # PERF: three `in` tests and a dict hit (~100 ns) where a generator over the forbidden characters and
        # a lower() + encode() cost ~1 us; this runs for every header a plugin sets.
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"invalid header value for {name!r}: {value!r}")
        key = _VALID_KEYS.get(name)
        if key is None:
            if not _TOKEN.match(name):
                raise ValueError(f"invalid header name {name!r}")
            key = name.lower().encode("latin-1")
            if len(_VALID_KEYS) < 10_000:
                _VALID_KEYS[name] = key
        return key

    def set(self, name: str, value: str) -> None:
        """Replace every value of `name` with `value`."""
        key = self._key(name, value)
        items = self._items
        for k, _ in items:
            if k == key:
                self._items = items = [it for it in items if it[0] != key]
                break
        items.append((key, value.encode("utf-8")))

    def add(self, name: str, value: str) -> None:
        self._items.append((self._key(name, value), value.encode("utf-8")))

    def remove(self, name: str) -> None:
        key = self._key(name)
        if any(k == key for k, _ in self._items):
            self._items = [it for it in self._items if it[0] != key]

    def rename(self, old: str, new: str) -> None:
        key, new_key = old.lower().encode("latin-1"), self._key(new)
        self._items = [(new_key if k == key else k, v) for k, v in self._items]

    def raw(self) -> list[tuple[bytes, bytes]]:
        """The wire form: (lower-cased name, value) byte pairs."""
        return self._items


# Header names as plugins spell them -> the wire key (PERF: a dict hit instead of lower() + encode() per lookup).
_KEYS: dict[str, bytes] = {}
_VALID_KEYS: dict[str, bytes] = {}  # the same, for names checked to be valid header names


def _text(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def _parse_query(raw: bytes | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if raw:
        for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            out.setdefault(k, []).append(v)
    return out


class ClientRequest:
    """The request as the client sent it (after path normalization); read-only."""

    __slots__ = ("_req", "_raw", "_raw_query", "_headers", "_query", "client_ip", "params", "body")

    def __init__(self, req: Request, client_ip: str, params: dict[str, str]) -> None:
        self._req = req
        # NOTE: the client's header list and query as they arrived; changes made for the upstream replace
        # req.headers / req.query with new objects, so these stay what the client sent.
        self._raw: list[tuple[bytes, bytes]] = req.headers
        self._raw_query: bytes | None = req.query
        self._headers: Headers | None = None
        self._query: dict[str, list[str]] | None = None
        self.client_ip = client_ip
        self.params = params  # the route's path parameters
        # The whole body, on routes where a plugin asked for it (`needs_body`); None elsewhere (it streams).
        self.body: bytes | None = None

    @property
    def method(self) -> str:
        return self._req.method

    @property
    def path(self) -> str:
        return self._req.path

    @property
    def host(self) -> str:
        return self._req.host

    @property
    def content_length(self) -> int | None:
        return self._req.content_length

    @property
    def query_string(self) -> str:
        q = self._raw_query
        return q.decode("latin-1") if q else ""

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = _parse_query(self._raw_query)
        return self._query

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers.from_raw(self._raw, frozen=True)
        return self._headers

    def header(self, name: str) -> str | None:
        """One header's first value, without building `headers` (the fast way for a single lookup)."""
        key = _KEYS.get(name)
        if key is None:
            key = name.lower().encode("latin-1")
            if len(_KEYS) < 10_000:  # bounded: names come from code and config, but never trust that blindly
                _KEYS[name] = key
        for k, v in self._raw:
            if k == key:
                return _text(v)
        return None


class UpstreamRequest:
    """What goes to the integration; starts as the client's request and is changed by rewrite/access phases.

    Only what a plugin touched is rebuilt: `headers` is copied on first access, `query` parsed on first access."""

    __slots__ = ("_req", "_headers", "_query", "path", "body")

    def __init__(self, req: Request) -> None:
        self._req = req
        self._headers: Headers | None = None
        self._query: dict[str, list[str]] | None = None
        self.path: str | None = None  # another path for the upstream: replaces the route's own rewrite
        # Another body for the integration (only on routes where a plugin collected it: `needs_body`).
        self.body: bytes | None = None

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers.from_raw(self._req.headers)  # a copy: the client's list stays intact
        return self._headers

    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            self._query = _parse_query(self._req.query)
        return self._query

    def apply(self, req: Request) -> None:
        """Write the changes into the request the integration sends."""
        if self._headers is not None:
            req.headers = self._headers.raw()
        if self._query is not None:
            req.query = urlencode([(k, v) for k, vs in self._query.items() for v in vs]).encode() or None
        if self.path is not None and not self.path.startswith("/"):
            raise ValueError(f"the upstream path must start with '/', got {self.path!r}")
        if self.body is not None:
            if not req.complete:
                raise ValueError("the body can only be replaced on routes whose plugins collect it (needs_body)")
            req.body = [self.body] if self.body else []
            req.buffered = len(self.body)
            req.chunked = False
            req.content_length = len(self.body)


class ResponseHead:
    """The response's status and headers, as `header_filter` phases see and change them."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers
        # The whole body, for body_filter phases (responses made in the gateway); None while it streams.
        self.body: bytes | None = None


class RouteInfo:
    """What a plugin may know of the route that matched."""

    __slots__ = ("name", "path", "methods", "api", "stage", "stage_variables")

    def __init__(
        self,
        name: str,
        path: str,
        methods: tuple[str, ...],
        api: str | None,
        stage: str | None,
        stage_variables: dict[str, str] | None,
    ) -> None:
        self.name = name
        self.path = path  # the template, without the stage
        self.methods = methods
        self.api = api
        self.stage = stage
        self.stage_variables = stage_variables or {}


class Context:
    """What the phases of one request share. `vars` is free for plugins to pass values along."""

    __slots__ = ("request", "_upstream", "response", "consumer", "credential", "route", "vars", "chain")

    def __init__(self, request: ClientRequest, route: RouteInfo, chain: Chain) -> None:
        self.request = request
        self._upstream: UpstreamRequest | None = None
        self.response: ResponseHead | None = None
        self.consumer: Consumer | None = None
        self.credential: Any = None  # the credential the consumer authenticated with
        self.route = route
        self.vars: dict[str, Any] = {}
        self.chain = chain

    @property
    def upstream_request(self) -> UpstreamRequest:
        if self._upstream is None:
            self._upstream = UpstreamRequest(self.request._req)
        return self._upstream


class Response:
    """A phase's answer: `Response(401, {"message": "Unauthorized"}, headers={"WWW-Authenticate": "Basic"})`.

    A dict or list body is sent as JSON, a str as UTF-8 text, bytes as they are; `content_type` overrides."""

    __slots__ = ("status", "headers", "body")

    def __init__(
        self,
        status: int = 200,
        body: Any = b"",
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> None:
        if not 200 <= status <= 599:
            raise ValueError(f"a plugin's response status must be 200-599, got {status}")
        self.status = status
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or ())
        if isinstance(body, (bytes, bytearray)):
            data, ctype = bytes(body), "application/octet-stream"
        elif isinstance(body, str):
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = orjson.dumps(body), "application/json"
        self.body = data
        if content_type is not None:
            ctype = content_type
        if data and not any(k.lower() == "content-type" for k, _ in items):
            items.append(("content-type", ctype))
        self.headers = items
