"""`key-auth`: clients authenticate with an API key (header, query parameter or cookie) that a consumer holds.

Keys may be stored as SHA-256 hex digests (`key_sha256`) so the config never holds them in clear. A presented
key is hashed and looked up by its digest."""

from __future__ import annotations

import hashlib
from http.cookies import SimpleCookie
from typing import Annotated, Any

import msgspec

from fastgw.core import KeyAuthStep
from fastgw.plugins.base import Context, Plugin, Response
from fastgw.plugins.consumers import Consumer

NO_KEY = {"message": "No API key found in request"}
BAD_KEY = {"message": "Invalid authentication credentials"}


class KeyAuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key_names: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(default_factory=lambda: ["apikey"])
    in_header: bool = True
    in_query: bool = True
    in_cookie: bool = False
    # Remove the credential (header, query parameter or cookie) before the request goes upstream.
    hide_credentials: bool = False
    realm: str = "fastgw"


class KeyCredential(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str | None = None
    key_sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-fA-F]{64}$")] | None = None


class KeyAuth(Plugin):
    name = "key-auth"
    priority = 2500
    Config = KeyAuthConfig
    Credential = KeyCredential

    def __init__(self) -> None:
        self.by_digest: dict[bytes, Consumer] = {}
        self.seen: dict[str, Consumer] = {}

    def credentials(self, creds: list[tuple[Consumer, Any]]) -> None:
        index: dict[bytes, Consumer] = {}
        for consumer, cred in creds:
            if (cred.key is None) == (cred.key_sha256 is None):
                raise ValueError(f"consumer {consumer.name!r}: give exactly one of key or key_sha256")
            digest = hashlib.sha256(cred.key.encode()).digest() if cred.key else bytes.fromhex(cred.key_sha256)
            other = index.get(digest)
            if other is not None and other is not consumer:
                raise ValueError(f"consumers {other.name!r} and {consumer.name!r} hold the same API key")
            index[digest] = consumer
        self.by_digest = index
        self.seen = {}

    def prepare(self, conf: KeyAuthConfig) -> Any:
        names = [n.lower() for n in conf.key_names]
        # PERF: the usual configuration (keys in one header, left for the upstream) gets a path of its own.
        only = names[0] if len(names) == 1 and conf.in_header and not conf.hide_credentials else None
        return (conf, names, f'Key realm="{conf.realm}"', only)

    def step(self, phase: str, prepared: Any) -> Any:
        """The compiled step of the usual configurations (fastgw.core.steps.KeyAuthStep): a key met before, given
        once, in the one header or in the query; anything else is `access`."""
        conf, names, _, only = prepared
        if conf.in_cookie or conf.hide_credentials:
            return None
        if only is not None:
            return KeyAuthStep(self, prepared, self.access, only, frozenset(), (), conf.in_query)
        if not conf.in_query:
            return None
        try:
            wire = frozenset(w for n in names for w in (n.encode("latin-1"), n.replace("-", "_").encode("latin-1")))
        except UnicodeEncodeError:
            return None
        return KeyAuthStep(self, prepared, self.access, None, wire if conf.in_header else frozenset(),
                           tuple(conf.key_names), True)  # fmt: skip

    def access(self, ctx: Context, prepared: Any) -> Response | None:
        only = prepared[3]
        if only is not None:
            key = ctx.request.header(only)
            if key:
                consumer = self.seen.get(key)
                if consumer is not None:
                    ctx.consumer = consumer
                    ctx.credential = only
                    return None
        conf, names, challenge, _ = prepared
        req = ctx.request
        key = where = name = None
        if conf.in_header:
            for n in names:
                key = req.header(n)
                if key is not None:
                    where, name = "header", n
                    break
        if key is None and conf.in_query and req.query_string:
            for n in conf.key_names:
                values = req.query.get(n)
                if values:
                    key, where, name = values[0], "query", n
                    break
        if key is None and conf.in_cookie:
            raw = req.header("cookie")
            if raw:
                jar: SimpleCookie = SimpleCookie()
                jar.load(raw)
                for n in conf.key_names:
                    if n in jar:
                        key, where, name = jar[n].value, "cookie", n
                        break
        if not key:
            return Response(401, NO_KEY, headers={"WWW-Authenticate": challenge})
        # NOTE: keys are compared as SHA-256 digests (a dict lookup). The time a lookup takes depends only on
        # the digest of what the client sent, which a client cannot steer byte by byte toward a stored key's
        # digest, so timing reveals nothing about the stored keys; no clear-text key is compared at all.
        # PERF: keys that were valid are remembered by their text (a bounded dict): str keys are compared only
        # after their randomized hashes match, so this reveals no more, and it spares a SHA-256 (~0.4 us).
        consumer = self.seen.get(key)
        if consumer is None:
            consumer = self.by_digest.get(hashlib.sha256(key.encode()).digest())
            if consumer is None:
                return Response(401, BAD_KEY, headers={"WWW-Authenticate": challenge})
            if len(self.seen) < 10_000:
                self.seen[key] = consumer
        ctx.consumer = consumer
        ctx.credential = name
        if conf.hide_credentials:
            up = ctx.upstream_request
            if where == "header":
                up.headers.remove(name)  # type: ignore[arg-type]
            elif where == "query":
                up.query.pop(name, None)  # type: ignore[arg-type]
            else:
                _drop_cookie(up.headers, name)  # type: ignore[arg-type]
        return None


def _drop_cookie(headers: Any, name: str) -> None:
    kept = []
    for value in headers.get_all("cookie"):
        parts = [p for p in value.split(";") if p.strip() and p.strip().split("=", 1)[0] != name]
        if parts:
            kept.append(";".join(parts).strip())
    headers.remove("cookie")
    for value in kept:
        headers.add("cookie", value)


PLUGINS = (KeyAuth,)
