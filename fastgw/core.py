"""The compiled core, or its pure-Python twin: the route trie, token buckets and per-byte HTTP helpers.

Chosen once at import: the Cython extension `fastgw._core`, or its pure-Python twin `fastgw._pycore` when the
extension is missing or `FASTGW_NO_EXTENSIONS=1` is set. `COMPILED` says which one this process runs.
"""

from __future__ import annotations

import os
import warnings

# The specification, and what serves when the compiled twin is missing or refused.
from fastgw._pycore import (
    ANY,
    PATH_BACKSLASH_SEPARATOR,
    PATH_SLASHES_DECODE,
    PATH_SLASHES_KEEP,
    PATH_SLASHES_REJECT,
    BucketTable,
    Reject,
    Request,
    RequestSink,
    ResponseSink,
    RouteConflict,
    Router,
    UpstreamProtocolError,
    normalize_path,
    parse_template,
)
from fastgw._pyplugins import (
    ClientRequest,
    Context,
    Headers,
    HeadHeaders,
    PhaseChain,
    PluginFailed,
    ResponseHead,
    UpstreamRequest,
    add_consumer_headers,
    filter_head,
    finish_phases,
    new_context,
    run_phases,
    strip_headers,
)

COMPILED = False
FALLBACK_REASON: str | None = None

if os.environ.get("FASTGW_NO_EXTENSIONS", "") not in ("", "0"):
    FALLBACK_REASON = "FASTGW_NO_EXTENSIONS is set"
else:
    try:
        from fastgw._core import (  # type: ignore[assignment]
            ANY,
            BucketTable,
            ClientRequest,
            Context,
            Headers,
            HeadHeaders,
            PhaseChain,
            PluginFailed,
            Reject,
            Request,
            RequestSink,
            ResponseHead,
            ResponseSink,
            RouteConflict,
            Router,
            UpstreamProtocolError,
            UpstreamRequest,
            add_consumer_headers,
            filter_head,
            finish_phases,
            new_context,
            normalize_path,
            parse_template,
            run_phases,
            strip_headers,
        )

        COMPILED = True
    except ImportError as exc:  # pragma: no cover - depends on how the package was installed
        FALLBACK_REASON = f"the compiled extension fastgw._core did not import ({exc})"
        warnings.warn(
            f"fastgw is running on its pure-Python core, several times slower: {FALLBACK_REASON}. "
            "Reinstall with a C compiler available (pip install --force-reinstall fastgw).",
            RuntimeWarning,
            stacklevel=2,
        )

__all__ = [
    "ANY",
    "PATH_BACKSLASH_SEPARATOR",
    "PATH_SLASHES_DECODE",
    "PATH_SLASHES_KEEP",
    "PATH_SLASHES_REJECT",
    "COMPILED",
    "FALLBACK_REASON",
    "BucketTable",
    "ClientRequest",
    "Context",
    "HeadHeaders",
    "Headers",
    "PhaseChain",
    "PluginFailed",
    "ResponseHead",
    "UpstreamRequest",
    "add_consumer_headers",
    "filter_head",
    "finish_phases",
    "new_context",
    "run_phases",
    "strip_headers",
    "Reject",
    "Request",
    "RequestSink",
    "ResponseSink",
    "RouteConflict",
    "Router",
    "UpstreamProtocolError",
    "normalize_path",
    "parse_template",
]
