"""Cross-checks the schema cannot express: what a setting refers to exists, paths and templates agree, targets and
handlers are well formed. Each raises a `ConfigError` naming the file and key path."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from fastgw.config.errors import ConfigError
from fastgw.config.schema import AggregateIntegration, Config, Function, HttpIntegration, ServerTLS, Upstream

# `{name}` or `{name+}` in a path template (the route's, or an http integration's upstream path).
TEMPLATE_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\+?\}")


def check_upstreams(config: Config, source: str) -> None:
    for name, upstream in config.upstreams.items():
        for i, target in enumerate(upstream.targets):
            url, at = (target, "") if isinstance(target, str) else (target.url, ".url")
            problem = target_problem(url)
            if problem:
                raise ConfigError(source, f"$.upstreams.{name}.targets[{i}]{at}", problem)


def target_problem(url: str) -> str | None:
    """Why `url` cannot be an upstream target (`http://host:port` or `https://host:port`), or None."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return f"expected http://host:port, got {url!r}: a target starts with its scheme, e.g. 'http://{url}'"
    if scheme not in ("http", "https"):
        return f"expected http://host:port or https://host:port, got {url!r}: the scheme must be http or https"
    rest = rest[:-1] if rest.endswith("/") else rest
    if not rest or any(c in rest for c in "/?#") or any(c.isspace() for c in rest):
        return (
            f"expected {scheme}://host:port, got {url!r}: a target is a host and port only (no path, query or spaces)"
        )
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        return f"expected {scheme}://host:port, got {url!r}: the port must be a number from 1 to 65535"
    if not parts.hostname:
        return f"expected {scheme}://host:port, got {url!r}: no host"
    return None


def check_functions(config: Config, source: str, base: Path) -> None:
    for name, fn in config.functions.items():
        at = f"$.functions.{name}"
        code = (base / fn.code) if fn.code else base
        if not code.is_dir():
            raise ConfigError(source, f"{at}.code", f"expected a folder, {str(code)!r} is not one")
        if fn.warm > fn.concurrency:
            raise ConfigError(source, f"{at}.warm", f"at most concurrency ({fn.concurrency}), got {fn.warm}")
        problem = handler_problem(fn, code)
        if problem:
            raise ConfigError(source, f"{at}.handler", problem)


def handler_problem(fn: Function, code: Path) -> str | None:
    """Why `fn.handler` cannot name a handler in `code`, or None when its file is there."""
    if fn.runtime == "nodejs":
        module, dot, export = fn.handler.rpartition(".")
        if not dot or not module or not export:
            return f"expected FILE.EXPORT (e.g. index.handler), got {fn.handler!r}"
        if not any((code / f"{module}{ext}").is_file() for ext in (".mjs", ".js", ".cjs")):
            return f"no {module}.mjs, {module}.js or {module}.cjs in {str(code)!r}"
        return None
    if ":" in fn.handler:
        file, _, func = fn.handler.rpartition(":")
        if not file.endswith(".py") or not func.isidentifier():
            return f"expected FILE.py:FUNCTION or MODULE.FUNCTION, got {fn.handler!r}"
        if not (code / file).is_file():
            return f"no file {file!r} in {str(code)!r}"
        return None
    module, dot, func = fn.handler.rpartition(".")
    if not dot or not func.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
        return f"expected MODULE.FUNCTION or FILE.py:FUNCTION, got {fn.handler!r}"
    # NOTE: the module may also be an installed one, so its absence from `code` is not an error here; a worker
    # that fails to import it says so in the log, and the invocation fails as Lambda's Runtime.ImportModuleError.
    return None


