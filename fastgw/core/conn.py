"""The connections' core: the pure-Python twin (the spec, the test oracle and the fallback) of `fastgw/core/conn.pyx`.

`DeadlineState` holds the fields of an object with one deadline (`fastgw.pipeline.deadline.Deadline`, the client
connection, the upstream connection, a WebSocket tunnel), declared once here so that the compiled core of a
connection can read and write them as C fields while `Deadline`'s methods and the rest of the gateway read them as
plain slots:

- `loop`: the event loop the timer is armed on;
- `deadline`: the loop time by which the object is judged (0.0: none);
- `timer`, `timer_at`: the one timer armed (None: none) and the loop time it fires at (inf: none).
"""

from __future__ import annotations

from typing import Any

__all__ = ["DeadlineState"]


class DeadlineState:
    """The fields of an object with one deadline (see the module's docstring); `Deadline` gives the behaviour."""

    __slots__ = ("deadline", "timer", "timer_at", "loop")

    deadline: float
    timer: Any
    timer_at: float
    loop: Any
