"""Where the authentication plugins find a credential in a request, counted the way a backend might read it.

A request that carries a plugin's credential more than once (two fields of its header, a query parameter or a
cookie named twice, or one in a header and another in the query) is refused with 400 before anything is checked
(issue 19, item 5): the plugin would check one value and the request would go on with all of them, so a backend
that reads another one would trust what nobody checked. Counted as the same name, because some backend reads it so:
a header whose name has `_` where the credential's has `-` (CGI, WSGI and PHP servers read both as
`HTTP_X_API_KEY`); a query name percent-encoded (`api%6Bey`) or after a `;` (servers that split the query on it);
a cookie in any of several Cookie fields."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import unquote_plus

from fastgw.plugins.base import Response


def twice(what: str) -> Response:
    """The answer to a request that carries a credential more than once."""
    return Response(400, {"message": f"More than one {what} in the request"})


def text(value: bytes) -> str:
    """A header value as plugins read it (`ctx.request.header`): UTF-8, else Latin-1."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def header_names(names: Collection[str]) -> frozenset[bytes]:
    """The wire names (lower-case) that carry a credential of `names`: each as given, and with `_` for `-`."""
    wire = {n.lower().encode("latin-1") for n in names}
    return frozenset(wire | {n.replace(b"-", b"_") for n in wire})


def same_name(name: bytes) -> bytes:
    """The name a CGI-style backend reads for a header field (`x_api_key` and `x-api-key` are one)."""
    return name.replace(b"_", b"-")


def query_count(query: str, names: Collection[str]) -> int:
    """How many parameters of the raw `query` are named one of `names` (decoded as `ctx.request.query` decodes
    them), splitting on `;` as well as `&`."""
    if "%" not in query and "+" not in query and not any(n in query for n in names):
        return 0  # PERF: the usual query names nothing of the kind; decoding every name is the rare case
    count = 0
    for piece in query.replace(";", "&").split("&"):
        name = piece.partition("=")[0]
        if name and unquote_plus(name) in names:
            count += 1
    return count


def cookies(raw: list[tuple[bytes, bytes]], names: Collection[str]) -> list[tuple[str, str]]:
    """(name, value) of every cookie named one of `names`, in every Cookie field, in order; a value in double
    quotes loses them. Read as browsers send them (`a=1; b=2`) and most servers parse them: not with
    `http.cookies`, which drops a whole header on one odd pair (`expires=3; apikey=...`) and keeps the last of two."""
    out = []
    for k, v in raw:
        if k == b"cookie":
            for piece in text(v).split(";"):
                name, _, value = piece.partition("=")
                name = name.strip()
                if name in names:
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    out.append((name, value))
    return out


def drop_cookie(headers: Any, name: str) -> None:
    """Take the cookie `name` out of every Cookie field of `headers` (the upstream's; a field left empty goes)."""
    kept = []
    for value in headers.get_all("cookie"):
        parts = [p for p in value.split(";") if p.strip() and p.partition("=")[0].strip() != name]
        if parts:
            kept.append(";".join(parts).strip())
    headers.remove("cookie")
    for value in kept:
        headers.add("cookie", value)


def remove(
    ctx: Any, headers: Collection[bytes], query: Collection[str], cookie_names: Collection[str], scheme: str = ""
) -> None:
    """Take a credential out of the upstream request wherever a plugin reads it: the header fields `headers` (wire
    names, `_` spellings too; an `authorization` field only when it is of the plugin's `scheme`, e.g. `bearer`, as
    another scheme is another plugin's), the query parameters `query` and the cookies `cookie_names` the client
    sent. What the plugins' `hide_credentials` does, for the plugin that passed and, in multi-auth, the others."""
    up = ctx.upstream_request
    for wire in headers:
        name = wire.decode("latin-1")
        if scheme and name == "authorization":
            values = up.headers.get_all(name)
            kept = [v for v in values if v.strip()[: len(scheme) + 1].lower() != scheme + " "]
            if len(kept) != len(values):
                up.headers.remove(name)
                for value in kept:
                    up.headers.add(name, value)
        else:
            up.headers.remove(name)
    req = ctx.request
    if query and req.query_string:
        given = req.query
        for name in query:
            if name in given:
                up.query.pop(name, None)
    if cookie_names and any(k == b"cookie" for k, _ in req.headers.raw()):
        for name in cookie_names:
            drop_cookie(up.headers, name)
