"""`basic-auth`: HTTP Basic authentication against consumers' usernames and password hashes.

Passwords are stored as hashes only: argon2id (`$argon2id$v=19$m=...`, the recommended one, RFC 9106; made by
`fastgw hash-password`, needs the `auth` extra's argon2-cffi), bcrypt (`$2b$...`, as htpasswd makes them; the
`auth` extra) or PBKDF2-SHA256 (`pbkdf2_sha256$ITERATIONS$SALT$HASH`, fastgw's own, kept for the hashes made
before argon2id; needs nothing extra). A hash that is none of these, or malformed, is a config error naming its
credential. Checking a hash is deliberately slow, so it runs in a thread, off the event loop; a successful check
is remembered (by a digest of username and password, in a bounded table) so a client sending the same credentials
again is answered without hashing again. A request with two Authorization fields is refused with 400 (see
`fastgw.plugins._credentials`); credentials that are not base64, not UTF-8 or without a `:` are a 401, never an
error."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Awaitable
from typing import Any

import msgspec

from fastgw.plugins import _credentials as credentials
from fastgw.plugins.base import Context, Plugin, Response
from fastgw.plugins.consumers import Consumer

BAD = {"message": "Invalid authentication credentials"}
MISSING = {"message": "Unauthorized"}
PBKDF2_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
_AUTHORIZATION = frozenset({b"authorization"})
_REMEMBERED_MAX = 10_000


SCHEMES = ("argon2id", "bcrypt", "pbkdf2")


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS, scheme: str = "pbkdf2") -> str:
    """A hash of `password` for a consumer's basic-auth credential: `scheme` argon2id (argon2-cffi's defaults,
    RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes), bcrypt (cost 12) or pbkdf2 (`iterations`).
    Raises ImportError when the scheme's library (the `auth` extra) is missing."""
    if scheme == "argon2id":
        from argon2 import PasswordHasher

        return str(PasswordHasher().hash(password))
    if scheme == "bcrypt":
        import bcrypt

        return str(bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(12)).decode())
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join(("pbkdf2_sha256", str(iterations), _b64(salt), _b64(digest)))


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


def verify_password(password: str, stored: str) -> bool:
    if stored.startswith("pbkdf2_sha256$"):
        _, iterations, salt, expected = stored.split("$")
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(iterations))
        return hmac.compare_digest(got, _unb64(expected))
    if stored.startswith("$argon2"):
        from argon2 import PasswordHasher  # checked at load when an argon2 hash is configured
        from argon2.exceptions import VerificationError

        try:
            return bool(PasswordHasher().verify(stored, password))
        except VerificationError:  # a mismatch (VerifyMismatchError) or a hash it cannot check
            return False
    import bcrypt  # checked at load when a bcrypt hash is configured

    # NOTE: bcrypt reads 72 bytes of a password and no more: the hashes htpasswd and bcrypt < 5 made of a longer
    # one are of its first 72 bytes, and bcrypt 5 raises on a longer one instead of cutting it.
    return bool(bcrypt.checkpw(password.encode()[:72], stored.encode()))


class BasicAuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    realm: str = "fastgw"
    hide_credentials: bool = False  # remove Authorization before the request goes upstream


