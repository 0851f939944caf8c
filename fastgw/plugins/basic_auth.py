"""`basic-auth`: HTTP Basic authentication against consumers' usernames and password hashes.

Passwords are stored as hashes only: PBKDF2-SHA256 (`pbkdf2_sha256$ITERATIONS$SALT$HASH`, made by
`fastgw hash-password`) or bcrypt (`$2b$...`, needs the `auth` extra). Checking a hash is deliberately slow, so it
runs in a thread, off the event loop; a successful check is remembered (by a digest of username and password, in
a bounded table) so a client sending the same credentials again is answered without hashing again."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Awaitable
from typing import Any

import msgspec

from fastgw.plugins.base import Context, Plugin, Response
from fastgw.plugins.consumers import Consumer

BAD = {"message": "Invalid authentication credentials"}
MISSING = {"message": "Unauthorized"}
PBKDF2_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
_REMEMBERED_MAX = 10_000


def hash_password(password: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    """A `pbkdf2_sha256$...` hash of `password` for a consumer's basic-auth credential."""
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
    import bcrypt  # checked at load when a bcrypt hash is configured

    return bool(bcrypt.checkpw(password.encode(), stored.encode()))


class BasicAuthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    realm: str = "fastgw"
    hide_credentials: bool = False  # remove Authorization before the request goes upstream


class BasicCredential(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    username: str
    password_hash: str


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
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ValueError(
                "password_hash is a bcrypt hash: install the auth extra (pip install 'fastgw[auth]')"
            ) from None
    else:
        raise ValueError("password_hash: expected a pbkdf2_sha256$... or bcrypt ($2b$...) hash, never a password")


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
            _check_hash(cred.password_hash)
            if cred.username in users:
                raise ValueError(f"username {cred.username!r} is used by two basic-auth credentials")
            users[cred.username] = (consumer, cred.password_hash)
        self.users = users
        self.remembered = {}

    def prepare(self, conf: BasicAuthConfig) -> Any:
        return (conf, f'Basic realm="{conf.realm}"')

    def access(self, ctx: Context, prepared: Any) -> Response | Awaitable[Response | None] | None:
        conf, challenge = prepared
        header = ctx.request.header("authorization")
        if header is None or header[:6].lower() != "basic ":
            return Response(401, MISSING, headers={"WWW-Authenticate": challenge})
        try:
            username, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep:
            return Response(401, BAD, headers={"WWW-Authenticate": challenge})
        key = hashlib.sha256(f"{username}\0{password}".encode()).digest()
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
            ctx.upstream_request.headers.remove("authorization")


PLUGINS = (BasicAuth,)
