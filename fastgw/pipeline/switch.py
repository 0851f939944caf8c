"""Routes told apart by request headers (a route's `headers:`): one router entry, one switch, several routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from fastgw.pipeline.exchange import Exchange, Route

if TYPE_CHECKING:
    from fastgw.core import Request
    from fastgw.routing import HeaderRule


class HeaderSwitch(Route):
    """Where the router sends a request for routes that share a host, path and methods: the first route whose
    header conditions all hold takes it (the config's loader put the most specific first and the route without
    conditions last). None: no route takes it, and the request is answered as a miss (404)."""

    kind: ClassVar[str] = "headers"
    __slots__ = ("candidates",)

    def __init__(self, name: str, candidates: Sequence[tuple[HeaderRule | None, Route]]) -> None:
        super().__init__(name)
        self.switch = True
        self.candidates = tuple(candidates)

    def pick(self, req: Request) -> Route | None:
        headers = req.headers
        for rule, route in self.candidates:
            if rule is None or rule.matches(headers):
                return route
        return None

    def start(self, ex: Exchange) -> None:  # never reached: dispatch picks first
        raise RuntimeError("a HeaderSwitch is not an integration")
