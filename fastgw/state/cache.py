"""Where the proxy-cache keeps responses: `MemoryStore` (an LRU bounded in bytes, per worker process) and
`RedisStore` (shared by every gateway on the one Redis of `fastgw.state.redis`).

An item is a `Stored`: a response (status, headers, body, its freshness), or, under a request's base key, a
pointer naming the request headers the response varies on (`vary`), whose values complete the key of the
response itself (RFC 9111 4.1: the secondary key).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from fastgw.state.redis import SharedRedis


class Stored(msgspec.Struct, array_like=True, omit_defaults=True):
    status: int  # 0: a pointer (`vary` names the headers that complete the key)
    headers: list[tuple[str, str]]
    body: bytes
    stored_at: float  # unix seconds
    age: float  # the response's Age when it was stored
    fresh_until: float
    stale_until: float  # stale-while-revalidate: served STALE while one request refreshes it
    error_until: float  # stale-if-error: served STALE when the upstream fails
    vary: list[str] | None = None
    # PERF: the memory backend keeps the headers encoded for the wire too (`lines`, and whether a Server line is
    # among them), so that a hit is written without encoding them again. Set before the item is stored (its size
    # counts them); never sent to Redis (trailing defaults are omitted).
    lines: bytes = b""
    has_server: bool = False

    @property
    def size(self) -> int:
        return len(self.body) + len(self.lines) + sum(len(k) + len(v) for k, v in self.headers) + 64

    @property
    def until(self) -> float:
        """Kept until then: past every use (fresh, stale windows), and as long again as it was fresh, so that a
        request soon after it expired is said to be EXPIRED rather than a MISS (the LRU bound still holds)."""
        return max(self.fresh_until, self.stale_until, self.error_until) + (self.fresh_until - self.stored_at)


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Stored).decode


class MemoryStore:
    """Least recently used items go first once the bytes held pass `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.items: OrderedDict[str, Stored] = OrderedDict()

    def get(self, key: str, now: float) -> Stored | None:
        item = self.items.get(key)
        if item is None:
            return None
        if now >= item.until:
            self._drop(key)
            return None
        self.items.move_to_end(key)
        return item

    def put(self, key: str, item: Stored) -> None:
        if key in self.items:
            self._drop(key)
        size = item.size
        if size > self.max_bytes:
            return
        self.items[key] = item
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self.items)))

    def _drop(self, key: str) -> None:
        self.bytes -= self.items.pop(key).size

    def purge(self, prefix: str = "") -> int:
        keys = [k for k in self.items if k.startswith(prefix)]
        for k in keys:
            self._drop(k)
        return len(keys)


# The keys' namespace in Redis. NOTE: "2:" since the key holds the query as it came (before, decoded and sorted):
# entries an older gateway stored under the old keys are never read by the new ones (a key made from a decoded
# query could match another request's new key), and expire by themselves; a purge of everything removes them too.
NAMESPACE = "cache:2:"


class RedisStore:
    """Items as msgpack under `<key_prefix>cache:2:<key>`, expiring when nothing of them can be served any more.
    The key is the plugin's text as it is (the client's UTF-8 encodes it, one to one): escaped where it needed it
    (`fastgw.plugins.proxy_cache`), never changed here."""

    def __init__(self, redis: SharedRedis) -> None:
        self.redis = redis
        self.prefix = redis.prefix + NAMESPACE

    async def get(self, key: str, now: float) -> Stored | None:
        raw = await self.redis.run(lambda c: c.get(self.prefix + key))
        if raw is None:
            return None
        item = _decode(raw)
        return item if now < item.until else None

    async def put(self, key: str, item: Stored, now: float) -> None:
        ms = max(1, int((item.until - now) * 1000))
        await self.redis.run(lambda c: c.set(self.prefix + key, _encode(item), px=ms))


async def purge_redis(redis: SharedRedis, prefix: str = "") -> int:
    """Delete the cached items whose key starts with `prefix` (all of them for "", those of older gateways'
    namespaces too); returns how many. `prefix` is a key's text as the plugin makes it (its escapes included)."""
    pattern = redis.prefix + (NAMESPACE + _glob_escape(prefix) if prefix else "cache:") + "*"

    async def purge(client: object) -> int:
        n = 0
        async for key in client.scan_iter(match=pattern, count=1000):  # type: ignore[attr-defined]
            n += await client.unlink(key)  # type: ignore[attr-defined]
        return n

    # NOTE: a purge may scan many keys: it is not bounded by a request's timeout (it runs from the CLI).
    return await purge(redis._client())


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
