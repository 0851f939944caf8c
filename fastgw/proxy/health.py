"""Health: active checks, passive checks (outlier ejection), and what feeds them and the breaker.

A target is in rotation while its active check says up, it is not ejected, and its breaker is not open. Each of
these only changes the target's state and asks its upstream to `refresh`: the upstream hands the balancer the new
list of live targets, so a pick never looks at health.

Active checks run in every worker process, each on its own (docs/operations.md): workers share nothing but Redis
by design, and a check per worker per interval is a handful of small requests, where a per-machine checker would
need a process and a channel to every worker to move the same few bits; it also means a worker whose own path
to a target is broken sees that itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Sequence
from typing import Any, Protocol

from fastgw.config.schema import ActiveCheck, PassiveCheck
from fastgw.config.schema import Upstream as UpstreamConfig
from fastgw.proxy.breaker import Breaker


class Target(Protocol):
    """What health reads and sets of a target (`fastgw.proxy.pool.Target`)."""

    url: str
    host: str
    port: int
    host_header: bytes
    check_up: bool
    ssl: ssl.SSLContext | None
    server_hostname: str | None
    watch: TargetWatch | None


class Upstream(Protocol):
    """What health tells its upstream (`fastgw.proxy.pool.Upstream`)."""

    name: str
    config: UpstreamConfig

    @property
    def targets(self) -> Sequence[Target]: ...
    # (the target is one of `targets`: typed Any, as the upstream's methods take its own Target)
    def changed(self, target: Any, what: str) -> None: ...
    def may_eject(self, target: Any) -> bool: ...


log = logging.getLogger("fastgw.health")


class Outlier:
    """Passive checks of one target (Envoy's outlier detection): ejected after `consecutive_failures` failures in a
    row, or a failure ratio of `failure_ratio` over `min_requests` answers; for `base_ejection` times the number
    of its ejections (at most `max_ejection`). Each `base_ejection` spent in rotation without an ejection takes one
    off that number, so a target that failed once long ago starts again from the base time."""

    __slots__ = ("conf", "in_row", "answers", "failures", "ejections", "ejected_until", "calm_since")

    def __init__(self, conf: PassiveCheck) -> None:
        self.conf = conf
        self.in_row = 0
        self.answers = 0
        self.failures = 0
        self.ejections = 0  # the multiplier of the next ejection time
        self.ejected_until = 0.0
        self.calm_since = 0.0

    def record(self, ok: bool) -> str | None:
        """Count an answer; the reason to eject, if it is time."""
        conf = self.conf
        self.answers += 1
        if ok:
            self.in_row = 0
        else:
            self.failures += 1
            self.in_row += 1
        why = None
        if conf.consecutive_failures is not None and self.in_row >= conf.consecutive_failures:
            why = f"{self.in_row} failures in a row"
        elif conf.failure_ratio is not None and self.answers >= conf.min_requests:
            if self.failures >= conf.failure_ratio * self.answers:
                why = f"{self.failures} of {self.answers} answers failed"
            self.answers = self.failures = 0
        return why

    def eject(self, now: float) -> float:
        self.ejections += 1
        span = min(self.conf.base_ejection * self.ejections, self.conf.max_ejection)
        self.ejected_until = now + span
        self.in_row = self.answers = self.failures = 0
        return span

    def uneject(self, now: float) -> bool:
        """End an ejection early (an active check passed); True if it was ejected. The count of ejections stays,
        so a target that fails again is ejected for longer, as when its ejection runs out."""
        if not self.ejected_until:
            return False
        self.ejected_until = 0.0
        self.calm_since = now
        self.in_row = self.answers = self.failures = 0
        return True

    def tick(self, now: float) -> bool:
        """True when an ejection just ended."""
        if self.ejected_until:
            if now >= self.ejected_until:
                self.ejected_until = 0.0
                self.calm_since = now
                return True
        elif self.ejections and now - self.calm_since >= self.conf.base_ejection:
            self.ejections -= 1
            self.calm_since = now
        return False


class TargetWatch:
    """What the proxy tells about a target's answers and failures, for its passive checks and its breaker. Only
    targets with one of them have a watch (`Target.watch`); the proxy reads that attribute and nothing else."""

    # quiet: an answer under `bad` only ends the outlier's run of failures (no breaker, no ratio to count): the
    # proxy then just clears `outlier.in_row` (PERF: no call per answer on the default passive check).
    # bad: the lowest status that is a failure (600: answers never are, to the passive check alone).
    __slots__ = ("target", "upstream", "outlier", "breaker", "counts", "quiet", "bad")

    def __init__(self, target: Target, upstream: Upstream) -> None:
        self.target = target
        self.upstream = upstream
        conf = upstream.config
        passive = conf.health.passive
        self.outlier = Outlier(passive) if passive is not None else None
        self.breaker = Breaker(conf.breaker, self._breaker_changed) if conf.breaker is not None else None
        # What the passive check counts as a failure (the breaker counts every kind).
        self.counts = frozenset(passive.failures) if passive is not None else frozenset()
        self.bad = 500 if self.breaker is not None or "http_5xx" in self.counts else 600
        self.quiet = self.breaker is None and passive is not None and passive.failure_ratio is None

    def answered(self, status: int) -> None:
        if status < 500:
            self.record(True, f"answered {status}")
            return
        what = f"answered {status}"
        if self.breaker is not None:
            self.breaker.record(False, time.monotonic())
        self._outlier(("http_5xx" not in self.counts), what)

    def failed(self, why: str, kind: str = "error") -> None:
        """A try failed: `kind` is "error" or "timeout" (fastgw.proxy.retry's words)."""
        if self.breaker is not None:
            self.breaker.record(False, time.monotonic())
        self._outlier(kind not in self.counts, why)

    def record(self, ok: bool, what: str) -> None:
        if self.breaker is not None:
            self.breaker.record(ok, time.monotonic())
        self._outlier(ok, what)

    def _outlier(self, ok: bool, what: str) -> None:
        now = time.monotonic()
        outlier = self.outlier
        if outlier is not None and not outlier.ejected_until:
            why = outlier.record(ok)
            if why is not None:
                if self.upstream.may_eject(self.target):
                    span = outlier.eject(now)
                    self.upstream.changed(self.target, f"ejected for {span:g}s ({why}; last: {what})")
                else:
                    log.warning("upstream %s: target %s would be ejected (%s) but max_ejected is reached",
                                self.upstream.name, self.target.url, why)  # fmt: skip

    def tick(self, now: float) -> None:
        if self.outlier is not None and self.outlier.tick(now):
            self.upstream.changed(self.target, "back in rotation after its ejection")
        if self.breaker is not None:
            self.breaker.tick(now)

    def active_passed(self) -> None:
        """An active check passed: as Envoy's `successful_active_health_check_uneject_host` (on by default), a
        target ejected by the passive checks is back in rotation at once, not when its ejection time runs out."""
        outlier = self.outlier
        if outlier is not None and outlier.conf.uneject_on_active_check and outlier.uneject(time.monotonic()):
            self.upstream.changed(self.target, "back in rotation: an active check passed during its ejection")

    def _breaker_changed(self, state: str, why: str) -> None:
        self.upstream.changed(self.target, f"circuit breaker {state} ({why})")


class ActiveChecker:
    """The active checks of one upstream: one task per target, from `start` (on the serving loop) to `stop`."""

    def __init__(self, upstream: Upstream, conf: ActiveCheck) -> None:
        self.upstream = upstream
        self.conf = conf
        self.tasks: dict[int, tuple[Target, asyncio.Task[None]]] = {}  # id(target) -> its checks
        self.rng = random.Random()
        self.running = False

    def start(self) -> None:
        self.running = True
        self.sync()

    def sync(self) -> None:
        """Checks for every target of the upstream now, and none for targets it no longer has."""
        if not self.running:
            return
        loop = asyncio.get_running_loop()
        now = {id(t): t for t in self.upstream.targets}
        for key in [k for k in self.tasks if k not in now]:
            self.tasks.pop(key)[1].cancel()
        for key, t in now.items():
            if key not in self.tasks:
                self.tasks[key] = (t, loop.create_task(self._run(t)))

    def stop(self) -> None:
        self.running = False
        for _, task in self.tasks.values():
            task.cancel()
        self.tasks = {}

    async def _run(self, target: Target) -> None:
        conf = self.conf
        ok_in_row = fail_in_row = 0
        while True:
            await asyncio.sleep(conf.interval * (1 + conf.jitter * self.rng.random()))
            ok, what = await self.check(target)
            if ok:
                ok_in_row, fail_in_row = ok_in_row + 1, 0
                if target.watch is not None:
                    target.watch.active_passed()
                if not target.check_up and ok_in_row >= conf.healthy_threshold:
                    target.check_up = True
                    self.upstream.changed(target, f"healthy: {ok_in_row} checks passed")
            else:
                ok_in_row, fail_in_row = 0, fail_in_row + 1
                if target.check_up and fail_in_row >= conf.unhealthy_threshold:
                    target.check_up = False
                    self.upstream.changed(target, f"unhealthy: {fail_in_row} checks failed (last: {what})")

    async def check(self, target: Target) -> tuple[bool, str]:
        """One check: a request on a connection of its own (never a pooled one), judged by its status."""
        conf = self.conf
        host = conf.host or target.host_header.decode("latin-1")
        request = (
            f"{conf.method} {conf.path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: fastgw-health-check\r\n"
            "connection: close\r\n\r\n"
        ).encode("latin-1")
        writers: list[asyncio.StreamWriter] = []

        async def exchange() -> bytes:
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=target.ssl, server_hostname=target.server_hostname
            )
            writers.append(writer)
            writer.write(request)
            return await reader.readline()

        try:
            line = await asyncio.wait_for(exchange(), conf.timeout)
        except asyncio.TimeoutError:
            return False, f"no answer within {conf.timeout:g}s"
        except OSError as exc:
            return False, f"connection failed: {exc.strerror or exc}"
        finally:
            for writer in writers:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
        parts = line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return False, "not an HTTP response"
        status = int(parts[1])
        return (status in conf.statuses), f"status {status}"
