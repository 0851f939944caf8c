"""Upstreams, their targets, and a keep-alive connection pool per target.

An `Upstream` keeps its targets, the live ones among them (in rotation: not down by active checks, not ejected,
breaker not open), its balancer (fastgw.proxy.balancer) which picks among the live ones, and its retry budget. Its
`status()` is the small status object the metrics and the admin API read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from fastgw.config.schema import TargetSpec
from fastgw.config.schema import Upstream as UpstreamConfig
from fastgw.proxy import dns
from fastgw.proxy.balancer import Balancer, busy, make_balancer
from fastgw.proxy.breaker import HALF_OPEN, OPEN
from fastgw.proxy.health import ActiveChecker, TargetWatch
from fastgw.proxy.retry import RetryBudget

if TYPE_CHECKING:
    from fastgw.pipeline.exchange import Exchange

log = logging.getLogger("fastgw.upstream")


class UpstreamConnection(Protocol):
    """What the pool knows of a connection (`fastgw.proxy.upstream.UpstreamConnection`)."""

    closed: bool
    idle_since: float
    transport: asyncio.Transport | None
    target: Target
    filtering: int

    def close(self) -> None: ...
    def start(self, ex: Exchange, head: bytes) -> None: ...


class Target:
    """One `http://host:port` of an upstream, with its pool of idle keep-alive connections."""

    __slots__ = (
        "url", "weight", "host", "port", "host_header", "max_idle", "idle_timeout", "idle", "closed",
        "connect_timeout", "read_timeout", "send_timeout", "head_timeout", "open", "connecting", "watch",
        "check_up", "ssl", "server_hostname",
    )  # fmt: skip

    def __init__(
        self,
        url: str,
        config: UpstreamConfig,
        weight: int = 1,
        tls: ssl.SSLContext | None = None,
        address: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.url = url.rstrip("/")
        self.weight = weight
        # Where connections go: the address a name resolved to, or the URL's host (a name resolved per connection
        # until the upstream's resolver has run). Host header and TLS name stay the URL's.
        self.host = address or parts.hostname or "127.0.0.1"
        https = parts.scheme == "https"
        self.port = parts.port or (443 if https else 80)
        # What create_connection takes: a context and the name for SNI and the certificate check (https only).
        self.ssl = tls if https else None
        self.server_hostname = (config.tls.server_name or self.host) if https else None
        netloc = parts.netloc.rstrip("/")
        self.host_header = netloc.encode("latin-1")
        self.max_idle = config.pool.max_idle
        self.idle_timeout = config.pool.idle_timeout
        self.connect_timeout = config.connect_timeout
        self.read_timeout = config.read_timeout
        self.send_timeout = config.send_timeout
        per_try = config.retries.per_try_timeout
        # The wait for a response head: a per-try timeout shortens it so that a slow target leaves time to retry.
        self.head_timeout = min(per_try, self.read_timeout) if per_try is not None else self.read_timeout
        # LIFO: the most recently used connection is the likeliest to still be open at the other end.
        self.idle: list[UpstreamConnection] = []
        self.closed = False
        # Connections open, and being opened: counted per connection, not per request, so least-connections and
        # two-choices read how busy a target is (`busy`) at no cost to the requests.
        self.open = 0
        self.connecting = 0
        self.watch: TargetWatch | None = None  # passive checks and breaker, when configured
        self.check_up = True  # the active checks' verdict (targets start in rotation)

    @property
    def available(self) -> bool:
        watch = self.watch
        if watch is not None:
            if watch.outlier is not None and watch.outlier.ejected_until:
                return False
            if watch.breaker is not None and watch.breaker.state == OPEN:
                return False
        return self.check_up

    def status(self) -> dict[str, Any]:
        watch = self.watch
        outlier = watch.outlier if watch is not None else None
        breaker = watch.breaker if watch is not None else None
        now = time.monotonic()
        return {
            "url": self.url,
            "address": self.host,
            "weight": self.weight,
            "in_rotation": self.available,
            "healthy": self.check_up,
            "ejected_for": round(outlier.ejected_until - now, 3) if outlier and outlier.ejected_until else 0.0,
            "ejections": outlier.ejections if outlier else 0,
            "breaker": breaker.state if breaker else None,
            "breaker_opened": breaker.opened if breaker else 0,
            "busy": busy(self),
            "idle": len(self.idle),
        }

    def adopt(self, old: Target) -> None:
        """A reload: take over the idle connections (and the health verdict) of the same target in the previous
        config, so a reload does not drop warm connections."""
        idle, old.idle = old.idle, []
        for conn in idle:
            conn.target = self
        self.idle = idle[-self.max_idle :] if self.max_idle else []
        for conn in idle[: len(idle) - len(self.idle)]:
            conn.close()
        self.check_up = old.check_up

    def acquire(self) -> UpstreamConnection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            # Pooled connections always have a transport and no client; the other side may have closed it.
            if not conn.closed and not conn.transport.is_closing():  # type: ignore[union-attr]
                return conn
        return None

    def release(self, conn: UpstreamConnection, now: float) -> None:
        """Pool `conn`, which has just finished an exchange (or was just connected and is unused): it has a
        transport and no client."""
        if self.closed or len(self.idle) >= self.max_idle or conn.closed or conn.transport.is_closing():  # type: ignore[union-attr]
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A pooled connection was closed by the other side."""
        with contextlib.suppress(ValueError):
            self.idle.remove(conn)

    def expire(self, now: float) -> None:
        """Close connections idle for longer than `idle_timeout` (called by the server's tick)."""
        if not self.idle:
            return
        deadline = now - self.idle_timeout
        keep = []
        for conn in self.idle:
            if conn.idle_since < deadline:
                conn.close()
            else:
                keep.append(conn)
        self.idle[:] = keep

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()


