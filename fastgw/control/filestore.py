"""The deployment store of a gateway run from a file: a folder (`admin.deployments_dir`, default
`<config file>.deployments/` beside it), to the contract of fastgw.control.store.

    revisions.jsonl      one line per write: {"revision", "id", "time", "source", "author", "description", "meta"}
    configs/<id>.json    each config once, as canonical JSON (the same config deployed again is not copied again)
    lock                 flock'ed around a write, so two processes sharing the folder cannot both take a revision

A revision is the line's number (1, 2, ...). `MemoryStore` keeps the same in memory, for a config that is not a
file (the test kit's, `fastgw invoke`'s).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from fastgw.control.deployment import canonical
from fastgw.control.store import Conflict, Deployment, Stored, StoreUnavailable

POLL = 0.5  # seconds between looks at the folder while watching


def default_dir(config_path: str) -> Path:
    p = Path(config_path)
    return p.with_name(p.name + ".deployments")


class FileStore:
    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)

    # -- the contract (async) ---------------------------------------------------------------------------------

    async def latest(self) -> Stored | None:
        return self.latest_now()

    async def put(self, deployment: Deployment, *, expect_revision: int | None) -> int:
        return self.put_now(deployment, expect_revision=expect_revision)

    async def get(self, deployment_id: str) -> Stored | None:
        return self.get_now(deployment_id)

    async def history(self, limit: int = 100) -> list[Stored]:
        return self.history_now(limit)

    async def watch(self, after_revision: int) -> AsyncIterator[Stored]:
        seen = after_revision
        while True:
            for stored in reversed(self.history_now(limit=0)):
                if stored.revision > seen:
                    seen = stored.revision
                    yield stored
            await asyncio.sleep(POLL)

    async def close(self) -> None:
        return None

    # -- the same, for callers off any event loop ---------------------------------------------------------------

    def _lines(self) -> list[dict[str, Any]]:
        try:
            raw = (self.dir / "revisions.jsonl").read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {self.dir}: {exc.strerror or exc}") from None
        out = []
        for line in raw.splitlines():
            with contextlib.suppress(ValueError):
                entry = orjson.loads(line)
                if isinstance(entry, dict) and "id" in entry:
                    out.append(entry)
        return out

    def _stored(self, revision: int, entry: dict[str, Any], with_config: bool = True) -> Stored | None:
        config: dict[str, Any] = {}
        if with_config:
            try:
                config = orjson.loads((self.dir / "configs" / f"{entry['id']}.json").read_bytes())
            except (OSError, ValueError):
                return None
        d = Deployment(
            entry["id"], config, entry.get("time", ""), entry.get("source", ""), entry.get("author", ""),
            entry.get("description", ""), entry.get("meta") or {},
        )  # fmt: skip
        return Stored(revision, d)

    def latest_now(self) -> Stored | None:
        lines = self._lines()
        return self._stored(len(lines), lines[-1]) if lines else None

    def revision_now(self) -> int:
        return len(self._lines())

    def get_now(self, deployment_id: str) -> Stored | None:
        if not deployment_id.isalnum():
            return None
        lines = self._lines()
        for i in range(len(lines) - 1, -1, -1):
            if lines[i]["id"] == deployment_id:
                return self._stored(i + 1, lines[i])
        return None

    def history_now(self, limit: int = 100, with_config: bool = False) -> list[Stored]:
        """Newest first; `limit` 0 for all. Without `with_config` the deployments' configs are left empty."""
        lines = self._lines()
        out = []
        for i in range(len(lines) - 1, -1, -1):
            stored = self._stored(i + 1, lines[i], with_config)
            if stored is not None:
                out.append(stored)
            if limit and len(out) >= limit:
                break
        return out

    def put_now(self, deployment: Deployment, *, expect_revision: int | None) -> int:
        try:
            # NOTE: only its owner may read it: the configs are kept as they are, secrets included.
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            (self.dir / "configs").mkdir(mode=0o700, exist_ok=True)
            with open(self.dir / "lock", "a+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                revision = len(self._lines())
                if expect_revision is not None and expect_revision != revision:
                    raise Conflict(expect_revision, revision)
                path = self.dir / "configs" / f"{deployment.id}.json"
                if not path.exists():
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_bytes(canonical(deployment.config))
                    os.replace(tmp, path)
                entry = {
                    "revision": revision + 1, "id": deployment.id, "time": deployment.time,
                    "source": deployment.source, "author": deployment.author,
                    "description": deployment.description, "meta": deployment.meta,
                }  # fmt: skip
                with open(self.dir / "revisions.jsonl", "ab") as f:
                    f.write(orjson.dumps(entry) + b"\n")
                    f.flush()
                    os.fsync(f.fileno())
                return revision + 1
        except OSError as exc:
            raise StoreUnavailable(f"cannot write to {self.dir}: {exc.strerror or exc}") from None


class MemoryStore:
    """The same contract in memory: deployments made while a gateway runs, lost when it stops."""

    def __init__(self) -> None:
        self.items: list[Stored] = []

    async def latest(self) -> Stored | None:
        return self.latest_now()

    async def put(self, deployment: Deployment, *, expect_revision: int | None) -> int:
        return self.put_now(deployment, expect_revision=expect_revision)

    async def get(self, deployment_id: str) -> Stored | None:
        return self.get_now(deployment_id)

    async def history(self, limit: int = 100) -> list[Stored]:
        return self.history_now(limit)

    async def watch(self, after_revision: int) -> AsyncIterator[Stored]:
        seen = after_revision
        while True:
            for stored in self.items[seen:]:
                seen = stored.revision
                yield stored
            await asyncio.sleep(POLL)

    async def close(self) -> None:
        return None

    def latest_now(self) -> Stored | None:
        return self.items[-1] if self.items else None

    def revision_now(self) -> int:
        return len(self.items)

    def get_now(self, deployment_id: str) -> Stored | None:
        return next((s for s in reversed(self.items) if s.deployment.id == deployment_id), None)

    def history_now(self, limit: int = 100, with_config: bool = False) -> list[Stored]:
        out = self.items[::-1]
        return out[:limit] if limit else out

    def put_now(self, deployment: Deployment, *, expect_revision: int | None) -> int:
        if expect_revision is not None and expect_revision != len(self.items):
            raise Conflict(expect_revision, len(self.items))
        self.items.append(Stored(len(self.items) + 1, deployment))
        return len(self.items)
