"""`key-auth`: clients authenticate with an API key (header, query parameter or cookie) that a consumer holds.

Keys may be stored as SHA-256 hex digests (`key_sha256`) so the config never holds them in clear. A presented
key is hashed and looked up by its digest. A request that carries a key more than once (in two fields, two
parameters or cookies, or in two of those places) is refused with 400: see `fastgw.plugins._credentials`."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, NamedTuple

import msgspec

from fastgw.core import KeyAuthStep
from fastgw.plugins import _credentials as credentials
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


class _Prepared(NamedTuple):
    conf: KeyAuthConfig
    names: frozenset[str]  # header names, lower-case
    challenge: str
    only: str | None  # the one header name of the usual configuration
    only_alias: str | None  # its `_` spelling, when it has a `-`
    wire: frozenset[bytes]  # header names on the wire, `_` spellings too (empty: keys are not read from headers)
    query_names: frozenset[str]  # query parameter and cookie names, as configured
    in_query: bool


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
        # NOTE: cleared, never replaced: the compiled steps hold this dict (fastgw.core.steps.KeyAuthStep).
        self.seen.clear()

    def prepare(self, conf: KeyAuthConfig) -> _Prepared:
        names = list(dict.fromkeys(n.lower() for n in conf.key_names))
        # PERF: the usual configuration (keys in one header, left for the upstream) gets a path of its own.
        usual = len(names) == 1 and conf.in_header and not conf.hide_credentials and not conf.in_cookie
        only = names[0] if usual else None
        # ...and with a `-` in that name, the `_` spelling must be absent too (see fastgw.plugins._credentials).
        only_alias = only.replace("-", "_") if only is not None and "-" in only else None
        return _Prepared(conf, frozenset(names), f'Key realm="{conf.realm}"', only, only_alias,
                         credentials.header_names(names) if conf.in_header else frozenset(),
                         frozenset(conf.key_names), conf.in_query)  # fmt: skip

    def step(self, phase: str, prepared: _Prepared) -> Any:
        """The compiled step of the usual configurations (fastgw.core.steps.KeyAuthStep): a key met before, given
        once, in the one header or in a query with nothing to decode; anything else is `access`."""
        conf = prepared.conf
        if conf.in_cookie or conf.hide_credentials:
            return None
        if prepared.only is not None:
            return KeyAuthStep(self, prepared, self.access, prepared.only, frozenset(), (), conf.in_query)
        if not conf.in_query:
            return None
        return KeyAuthStep(self, prepared, self.access, None, prepared.wire, tuple(conf.key_names), True)

    def access(self, ctx: Context, prepared: _Prepared) -> Response | None:
        req = ctx.request
        only = prepared.only
        if only is not None:
            # PERF: a remembered key in the one header, the header once and no query to look at. Counting the
            # fields (get_all) where header() stopped at the first costs ~1,000 instructions and the query test
            # ~500: the plugin chain of bench/instructions.py --scenario plugins takes 100,428 per exchange,
            # 98,672 before (a Python loop over the fields cost ~2,800, sum(map(...)) ~4,600).
            values = req.headers.get_all(only)
            if len(values) == 1:
                consumer = self.seen.get(values[0])
                if (
                    consumer is not None
                    and (prepared.only_alias is None or not req.headers.get_all(prepared.only_alias))
                    and not (prepared.in_query and req.query_string)
                ):
                    ctx.consumer = consumer
                    ctx.credential = only
                    return None
        conf = prepared.conf
        # Every place the key may be, counted: more than one is refused before any is checked.
        raw = req.headers.raw()
        fields = [(k, v) for k, v in raw if k in prepared.wire] if prepared.wire else []
        in_query = credentials.query_count(req.query_string, prepared.query_names) if conf.in_query else 0
        in_cookie = credentials.cookies(raw, prepared.query_names) if conf.in_cookie else []
        if len(fields) + in_query + len(in_cookie) > 1:
            return credentials.twice("API key")
        key: str | None = None
        name = ""
        if fields:
            k, v = fields[0]
            if k.decode("latin-1") in prepared.names:  # not the `_` spelling, which only a backend reads
                key, name = credentials.text(v), k.decode("latin-1")
        elif in_query:
            for n in conf.key_names:
                given = req.query.get(n)
                if given:
                    key, name = given[0], n
                    break
        elif in_cookie:
            name, key = in_cookie[0]
        if not key:
            return Response(401, NO_KEY, headers={"WWW-Authenticate": prepared.challenge})
        # NOTE: keys are compared as SHA-256 digests (a dict lookup). The time a lookup takes depends only on
        # the digest of what the client sent, which a client cannot steer byte by byte toward a stored key's
        # digest, so timing reveals nothing about the stored keys; no clear-text key is compared at all.
        # PERF: keys that were valid are remembered by their text (a bounded dict): str keys are compared only
        # after their randomized hashes match, so this reveals no more, and it spares a SHA-256 (~0.4 us).
        consumer = self.seen.get(key)
        if consumer is None:
            consumer = self.by_digest.get(hashlib.sha256(key.encode()).digest())
            if consumer is None:
                return Response(401, BAD_KEY, headers={"WWW-Authenticate": prepared.challenge})
            if len(self.seen) < 10_000:
                self.seen[key] = consumer
        ctx.consumer = consumer
        ctx.credential = name
        if conf.hide_credentials:
            self.remove_credential(ctx, prepared)
        return None

    def remove_credential(self, ctx: Context, prepared: _Prepared) -> None:
        """Take this configuration's key out of the upstream request, wherever it reads one (hide_credentials; in
        multi-auth, also when another plugin passed the request)."""
        conf = prepared.conf
        credentials.remove(ctx, prepared.wire, prepared.query_names if conf.in_query else (),
                           prepared.query_names if conf.in_cookie else ())  # fmt: skip


PLUGINS = (KeyAuth,)
