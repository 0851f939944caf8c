"""What a template or definition asks for that does not run locally: said once per message, however often the file
is loaded (twice at start with `--port 0`, again on each reload)."""

from __future__ import annotations

import logging

log = logging.getLogger("fastgw.aws")
_warned: set[str] = set()


def warn_once(message: str, level: int = logging.WARNING) -> None:
    if message not in _warned:
        _warned.add(message)
        log.log(level, "%s", message)
