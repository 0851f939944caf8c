"""Deadlines that fire on time: one lazy event-loop timer per object that has a deadline (a client connection, an
upstream connection, a WebSocket tunnel), never one per request.

An object sets `deadline` (loop time; 0: none) as often as it likes; a timer is armed only when the new deadline
comes before the armed one (`timer_at`). A deadline that moved later, the usual case (every read pushes a read
deadline on), costs one comparison: when the earlier timer fires, it finds the deadline still ahead and is armed
again for it. So a busy keep-alive connection arms a timer about once per timeout period, not once per request.
When a deadline has passed, `check_deadline(now)` runs (with `now >= deadline`).

NOTE: the event loop runs due timers before it polls for I/O, so after a stall of the whole process (a paused VM,
a long GC) bytes that arrived in time are still unread when a timer fires. A timer that fires more than `STALL`
late therefore waits for one more turn of the loop (one poll) before it judges: the bytes that arrived meanwhile
move the deadline first.
"""

from __future__ import annotations

import asyncio

from fastgw.core import DeadlineState

INF = float("inf")
STALL = 0.02  # seconds: a timer this late suggests a stalled loop (see the NOTE above)
# uvloop (libuv) counts timers in whole milliseconds: about 4 in 10 fire up to 1 ms before their loop time. One
# that fires that little early is on time; re-armed for the rest it would fire at once again, a busy spin.
EARLY = 0.001
_AGAIN = 0.001  # the wait that lets the loop poll for I/O once before a late deadline is judged


class Deadline(DeadlineState):
    """Base of an object with one deadline. Subclasses implement `check_deadline(now)`. Its fields are the core's
    (`fastgw.core.conn.DeadlineState`), which a compiled connection reads and writes as C fields."""

    __slots__ = ()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = INF

    def set_deadline(self, at: float) -> None:
        """`at` (loop time) is the deadline now. (Hot paths inline it: the assignment, then the comparison.)"""
        self.deadline = at
        if at < self.timer_at:
            self.arm(at)

    def arm(self, at: float, confirm: bool = False) -> None:
        timer = self.timer
        if timer is not None:
            timer.cancel()
        self.timer_at = at
        self.timer = self.loop.call_at(at, self._fire, confirm)

    def cancel_deadline(self) -> None:
        """No deadline any more, and no timer (an object that is closed)."""
        self.deadline = 0.0
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        self.timer_at = INF

    def _fire(self, confirm: bool) -> None:
        self.timer = None
        self.timer_at = INF
        at = self.due()
        if not at:
            return
        now = self.loop.time()
        if now < at:
            if at - now > EARLY:
                self.arm(at)  # the deadline moved on since the timer was armed
                return
            now = at  # fired within the loop's resolution of the deadline: it has come
        if not confirm and now - at > STALL:
            self.arm(now + _AGAIN, True)
            return
        self.check_deadline(now)

    def due(self) -> float:
        """When the object is to be judged: its deadline (0: none). An object with a second deadline that does not
        move (an upstream connection, its route's total timeout) answers the earlier one, and arms the timer for
        it when it sets it: the timer is never armed later than it."""
        return self.deadline

    def check_deadline(self, now: float) -> None:
        raise NotImplementedError
