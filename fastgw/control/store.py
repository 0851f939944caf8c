"""What a deployment store is: the contract the file store and the etcd store both keep.

A **deployment** is one immutable, versioned configuration: its id, the config in the file's own schema as a JSON
object, and who made it from where. A store keeps them in order; each write gets the store's next **revision**
(an increasing integer: etcd's mod revision, or a counter for the folder), and a write may name the revision it
was based on, so that two writers racing cannot silently lose one another's change (compare-and-swap, as APISIX
and Kong's decK do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Deployment:
    id: str  # 16 hex digits of the SHA-256 of the canonical JSON of `config`
    config: dict[str, Any]  # the config file's schema, as JSON
    time: str  # RFC 3339, UTC, when it was written
    source: str = ""  # where it came from: a file path, "admin API", "fastgw deploy", "rollback to <id>"
    author: str = ""  # the admin token's name, or "" when none
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stored:
    revision: int  # the store's revision of this write
    deployment: Deployment


class Conflict(Exception):
    """A write based on `expected` was refused: the store is at `actual` (someone else wrote first)."""

    def __init__(self, expected: int | None, actual: int) -> None:
        super().__init__(f"the store moved on: expected revision {expected}, it is at {actual}")
        self.expected = expected
        self.actual = actual


class StoreUnavailable(Exception):
    """The store cannot be reached now (the caller keeps serving what it has and tries again later)."""


class TooLarge(Exception):
    """The store refuses to keep this deployment: it is over the store's size limit (etcd's request limit). The
    deployment's fault, not the store's: the same write will not pass on a retry."""


class Store(Protocol):
    async def latest(self) -> Stored | None:
        """The newest deployment, or None when the store holds none yet."""

    async def put(self, deployment: Deployment, *, expect_revision: int | None) -> int:
        """Write `deployment` as the newest; returns its revision. An int `expect_revision` refuses the write with
        Conflict unless the newest deployment is still the one at that revision (0: unless the store is empty);
        None writes whatever is there. Raises StoreUnavailable when the store cannot be reached, TooLarge when it
        will not keep a deployment that large."""

    async def get(self, deployment_id: str) -> Stored | None:
        """A deployment by id (any that is still kept)."""

    async def history(self, limit: int = 100) -> list[Stored]:
        """Newest first."""

    def watch(self, after_revision: int) -> AsyncIterator[Stored]:
        """Every deployment written after `after_revision`, in order, then each new one as it is written; resumes
        by revision after a lost connection (catching up on what was written meanwhile), so none is missed."""

    async def close(self) -> None: ...
