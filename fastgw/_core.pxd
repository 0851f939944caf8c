# cdef declarations of the compiled core, one file per part beside its .pyx (included by the hub as _core.pyx
# includes the parts); the Python-visible API is typed in _core.pyi.

include "core/router.pxd"
include "core/http.pxd"
include "core/phases.pxd"
include "core/limit.pxd"
include "core/observe.pxd"
include "core/steps.pxd"
include "core/conn.pxd"
include "core/upstream.pxd"
