"""`jwt-auth`: bearer tokens (JWT) signed by a consumer's issuer, or by the route's own key, checked with PyJWT.

Each consumer credential names an `issuer` (matched against the token's `iss`) or a `key` (matched against the
claim the route's `key_claim_name` names, in the payload or the JOSE header, as Kong's `key_claim_name`), the
algorithms it signs with, and its key: an HMAC `secret`, a PEM `public_key` / `public_key_file`, or a `jwks_url`.
A route may instead give the key in the plugin's own configuration (with an optional `issuer` to require): every
token is verified against it and no consumer is looked up, as AWS HTTP API JWT authorizers and APISIX do for
"tokens from our identity provider"; the claims reach later plugins and functions, and no consumer is set.

The token's `alg` must be one of that issuer's algorithms, and HMAC algorithms are only ever allowed with a secret,
asymmetric ones only with a public key or JWKS: no `none`, no HS/RS key confusion. JWKS are fetched on the event
loop with aiohttp (redirects followed, never from https to http; HTTP(S)_PROXY / NO_PROXY honoured; a timeout),
kept for the response's `Cache-Control: max-age` (at most `jwks_max_age`), and fetched again when a token names an
unknown `kid` (at most once per `jwks_min_refresh` seconds); when a fetch fails the keys fetched last keep
working. PyJWT's PyJWKClient is not used: it is synchronous (a thread per fetch), refuses redirects and does not
read Cache-Control. A
verified token is remembered until it expires, per route configuration (whose audience and keys it was checked
against), so a client sending the same token again costs a dictionary lookup, not a signature check.

Failures answer 401 with `WWW-Authenticate: Bearer ..., error="invalid_token"` (RFC 6750) or 403 with
`error="insufficient_scope"`; the client learns no more than that, the gateway log says exactly why. The dates
`exp`, `nbf` and `iat` must be JSON numbers (PyJWT alone takes "123" and True), and nothing a client sends makes
the plugin raise. A request that carries a token more than once (two fields of its header, a parameter or cookie
named twice, a token in two places) is refused with 400: see `fastgw.plugins._credentials`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from fastgw.plugins import _credentials as credentials
from fastgw.plugins.base import Context, Plugin, Response
from fastgw.plugins.consumers import Consumer
from fastgw.plugins.proxy_cache import cache_control

# PyJWT (and cryptography under it) is imported when jwt-auth is first configured, not whenever the plugin
# registry loads: a gateway that does not use JWTs does not pay ~10 MiB of memory for them.
jwt: Any = None


def _import_jwt() -> None:
    global jwt
    if jwt is None:
        try:
            import jwt as pyjwt
        except ImportError:
            raise ValueError("jwt-auth needs PyJWT: install the auth extra (pip install 'fastgw[auth]')") from None
        jwt = pyjwt


log = logging.getLogger("fastgw.plugins.jwt")

HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"message": "Forbidden"}
_REMEMBERED_MAX = 10_000


class JwtAuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    header_names: list[str] = msgspec.field(default_factory=lambda: ["authorization"])  # "Bearer <token>"
    query_names: list[str] = msgspec.field(default_factory=list)
    cookie_names: list[str] = msgspec.field(default_factory=list)
    audience: list[str] | None = None  # when set, the token's aud must name one of these
    leeway: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0  # seconds of clock skew allowed on exp/nbf/iat
    required_claims: list[str] = msgspec.field(default_factory=lambda: ["exp"])
    scopes: list[str] = msgspec.field(default_factory=list)  # all needed: from `scope` (space-separated) or `scp`
    hide_credentials: bool = False
    realm: str = "fastgw"
    jwks_min_refresh: Annotated[float, msgspec.Meta(ge=0)] = 10.0  # at most one JWKS fetch per URL this often
    # A fetched JWKS is used for its Cache-Control max-age, at most this long (this long without one), then fetched
    # again when a token needs it.
    jwks_max_age: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    jwks_timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0  # one JWKS fetch, redirects included
    # Which claim picks the consumer credential (its `key`, or without one its `issuer`): a claim of the payload,
    # or a field of the token's JOSE header (e.g. "kid").
    key_claim_name: Annotated[str, msgspec.Meta(min_length=1)] = "iss"
    key_claim_in: Literal["payload", "header"] = "payload"
    # The route's own key, instead of consumers' credentials: exactly one of these four, with `issuer` (when set,
    # the token's iss must be it) and `algorithms` (default HS256 for a secret, RS256 otherwise).
    secret: str | None = None
    public_key: str | None = None
    public_key_file: str | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    algorithms: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None


class JwtCredential(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    issuer: str | None = None  # the token's iss must be this; without `key`, also what picks this credential
    key: str | None = None  # matched against the claim the route's key_claim_name names
    algorithms: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(default_factory=lambda: ["RS256"])
    secret: str | None = None
    public_key: str | None = None
    public_key_file: str | None = None
    jwks_url: str | None = None


class Issuer:
    """What a token is verified against: a consumer's credential, or a route's own key (consumer None)."""

    __slots__ = ("consumer", "cred", "label", "algorithms", "key", "jwks_url")

    def __init__(self, consumer: Consumer | None, cred: JwtCredential, key: Any, label: str) -> None:
        self.consumer = consumer
        self.cred = cred
        self.label = label  # in log lines, and as ctx.credential
        self.algorithms = frozenset(cred.algorithms)
        self.key = key
        self.jwks_url = cred.jwks_url


class Jwks:
    """One JWKS URL's keys by kid, with when they were fetched, for how long the server said to keep them, and the
    fetch in flight (if any)."""

    __slots__ = ("url", "keys", "fetched_at", "max_age", "attempted_at", "inflight")

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str | None, Any] = {}
        self.fetched_at = -1e9
        self.max_age: float | None = None  # the last answer's Cache-Control max-age
        self.attempted_at = -1e9
        self.inflight: asyncio.Future[None] | None = None

    def fresh(self, conf: JwtAuthConfig) -> bool:
        age = conf.jwks_max_age if self.max_age is None else min(self.max_age, conf.jwks_max_age)
        return time.monotonic() - self.fetched_at < age


_KEY_FIELDS = ("secret", "public_key", "public_key_file", "jwks_url")


def _load_key(cred: JwtCredential, label: str) -> Any:
    given = [k for k in _KEY_FIELDS if getattr(cred, k) is not None]
    if len(given) != 1:
        raise ValueError(f"{label}: give exactly one of secret, public_key, public_key_file, jwks_url")
    algs = set(cred.algorithms)
    if not algs <= HMAC_ALGS | ASYMMETRIC_ALGS:
        bad = ", ".join(sorted(algs - HMAC_ALGS - ASYMMETRIC_ALGS))
        raise ValueError(f"{label}: unsupported algorithm(s) {bad} (never 'none')")
    if cred.secret is not None:
        if not algs <= HMAC_ALGS:
            raise ValueError(f"{label}: a secret only signs HS256/HS384/HS512")
        return cred.secret.encode()
    if not algs <= ASYMMETRIC_ALGS:
        raise ValueError(f"{label}: HMAC algorithms need a secret, not a public key or JWKS")
    if cred.jwks_url is not None:
        if urlsplit(cred.jwks_url).scheme not in ("http", "https"):
            raise ValueError(f"{label}: jwks_url must be http:// or https://")
        try:
            import aiohttp  # noqa: F401  # what fetches it
        except ImportError:
            raise ValueError(
                f"{label}: jwks_url needs aiohttp: install the auth extra (pip install 'fastgw[auth]')"
            ) from None
        return None
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    pem = cred.public_key
    if cred.public_key_file is not None:
        try:
            pem = Path(cred.public_key_file).read_text()
        except OSError as exc:
            raise ValueError(f"{label}: cannot read public_key_file: {exc.strerror or exc}") from None
    try:
        return load_pem_public_key(pem.encode())  # type: ignore[union-attr]
    except ValueError as exc:
        raise ValueError(f"{label}: public key is not a PEM public key: {exc}") from None


def _label(cred: JwtCredential) -> str:
    return f"issuer {cred.issuer!r}" if cred.key is None else f"key {cred.key!r}"


class JwtAuth(Plugin):
    name = "jwt-auth"
    priority = 2600
    Config = JwtAuthConfig
    Credential = JwtCredential

    def __init__(self) -> None:
        self.issuers: dict[str, Issuer] = {}  # by credential key (its `key`, or its `issuer`)
        self.jwks: dict[str, Jwks] = {}

    def credentials(self, creds: list[tuple[Consumer, Any]]) -> None:
        _import_jwt()
        issuers: dict[str, Issuer] = {}
        for consumer, cred in creds:
            label = _label(cred)
            pick = cred.key if cred.key is not None else cred.issuer
            if pick is None:
                raise ValueError("a jwt-auth credential needs an issuer or a key (what picks it from a token)")
            if pick in issuers:
                raise ValueError(f"{label} is named by two jwt-auth credentials")
            issuers[pick] = Issuer(consumer, cred, _load_key(cred, label), label)
            self._watch(cred.jwks_url)
        self.issuers = issuers

    def _watch(self, url: str | None) -> None:
        if url is not None and url not in self.jwks:
            self.jwks[url] = Jwks(url)

    def prepare(self, conf: JwtAuthConfig) -> Any:
        _import_jwt()
        base = f'Bearer realm="{conf.realm}"'
        own = None
        if any(getattr(conf, k) is not None for k in _KEY_FIELDS):
            if conf.key_claim_name != "iss" or conf.key_claim_in != "payload":
                raise ValueError("key_claim_name picks a consumer's credential: not used with the plugin's own key")
            algs = conf.algorithms or (["HS256"] if conf.secret is not None else ["RS256"])
            cred = JwtCredential(
                issuer=conf.issuer, algorithms=algs, secret=conf.secret, public_key=conf.public_key,
                public_key_file=conf.public_key_file, jwks_url=conf.jwks_url,
            )  # fmt: skip
            label = "the route's own key" + (f" (issuer {conf.issuer!r})" if conf.issuer else "")
            own = Issuer(None, cred, _load_key(cred, label), label)
            self._watch(conf.jwks_url)
        elif conf.issuer is not None or conf.algorithms is not None:
            raise ValueError("issuer and algorithms go with the plugin's own key (secret, public_key, jwks_url...)")
        return (
            conf,
            _Sources(conf),
            base,
            base + ', error="invalid_token"',
            base + ', error="insufficient_scope", scope="' + " ".join(conf.scopes) + '"',
            own,
            # NOTE: verified tokens are remembered per route configuration: a token checked against one route's
            # audience and keys says nothing about another route's.
            {},
        )

    # -- the request ---------------------------------------------------------------------------------------------

    def access(self, ctx: Context, prepared: Any) -> Response | Awaitable[Response | None] | None:
        conf, sources, challenge, invalid, _, own, remembered = prepared
        token = sources.token(ctx.request)
        if token is None:
            return credentials.twice("token")
        if not token:
            return Response(401, UNAUTHORIZED, headers={"WWW-Authenticate": challenge})
        digest = hashlib.sha256(token.encode()).digest()
        known = remembered.get(digest)
        if known is not None:
            issuer, claims, exp, nbf = known
            now = time.time()
            if exp + conf.leeway > now and nbf - conf.leeway <= now:
                return self._passed(ctx, conf, prepared, issuer, claims)
            remembered.pop(digest, None)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, *_MALFORMED) as exc:
            return self._refuse(invalid, f"malformed token: {type(exc).__name__}: {exc}")
        why = _not_numeric_dates(unverified)
        if why is not None:
            return self._refuse(invalid, why)
        if own is not None:
            issuer = own
        else:
            pick = (unverified if conf.key_claim_in == "payload" else header).get(conf.key_claim_name)
            found = self.issuers.get(pick) if isinstance(pick, str) else None
            if found is None:
                if conf.key_claim_name == "iss" and conf.key_claim_in == "payload":
                    return self._refuse(invalid, f"no consumer has the issuer {pick!r}")
                return self._refuse(invalid, f"no consumer credential has the {conf.key_claim_name} {pick!r}")
            issuer = found
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in issuer.algorithms:
            return self._refuse(invalid, f"alg {alg!r} is not allowed for {issuer.label}")
        if issuer.jwks_url is None:
            return self._verify(ctx, conf, prepared, token, digest, issuer, issuer.key, alg)
        jwks = self.jwks[issuer.jwks_url]
        kid = header.get("kid")
        key = self._jwks_key(jwks, kid) if jwks.fresh(conf) else None
        if key is not None:
            return self._verify(ctx, conf, prepared, token, digest, issuer, key, alg)
        return self._fetch_and_verify(ctx, conf, prepared, token, digest, issuer, jwks, kid, alg)

    @staticmethod
    def _jwks_key(jwks: Jwks, kid: str | None) -> Any:
        if kid is None and len(jwks.keys) == 1:
            return next(iter(jwks.keys.values()))
        return jwks.keys.get(kid)

    async def _fetch_and_verify(
        self, ctx: Context, conf: JwtAuthConfig, prepared: Any, token: str, digest: bytes, issuer: Issuer,
        jwks: Jwks, kid: str | None, alg: str,
    ) -> Response | None:  # fmt: skip
        await self._refresh(jwks, conf)
        key = self._jwks_key(jwks, kid)
        if key is None:
            why = f"no key {kid!r} in the JWKS of {jwks.url} ({issuer.label})"
            return self._refuse(prepared[3], why)
        return self._verify(ctx, conf, prepared, token, digest, issuer, key, alg)

    async def _refresh(self, jwks: Jwks, conf: JwtAuthConfig) -> None:
        if jwks.inflight is not None:
            await asyncio.shield(jwks.inflight)
            return
        now = time.monotonic()
        if now - jwks.attempted_at < conf.jwks_min_refresh:
            return  # fetched (or tried) a moment ago: an unknown kid does not trigger a fetch per request
        jwks.attempted_at = now
        jwks.inflight = asyncio.get_running_loop().create_future()
        try:
            data, max_age = await fetch_jwks(jwks.url, conf.jwks_timeout)
            jwks.keys = parse_jwks(data)
            jwks.fetched_at = time.monotonic()
            jwks.max_age = max_age
            log.info("jwt-auth: fetched %d key(s) from %s", len(jwks.keys), jwks.url)
        except Exception as exc:  # noqa: BLE001 - keep the keys we had; the request is judged with them
            log.warning("jwt-auth: cannot fetch the JWKS %s: %s", jwks.url, exc)
        finally:
            jwks.inflight.set_result(None)
            jwks.inflight = None

    def _verify(
        self, ctx: Context, conf: JwtAuthConfig, prepared: Any, token: str, digest: bytes, issuer: Issuer, key: Any,
        alg: str,
    ) -> Response | None:  # fmt: skip
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=conf.audience,
                issuer=issuer.cred.issuer,
                leeway=conf.leeway,
                options={"require": list(conf.required_claims), "verify_aud": conf.audience is not None},
            )
        except (jwt.PyJWTError, *_MALFORMED) as exc:
            return self._refuse(prepared[3], f"{type(exc).__name__}: {exc} ({issuer.label})")
        remembered = prepared[6]
        if len(remembered) >= _REMEMBERED_MAX:
            remembered.pop(next(iter(remembered)))
        # The dates as floats: every one a finite number here (_not_numeric_dates), absent ones never binding.
        remembered[digest] = (issuer, claims, float(claims.get("exp", math.inf)), float(claims.get("nbf", -math.inf)))
        return self._passed(ctx, conf, prepared, issuer, claims)

    def _passed(
        self, ctx: Context, conf: JwtAuthConfig, prepared: Any, issuer: Issuer, claims: dict[str, Any]
    ) -> Response | None:
        scopes = token_scopes(claims)
        if conf.scopes and not set(conf.scopes) <= set(scopes):
            missing = ", ".join(sorted(set(conf.scopes) - set(scopes)))
            who = issuer.consumer.name if issuer.consumer is not None else claims.get("sub")
            log.info("jwt-auth: token of %r lacks scope(s) %s", who, missing)
            return Response(403, FORBIDDEN, headers={"WWW-Authenticate": prepared[4]})
        if issuer.consumer is not None:
            ctx.consumer = issuer.consumer
        ctx.credential = issuer.cred.key if issuer.cred.key is not None else issuer.cred.issuer
        ctx.vars["jwt_claims"] = claims
        ctx.vars["jwt_scopes"] = scopes
        if conf.hide_credentials:
            self.remove_credential(ctx, prepared)
        return None

    def remove_credential(self, ctx: Context, prepared: Any) -> None:
        """Take this configuration's token out of the upstream request, wherever it reads one (an Authorization field
        only when it is a Bearer one): hide_credentials, and in multi-auth also when another plugin passed."""
        sources: _Sources = prepared[1]
        credentials.remove(ctx, sources.wire, sources.query, sources.cookies, "bearer")

    @staticmethod
    def _refuse(challenge: str, why: str) -> Response:
        log.info("jwt-auth: refused: %s", why)
        return Response(401, UNAUTHORIZED, headers={"WWW-Authenticate": challenge})


# What PyJWT (and the json, base64 and int parsing under it) may raise on a token a client made: PyJWTError for
# what it checks, the others for what it does not (an `exp` of 1e400 reaches int(): OverflowError; a list: a
# TypeError; JSON nested a few thousand deep: RecursionError). All of them mean a malformed token: 401.
_MALFORMED: tuple[type[BaseException], ...] = (ValueError, TypeError, OverflowError, RecursionError)

# NumericDate claims (RFC 7519 2, 4.1.4-6): JSON numbers. PyJWT reads them with int(), which also takes "1e9", a
# bool or a numeric string, and the remembered-token path then added a float to a string.
_DATES = ("exp", "nbf", "iat")
_DATE_LIMIT = 2.0**53  # beyond it a float is not even a whole number of seconds any more


def _not_numeric_dates(claims: dict[str, Any]) -> str | None:
    """Why a NumericDate claim of `claims` is not one (a number, not a bool, finite, within +-2**53), or None."""
    for name in _DATES:
        if name in claims:
            value = claims[name]
            if type(value) not in (int, float):
                return f"claim {name!r} is not a number: {type(value).__name__}"
            if not -_DATE_LIMIT <= value <= _DATE_LIMIT:  # NaN compares false: refused as well
                return f"claim {name!r} is out of range: {value!r:.40}"
    return None


class _Sources:
    """Where a route's configuration reads tokens: header fields, query parameters, cookies."""

    __slots__ = ("headers", "wire", "query", "cookies")

    def __init__(self, conf: JwtAuthConfig) -> None:
        self.headers = frozenset(n.lower() for n in conf.header_names)
        self.wire = credentials.header_names(self.headers)
        self.query = frozenset(conf.query_names)
        self.cookies = frozenset(conf.cookie_names)

    def token(self, req: Any) -> str | None:
        """The one token the request carries ("" without one), None when it carries one more than once: a header
        named twice (whatever the values), or a token in two places."""
        # Each place a token stands, its value or None (a place only a backend reads, which still counts).
        found: list[str | None] = []
        if self.wire:
            fields = [(k, v) for k, v in req.headers.raw() if k in self.wire]
            if len(fields) > 1 and len({credentials.same_name(k) for k, _ in fields}) < len(fields):
                return None
            for k, v in fields:
                name = k.decode("latin-1")
                if name not in self.headers:
                    found.append(None)  # the `_` spelling: not read here, read by some backends
                    continue
                value = credentials.text(v).strip()
                if name == "authorization":
                    scheme, _, token = value.partition(" ")
                    if scheme.lower() == "bearer" and token.strip():
                        found.append(token.strip())
                    # Another scheme (Basic, ...) is no bearer token: a plugin of that scheme judges it.
                elif value:
                    found.append(value)
        query = req.query_string if self.query else ""
        count = credentials.query_count(query, self.query) if query else 0
        if count > 1:
            return None
        if count:
            # NOTE: None when the one parameter is one only a backend reads (after a `;`): no token here.
            found.append(next((vs[0] for n in self.query if (vs := req.query.get(n))), None) or None)
        if self.cookies:
            found += [v or None for _, v in credentials.cookies(req.headers.raw(), self.cookies)]
        if len(found) > 1:
            return None
        return (found[0] or "") if found else ""


