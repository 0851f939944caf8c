"""TLS termination: a config's certificates as SSLContexts, the one chosen per handshake by SNI, and the listening
context that never changes, so a reload swaps certificates without rebinding.

One listening SSLContext is bound for the life of the worker. Its `sni_callback` runs once per handshake, after
the ClientHello and before the certificate is sent, and hands the handshake the context of the certificate that
serves the name the client asked for, from whatever config is current (`ssl_object.context = ...`). A reload
builds a new `Certificates` beside the old one and swaps one reference: handshakes under way finish on the old
certificate, the next ones get the new. As nginx does, a name no certificate has (or no name at all: a client
that connects to an address) gets the default certificate, the first one configured.
"""

from __future__ import annotations

import functools
import logging
import ssl
from pathlib import Path

from fastgw.config.checks import load_pair, tls_pairs
from fastgw.config.schema import ServerTLS

log = logging.getLogger("fastgw.server")

ALPN = ["http/1.1"]  # the gateway speaks HTTP/1.1 only; a client offering h2 alone gets no ALPN match
VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def _context(tls: ServerTLS) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    configure(ctx, tls)
    ctx.set_alpn_protocols(ALPN)
    return ctx


@functools.cache
def _default_ciphers() -> str:
    """OpenSSL's own choice (set_ciphers does not touch TLS 1.3's suites), put back when a reload drops `ciphers`:
    the listening context would otherwise keep the pin of the config before. Read once, when TLS is first set up
    (not at import: most gateways never terminate TLS)."""
    return ":".join(c["name"] for c in ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).get_ciphers())


def configure(ctx: ssl.SSLContext, tls: ServerTLS) -> None:
    """The protocol settings of `tls` on `ctx`. On the listening context they decide every handshake: OpenSSL
    copies versions and ciphers into a connection when it starts, before the SNI callback switches contexts."""
    ctx.minimum_version = VERSIONS[tls.min_version]
    ctx.maximum_version = VERSIONS[tls.max_version]
    ctx.set_ciphers(tls.ciphers if tls.ciphers is not None else _default_ciphers())
    # NOTE: no renegotiation (a client-initiated one is a cheap way to burn the gateway's CPU).
    ctx.options |= ssl.OP_NO_RENEGOTIATION


class Certificates:
    """One config's certificates: a context each, the names that choose them, and the default."""

    __slots__ = ("default", "exact", "wildcard", "names")

    def __init__(self, tls: ServerTLS, source: str, base: Path) -> None:
        self.exact: dict[str, ssl.SSLContext] = {}
        self.wildcard: dict[str, ssl.SSLContext] = {}  # "example.com" for *.example.com
        self.names: list[tuple[str, ...]] = []  # per certificate, in config order (for the log and tests)
        contexts = []
        for at, cert, key in tls_pairs(tls, source):
            ctx = _context(tls)
            names = load_pair(ctx, source, at, base, cert, key)
            contexts.append(ctx)
            self.names.append(names)
            for name in names:
                # The first certificate that names a host serves it, as the first nginx server block would.
                if name.startswith("*."):
                    self.wildcard.setdefault(name[2:], ctx)
                else:
                    self.exact.setdefault(name, ctx)
        self.default = contexts[0]

    def pick(self, name: str | None) -> ssl.SSLContext:
        if name is None:
            return self.default
        name = name.lower().rstrip(".")
        ctx = self.exact.get(name)
        if ctx is not None:
            return ctx
        # A wildcard covers exactly one label: *.example.com serves a.example.com, not a.b.example.com or
        # example.com (RFC 6125, and what clients check).
        _, dot, parent = name.partition(".")
        if dot:
            ctx = self.wildcard.get(parent)
            if ctx is not None:
                return ctx
        return self.default


class TLSListener:
    """The listening context of a worker's TLS port and the certificates it serves now (`update` on reload)."""

    def __init__(self, tls: ServerTLS, source: str, base: Path) -> None:
        self.certificates = Certificates(tls, source, base)
        # The listening context holds the default certificate too: OpenSSL needs one on the context a handshake
        # starts on, should the callback not switch (it always does).
        self.context = ctx = _context(tls)
        at, cert, key = tls_pairs(tls, source)[0]
        load_pair(ctx, source, at, base, cert, key)
        ctx.sni_callback = self._on_sni

    def update(self, tls: ServerTLS, certificates: Certificates) -> None:
        """A reload: new handshakes get the new certificates and the new min_version and ciphers."""
        configure(self.context, tls)
        self.certificates = certificates

    def _on_sni(self, conn: ssl.SSLObject | ssl.SSLSocket, name: str | None, ctx: ssl.SSLContext) -> int | None:
        # OpenSSL calls this for every ClientHello, with `name` None when the client sent no SNI.
        try:
            conn.context = self.certificates.pick(name)
        except Exception:  # an exception here would abort the handshake with an unraisable-exception report
            log.debug("TLS: no certificate could be chosen for %r", name, exc_info=True)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None


def listener_urls(host: str, plain: int | None, tls: int | None) -> str:
    """Where a gateway listens, as its log says it: `http://127.0.0.1:8000 and https://127.0.0.1:8443`."""
    name = f"[{host}]" if ":" in host else host
    urls = ([f"http://{name}:{plain}"] if plain is not None else []) + (
        [f"https://{name}:{tls}"] if tls is not None else []
    )
    return " and ".join(urls)
