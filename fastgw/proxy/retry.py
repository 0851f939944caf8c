"""Retries on another target (nginx's `proxy_next_upstream`) and the budget that bounds them (Envoy's).

A try that fails before any response byte reached the client (the connection failed, was reset or timed out; or
the target answered a status listed in `when`, whose answer is then dropped) goes once more to a target not tried
yet, while the retry policy allows: tries left, the method listed (POST and PATCH only on routes that allow it),
a body kept whole in the replay buffer, the route's total timeout not passed, and the budget not spent. A try
whose connection never opened (refused, connect timeout) sent nothing: it goes on whatever the method and the
body, within the same tries and budget. Nothing here runs on a request that does not fail.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from fastgw.config.schema import RetryConfig

if TYPE_CHECKING:
    from fastgw.core import Request
    from fastgw.pipeline.exchange import Exchange
    from fastgw.proxy.balancer import Balancer

log = logging.getLogger("fastgw.proxy")

_NON_IDEMPOTENT = frozenset({"POST", "PATCH"})
WINDOW = 10  # seconds of history the budget looks at, in one-second marks


class RetryBudget:
    """Over the last `WINDOW` seconds, retries stay under `minimum + ratio * requests`: during an outage the
    targets left see at most `ratio` more load than the clients send, never a multiple of it. Requests are the
    balancer's own pick count, so counting them costs nothing per request."""

    __slots__ = ("ratio", "minimum", "balancer", "retries", "refused", "marks", "next_mark", "warned")

    def __init__(self, ratio: float, minimum: int, balancer: Balancer[Any]) -> None:
        self.ratio = ratio
        self.minimum = minimum
        self.balancer = balancer
        self.retries = 0  # retries allowed, in all
        self.refused = 0  # retries the budget refused, in all
        self.marks: deque[tuple[int, int]] = deque([(0, 0)], maxlen=WINDOW)  # (picks, retries) each second
        self.next_mark = 0.0
        self.warned = -float(WINDOW)  # when a refusal was last logged (at most one line per window)

    def allow(self) -> bool:
        """May one more retry go?"""
        picks0, retries0 = self.marks[0]
        if self.retries - retries0 < self.minimum + self.ratio * (self.balancer.picks - picks0):
            self.retries += 1
            return True
        self.refused += 1
        return False

    def tick(self, now: float) -> None:
        if now >= self.next_mark:
            self.next_mark = now + 1.0
            self.marks.append((self.balancer.picks, self.retries))


class RetryPolicy:
    """One route's retry rules, resolved from its upstream's `retries` and the route's own settings."""

    __slots__ = ("attempts", "when", "methods", "statuses", "max_replay", "budget")

    def __init__(self, conf: RetryConfig, non_idempotent: bool, budget: RetryBudget, targets: int) -> None:
        self.attempts = min(conf.attempts, targets)
        self.when = frozenset(conf.when)
        methods = set(conf.methods)
        if not non_idempotent:
            methods -= _NON_IDEMPOTENT
        self.methods = frozenset(methods)
        self.statuses = frozenset(int(c[5:]) for c in conf.when if c.startswith("http_"))
        self.max_replay = conf.max_replay_body
        self.budget = budget

    def wants_body(self, method: str) -> bool:
        return method in self.methods and self.max_replay > 0


class Attempt:
    """The tries of one exchange so far, and the request body kept to send again. Held by the upstream connection
    of the current try (`conn.attempt`); `ex` tells a live attempt from one left on a pooled connection by an
    earlier exchange, so nothing is reset per request."""

    __slots__ = ("ex", "tried", "replay", "replay_size", "max_replay")

    def __init__(self, ex: Exchange, target: Any, max_replay: int) -> None:
        self.ex = ex
        self.tried: list[Any] = [target]  # the targets tried (fastgw.proxy.pool.Target)
        self.replay: list[bytes] | None = []  # None: the body outgrew the buffer
        self.replay_size = 0
        self.max_replay = max_replay

    def begin(self, conn: Any, req: Request) -> None:
        """A try starts on `conn`: what it will send of the body first (`req.body`) is kept, and each chunk after."""
        conn.attempt = self
        if self.replay is not None and (req.content_length or req.chunked):
            body = list(req.body)
            size = sum(len(c) for c in body)
            if size > self.max_replay:
                self.replay = None
            else:
                self.replay, self.replay_size = body, size

    def keep(self, chunk: bytes) -> None:
        replay = self.replay
        if replay is not None:
            self.replay_size += len(chunk)
            if self.replay_size > self.max_replay:
                self.replay = None  # too big to send again: this request is not retried
            else:
                replay.append(chunk)


class Retrying(Protocol):
    """What `next_try` reads of the route (`fastgw.proxy.route.HttpRoute`)."""

    retry: RetryPolicy | None
    timeout: float | None
    upstream: Any  # fastgw.proxy.pool.Upstream: another(), name, retries_done


def next_try(
    ex: Exchange, route: Retrying, target: Any, attempt: Attempt | None, kind: str, reason: str, unsent: bool = False
) -> tuple[Any, Attempt] | None:
    """The target of the next try and the attempt carried to it, or None when the request is not retried.

    `unsent`: the try never opened its connection (refused, timed out connecting), so nothing of the request left
    the gateway: it goes to another target whatever its method (nginx's `proxy_next_upstream error`), and its
    body, never drained, is still whole in `req.body`."""
    policy = route.retry
    req = ex.req
    if policy is None or ex.gone or ex.response_started or kind not in policy.when:
        return None
    if not unsent and req.method not in policy.methods:
        return None
    has_body = bool(req.content_length or req.chunked)
    if attempt is None or attempt.ex is not ex:
        if has_body and not unsent:
            return None  # a body that was not kept cannot be sent again
        attempt = Attempt(ex, target, 0)
    if has_body and not unsent and attempt.replay is None:
        log.info("%s %s not retried: its body is over retries.max_replay_body", req.method, req.path)
        return None
    if len(attempt.tried) >= policy.attempts:
        return None
    if route.timeout is not None and time.perf_counter() > ex.t0 + route.timeout:
        return None
    upstream = route.upstream
    nxt = upstream.another(ex, attempt.tried)
    if nxt is None:
        return None
    budget = policy.budget
    if not budget.allow():
        now = time.monotonic()
        if now - budget.warned >= WINDOW:  # NOTE: one line per window, not one per refusal: an outage would flood
            budget.warned = now
            log.warning("upstream %s: retry budget spent, requests are not retried until it refills (%s %s: %s)",
                        upstream.name, req.method, req.path, reason)  # fmt: skip
        return None
    attempt.tried.append(nxt)
    upstream.retries_done += 1
    log.info("upstream %s: %s %s retried on %s after %s", upstream.name, req.method, req.path, nxt.url, reason)
    return nxt, attempt