def token_scopes(claims: dict[str, Any]) -> list[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, list):
        return [str(s) for s in scp]
    if isinstance(scp, str):
        return scp.split()
    return []


def parse_jwks(data: Any) -> dict[str | None, Any]:
    """kid -> verification key, for every usable key of a JWKS document (others are skipped, with a log line)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys: dict[str | None, Any] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            keys[entry.get("kid")] = jwt.PyJWK(entry).key
        except jwt.PyJWTError as exc:
            log.warning("jwt-auth: skipping a JWKS key (%s): %s", entry.get("kid"), exc)
    return keys


_JWKS_MAX_BYTES = 1 << 20
_MAX_REDIRECTS = 5


def max_age(value: str) -> float | None:
    """The max-age of a Cache-Control value, in seconds (0 for no-store / no-cache), or None without one; read by
    proxy-cache's Cache-Control parser, one reading of the header for the gateway."""
    directives = cache_control(value)
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    given = directives.get("max-age")
    if given is None:
        return None
    try:
        return float(max(0, int(given)))
    except ValueError:
        return 0.0  # RFC 9111 4.2.1: an invalid freshness lifetime is stale


async def fetch_jwks(url: str, timeout: float = 5.0) -> tuple[Any, float | None]:
    """GET a JWKS document with aiohttp: its JSON, and its Cache-Control max-age (None without one).

    Redirects are followed (at most 5), never from https to http; proxies come from the environment
    (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), as curl and requests read them; `timeout` bounds the whole fetch."""
    import aiohttp

    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout), trust_env=True, headers={"User-Agent": "fastgw"}
    )
    async with session, session.get(url, headers={"Accept": "application/json"}, max_redirects=_MAX_REDIRECTS) as resp:
        if url.startswith("https:") and any(r.url.scheme != "https" for r in (*resp.history, resp)):
            raise ValueError(f"redirected from https to {resp.url}: refused")
        if resp.status != 200:
            raise ValueError(f"HTTP {resp.status}")
        body = bytearray()
        async for chunk in resp.content.iter_any():
            body += chunk
            if len(body) > _JWKS_MAX_BYTES:
                raise ValueError("JWKS larger than 1 MiB")
        return msgspec.json.decode(body), max_age(",".join(resp.headers.getall("Cache-Control", [])))


PLUGINS = (JwtAuth,)
