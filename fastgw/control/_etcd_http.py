"""etcd's v3 JSON gateway over HTTP (aiohttp): the endpoints of one cluster, failover between them, auth tokens, TLS,
and watch streams. The store's layout and rules live in fastgw/control/etcd.py; this module only speaks to etcd.

Every call is bounded by the config's `timeout` (all endpoints tried included) and each connection attempt by
`connect_timeout`: an endpoint that refuses or does not answer is left for the next one, and when none answers
the caller gets StoreUnavailable, never a hang. Keys and values travel base64-encoded, int64 fields as strings
(the gateway's JSON mapping of etcd's protobuf messages).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from fastgw.control.etcd_config import EtcdConfig
from fastgw.control.store import StoreUnavailable

log = logging.getLogger("fastgw.control.etcd")

# gRPC status codes etcd answers with (the gateway sends them as `code` beside an HTTP status).
UNAUTHENTICATED = 16
INVALID_ARGUMENT = 3
OUT_OF_RANGE = 11  # "mvcc: required revision has been compacted"


class EtcdRefused(StoreUnavailable):
    """etcd answered, and said no: wrong credentials, permission denied, a request too large. The store cannot be
    used until that is fixed (the caller keeps serving what it has), so it is a StoreUnavailable, with etcd's words."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The end of the key range [prefix, end) that holds every key starting with `prefix`."""
    last = len(prefix) - 1
    while last >= 0 and prefix[last] == 0xFF:
        last -= 1
    return prefix[:last] + bytes([prefix[last] + 1]) if last >= 0 else b"\0"


