"""The compiled core, or its pure-Python twins: the route trie, the HTTP/1.1 work of both legs, the plugin runtime,
the token buckets and the limit front, and the per-exchange observation (metrics counters, access log lines).

The core is built as twin pairs, one per concern, each compiled part beside its pure-Python twin in this package:
`router`, `http` (request, sinks, heads, path), `phases` (the plugin runtime), `limit`, `observe`, `steps` (the
compiled steps of the built-in plugins), `conn` (the connections), `upstream` (the upstream connection's
per-request path). The compiled parts
(`router.pyx` + `router.pxd`, ...) are included by the hub `fastgw/_core.pyx` (declarations: `fastgw/_core.pxd`) into
one extension, `fastgw._core`, as uvloop builds its own; the pure twins (`router.py`, ...) are the specification, the
test oracle and the fallback.

Chosen once at import: the extension `fastgw._core`, or the pure twins (`TWINS`) when the extension is missing,
does not match these sources (built from older ones: a type whose size changed, a name missing), or
`FASTGW_NO_EXTENSIONS=1` is set. `COMPILED` says which one this process runs. The twins' `__all__` lists are the one
list of what is twinned: `_core` exports exactly their union (tests/property/test_twins.py holds it to that), and
this module serves those names from one side.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

# The specification, and what serves when the compiled twin is missing or refused (and the types mypy sees).
from fastgw.core import conn, http, limit, observe, phases, router, steps, upstream
from fastgw.core.conn import *  # noqa: F403
from fastgw.core.http import *  # noqa: F403
from fastgw.core.limit import *  # noqa: F403
from fastgw.core.observe import *  # noqa: F403
from fastgw.core.phases import *  # noqa: F403
from fastgw.core.router import *  # noqa: F403
from fastgw.core.steps import *  # noqa: F403
from fastgw.core.upstream import *  # noqa: F403

TWINS = (router, http, phases, limit, observe, steps, conn, upstream)  # the pure modules the compiled one stands in for
TWINNED: tuple[str, ...] = tuple(name for twin in TWINS for name in twin.__all__)

COMPILED = False
FALLBACK_REASON: str | None = None


MISSING_MARKER = "_core_missing.txt"  # left in the package by setup.py when the build fell back, with its reason
# What works: fastgw is not on a package index, so the reinstall names the checkout or the unpacked sdist.
REINSTALL = (
    "install a C compiler and the Python headers (Debian/Ubuntu: apt-get install -y gcc python3-dev), then reinstall "
    "from the fastgw checkout or unpacked sdist: pip install --force-reinstall --no-deps ."
)

STALE = "the compiled extension fastgw._core was built from other sources than these"
# In a checkout the in-place build is redone; an installation is reinstalled (which builds it afresh).
REBUILD = (
    "rebuild it: python setup.py build_ext --inplace in the checkout, or pip install --force-reinstall --no-deps . "
    "from the checkout or unpacked sdist"
)


def _choose() -> None:
    global COMPILED, FALLBACK_REASON
    if os.environ.get("FASTGW_NO_EXTENSIONS", "") not in ("", "0"):
        FALLBACK_REASON = "FASTGW_NO_EXTENSIONS is set"
        return
    try:
        from fastgw import _core

        served = {name: getattr(_core, name) for name in TWINNED}
    except ImportError as exc:  # pragma: no cover - depends on how the package was installed
        # NOTE: no warning here: an import is no place to print (`fastgw --version` would, and every worker); the
        # command line says it once, at `fastgw serve`, from this reason (fallback_notice).
        FALLBACK_REASON = _why_missing(exc)
        return
    except (ValueError, AssertionError, AttributeError, TypeError) as exc:
        # NOTE: an extension built from other sources than these twins (a stale in-place build, a checkout moved to
        # another branch): Cython refuses a type whose size changed (ValueError "size changed"), an assertion of
        # its module code fails, or a name the twins list is missing. The pure twins serve, said as loudly as a
        # missing extension, rather than a gateway that cannot start.
        FALLBACK_REASON = f"{STALE} ({type(exc).__name__}: {exc})"
        return
    globals().update(served)
    COMPILED = True


def _why_missing(exc: ImportError) -> str:
    """The one reason: why the build fell back (setup.py's record) when there is one, else the import's error."""
    marker = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), MISSING_MARKER)
    try:
        with open(marker, encoding="utf-8") as f:
            built = f.read().strip()
    except OSError:
        return f"the compiled extension fastgw._core did not import ({exc})"
    return f"it was not built when fastgw was installed: {built}"


def describe() -> str:
    """Which core this process runs, as `fastgw --version` and the listening line say it."""
    me = sys.modules[__name__]  # (through the module: the late choice below may not have run yet)
    return "compiled" if me.COMPILED else f"pure-Python ({me.FALLBACK_REASON})"


def fallback_notice() -> str | None:
    """The one line `fastgw serve` logs on the pure core: what, why, and how to get the compiled core."""
    me = sys.modules[__name__]
    if me.COMPILED:
        return None
    reason = me.FALLBACK_REASON
    if reason == "FASTGW_NO_EXTENSIONS is set":
        fix = "unset it to use the compiled core"
    else:
        fix = REBUILD if reason is not None and reason.startswith(STALE) else REINSTALL
    return f"fastgw runs on its pure-Python core, several times slower at routing and rate limiting: {reason}; {fix}"


_loading = sys.modules.get("fastgw._core")
if _loading is not None and getattr(getattr(_loading, "__spec__", None), "_initializing", False):
    # NOTE: `import fastgw._core` came first, and the extension imports its twins (so this package) before it has
    # defined anything: the choice waits for the first name asked of this module, by when the extension is whole.
    _LATE = frozenset((*TWINNED, "COMPILED", "FALLBACK_REASON"))
    for _name in _LATE:
        del globals()[_name]
    del _name

    if not TYPE_CHECKING:  # (mypy would read every missing name as Any)

        def __getattr__(name: str) -> Any:
            if name not in _LATE:
                raise AttributeError(f"module 'fastgw.core' has no attribute {name!r}")
            globals().update({n: getattr(twin, n) for twin in TWINS for n in twin.__all__})
            globals().update(COMPILED=False, FALLBACK_REASON=None)
            _choose()
            return globals()[name]

else:
    _choose()

__all__ = [
    "COMPILED", "FALLBACK_REASON", "MISSING_MARKER", "REBUILD", "REINSTALL", "STALE", "TWINNED", "TWINS", "describe",
    "fallback_notice",
    *router.__all__, *http.__all__, *phases.__all__, *limit.__all__, *observe.__all__, *steps.__all__,
    *conn.__all__, *upstream.__all__,
]  # noqa: PLE0605  # fmt: skip
