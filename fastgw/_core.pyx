# cython: language_level=3
"""The compiled core of fastgw, one extension built from the parts in fastgw/core/, as uvloop builds its own: this
hub includes each part's .pyx, `_core.pxd` each part's .pxd.

- core/router.pyx: the route trie
- core/http.pyx: the client request, the httptools sinks of both legs, response heads, path normalization
- core/phases.pyx: the plugin runtime (context, request views, header maps, the request phases' loop)
- core/limit.pyx: the token buckets and the front of one local limit
- core/observe.pyx: the metrics counters and the access log's lines
- core/steps.pyx: the compiled steps of the built-in plugins (what the phase loop runs in place of their phases)
- core/conn.pyx: the connections' core (the fields of an object with a deadline; the client connection's per-request
  path, the usual routing of a request and its exchange's start)
- core/upstream.pyx: the upstream connection's per-request path (start, the response's bytes, the end), and the
  http route's start

Each part's specification is its pure-Python twin beside it (core/router.py, ...): this module gives the same
answers (the property tests in tests/property/ run both side by side) and only makes them cheaper. Keep each pair
in step; `fastgw.core` chooses between the two.
"""

from fastgw.core import conn as _twin_conn
from fastgw.core import http as _twin_http
from fastgw.core import limit as _twin_limit
from fastgw.core import observe as _twin_observe
from fastgw.core import phases as _twin_phases
from fastgw.core import router as _twin_router
from fastgw.core import steps as _twin_steps
from fastgw.core import upstream as _twin_upstream

# The twins' lists are the one export list: this module defines every name in them (tests/property/test_twins.py
# holds it to that, and to defining its own classes and functions rather than handing on the pure ones).
__all__ = [
    *_twin_router.__all__, *_twin_http.__all__, *_twin_phases.__all__, *_twin_limit.__all__, *_twin_observe.__all__,
    *_twin_steps.__all__, *_twin_conn.__all__, *_twin_upstream.__all__,
]

include "core/router.pyx"
include "core/http.pyx"
include "core/phases.pyx"
include "core/limit.pyx"
include "core/observe.pyx"
include "core/steps.pyx"
include "core/conn.pyx"
include "core/upstream.pyx"
