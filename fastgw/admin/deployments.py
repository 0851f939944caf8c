"""Deployments: every config a gateway started with or reloaded into, kept on disk so it can be listed and
restored, across restarts.

A deployment's id is the first 16 hex digits of the SHA-256 of the config file's bytes, so the same file deployed
twice is the same deployment (listed once per time it went live). The store is a folder: `<id>.conf` (the bytes)
and `index.jsonl` (one line per time a deployment went live: id, time, source, description). Default folder:
`<config file>.deployments/` beside the config file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from fastgw.config.load import LoadedConfig

log = logging.getLogger("fastgw.server")


def deployment_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def default_dir(config_path: str) -> Path:
    p = Path(config_path)
    return p.with_name(p.name + ".deployments")


class DeploymentStore:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def record(self, raw: bytes, source: str, description: str) -> str:
        """Keep `raw` as a deployment that just went live; returns its id. A disk error is the caller's to log."""
        self.dir.mkdir(parents=True, exist_ok=True)
        did = deployment_id(raw)
        path = self.dir / f"{did}.conf"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(raw)
            os.replace(tmp, path)
        entry = {"id": did, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "source": source,
                 "description": description}  # fmt: skip
        with open(self.dir / "index.jsonl", "ab") as f:
            f.write(orjson.dumps(entry) + b"\n")
        return did

    def history(self) -> list[dict[str, Any]]:
        """Newest first; the first one is what serves now (`active`)."""
        out: list[dict[str, Any]] = []
        with contextlib.suppress(OSError):
            for line in (self.dir / "index.jsonl").read_bytes().splitlines():
                with contextlib.suppress(ValueError):
                    out.append(orjson.loads(line))
        out.reverse()
        for i, entry in enumerate(out):
            entry["active"] = i == 0
        return out

    def config(self, did: str) -> bytes | None:
        if not did.isalnum():
            return None
        try:
            return (self.dir / f"{did}.conf").read_bytes()
        except OSError:
            return None


def restore(store: DeploymentStore, did: str, config_path: str) -> bytes:
    """Write deployment `did`'s config back over the config file (atomically), so that what serves after the
    reload that follows, and after any restart, is that deployment. Raises KeyError for an unknown id."""
    raw = store.config(did)
    if raw is None:
        raise KeyError(did)
    target = Path(config_path)
    tmp = target.with_name(f".{target.name}.rollback")
    tmp.write_bytes(raw)
    os.replace(tmp, target)
    return raw


def store_for(loaded: LoadedConfig) -> DeploymentStore | None:
    admin = loaded.config.admin
    if admin is None or loaded.source.startswith("<"):
        return None
    return DeploymentStore(Path(admin.deployments_dir) if admin.deployments_dir else default_dir(loaded.source))


def record(store: DeploymentStore | None, loaded: LoadedConfig, description: str) -> None:
    if store is None:
        return
    try:
        did = store.record(Path(loaded.source).read_bytes(), loaded.source, description)
    except OSError as exc:
        log.error("could not keep the deployment in %s: %s", store.dir, exc)
        return
    log.info("deployment %s live (%s)", did, description)


def rollback(control: Any, deployment: str) -> str | None:
    """Write the deployment's config back over the file and reload; if the reload refuses it, the file is put
    back as it was, so file and running config never disagree."""
    store = control.deployments
    source = control.loaded.source
    before = Path(source).read_bytes()
    try:
        restore(store, deployment, source)
    except (KeyError, OSError) as exc:
        return f"cannot restore deployment {deployment}: {exc}"
    error: str | None = control.admin_reload(f"rollback to {deployment}")
    if error is not None:
        with contextlib.suppress(OSError):
            Path(source).write_bytes(before)
    return error