class Upstream:
    """A named set of targets; `pick(ex)` chooses one for a request (None: no target in rotation)."""

    __slots__ = ("name", "config", "targets", "only", "live", "balancer", "pick", "budget", "checker", "watched",
                 "retries_done", "changes", "specs", "tls", "resolver", "named")  # fmt: skip

    def __init__(
        self, name: str, config: UpstreamConfig, previous: Upstream | None = None, base_dir: Path | None = None
    ) -> None:
        self.name = name
        self.config = config
        urls = [(t.url, t.weight) if isinstance(t, TargetSpec) else (t, 1) for t in config.targets]
        self.tls = tls_context(config, base_dir) if any(u.startswith("https:") for u, _ in urls) else None
        # Per configured target, the targets it is now (one per address for a DNS name, once resolved).
        self.specs: list[tuple[str, int, list[Target]]] = []
        old: dict[str, list[Target]] = {}
        if previous is not None:
            for t in previous.targets:
                old.setdefault(t.url, []).append(t)
        for url, weight in urls:
            was = old.get(url.rstrip("/"), [])
            # A reload starts from the addresses the previous config had resolved, with their warm pools.
            addresses = [t.host for t in was] if len(was) > 1 or (was and was[0].host != _host(url)) else [None]
            targets = [Target(url, config, weight, self.tls, a) for a in addresses]
            for t in targets:
                for prev in was:
                    if prev.host == t.host:
                        t.adopt(prev)
            self.specs.append((url, weight, targets))
        self.targets: list[Target] = [t for _, _, ts in self.specs for t in ts]
        self.named = any(dns.is_name(_host(url)) for url, _ in urls)
        self.resolver: asyncio.Task[None] | None = None
        health = config.health
        # Passive checks (on by default) watch an upstream with a choice of targets: the only target is never
        # ejected, so a single one keeps the plain way (`only`) unless a breaker watches it.
        several = len(self.targets) > 1 or self.named
        self.watched = (health.passive is not None and several) or config.breaker is not None
        if self.watched:
            for t in self.targets:
                t.watch = TargetWatch(t, self)
        self.checker = ActiveChecker(self, health.active) if health.active is not None else None
        guarded = self.watched or self.checker is not None or self.named
        # No choice to make per request (one target, nothing that can take it out of rotation).
        self.only = self.targets[0] if len(self.targets) == 1 and not guarded else None
        self.live = [t for t in self.targets if t.available]
        self.balancer: Balancer[Target] = make_balancer(config.balancer, self.live, config.hash_on)
        # PERF: the balancer's own bound method, so a pick is one call whatever the balancer; swapped for the gated
        # pick only while some breaker is half-open.
        self.pick = self.balancer.pick
        self.budget = RetryBudget(config.retries.budget, config.retries.budget_min, self.balancer)
        self.retries_done = 0
        self.changes = 0  # state changes logged (ejections, health, breaker), for the status

    def start(self) -> None:
        """On the serving loop: start the active checks, and the resolver of targets named by DNS names."""
        if self.checker is not None:
            self.checker.start()
        if self.named:
            self.resolver = asyncio.get_running_loop().create_task(self._resolve_loop())

    async def _resolve_loop(self) -> None:
        while True:
            for i, (url, _weight, targets) in enumerate(self.specs):
                host = _host(url)
                if not dns.is_name(host):
                    continue
                port = targets[0].port
                try:
                    addresses = await asyncio.wait_for(dns.resolve(host, port), 10)
                except (OSError, asyncio.TimeoutError) as exc:
                    log.warning("upstream %s: resolving %s failed, keeping %s: %s", self.name, host,
                                ", ".join(t.host for t in targets), exc)  # fmt: skip
                    continue
                if addresses and sorted(addresses) != sorted(t.host for t in targets):
                    self._readdress(i, addresses)
            await asyncio.sleep(self.config.resolve_interval)

    def _readdress(self, i: int, addresses: list[str]) -> None:
        """Configured target `i` now resolves to `addresses`: the targets of addresses kept stay as they are (pools,
        health), new ones join, gone ones leave (their idle connections closed, busy ones when done)."""
        url, weight, targets = self.specs[i]
        by_address = {t.host: t for t in targets}
        new = []
        for a in addresses:
            t = by_address.pop(a, None)
            if t is None:
                t = Target(url, self.config, weight, self.tls, a)
                if self.watched:
                    t.watch = TargetWatch(t, self)
            new.append(t)
        for gone in by_address.values():
            gone.close()
        self.specs[i] = (url, weight, new)
        self.targets = [t for _, _, ts in self.specs for t in ts]
        log.warning("upstream %s: %s resolves to %s", self.name, _host(url), ", ".join(addresses))
        self.changes += 1
        if self.checker is not None:
            self.checker.sync()
        self.refresh()

    def changed(self, target: Target, what: str) -> None:
        """A target's health or breaker changed: log it, and give the balancer the targets now in rotation."""
        self.changes += 1
        log.warning("upstream %s: target %s %s", self.name, target.url, what)
        self.refresh()

    def refresh(self) -> None:
        live = [t for t in self.targets if t.available]
        if len(live) != len(self.live) or any(a is not b for a, b in zip(live, self.live, strict=False)):
            self.live = live
            self.balancer.update(live)
            if not live:
                log.error("upstream %s: no target in rotation, requests are answered 503", self.name)
        half_open = any(t.watch and t.watch.breaker and t.watch.breaker.state == HALF_OPEN for t in live)
        self.pick = self._gated_pick if half_open else self.balancer.pick

    def _gated_pick(self, ex: Exchange | None) -> Target | None:
        """The pick while a breaker is half-open: such a target takes only its few probes."""
        now = time.monotonic()
        for _ in range(len(self.live) + 1):
            t = self.balancer.pick(ex)
            if t is None:
                return None
            breaker = t.watch.breaker if t.watch is not None else None
            if breaker is None or breaker.state != HALF_OPEN or breaker.admit(now):
                return t
        for t in self.live:
            breaker = t.watch.breaker if t.watch is not None else None
            if breaker is None or breaker.state != HALF_OPEN:
                return t
        return None

    def another(self, ex: Exchange, tried: list[Target]) -> Target | None:
        """A live target not in `tried`, for a retry. Not the balancer's pick, which would move its rotation (and
        send the next request to the failing target first again): the least busy one by weight where the balancer
        balances by load, else the next one after the target that failed, in the list's order."""
        live = self.live
        if not live:
            return None
        now = time.monotonic()
        candidates = []
        for t in live:
            if t in tried:
                continue
            breaker = t.watch.breaker if t.watch is not None else None
            if breaker is not None and breaker.state == HALF_OPEN and not breaker.admit(now):
                continue
            candidates.append(t)
        if not candidates:
            return None
        if self.config.balancer in ("least-connections", "random-two-choices"):
            return min(candidates, key=lambda t: busy(t) / t.weight)
        last = tried[-1]
        at = live.index(last) if last in live else -1
        for k in range(1, len(live) + 1):
            t = live[(at + k) % len(live)]
            if t in candidates:
                return t
        return candidates[0]

    def may_eject(self, target: Target) -> bool:
        """Passive checks never eject more than `max_ejected` of the targets (one may always be), and never the
        only target of an upstream (ejecting it would only turn its failures into 503s)."""
        passive = self.config.health.passive
        assert passive is not None
        if len(self.targets) < 2:
            return False
        ejected = sum(1 for t in self.targets if t.watch and t.watch.outlier and t.watch.outlier.ejected_until)
        return ejected < max(1, int(passive.max_ejected * len(self.targets)))

    def expire(self, now: float) -> None:
        """The server's tick: idle connections, ejections ending, breakers cooling down, the budget's window."""
        for t in self.targets:
            t.expire(now)
        mono = time.monotonic()
        if self.watched:
            for t in self.targets:
                t.watch.tick(mono)  # type: ignore[union-attr]
            self.refresh()
        self.budget.tick(mono)

    def status(self) -> dict[str, Any]:
        """The upstream's state as data (for metrics and the admin API)."""
        budget = self.budget
        return {
            "name": self.name,
            "balancer": self.config.balancer,
            "in_rotation": len(self.live),
            "targets": [t.status() for t in self.targets],
            "retries": {"done": self.retries_done, "refused_by_budget": budget.refused},
            "state_changes": self.changes,
        }

    def close(self) -> None:
        if self.checker is not None:
            self.checker.stop()
        if self.resolver is not None:
            self.resolver.cancel()
        for t in self.targets:
            t.close()


def _host(url: str) -> str:
    return urlsplit(url).hostname or "127.0.0.1"


def tls_context(config: UpstreamConfig, base_dir: Path | None) -> ssl.SSLContext:
    """The client TLS context of an upstream's https targets: the system's trust (or `ca_file`), names checked, and
    the client certificate when one is configured (checked when the config loaded: fastgw.config.checks)."""
    conf = config.tls
    base = base_dir or Path.cwd()
    cafile = str(base / conf.ca_file) if conf.ca_file else None
    ctx = ssl.create_default_context(cafile=cafile)
    if conf.cert_file is not None and conf.key_file is not None:
        ctx.load_cert_chain(base / conf.cert_file, base / conf.key_file)
    if not conf.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