def check_http(config: Config, integ: HttpIntegration, params: tuple[str, ...], source: str, at: str) -> None:
    if integ.upstream not in config.upstreams:
        known = ", ".join(sorted(config.upstreams)) or "none defined"
        raise ConfigError(source, f"{at}.upstream", f"unknown upstream {integ.upstream!r} (upstreams: {known})")
    if integ.strip_prefix is not None and not integ.strip_prefix.startswith("/"):
        raise ConfigError(
            source, f"{at}.strip_prefix", f"expected a path starting with '/', got {integ.strip_prefix!r}"
        )
    if integ.path is not None:
        if not integ.path.startswith("/"):
            raise ConfigError(source, f"{at}.path", f"expected a path starting with '/', got {integ.path!r}")
        for ref in TEMPLATE_REF.findall(integ.path):
            if ref not in params:
                have = ", ".join(params) or "none"
                raise ConfigError(
                    source, f"{at}.path", f"{{{ref}}} is not a parameter of the route's path (parameters: {have})"
                )


def check_upstream(up: Upstream, source: str, at: str) -> None:
    seen: dict[str, int] = {}
    for i, t in enumerate(up.targets):
        url = (t if isinstance(t, str) else t.url).rstrip("/")
        if url in seen:
            raise ConfigError(source, f"{at}.targets[{i}]", f"{url} is already targets[{seen[url]}]")
        seen[url] = i
    if up.balancer == "consistent-hash" and up.hash_on is None:
        raise ConfigError(
            source, f"{at}.hash_on", "consistent-hash needs hash_on: header:NAME, cookie:NAME, ip, path or consumer"
        )
    if up.hash_on is not None and up.balancer != "consistent-hash":
        raise ConfigError(source, f"{at}.hash_on", f"hash_on is only read by consistent-hash, not {up.balancer}")
    active = up.health.active
    if active is not None and active.timeout >= active.interval:
        raise ConfigError(
            source, f"{at}.health.active.timeout", f"must be shorter than the interval ({active.interval:g}s)"
        )
    passive = up.health.passive
    if passive is not None:
        if passive.consecutive_failures is None and passive.failure_ratio is None:
            raise ConfigError(source, f"{at}.health.passive", "set consecutive_failures or failure_ratio (or both)")
        if passive.max_ejection < passive.base_ejection:
            raise ConfigError(source, f"{at}.health.passive.max_ejection", "must be at least base_ejection")
    if up.breaker is not None and up.breaker.consecutive_failures is None and up.breaker.failure_ratio is None:
        raise ConfigError(source, f"{at}.breaker", "set consecutive_failures or failure_ratio (or both)")


# `{respN.field.path}` in an aggregate backend's path: a field of backend N's answer.
RESPONSE_REF = re.compile(r"^resp(\d+)((?:\.[^.}]+)+)$")


