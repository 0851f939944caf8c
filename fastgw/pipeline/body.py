"""Collecting a request body that is still arriving, for integrations and plugins that need it whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastgw.core import ExchangeState


class BodyCollector:
    """Stands where an upstream connection would (the exchange's `body_sink`): gathers the body the client is still
    sending (what was buffered before included), then calls `done(chunks)`. Past `limit` bytes it calls
    `too_large()` once instead, and the rest of the body is dropped as it arrives."""

    __slots__ = ("ex", "done", "too_large", "limit", "size", "chunks", "abandoned")

    def __init__(
        self,
        ex: ExchangeState,
        done: Callable[[list[bytes]], None],
        limit: int | None = None,
        too_large: Callable[[], None] | None = None,
    ) -> None:
        self.ex = ex
        req = ex.req
        self.done = done
        self.limit = limit
        self.too_large = too_large
        self.chunks = list(req.body)
        self.size = req.body_size
        self.abandoned = False

    def send_body(self, chunk: bytes) -> None:
        if self.abandoned:
            return
        self.size += len(chunk)
        if self.limit is not None and self.size > self.limit:
            self.abandoned = True
            self.ex.body_sink = None
            if self.too_large is not None:
                self.too_large()
            return
        self.chunks.append(chunk)

    def end_body(self) -> None:
        if not self.abandoned:
            self.ex.body_sink = None
            self.done(self.chunks)

    def abandon(self) -> None:
        self.abandoned = True

    def pause_reading(self) -> None:  # the answer is written at once, later: nothing to pause
        pass

    def resume_reading(self) -> None:
        pass
