"""The one Redis client every plugin that shares state uses (the top-level `redis:` section).

`configure(conf)` is called when a config loads and returns the `SharedRedis` its plugins keep. The redis-py
asyncio client (hiredis parser when installed; `pip install 'fastgw[redis]'`) is made lazily, per process and
event loop, on first use: a config loaded before the workers fork never shares a socket across processes.

Redis slow or gone never holds a request: every call is bounded by `connect_timeout + timeout` (redis-py's own
retries are off), and after a failure Redis is left alone for a backoff (doubling up to `backoff_max`) during
which calls fail at once with `RedisUnavailable`; the plugin's `fail_open` / `fail_closed` policy answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from fastgw.config.schema import RedisConfig

log = logging.getLogger("fastgw.state.redis")
T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis did not answer in time, refused, or is being left alone after a failure (backoff)."""


def available() -> bool:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return False
    return True


class SharedRedis:
    """The Redis of one `redis:` section: clients per (process, loop), scripts, the backoff after failures."""

    def __init__(self, conf: RedisConfig) -> None:
        self.conf = conf
        self.prefix = conf.key_prefix
        self.deadline = conf.connect_timeout + conf.timeout
        self.cluster = conf.cluster
        self._clients: dict[tuple[int, int], Any] = {}
        self._scripts: dict[tuple[int, int, str], Any] = {}
        self._retry_at = 0.0
        self._backoff = 0.0
        self._logged_at = 0.0
        self.failures = 0  # calls that failed or were refused during a backoff (read by tests and metrics)

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        key = (os.getpid(), id(loop))
        client = self._clients.get(key)
        if client is None:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            c = self.conf
            kw: dict[str, Any] = {}
            if c.tls_ca_file:
                kw["ssl_ca_certs"] = c.tls_ca_file
            # NOTE: no retries inside redis-py: a retry would double the time a request waits; the backoff
            # below is the only retry policy.
            kind: Any = aioredis.Redis
            if c.cluster:
                from redis.asyncio.cluster import RedisCluster

                kind = RedisCluster
            else:
                kw["health_check_interval"] = 0
            client = kind.from_url(
                c.url, password=c.password, username=c.username, socket_timeout=c.timeout,
                socket_connect_timeout=c.connect_timeout, max_connections=c.pool_size,
                retry=Retry(NoBackoff(), 0), **kw,
            )  # fmt: skip
            self._clients[key] = client
        return client

    def script(self, lua: str) -> Any:
        """A redis-py Script for `lua` on this loop's client (EVALSHA, loaded again if Redis lost it)."""
        client = self._client()
        key = (os.getpid(), id(client), lua)
        s = self._scripts.get(key)
        if s is None:
            s = self._scripts[key] = client.register_script(lua)
        return s

    async def run(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """`await call(client)`, bounded in time; raises RedisUnavailable instead of waiting or erring."""
        now = time.monotonic()
        if now < self._retry_at:
            self.failures += 1
            raise RedisUnavailable("backing off after a failure")
        try:
            client = self._client()
            result = await asyncio.wait_for(call(client), self.deadline)
        except Exception as exc:  # noqa: BLE001 - any failure of Redis becomes the plugin's failure policy
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
                raise
            self._failed(now, exc)
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if self._backoff:
            log.warning("redis %s answers again", self._where())
            self._backoff = 0.0
        return result

    def _failed(self, now: float, exc: BaseException) -> None:
        self.failures += 1
        c = self.conf
        self._backoff = min(c.backoff_max, max(c.backoff_min, self._backoff * 2))
        self._retry_at = now + self._backoff
        if now - self._logged_at >= 1.0:  # one line a second at most: Redis down must not flood the log
            self._logged_at = now
            log.warning("redis %s failed (%s: %s); next try in %.2fs", self._where(), type(exc).__name__, exc,
                        self._backoff)  # fmt: skip

    def _where(self) -> str:
        url = self.conf.url
        return url.split("@", 1)[1] if "@" in url else url.split("://", 1)[-1]

    async def aclose(self) -> None:
        """Close this process's clients on the running loop (at shutdown, and between tests)."""
        loop_id = id(asyncio.get_running_loop())
        for key in [k for k in self._clients if k == (os.getpid(), loop_id)]:
            client = self._clients.pop(key)
            await client.aclose()


_shared: dict[Any, SharedRedis] = {}
# NOTE: the SharedRedis of the config being loaded, set by fastgw.config.load around building the plugins: a
# plugin's `prepare` sees only its own configuration, and this is how it finds the top-level `redis:` section.
current: SharedRedis | None = None


def configure(conf: RedisConfig | None) -> SharedRedis | None:
    """The SharedRedis for `conf` (the same object for an equal section, so a reload keeps its connections)."""
    if conf is None:
        return None
    shared = _shared.get(conf)
    if shared is None:
        shared = _shared[conf] = SharedRedis(conf)
    return shared


async def aclose_all() -> None:
    """Close every client this process made on the running loop."""
    for shared in list(_shared.values()):
        await shared.aclose()