class BasicCredential(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: str
    password_hash: str

    def __post_init__(self) -> None:
        # Judged here, so that a bad hash is an error at its credential's key path ($.consumers.NAME.credentials.
        # basic-auth[N]), not at the consumers as a whole.
        _check_hash(self.password_hash)


# NOTE: also what makes "pw" and "pw\0" one password to PBKDF2: HMAC pads its key with zero bytes.
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_BCRYPT = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
# The PHC string argon2-cffi (and the argon2 reference's CLI, libsodium, passlib) write.
_ARGON2 = re.compile(r"^\$argon2(id|i|d)\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{11,}\$[A-Za-z0-9+/]{16,}$")


def _check_hash(stored: str) -> None:
    if stored.startswith("pbkdf2_sha256$"):
        parts = stored.split("$")
        try:
            ok = len(parts) == 4 and int(parts[1]) > 0 and _unb64(parts[2]) and _unb64(parts[3])
        except (ValueError, binascii.Error):
            ok = False
        if not ok:
            raise ValueError("password_hash: expected pbkdf2_sha256$ITERATIONS$SALT$HASH (see fastgw hash-password)")
    elif stored.startswith(("$2a$", "$2b$", "$2y$")):
        if not _BCRYPT.match(stored):
            raise ValueError("password_hash: a bcrypt hash is $2b$COST$ and 53 characters of ./A-Za-z0-9")
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ValueError(
                "password_hash is a bcrypt hash: install the auth extra (pip install 'fastgw[auth]')"
            ) from None
    elif stored.startswith("$argon2"):
        try:
            from argon2 import extract_parameters
            from argon2.exceptions import InvalidHashError
        except ImportError:
            raise ValueError(
                "password_hash is an argon2 hash: install the auth extra (pip install 'fastgw[auth]')"
            ) from None
        good = bool(_ARGON2.match(stored))
        if good:
            try:
                extract_parameters(stored)
            except (InvalidHashError, ValueError):
                good = False
        if not good:
            raise ValueError(
                "password_hash: an argon2 hash is $argon2id$v=19$m=MEMORY,t=TIME,p=LANES$SALT$HASH "
                "(see fastgw hash-password)"
            )
    else:
        raise ValueError(
            "password_hash: expected an argon2id ($argon2id$...), bcrypt ($2b$...) or pbkdf2_sha256$... hash, never "
            "a password (fastgw hash-password makes one)"
        )


class BasicAuth(Plugin):
    name = "basic-auth"
    priority = 2400
    Config = BasicAuthConfig
    Credential = BasicCredential

    def __init__(self) -> None:
        self.users: dict[str, tuple[Consumer, str]] = {}
        self.remembered: dict[bytes, Consumer] = {}

    def credentials(self, creds: list[tuple[Consumer, Any]]) -> None:
        users: dict[str, tuple[Consumer, str]] = {}
        for consumer, cred in creds:
            if cred.username in users:
                raise ValueError(f"username {cred.username!r} is used by two basic-auth credentials")
            users[cred.username] = (consumer, cred.password_hash)
        self.users = users
        self.remembered = {}

    def prepare(self, conf: BasicAuthConfig) -> Any:
        return (conf, f'Basic realm="{conf.realm}"')

    def access(self, ctx: Context, prepared: Any) -> Response | Awaitable[Response | None] | None:
        conf, challenge = prepared
        fields = ctx.request.headers.get_all("authorization")
        if len(fields) > 1:
            return credentials.twice("Authorization header")
        header = fields[0] if fields else None
        if header is None or header[:6].lower() != "basic ":
            return Response(401, MISSING, headers={"WWW-Authenticate": challenge})
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True)
            username, sep, password = decoded.decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), not even ASCII, or not UTF-8 (UnicodeDecodeError)
            sep = ""
        if not sep or _CONTROL.search(decoded):  # RFC 7617 2: no control characters in either
            return Response(401, BAD, headers={"WWW-Authenticate": challenge})
        # NOTE: the digest of `username:password` as sent: a username holds no `:`, so no other pair has it.
        key = hashlib.sha256(decoded).digest()
        consumer = self.remembered.get(key)
        if consumer is not None:
            self._passed(ctx, conf, consumer)
            return None
        entry = self.users.get(username)
        if entry is None:
            return Response(401, BAD, headers={"WWW-Authenticate": challenge})
        return self._verify(ctx, conf, challenge, key, password, *entry)

    async def _verify(
        self, ctx: Context, conf: BasicAuthConfig, challenge: str, key: bytes, password: str, consumer: Consumer,
        stored: str,
    ) -> Response | None:  # fmt: skip
        ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, password, stored)
        if not ok:
            return Response(401, BAD, headers={"WWW-Authenticate": challenge})
        if len(self.remembered) >= _REMEMBERED_MAX:
            self.remembered.pop(next(iter(self.remembered)))
        self.remembered[key] = consumer
        self._passed(ctx, conf, consumer)
        return None

    def _passed(self, ctx: Context, conf: BasicAuthConfig, consumer: Consumer) -> None:
        ctx.consumer = consumer
        if conf.hide_credentials:
            self.remove_credential(ctx, None)

    def remove_credential(self, ctx: Context, prepared: Any) -> None:
        """Take a Basic Authorization field out of the upstream request: hide_credentials, and in multi-auth also when
        another plugin passed."""
        credentials.remove(ctx, _AUTHORIZATION, (), (), "basic")


PLUGINS = (BasicAuth,)