def check_aggregate(config: Config, integ: AggregateIntegration, params: tuple[str, ...], source: str, at: str) -> None:
    groups: dict[str, int] = {}
    for i, backend in enumerate(integ.backends):
        here = f"{at}.backends[{i}]"
        if (backend.upstream is None) == (backend.function is None):
            raise ConfigError(source, here, "give either upstream (with a path) or function")
        if backend.function is not None and backend.function not in config.functions:
            known = ", ".join(sorted(config.functions)) or "none defined"
            raise ConfigError(source, f"{here}.function", f"unknown function {backend.function!r} (functions: {known})")
        if backend.upstream is not None:
            if backend.upstream not in config.upstreams:
                known = ", ".join(sorted(config.upstreams)) or "none defined"
                raise ConfigError(
                    source, f"{here}.upstream", f"unknown upstream {backend.upstream!r} (upstreams: {known})"
                )
            if backend.path is None:
                raise ConfigError(source, f"{here}.path", "an upstream backend needs the path sent to it")
        if backend.path is None:
            continue
        if not backend.path.startswith("/"):
            raise ConfigError(source, f"{here}.path", f"expected a path starting with '/', got {backend.path!r}")
        for ref in re.findall(r"\{([^{}]+)\}", backend.path):
            m = RESPONSE_REF.match(ref)
            if m is not None:
                if int(m.group(1)) >= i:
                    raise ConfigError(
                        source, f"{here}.path", f"{{{ref}}} refers to backend {m.group(1)}, not an earlier one"
                    )
            elif ref.rstrip("+") not in params:
                have = ", ".join(params) or "none"
                raise ConfigError(
                    source, f"{here}.path", f"{{{ref}}} is not a parameter of the route's path (parameters: {have})"
                )
        if backend.group is not None:
            if backend.group in groups:
                raise ConfigError(
                    source, f"{here}.group", f"group {backend.group!r} is backends[{groups[backend.group]}]'s too"
                )
            groups[backend.group] = i
    if integ.return_error_details is not None and integ.return_error_details in groups:
        raise ConfigError(
            source,
            f"{at}.return_error_details",
            f"{integ.return_error_details!r} is backends[{groups[integ.return_error_details]}]'s group too",
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_admin(config: Config, source: str) -> None:
    admin = config.admin
    if admin is not None and not admin.token and not admin.tokens and not is_loopback(admin.host):
        raise ConfigError(
            source,
            "$.admin.token",
            f"the admin API would listen on {admin.host}, which is not a loopback address, with no token: set a "
            "token or listen on 127.0.0.1",
        )


def check_logging(config: Config, source: str) -> None:
    """The access log's file must be one the gateway can open for appending; `serve` would fail later, on its
    socket's side, with no word of the key (nginx -t opens its log files for the same reason)."""
    lc = config.logging
    if not lc.access_log or not lc.access_log_path:
        return
    at = "$.logging.access_log_path"
    path = Path(lc.access_log_path)
    folder = path.parent
    if path.is_dir():
        raise ConfigError(source, at, f"expected a file to append to, got the folder {str(path)!r}")
    if not folder.is_dir():
        raise ConfigError(source, at, f"expected a file in an existing folder: {str(folder)!r} does not exist")
    if not os.access(path if path.exists() else folder, os.W_OK):
        what = "the file" if path.exists() else "its folder"
        raise ConfigError(source, at, f"expected a writable file: {what} {str(path)!r} cannot be written by this user")


# -- TLS: certificates and keys -------------------------------------------------------------------------------


def tls_pairs(tls: ServerTLS, source: str) -> list[tuple[str, str, str]]:
    """The certificates of `server.tls` as (key path, cert_file, key_file), the default one first."""
    pairs = []
    if tls.cert_file is not None or tls.key_file is not None:
        if tls.cert_file is None:
            raise ConfigError(source, "$.server.tls.cert_file", "key_file needs its cert_file (the certificate)")
        if tls.key_file is None:
            raise ConfigError(source, "$.server.tls.key_file", "cert_file needs its key_file (the private key)")
        pairs.append(("$.server.tls", tls.cert_file, tls.key_file))
    pairs += [(f"$.server.tls.certificates[{i}]", c.cert_file, c.key_file) for i, c in enumerate(tls.certificates)]
    if not pairs:
        raise ConfigError(
            source, "$.server.tls", "no certificate: give cert_file and key_file, or certificates: [{cert_file, ...}]"
        )
    return pairs


def load_pair(ctx: ssl.SSLContext, source: str, at: str, base: Path, cert_file: str, key_file: str) -> tuple[str, ...]:
    """Load a certificate and its key into `ctx`; returns the DNS names the certificate is for. A file that is
    missing, not PEM, an encrypted key or a key of another certificate is a ConfigError naming `at`.cert_file or
    `at`.key_file."""
    cert, key = base / cert_file, base / key_file
    names = certificate_names(cert, source, f"{at}.cert_file")
    try:
        key_text = key.read_bytes()
    except OSError as exc:
        raise ConfigError(source, f"{at}.key_file", _unreadable(key, exc)) from None
    if b"-----BEGIN" not in key_text or b"PRIVATE KEY-----" not in key_text:
        raise ConfigError(
            source, f"{at}.key_file", f"expected a PEM private key (-----BEGIN PRIVATE KEY-----) in {key}"
        )
    if b"ENCRYPTED" in key_text:
        raise ConfigError(
            source,
            f"{at}.key_file",
            f"the key in {key} is encrypted: give it unencrypted (openssl pkey -in KEY -out PLAIN), readable only "
            "by the gateway's user",
        )
    try:
        # NOTE: a password callback, so that OpenSSL never stops to ask for one on the terminal.
        ctx.load_cert_chain(cert, key, password=_no_password)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            problem = f"the key in {key} is not the key of the certificate in {cert} (cert_file)"
        else:
            problem = f"expected the PEM private key of the certificate in {cert}; {key}: {exc.reason or exc}"
        raise ConfigError(source, f"{at}.key_file", problem) from None
    except ValueError:  # _no_password: a key encrypted in a way the test above did not see
        raise ConfigError(source, f"{at}.key_file", f"the key in {key} is encrypted: give it unencrypted") from None
    except OSError as exc:
        raise ConfigError(source, f"{at}.key_file", _unreadable(key, exc)) from None
    return names


def certificate_names(cert: Path, source: str, at: str) -> tuple[str, ...]:
    """The DNS names of the first certificate in `cert` (subjectAltName; its CN when it has none), lower-cased."""
    try:
        text = cert.read_bytes()
    except OSError as exc:
        raise ConfigError(source, at, _unreadable(cert, exc)) from None
    if b"-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(source, at, f"expected a PEM certificate (-----BEGIN CERTIFICATE-----) in {cert}")
    try:
        # NOTE: the stdlib's own certificate decoder (what getpeercert() returns), used by CPython's tests; the
        # alternative is a dependency (cryptography) for every install.
        decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(source, at, f"expected a PEM certificate in {cert}: {exc}") from None
    names = [v.lower() for k, v in decoded.get("subjectAltName", ()) if k == "DNS"]
    if not names:
        names = [v.lower() for rdn in decoded.get("subject", ()) for k, v in rdn if k == "commonName"]
    return tuple(names)


def check_tls(config: Config, source: str, base: Path) -> None:
    """`server.tls` (every certificate loads with its key, the ciphers select some) and the client certificates
    and CA bundles of upstreams' `tls`."""
    tls = config.server.tls
    if tls is not None:
        if tls.port is not None and tls.port != 0 and tls.port == config.server.port:
            raise ConfigError(
                source,
                "$.server.tls.port",
                f"is server.port ({tls.port}) too: leave tls.port out to serve only TLS on server.port, or give "
                "another port to serve TLS beside plain HTTP",
            )
        if tls.max_version < tls.min_version:  # the names sort as the versions do
            raise ConfigError(source, "$.server.tls.max_version", f"is below min_version ({tls.min_version})")
        for at, cert, key in tls_pairs(tls, source):
            load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), source, at, base, cert, key)
        if tls.ciphers is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(tls.ciphers)
            except ssl.SSLError:
                raise ConfigError(
                    source,
                    "$.server.tls.ciphers",
                    f"OpenSSL knows no cipher in {tls.ciphers!r}: expected an OpenSSL cipher list, e.g. "
                    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256",
                ) from None
    for name, up in config.upstreams.items():
        conf, at = up.tls, f"$.upstreams.{name}.tls"
        if conf.ca_file is not None and not (base / conf.ca_file).is_file():
            raise ConfigError(source, f"{at}.ca_file", f"no such file: {base / conf.ca_file}")
        if (conf.cert_file is None) != (conf.key_file is None):
            missing = "key_file" if conf.key_file is None else "cert_file"
            raise ConfigError(source, f"{at}.{missing}", "a client certificate needs both cert_file and key_file")
        if conf.cert_file is not None and conf.key_file is not None:
            load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), source, at, base, conf.cert_file, conf.key_file)


def _no_password() -> bytes:
    raise ValueError("encrypted key")


def _unreadable(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {path}"
    return f"cannot read {path}: {exc.strerror or exc}"
