"""The compiled core, or its pure-Python twin: the route trie, token buckets, per-byte HTTP helpers, the plugin
runtime and the per-exchange observation (metrics counters, access log lines).

Chosen once at import: the Cython extension `fastgw._core`, or its pure-Python twins (`TWINS`: `fastgw._pycore`,
`fastgw._pyplugins`, `fastgw._pylimit`, `fastgw._pyobserve`) when the extension is missing or `FASTGW_NO_EXTENSIONS=1`
is set. `COMPILED` says which one this process runs. The twins' `__all__` lists are the one list of what is twinned:
`_core` exports exactly their union (tests/property/test_twins.py holds it to that), and this module serves those
names from one side.
"""

from __future__ import annotations

import os
import warnings

# The specification, and what serves when the compiled twin is missing or refused (and the types mypy sees).
from fastgw import _pycore, _pylimit, _pyobserve, _pyplugins
from fastgw._pycore import *  # noqa: F403
from fastgw._pylimit import *  # noqa: F403
from fastgw._pyobserve import *  # noqa: F403
from fastgw._pyplugins import *  # noqa: F403

TWINS = (_pycore, _pyplugins, _pylimit, _pyobserve)  # the pure modules the compiled one stands in for
TWINNED: tuple[str, ...] = tuple(name for twin in TWINS for name in twin.__all__)

COMPILED = False
FALLBACK_REASON: str | None = None

if os.environ.get("FASTGW_NO_EXTENSIONS", "") not in ("", "0"):
    FALLBACK_REASON = "FASTGW_NO_EXTENSIONS is set"
else:
    try:
        from fastgw import _core

        globals().update({name: getattr(_core, name) for name in TWINNED})
        COMPILED = True
    except ImportError as exc:  # pragma: no cover - depends on how the package was installed
        FALLBACK_REASON = f"the compiled extension fastgw._core did not import ({exc})"
        warnings.warn(
            f"fastgw is running on its pure-Python core, several times slower: {FALLBACK_REASON}. "
            "Reinstall with a C compiler available (pip install --force-reinstall --no-cache-dir --no-deps fastgw).",
            RuntimeWarning,
            stacklevel=2,
        )

__all__ = [
    "COMPILED", "FALLBACK_REASON", "TWINNED", "TWINS",
    *_pycore.__all__, *_pyplugins.__all__, *_pylimit.__all__, *_pyobserve.__all__,
]  # noqa: PLE0605  # fmt: skip
