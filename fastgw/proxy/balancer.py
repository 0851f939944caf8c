"""Balancers: which target of an upstream takes the next request.

Selection is kept apart from health: a balancer picks among the targets it was last given (`update(live)`), and
the upstream gives it a new list when a target leaves or rejoins rotation (a health check, an ejection, a
breaker). A pick never looks at health, so it costs the same with or without checks configured.

- `RoundRobin`: targets of equal weight in turn.
- `SmoothWeighted`: nginx's smooth weighted round-robin (`ngx_http_upstream_get_peer`): weights 5, 1, 1 give
  a a b a c a a, never a burst of five.
- `LeastConnections`: the target with the fewest busy connections relative to its weight (nginx's least_conn);
  ties go round-robin.
- `ConsistentHash`: a ring with virtual nodes (ketama: 160 points per unit of weight); a key goes to the first
  point at or after its hash. Removing a target moves only the keys it held.
- `RandomTwoChoices`: two targets drawn at random (by weight), the less busy one wins.

Every balancer counts its picks (`picks`): the retry budget reads it, so requests are counted for free.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import zlib
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange


class Member(Protocol):
    """What a balancer reads of a target (`fastgw.proxy.pool.Target`)."""

    url: str
    weight: int
    open: int
    connecting: int
    idle: list[Any]


Target = TypeVar("Target", bound=Member)


class Balancer(Protocol[Target]):
    picks: int

    def pick(self, ex: Exchange | None) -> Target | None: ...
    def update(self, live: list[Target]) -> None: ...


def busy(t: Member) -> int:
    """Connections of `t` carrying a request now (or being opened for one)."""
    return t.open + t.connecting - len(t.idle)


class RoundRobin(Generic[Target]):
    __slots__ = ("live", "picks")

    def __init__(self, live: list[Target]) -> None:
        self.live = live
        self.picks = 0

    def update(self, live: list[Target]) -> None:
        self.live = live

    def pick(self, ex: Exchange | None) -> Target | None:
        live = self.live
        if not live:
            return None
        i = self.picks
        self.picks = i + 1
        return live[i % len(live)]


class SmoothWeighted(Generic[Target]):
    __slots__ = ("live", "weights", "current", "total", "picks")

    def __init__(self, live: list[Target]) -> None:
        self.picks = 0
        self.update(live)

    def update(self, live: list[Target]) -> None:
        self.live = live
        self.weights = [t.weight for t in live]
        self.current = [0] * len(live)
        self.total = sum(self.weights)

    def pick(self, ex: Exchange | None) -> Target | None:
        live = self.live
        if not live:
            return None
        self.picks += 1
        current = self.current
        best = 0
        best_value = -(1 << 62)
        for i, w in enumerate(self.weights):
            c = current[i] + w
            current[i] = c
            if c > best_value:
                best, best_value = i, c
        current[best] -= self.total
        return live[best]


class LeastConnections(Generic[Target]):
    __slots__ = ("live", "picks")

    def __init__(self, live: list[Target]) -> None:
        self.live = live
        self.picks = 0

    def update(self, live: list[Target]) -> None:
        self.live = live

    def pick(self, ex: Exchange | None) -> Target | None:
        live = self.live
        n = len(live)
        if not n:
            return None
        start = self.picks % n
        self.picks += 1
        best = live[start]
        best_busy = busy(best)
        for k in range(1, n):
            t = live[(start + k) % n]
            b = busy(t)
            # b / t.weight < best_busy / best.weight, without division
            if b * best.weight < best_busy * t.weight:
                best, best_busy = t, b
        return best


class RandomTwoChoices(Generic[Target]):
    __slots__ = ("live", "cum", "picks", "rng")

    def __init__(self, live: list[Target], rng: random.Random | None = None) -> None:
        self.picks = 0
        self.rng = rng or random.Random()
        self.update(live)

    def update(self, live: list[Target]) -> None:
        self.live = live
        cum, total = [], 0
        for t in live:
            total += t.weight
            cum.append(total)
        self.cum = cum

    def pick(self, ex: Exchange | None) -> Target | None:
        live = self.live
        if not live:
            return None
        self.picks += 1
        if len(live) == 1:
            return live[0]
        a, b = self.rng.choices(live, cum_weights=self.cum, k=2)
        return a if busy(a) * b.weight <= busy(b) * a.weight else b


POINTS_PER_WEIGHT = 160  # ketama's: 40 md5 digests of 4 points each


def _point_hash(key: bytes) -> int:
    """32 bits of a key, spread evenly (murmur3's finalizer over crc32: cheap, and stable across processes and
    machines, unlike `hash()`)."""
    h = zlib.crc32(key)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


class ConsistentHash(Generic[Target]):
    """`hash_on` is `header:NAME`, `cookie:NAME`, `ip`, `path` or `consumer`; a request without that key goes
    round-robin."""

    __slots__ = ("live", "picks", "kind", "name", "points", "owners", "fallback")

    def __init__(self, live: list[Target], hash_on: str) -> None:
        kind, _, name = hash_on.partition(":")
        self.kind = kind
        self.name = name.lower().encode("latin-1") if kind == "header" else name.encode("latin-1")
        self.picks = 0
        self.fallback: RoundRobin[Target] = RoundRobin(live)
        self.update(live)

    def update(self, live: list[Target]) -> None:
        self.live = live
        self.fallback.update(live)
        ring: list[tuple[int, int, Target]] = []
        for t in live:
            # A target's points depend on its URL alone: they stay where they are whatever else joins or leaves.
            for i in range(POINTS_PER_WEIGHT * t.weight // 4):
                digest = hashlib.md5(f"{t.url}-{i}".encode()).digest()
                for j in range(4):
                    ring.append((int.from_bytes(digest[4 * j : 4 * j + 4], "little"), id(t), t))
        ring.sort(key=lambda p: (p[0], p[1]))
        self.points = [p[0] for p in ring]
        self.owners = [p[2] for p in ring]

    def key(self, ex: Exchange | None) -> bytes | None:
        if ex is None:
            return None
        kind = self.kind
        req = ex.req
        if kind == "ip":
            return ex.peer.ip_b
        if kind == "path":
            return req.path.encode("latin-1", "replace")
        if kind == "consumer":
            ctx = ex.ctx
            consumer = ctx.consumer if ctx is not None else None
            return consumer.name_b if consumer is not None else None
        if kind == "header":
            for name, value in req.headers:
                if name == self.name:
                    return value
            return None
        for name, value in req.headers:  # cookie
            if name == b"cookie":
                for part in value.split(b";"):
                    k, eq, v = part.strip().partition(b"=")
                    if eq and k == self.name:
                        return v
        return None

    def lookup(self, key: bytes) -> Target | None:
        points = self.points
        if not points:
            return None
        i = bisect.bisect_left(points, _point_hash(key))
        return self.owners[i if i < len(points) else 0]

    def pick(self, ex: Exchange | None) -> Target | None:
        self.picks += 1
        key = self.key(ex)
        if key is None:
            return self.fallback.pick(ex)
        return self.lookup(key)


def make_balancer(kind: str, live: list[Target], hash_on: str | None) -> Balancer[Target]:
    if kind == "least-connections":
        return LeastConnections(live)
    if kind == "consistent-hash":
        assert hash_on is not None
        return ConsistentHash(live, hash_on)
    if kind == "random-two-choices":
        return RandomTwoChoices(live)
    if len({t.weight for t in live}) > 1:
        return SmoothWeighted(live)
    return RoundRobin(live)
