"""The circuit breaker of one target: closed (traffic flows), open (no traffic), half-open (a few probes).

It opens on `consecutive_failures` failures in a row, or on a failure ratio of `failure_ratio` over at least
`min_requests` answers counted within `window` seconds. After `cool_down` it half-opens: `probes` requests go
through; as many successes close it, one failure opens it again. A failure is a 5xx answer, a connection error or
a timeout. Time is injected (`now`, seconds on a monotonic clock) so the states can be driven in tests.
"""

from __future__ import annotations

from collections.abc import Callable

from fastgw.config.schema import BreakerConfig

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class Breaker:
    __slots__ = (
        "conf", "on_change", "state", "in_row", "window_start", "answers", "failures", "open_until", "probing",
        "probe_ok", "probe_since", "opened",
    )  # fmt: skip

    def __init__(self, conf: BreakerConfig, on_change: Callable[[str, str], None]) -> None:
        self.conf = conf
        self.on_change = on_change  # (new state, why)
        self.state = CLOSED
        self.in_row = 0
        self.window_start = 0.0
        self.answers = 0
        self.failures = 0
        self.open_until = 0.0
        self.probing = 0  # probes sent and not answered yet (half-open)
        self.probe_ok = 0
        self.probe_since = 0.0
        self.opened = 0  # times opened, for the status

    def admit(self, now: float) -> bool:
        """Half-open: may one more probe go? (Only asked while half-open.)"""
        if self.state != HALF_OPEN:
            return self.state == CLOSED
        if self.probing + self.probe_ok >= self.conf.probes:
            return False
        self.probing += 1
        return True

    def record(self, ok: bool, now: float) -> None:
        conf = self.conf
        if self.state == HALF_OPEN:
            self.probing = max(0, self.probing - 1)
            if not ok:
                self._open(now, "a probe failed")
                return
            self.probe_ok += 1
            if self.probe_ok >= conf.probes:
                self.state = CLOSED
                self._reset_window(now)
                self.on_change(CLOSED, f"{self.probe_ok} probes succeeded")
            return
        if self.state == OPEN:
            return  # an answer to a request sent before it opened
        if now - self.window_start > conf.window:
            self._reset_window(now)
        self.answers += 1
        if ok:
            self.in_row = 0
            return
        self.failures += 1
        self.in_row += 1
        if conf.consecutive_failures is not None and self.in_row >= conf.consecutive_failures:
            self._open(now, f"{self.in_row} failures in a row")
        elif (
            conf.failure_ratio is not None
            and self.answers >= conf.min_requests
            and self.failures >= conf.failure_ratio * self.answers
        ):
            self._open(now, f"{self.failures} of {self.answers} answers failed within {conf.window:g}s")

    def tick(self, now: float) -> None:
        if self.state == OPEN and now >= self.open_until:
            self.state = HALF_OPEN
            self.probing = self.probe_ok = 0
            self.probe_since = now
            self.on_change(HALF_OPEN, f"cool-down of {self.conf.cool_down:g}s over, {self.conf.probes} probes")
        elif self.state == HALF_OPEN and self.probing and now - self.probe_since > self.conf.cool_down:
            # NOTE: a probe whose client went away never reports; do not stay half-open with no probe allowed.
            self.probing = 0
            self.probe_since = now

    def _open(self, now: float, why: str) -> None:
        self.state = OPEN
        self.opened += 1
        self.open_until = now + self.conf.cool_down
        self.on_change(OPEN, why)

    def _reset_window(self, now: float) -> None:
        self.window_start = now
        self.answers = self.failures = self.in_row = 0
