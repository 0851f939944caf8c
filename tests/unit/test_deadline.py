"""fastgw.pipeline.deadline: a lazy timer per object fires on time, follows a deadline that moves, and after a stall
of the whole loop reads what arrived in time before it judges."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvloop

from fastgw.pipeline.deadline import Deadline


class Reader(Deadline, asyncio.Protocol):
    """Each byte read pushes its deadline `timeout` on; `expired` records when the deadline was judged passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        super().__init__(loop)
        self.timeout = timeout
        self.expired: list[float] = []
        self.armed = 0

    def arm(self, at: float, confirm: bool = False) -> None:
        self.armed += 1
        super().arm(at, confirm)

    def data_received(self, data: bytes) -> None:
        at = self.deadline = self.loop.time() + self.timeout
        if at < self.timer_at:
            self.arm(at)

    def check_deadline(self, now: float) -> None:
        self.expired.append(now)


def _run(body) -> None:  # type: ignore[no-untyped-def]
    uvloop.run(body())


def test_fires_within_a_few_milliseconds_and_follows_a_moving_deadline() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        r = Reader(loop, 0.3)
        r.set_deadline(loop.time() + 0.3)
        for _ in range(4):  # the deadline moves on 4 times before the timer fires: no timer armed for them
            await asyncio.sleep(0.04)
            r.data_received(b"x")
        moved_to = r.deadline
        await asyncio.sleep(moved_to - loop.time() + 0.05)
        assert len(r.expired) == 1 and moved_to <= r.expired[0] < moved_to + 0.02
        assert r.armed == 2  # once for the first deadline, once again when it fired and found it moved on

    _run(body)


class Staller(asyncio.Protocol):
    """Stalls the whole loop for `seconds` inside an I/O callback, as a long GC or a paused VM would."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def data_received(self, data: bytes) -> None:
        time.sleep(self.seconds)


def test_a_stalled_loop_reads_what_arrived_in_time_before_it_judges() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        c, d = socket.socketpair()
        transport, r = await loop.connect_accepted_socket(lambda: Reader(loop, 0.1), a)
        stall, _ = await loop.connect_accepted_socket(lambda: Staller(0.3), c)
        r.data_received(b"")  # the deadline: now + 0.1
        # The loop stalls for 0.3 s in an I/O callback; a byte for `r` arrives in time (after 0.05 s), while it
        # is stalled. When it wakes, the loop runs due timers before it polls for I/O again.
        threading.Timer(0.05, b.send, (b"x",)).start()
        d.send(b"stall")
        await asyncio.sleep(0.35)
        assert r.expired == []  # the byte moved the deadline first
        await asyncio.sleep(0.15)
        assert len(r.expired) == 1  # and the moved deadline fires
        for t in (transport, stall):
            t.close()
        b.close()
        d.close()

    _run(body)


def test_a_timer_that_fires_a_hair_early_is_on_time_not_armed_again() -> None:
    """uvloop counts timers in whole milliseconds and fires many up to 1 ms early: each such deadline was armed
    again and again until the clock passed it (a busy spin of dozens of timers per deadline)."""

    async def body() -> None:
        loop = asyncio.get_running_loop()
        readers = []
        for i in range(50):
            r = Reader(loop, 0.05)
            r.set_deadline(loop.time() + 0.0123 + i * 0.0001)
            readers.append(r)
        await asyncio.sleep(0.1)
        assert all(len(r.expired) == 1 for r in readers)
        assert all(r.expired[0] >= r.deadline for r in readers)
        assert max(r.armed for r in readers) <= 2, [r.armed for r in readers]

    _run(body)