def ssl_context(conf: EtcdConfig) -> ssl.SSLContext | None:
    tls = conf.tls
    https = tls is not None or any(e.startswith("https://") for e in conf.endpoints)
    if not https:
        return None
    try:
        ctx = ssl.create_default_context(cafile=tls.ca if tls else None)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"store.etcd.tls.ca: {tls.ca if tls else ''}: {e.strerror or e}") from None
    if tls is not None and tls.cert:
        try:
            ctx.load_cert_chain(tls.cert, tls.key)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(
                f"store.etcd.tls.cert: {tls.cert} (key {tls.key or tls.cert}): {e.strerror or e}"
            ) from None
    if tls is not None and not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Failed(Exception):
    """One endpoint failed; `sent`: the request may have reached etcd (a write may have been applied)."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class EtcdHTTP:
    """The endpoints of one etcd cluster, spoken to over the v3 JSON gateway."""

    def __init__(self, conf: EtcdConfig) -> None:
        self.conf = conf
        self._ssl = ssl_context(conf)
        scheme = "https" if self._ssl is not None else "http"
        self.urls = [e.rstrip("/") if "://" in e else f"{scheme}://{e}" for e in conf.endpoints]
        self.current = 0  # the endpoint tried first: the last one that answered
        self._token = ""
        self._session: Any = None
        self._session_owner: tuple[int, int] = (0, 0)
        self.closed = False
        self._streams: set[Any] = set()  # the watch responses open: close() ends them

    @property
    def endpoint(self) -> str:
        return self.urls[self.current]

    def _http(self) -> Any:
        """One aiohttp session per process and event loop (a store made before a fork never shares a socket)."""
        import aiohttp

        if self.closed:
            raise StoreUnavailable("the etcd store is closed")
        owner = (os.getpid(), id(asyncio.get_running_loop()))
        if self._session is None or self._session.closed or self._session_owner != owner:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else False, limit=32)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
            )
            self._session_owner = owner
        return self._session

    async def close(self) -> None:
        self.closed = True
        for response in list(self._streams):
            response.close()  # NOTE: closing the session alone leaves a streaming response waiting for data
        if self._session is not None and not self._session.closed:
            owner = (os.getpid(), id(asyncio.get_running_loop()))
            if owner == self._session_owner:
                await self._session.close()
        self._session = None

    def forget_token(self) -> None:
        self._token = ""

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token} if self._token else {}

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return (await self.call_ex(path, body))[0]

    async def call_ex(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST `body` to `path` (`/v3/kv/range`, ...) on the first endpoint that answers; returns etcd's answer
        and whether an earlier attempt may have reached etcd (a write retried may have been applied already).

        NOTE: one attempt gets at most a third of `timeout`, then the next endpoint is tried (round after round
        until `timeout`): a request that reached a member just as the leader died is dropped by etcd and would
        wait out etcd's own request timeout (~7 s), while the same request sent again a moment later is served by
        the new leader. Endpoints that all refuse the connection fail the call at once.
        """
        deadline = time.monotonic() + self.conf.timeout
        errors: list[str] = []
        maybe_sent = False
        while True:
            refused = 0
            for i in range(len(self.urls)):
                index = (self.current + i) % len(self.urls)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    answer = await self._attempt(index, path, body, min(left, self.conf.timeout / 3))
                except _Failed as e:
                    errors.append(f"{self.urls[index]}: {e}")
                    maybe_sent = maybe_sent or e.sent
                    refused += not e.sent
                    continue
                self.current = index
                return answer, maybe_sent
            left = deadline - time.monotonic()
            if refused == len(self.urls) or left <= 0.01:
                break
            await asyncio.sleep(min(0.05, left / 2))
        self.current = (self.current + 1) % len(self.urls)
        what = "; ".join(dict.fromkeys(errors)) or f"no answer within {self.conf.timeout} s"
        raise StoreUnavailable(f"etcd is unreachable ({what})")

    async def _attempt(self, index: int, path: str, body: dict[str, Any], left: float) -> dict[str, Any]:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=left, sock_connect=min(left, self.conf.connect_timeout))
        url = self.urls[index] + path
        if self.conf.username is not None and not self._token:
            await self.authenticate(index, left)
        for tries in range(2):
            headers = {**self._headers(), "Content-Type": "application/json"}
            status, raw = await self._post(url, _payload(body), headers, timeout)
            answer = _json(raw)
            if status == 200 and "error" not in answer:
                return answer
            message = str(answer.get("message") or answer.get("error") or f"HTTP {status}")
            code = int(answer.get("code") or 0)
            if code == UNAUTHENTICATED and self.conf.username is not None and tries == 0:
                await self.authenticate(index, left)  # the token expired or the member restarted: a new one
                continue
            if "too large" in message or "larger than max" in message:
                raise EtcdRefused(f"etcd refused {path}: the request is too large ({message})", code)
            if status >= 500 or status == 429:
                raise _Failed(f"etcd: {message}", sent=True)  # no leader, leader changed, timed out: elsewhere
            raise EtcdRefused(f"etcd refused {path}: {message}", code)
        raise EtcdRefused(f"etcd refused {path}: the token it gave is not accepted", UNAUTHENTICATED)

    async def _post(self, url: str, data: Any, headers: dict[str, str], timeout: Any) -> tuple[int, bytes]:
        """One POST: its status and body, or _Failed saying whether the request may have reached etcd."""
        import aiohttp

        try:
            async with self._http().post(url, data=data, headers=headers, timeout=timeout) as r:
                return r.status, await r.read()
        except aiohttp.ClientConnectorError as e:
            raise _Failed(str(e) or type(e).__name__, sent=False) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise _Failed(str(e) or type(e).__name__, sent=True) from None

    async def authenticate(self, index: int, left: float) -> None:
        import aiohttp

        self._token = ""
        timeout = aiohttp.ClientTimeout(total=left, sock_connect=min(left, self.conf.connect_timeout))
        body = {"name": self.conf.username, "password": self.conf.password}
        url = self.urls[index] + "/v3/auth/authenticate"
        status, raw = await self._post(url, _payload(body), {"Content-Type": "application/json"}, timeout)
        answer = _json(raw)
        if status >= 500:
            raise _Failed(f"etcd: {answer.get('message') or status}", sent=True)
        if status != 200 or not answer.get("token"):
            message = answer.get("message") or f"HTTP {status}"
            raise EtcdRefused(f"etcd refused user {self.conf.username!r}: {message}", int(answer.get("code") or 0))
        self._token = str(answer["token"])

    async def watch(self, create: dict[str, Any], idle_every: float) -> AsyncGenerator[dict[str, Any], None]:
        """One watch stream (`create`: a WatchCreateRequest) on the first endpoint that takes it: yields each of
        etcd's WatchResponses (the `result` objects), from the one that says `created`, and `{"idle": True}` after
        `idle_every` seconds without one (so the caller can check the stream is not stale). Ends, raising
        StoreUnavailable, when the stream breaks: the caller opens another from the revision it got to.

        NOTE: `hasleader` (gRPC metadata, through the gateway's Grpc-Metadata- headers) makes a member that loses
        the cluster's leader end its watches, as etcd's own Go client asks: a watch on a member cut off from the
        others would otherwise wait forever for writes it never hears of.
        """
        import aiohttp

        errors: list[str] = []
        for i in range(len(self.urls)):
            index = (self.current + i) % len(self.urls)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.conf.connect_timeout)
            if self.conf.username is not None and not self._token:
                try:
                    await self.authenticate(index, self.conf.timeout)
                except _Failed as e:
                    errors.append(f"{self.urls[index]}: {e}")
                    continue
            headers = {**self._headers(), "Grpc-Metadata-hasleader": "true"}
            post = self._http().post(self.urls[index] + "/v3/watch", json={"create_request": create},
                                     headers=headers, timeout=timeout)  # fmt: skip
            try:
                response = await asyncio.wait_for(post, self.conf.timeout)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                errors.append(f"{self.urls[index]}: {e or type(e).__name__}")
                continue
            started = False
            self._streams.add(response)
            try:
                if response.status != 200:
                    answer = _json(await response.read())
                    if int(answer.get("code") or 0) == UNAUTHENTICATED and self.conf.username is not None:
                        await self.authenticate(index, self.conf.timeout)
                    errors.append(f"{self.urls[index]}: {answer.get('message') or response.status}")
                    continue
                async for message in _messages(response, self.conf.timeout, idle_every):
                    if not started:
                        started = True
                        self.current = index
                    yield message
            except _Failed as e:
                if started:  # the caller has moved on: it opens the next watch from where it got to
                    self.current = (index + 1) % len(self.urls)
                    raise StoreUnavailable(f"etcd watch on {self.urls[index]}: {e}") from None
                errors.append(f"{self.urls[index]}: {e}")
                continue
            finally:
                self._streams.discard(response)
                response.close()
        self.current = (self.current + 1) % len(self.urls)
        raise StoreUnavailable(f"etcd watch: no endpoint took it ({'; '.join(errors)})")


