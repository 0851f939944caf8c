"""The connections' pair (`fastgw/core/conn.py` and `conn.pyx`): both twins declare the same fields, the compiled one
shows them to Python as plain slots, and a `Deadline` built on either keeps and arms its deadline alike."""

from __future__ import annotations

import asyncio

import pytest

from fastgw import core
from fastgw.core import conn as pyconn
from fastgw.pipeline import deadline as deadlines

IMPLS = [pytest.param(pyconn, id="pure")]
if core.COMPILED:
    from fastgw import _core

    IMPLS.append(pytest.param(_core, id="compiled"))


def test_both_twins_declare_the_same_fields():
    fields = set(pyconn.DeadlineState.__slots__)
    assert fields == {"deadline", "timer", "timer_at", "loop"}
    if core.COMPILED:
        kinds = {n: type(v).__name__ for n, v in vars(_core.DeadlineState).items() if n[:2] != "__"}
        assert kinds == dict.fromkeys(fields, "member_descriptor")
    assert issubclass(deadlines.Deadline, core.DeadlineState)
    assert deadlines.Deadline.__slots__ == ()  # declared once, on the core's class


@pytest.mark.parametrize("conn", IMPLS)
def test_a_deadline_on_either_twin_is_judged_once_when_it_comes(conn):
    # `Deadline`'s behaviour over either twin's fields: a deadline moved later costs no new timer, and the object
    # is judged once, at or after the deadline it holds then.
    def check_deadline(self, now):
        self.judged.append(now)

    behaviour = {n: v for n, v in vars(deadlines.Deadline).items() if callable(v) and n != "check_deadline"}
    Timed = type(
        "Timed", (conn.DeadlineState,), {**behaviour, "__slots__": ("judged",), "check_deadline": check_deadline}
    )

    async def run():
        loop = asyncio.get_running_loop()
        obj = Timed(loop)
        obj.judged = []
        start = loop.time()
        obj.set_deadline(start + 0.02)
        first = obj.timer
        obj.set_deadline(start + 0.05)  # later: the armed timer stays
        assert obj.timer is first and obj.timer_at == start + 0.02
        await asyncio.sleep(0.15)
        assert obj.timer is None and obj.timer_at == deadlines.INF
        return obj.judged, start

    judged, start = asyncio.run(run())
    assert len(judged) == 1 and judged[0] >= start + 0.05 - deadlines.EARLY
