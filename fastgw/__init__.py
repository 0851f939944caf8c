"""fastgw: an API gateway with a compiled router and limiter inside a uvloop + httptools proxy server."""

from __future__ import annotations

__version__ = "0.1.0"