async def _messages(response: Any, first_within: float, idle_every: float) -> AsyncIterator[dict[str, Any]]:
    """The newline-separated JSON messages of a watch stream, as they come (a message can be megabytes: the body
    of a deployment, so no line-length limit of aiohttp's readline applies)."""
    import aiohttp

    buffer = bytearray()
    created = False
    while True:
        try:
            # NOTE: cancelling readany (wait_for's timeout) loses no data: it only drops its waiter.
            chunk = await asyncio.wait_for(response.content.readany(), idle_every if created else first_within)
        except asyncio.TimeoutError:
            if not created:
                raise _Failed(f"no answer to the watch within {first_within} s", sent=True) from None
            yield {"idle": True}
            continue
        except (aiohttp.ClientError, OSError, RuntimeError) as e:
            # NOTE: a response closed under a waiting readany (the store closed) raises RuntimeError, not ClientError.
            raise _Failed(f"the watch stream broke: {e or type(e).__name__}", sent=True) from None
        if not chunk:
            raise _Failed("etcd closed the watch stream", sent=True)
        start = len(buffer)
        buffer += chunk
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            start = 0
            if not line.strip():
                continue
            message = _json(line)
            if "result" not in message:
                error = message.get("error") or message
                raise _Failed(f"etcd: {error.get('message') if isinstance(error, dict) else error}", sent=True)
            result = message["result"]
            if result.get("created"):
                created = True
            yield result


def _payload(body: dict[str, Any]) -> bytes | io.BytesIO:
    raw = orjson.dumps(body)
    # NOTE: aiohttp writes a large bytes body in one go, holding the loop (and warns); a file object in chunks.
    return io.BytesIO(raw) if len(raw) > 256 * 1024 else raw


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"message": f"not JSON: {raw[:200]!r}"}
    return value if isinstance(value, dict) else {"message": f"not a JSON object: {raw[:200]!r}"}
