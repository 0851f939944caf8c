"""The settings of the etcd store (`store: {etcd: ...}` in the config, or `--store etcd://...`): msgspec Structs
and the URL form, importing nothing of fastgw so that fastgw/config/schema.py can take them in."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec
from msgspec import Meta, Struct

# host:port, or http://host:port / https://host:port (https makes TLS on without a `tls:` section).
_ENDPOINT = r"^(https?://)?[^/\s]+:\d{1,5}/?$"
_PREFIX = r"^/[^\s]*$"
Endpoint = Annotated[str, Meta(pattern=_ENDPOINT, description="host:port")]
# What an error says instead of the pattern it failed.
_SAYS = {_ENDPOINT: "host:port (or https://host:port)", _PREFIX: "a key prefix starting with '/', no spaces"}


class EtcdTLS(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS to etcd (its --cert-file, --trusted-ca-file, --client-cert-auth): every endpoint is spoken to over https."""

    ca: str | None = None  # a CA bundle for etcd's certificate; the system's when unset
    cert: str | None = None  # a client certificate (PEM), for --client-cert-auth
    key: str | None = None  # its private key (PEM); the certificate's file when unset
    verify: bool = True  # false: no check of etcd's certificate nor its name (a test cluster only)


class EtcdConfig(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Deployments kept in etcd and watched by every gateway of a fleet (docs/operations.md, "Running a fleet")."""

    endpoints: Annotated[list[Endpoint], Meta(min_length=1, max_length=32)]
    # Every key fastgw writes starts with this (several fleets can share one etcd).
    prefix: Annotated[str, Meta(pattern=_PREFIX, max_length=200)] = "/fastgw"
    # The longest a read or a write waits for etcd, all endpoints tried included: then StoreUnavailable.
    timeout: Annotated[float, Meta(gt=0, le=60)] = 2.0
    # The longest one connection attempt to one endpoint takes before the next endpoint is tried.
    connect_timeout: Annotated[float, Meta(gt=0, le=60)] = 0.5
    username: str | None = None  # etcd's auth (`etcdctl auth enable`): both or neither
    password: str | None = None
    tls: EtcdTLS | None = None
    # Deployments kept in etcd, newest first; older ones are deleted after each write.
    history: Annotated[int, Meta(ge=1, le=10_000)] = 100
    # A lost watch is opened again after a pause doubling from 0.05 s up to this.
    backoff_max: Annotated[float, Meta(gt=0, le=300)] = 2.0
    # The newest deployment the store delivered, kept in this file (replaced atomically) so that a gateway
    # restarted while etcd is away still has something to serve. None: none for the store alone; a gateway then
    # keeps one in its state folder (fastgw.control.plane.default_local_copy), and "" switches that off.
    local_copy: str | None = None


def store_config_from_url(url: str, *, local_copy: str | None = None) -> EtcdConfig:
    """`etcd://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...][/PREFIX][?timeout=S&history=N&local_copy=PATH]`.

    `etcd+https://` (or `etcds://`) speaks TLS with the system's CA bundle (`?ca=FILE&cert=FILE&key=FILE` for
    others; `verify=false` turns the check off). Raises ValueError naming what is wrong.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("etcd", "etcd+https", "etcds"):
        raise ValueError(f"{url!r}: an etcd store URL starts with etcd:// (or etcd+https://)")
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, sep, pw = userinfo.partition(":")
        username, password = unquote(user), (unquote(pw) if sep else None)
    hosts = [h for h in netloc.split(",") if h]
    if not hosts:
        raise ValueError(f"{url!r}: no endpoint (etcd://HOST:PORT[,HOST:PORT]/PREFIX)")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    known = {"timeout", "connect_timeout", "history", "local_copy", "backoff_max", "ca", "cert", "key", "verify"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise ValueError(f"{url!r}: unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
    raw: dict[str, object] = {"endpoints": hosts, "prefix": parts.path.rstrip("/") or "/fastgw"}
    for name in ("timeout", "connect_timeout", "backoff_max"):
        if name in query:
            raw[name] = _number(url, name, query[name], float)
    if "history" in query:
        raw["history"] = _number(url, "history", query["history"], int)
    if local_copy is not None or "local_copy" in query:
        raw["local_copy"] = local_copy if local_copy is not None else query["local_copy"]
    if username is not None:
        raw["username"], raw["password"] = username, password
    tls_keys: dict[str, object] = {k: query[k] for k in ("ca", "cert", "key") if k in query}
    if scheme != "etcd" or tls_keys or "verify" in query:
        verify = query.get("verify", "true").lower()
        if verify not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{url!r}: verify must be true or false, not {query['verify']!r}")
        tls: dict[str, object] = {**tls_keys, "verify": verify in ("true", "1", "yes")}
        raw["tls"] = tls
    return config_from_dict(raw, where=url)


def config_from_dict(raw: object, *, where: str = "store.etcd") -> EtcdConfig:
    """An EtcdConfig from its JSON form; ValueError naming the key path (`$.endpoints[0]`) otherwise."""
    try:
        conf = msgspec.convert(raw, EtcdConfig)
    except msgspec.ValidationError as e:
        message = str(e)
        for pattern, says in _SAYS.items():
            message = message.replace(f"`str` matching regex {pattern!r}", says)
        raise ValueError(f"{where}: {message}") from None
    if (conf.username is None) != (conf.password is None):
        raise ValueError(f"{where}: username and password go together (etcd's auth needs both)")
    return conf


def _number(url: str, name: str, value: str, kind: type) -> object:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{url!r}: {name} must be a number, not {value!r}") from None
