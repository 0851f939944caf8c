"""The etcd store: the deployments of a fleet kept in etcd v3, watched by every gateway (`store: {etcd: ...}`,
`fastgw serve --store etcd://HOST:PORT/PREFIX`). Operators' view: docs/operations.md, "Running a fleet".

Layout under the prefix (`/fastgw` by default):

    /fastgw/deployments/<id>   one deployment: JSON {id, config, time, source, author, description, meta}
                               (zlib-compressed past 64 KiB: etcd refuses requests over 1.5 MiB by default)
    /fastgw/newest             the id of the newest; its mod revision is the store's revision

A write puts both keys in one transaction, compared on the newest key's mod revision (`expect_revision`; 0: the
key is absent), so of two writers racing on the same revision the later is refused with Conflict and nothing is
lost silently. A deployment's revision is that transaction's revision (both keys' mod revision). The transaction
also counts the deployments kept; past `history`, the oldest are deleted. Writing an id again (a rollback to an
identical config) moves that deployment to the top: it is kept once, with the newest metadata.

Every gateway watches the whole prefix from the revision it has, sees the two keys of each write in one watch
message, and yields the deployment named by each write of the newest key. A lost watch is opened again (on the
next endpoint, after a pause doubling up to `backoff_max`) from the revision it got to, so it catches up on what
was written meanwhile; when etcd compacted that far, the newest deployment is read and the watch goes on after it.
A watch with no message for 5 s reads the newest key: if it moved, the stream was stale (a half-open connection)
and is opened again.

Reads and writes are bounded by `timeout`; etcd unreachable raises StoreUnavailable. The newest deployment the
store delivered (`latest()` or the watch) is kept in `local_copy` (a file replaced atomically), and
`latest(fallback_local=True)` / `local_copy()` hand it back, as a LocalStored, when etcd is away, across restarts.

Why etcd's v3 JSON gateway over aiohttp (APISIX's way), and not a gRPC client: bench/etcd_clients.py, one etcd
3.4.23 member on loopback, uvloop, a 2.6 KB value, medians of 5 rounds of 300 (bench/results/
2026-12-07-etcd-clients-a83ddc2.json; three earlier runs gave the same order), p50 in ms:

    client                          txn put   range   watch delivery
    aetcd 1.0 (gRPC, grpcio.aio)     0.53      0.44     0.50
    aiohttp 3.14, JSON gateway       0.90      0.57     0.86
    httpx 0.29, JSON gateway         6.02      1.91     1.83

aetcd is a few tenths of a millisecond faster a call (no JSON, no hop through the member's gateway), which nothing
here can notice: a fleet's budget is a second from a write to every gateway, and bench/etcd_store.py measures
a write reaching three watching stores in 5-7 ms at p50. What decides is what aetcd lacks: it speaks to one
host:port (no failover between endpoints), opens insecure channels only (no TLS, no client certificate), and
never renews its auth token (etcd's simple tokens expire after 5 idle minutes); and grpcio is a 19 MB binary
wheel whose fork support is off by default, while fastgw forks its workers. The other maintained asyncio gRPC
clients (etcd3aio, etcd3-async-client) need Python 3.11; etcd3gw and etcd3 are synchronous. aiohttp (8 MB, C
speedups, kept current on asyncio) gives TLS with client certificates, timeouts per attempt and streaming, and
leaves the endpoints, failover and token renewal to fastgw/control/_etcd_http.py; httpx was 2-7x slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import re
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from fastgw.control._etcd_http import EtcdHTTP, EtcdRefused, b64, prefix_end, unb64
from fastgw.control.etcd_config import EtcdConfig, config_from_dict, store_config_from_url
from fastgw.control.store import Conflict, Deployment, Stored, StoreUnavailable, TooLarge

__all__ = ["DeploymentTooLarge", "EtcdRefused", "EtcdStore", "LocalStored", "store_from_config", "store_from_url"]

log = logging.getLogger("fastgw.control.etcd")

COMPRESS_OVER = 64 * 1024
STALE_CHECK = 5.0  # seconds without a watch message before the newest key is read to check the stream
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class DeploymentTooLarge(TooLarge, ValueError):
    """etcd refused a deployment as too large (its --max-request-bytes, 1.5 MiB by default), compressed as it was."""


@dataclass(frozen=True)
class LocalStored(Stored):
    """A deployment read from the local copy while etcd was away: what the store last delivered, as of `saved`."""

    saved: str = ""  # RFC 3339, UTC, when it was written to the file
    local: bool = True


def store_from_url(url: str, *, local_copy: str | None = None) -> EtcdStore:
    """An EtcdStore for `etcd://HOST:PORT[,HOST:PORT]/PREFIX` (see store_config_from_url for the rest)."""
    return EtcdStore(store_config_from_url(url, local_copy=local_copy))


def store_from_config(conf: EtcdConfig | dict[str, Any]) -> EtcdStore:
    """An EtcdStore for the `store.etcd` section (the Struct, or its JSON form)."""
    return EtcdStore(conf if isinstance(conf, EtcdConfig) else config_from_dict(conf))


def encode(deployment: Deployment) -> bytes:
    raw = orjson.dumps(dataclasses.asdict(deployment))
    return zlib.compress(raw, 6) if len(raw) > COMPRESS_OVER else raw


def decode(value: bytes) -> Deployment | None:
    """A Deployment from a stored value, or None (logged) when it is not one: a key written by hand is skipped,
    never delivered."""
    try:
        raw = orjson.loads(value if value[:1] == b"{" else zlib.decompress(value))
        fields = {f.name for f in dataclasses.fields(Deployment)}
        if not isinstance(raw, dict) or not set(raw) <= fields:
            raise ValueError(f"unknown fields {sorted(set(raw) - fields) if isinstance(raw, dict) else raw!r}")
        dep = Deployment(**raw)
        if not (isinstance(dep.id, str) and isinstance(dep.config, dict) and isinstance(dep.time, str)):
            raise ValueError("id, config and time must be a string, an object and a string")
        if not (
            isinstance(dep.meta, dict) and all(isinstance(v, str) for v in (dep.source, dep.author, dep.description))
        ):
            raise ValueError("source, author and description must be strings, meta an object")
        return dep
    except (ValueError, TypeError, zlib.error) as e:
        log.warning("etcd store: a stored deployment is not one (%s); skipped", e)
        return None


class EtcdStore:
    """The Store of fastgw/control/store.py on etcd v3 (module docstring: the layout, the rules, the choices)."""

    def __init__(self, conf: EtcdConfig) -> None:
        self.conf = conf
        self.http = EtcdHTTP(conf)
        prefix = conf.prefix.rstrip("/").encode()
        self._root = prefix + b"/"
        self._newest = prefix + b"/newest"
        self._deployments = prefix + b"/deployments/"
        self._delivered = 0  # the revision of the newest deployment handed out
        self._saving = asyncio.Lock()
        self.watching = False  # a watch stream is open and has caught up (for status pages)
        self.last_error = ""

    @property
    def endpoint(self) -> str:
        """The endpoint tried first: the last one that answered."""
        return self.http.endpoint

    def status(self) -> dict[str, Any]:
        """For a status page: where the store is, whether its watch is live, and what went wrong last."""
        return {
            "store": "etcd",
            "endpoints": list(self.conf.endpoints),
            "prefix": self.conf.prefix,
            "endpoint": self.endpoint,
            "watching": self.watching,
            "delivered_revision": self._delivered,
            "last_error": self.last_error,
        }

    def _key(self, deployment_id: str) -> bytes:
        return self._deployments + deployment_id.encode()

    # -- reads -------------------------------------------------------------------------------------------------

    async def _range(self, key: bytes, **opts: Any) -> tuple[list[dict[str, Any]], int]:
        answer = await self.http.call("/v3/kv/range", {"key": b64(key), **opts})
        return answer.get("kvs", []), int(answer.get("header", {}).get("revision", 0))

    async def latest(self, *, fallback_local: bool = False) -> Stored | None:
        """The newest deployment (a valid one: a value that is not a deployment is passed over). With
        `fallback_local`, etcd unreachable hands back the local copy (a LocalStored) when there is one."""
        try:
            stored = await self._latest()
        except StoreUnavailable:
            local = self.local_copy() if fallback_local else None
            if local is None:
                raise
            log.warning("etcd store: etcd is unreachable; the local copy (revision %d) stands in", local.revision)
            return local
        if stored is not None:
            await self._deliver(stored)
        return stored

    async def _latest(self) -> Stored | None:
        return (await self._latest_at())[0]

    async def _latest_at(self) -> tuple[Stored | None, int]:
        """The newest valid deployment, and the store's revision it was read at."""
        for _ in range(5):
            kvs, at = await self._range(self._newest)
            if not kvs:
                return None, at
            revision = int(kvs[0]["mod_revision"])
            deployment_id = unb64(kvs[0].get("value")).decode(errors="replace")
            if not _ID.match(deployment_id):
                log.warning("etcd store: %s names %r, not a deployment id", self._newest.decode(), deployment_id)
                break
            body, _ = await self._range(self._key(deployment_id))
            if body and int(body[0]["mod_revision"]) > revision:
                continue  # a write came between the two reads: read both again
            dep = decode(unb64(body[0].get("value"))) if body else None
            if dep is not None:
                return Stored(revision, dep), at
            break
        # The newest key names nothing valid (written by hand, or its deployment deleted): the newest valid one.
        valid = await self.history(self.conf.history)
        return (valid[0] if valid else None), at

    async def get(self, deployment_id: str) -> Stored | None:
        if not _ID.match(deployment_id):
            return None
        kvs, _ = await self._range(self._key(deployment_id))
        dep = decode(unb64(kvs[0].get("value"))) if kvs else None
        return Stored(int(kvs[0]["mod_revision"]), dep) if kvs and dep is not None else None

    async def history(self, limit: int = 100) -> list[Stored]:
        """Newest first (by the revision each was last written at)."""
        end = prefix_end(self._deployments)
        kvs, _ = await self._range(self._deployments, range_end=b64(end), sort_order="DESCEND", sort_target="MOD",
                                   limit=max(1, limit))  # fmt: skip
        out = []
        for kv in kvs:
            dep = decode(unb64(kv.get("value")))
            if dep is not None:
                out.append(Stored(int(kv["mod_revision"]), dep))
        return out

    # -- writes ------------------------------------------------------------------------------------------------

    async def put(self, deployment: Deployment, *, expect_revision: int | None) -> int:
        if not _ID.match(deployment.id):
            raise ValueError(f"deployment id {deployment.id!r}: letters, digits, '_', '.', '-' only (1-128)")
        newest = b64(self._newest)
        compare = []
        if expect_revision is not None:
            compare = [{"key": newest, "target": "MOD", "result": "EQUAL", "mod_revision": str(expect_revision)}]
        body = {
            "compare": compare,
            "success": [
                {"request_put": {"key": b64(self._key(deployment.id)), "value": b64(encode(deployment))}},
                {"request_put": {"key": newest, "value": b64(deployment.id.encode())}},
                # How many are kept: past `history`, the oldest are pruned (one more round trip, then only).
                {
                    "request_range": {
                        "key": b64(self._deployments),
                        "range_end": b64(prefix_end(self._deployments)),
                        "count_only": True,
                    }
                },  # fmt: skip
            ],
            "failure": [{"request_range": {"key": newest}}],
        }
        try:
            answer, maybe_sent = await self.http.call_ex("/v3/kv/txn", body)
        except EtcdRefused as e:
            if "is too large" in str(e):
                raise DeploymentTooLarge(f"deployment {deployment.id}: {e}") from None
            raise
        if answer.get("succeeded"):
            revision = int(answer["header"]["revision"])
            responses = answer.get("responses") or [{}, {}, {}]
            if int(responses[-1].get("response_range", {}).get("count") or 0) > self.conf.history:
                await self._prune()
            # The writer holds the newest deployment too: its local copy must not wait for another write to come
            # back on a watch (a gateway that seeded an empty store had none).
            await self._deliver(Stored(revision, deployment))
            return revision
        kvs = (answer.get("responses") or [{}])[0].get("response_range", {}).get("kvs", [])
        actual = int(kvs[0]["mod_revision"]) if kvs else 0
        if maybe_sent and kvs and unb64(kvs[0].get("value")) == deployment.id.encode():
            # An earlier attempt timed out after etcd had applied it, and this retry on another endpoint met
            # our own write: it is ours if the body stored is this very deployment.
            mine = await self.get(deployment.id)
            if mine is not None and mine.revision == actual and mine.deployment == deployment:
                return actual
        raise Conflict(expect_revision, actual)

    async def _prune(self) -> None:
        """Delete the deployments past the newest `history` (each only if not written again meanwhile)."""
        end = prefix_end(self._deployments)
        try:
            kvs, _ = await self._range(self._deployments, range_end=b64(end), sort_order="DESCEND",
                                       sort_target="MOD", keys_only=True)  # fmt: skip
            old = kvs[self.conf.history :]
            for i in range(0, len(old), 64):  # etcd takes up to 128 operations in a transaction
                batch = old[i : i + 64]
                await self.http.call("/v3/kv/txn", {
                    "compare": [{"key": kv["key"], "target": "MOD", "result": "EQUAL",
                                 "mod_revision": kv["mod_revision"]} for kv in batch],
                    "success": [{"request_delete_range": {"key": kv["key"]}} for kv in batch],
                })  # fmt: skip
        except StoreUnavailable as e:
            log.info("etcd store: old deployments not pruned this time (%s)", e)

    # -- watch -------------------------------------------------------------------------------------------------

    async def watch(self, after_revision: int) -> AsyncIterator[Stored]:
        """Every deployment written after `after_revision`, in order, then each new one; never ends by itself (a
        lost connection is retried with backoff, and caught up from the revision reached) until the store is
        closed."""
        seen = after_revision  # every change up to this revision has been looked at
        last = after_revision  # the revision of the last deployment yielded
        backoff = 0.05
        failing_since = 0.0
        while not self.http.closed:
            create = {"key": b64(self._root), "range_end": b64(prefix_end(self._root)), "start_revision": str(seen + 1)}
            try:
                async with contextlib.aclosing(self.http.watch(create, STALE_CHECK)) as stream:
                    async for result in stream:
                        if result.get("idle"):
                            kvs, _ = await self._range(self._newest)
                            if kvs and int(kvs[0]["mod_revision"]) > seen:
                                raise StoreUnavailable("the watch stream went stale (the newest key moved unseen)")
                            continue
                        header = int(result.get("header", {}).get("revision") or 0)
                        if result.get("created") and not result.get("canceled"):
                            if failing_since:
                                log.warning("etcd store: watching again on %s after %.1f s", self.endpoint,
                                            time.monotonic() - failing_since)  # fmt: skip
                            failing_since, backoff = 0.0, 0.05
                            self.watching, self.last_error = True, ""
                        went_back = result.get("created") and 0 < header < seen
                        compacted = int(result.get("compact_revision") or 0)
                        if went_back or compacted:
                            # What came between is gone (compacted), or this is another history (a cluster restored
                            # from a snapshot, or a new one): the newest deployment is what counts; go on after it.
                            log.warning("etcd store: %s; reading the newest deployment",
                                        f"revisions up to {compacted} compacted" if compacted else
                                        f"etcd is at revision {header}, behind {seen}")  # fmt: skip
                            stored, seen = await self._latest_at()
                            if went_back:
                                self._delivered = 0  # the revisions of another history: the copy follows it
                            if stored is not None and (stored.revision > last or went_back):
                                last = stored.revision
                                await self._deliver(stored)
                                yield stored
                            break
                        if result.get("canceled"):
                            reason = str(result.get("cancel_reason", ""))
                            if "auth token" in reason:
                                self.http.forget_token()  # expired since it was taken: the next watch gets one
                            raise StoreUnavailable(f"etcd cancelled the watch: {reason}")
                        for stored in await self._from_events(result.get("events") or []):
                            if stored.revision > last:
                                last = stored.revision
                                await self._deliver(stored)
                                yield stored
                        seen = max(seen, header)
            except StoreUnavailable as e:
                self.watching, self.last_error = False, str(e)
                if self.http.closed:
                    return
                if not failing_since:
                    failing_since = time.monotonic()
                    log.warning("etcd store: the watch is lost (%s); trying again from revision %d", e, seen + 1)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, self.conf.backoff_max)

    async def _from_events(self, events: list[dict[str, Any]]) -> list[Stored]:
        """The deployments that the events of one watch message made newest, in order."""
        bodies = {}
        for ev in events:
            if ev.get("type") != "DELETE":
                kv = ev["kv"]
                bodies[(unb64(kv["key"]), int(kv["mod_revision"]))] = kv.get("value")
        out = []
        for ev in events:
            kv = ev["kv"]
            if ev.get("type") == "DELETE" or unb64(kv["key"]) != self._newest:
                continue
            revision = int(kv["mod_revision"])
            deployment_id = unb64(kv.get("value")).decode(errors="replace")
            if not _ID.match(deployment_id):
                log.warning("etcd store: %s names %r, not a deployment id; skipped", self._newest.decode(),
                            deployment_id)  # fmt: skip
                continue
            value = bodies.get((self._key(deployment_id), revision))
            if value is None:  # not in this message (written by hand apart from the newest key): read it then
                kvs, _ = await self._range(self._key(deployment_id), revision=str(revision))
                value = kvs[0].get("value") if kvs else None
            dep = decode(unb64(value)) if value is not None else None
            if dep is not None:
                out.append(Stored(revision, dep))
        return out

    # -- the local copy ----------------------------------------------------------------------------------------

    async def _deliver(self, stored: Stored) -> None:
        """Note a deployment handed out; the newest so far goes to the local copy."""
        if stored.revision <= self._delivered:
            return
        if self.conf.local_copy is None:
            self._delivered = stored.revision
            return
        async with self._saving:  # NOTE: one write at a time, and never an older over a newer
            if stored.revision <= self._delivered:
                return
            self._delivered = stored.revision
            try:
                await asyncio.to_thread(self._save, stored)
            except OSError as e:
                log.warning("etcd store: the local copy %s was not written: %s", self.conf.local_copy, e)

    def _save(self, stored: Stored) -> None:
        path = os.path.abspath(self.conf.local_copy or "")
        doc = {
            "prefix": self.conf.prefix,
            "endpoints": list(self.conf.endpoints),
            "revision": stored.revision,
            "saved": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "deployment": dataclasses.asdict(stored.deployment),
        }
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".fastgw-local-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(doc))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # NOTE: a reader sees the old file or the new one, never half of one
        except BaseException:
            os.unlink(tmp)
            raise

    def local_copy(self) -> LocalStored | None:
        """The newest deployment this store (or one before a restart, with the same prefix) delivered, from the
        local copy; None when there is none or it cannot be read (logged)."""
        path = self.conf.local_copy
        if path is None or not os.path.exists(path):
            return None
        try:
            with open(path, "rb") as f:
                doc = orjson.loads(f.read())
            if doc.get("prefix") != self.conf.prefix:
                log.warning("etcd store: the local copy %s is of prefix %r, not %r; not used", path,
                            doc.get("prefix"), self.conf.prefix)  # fmt: skip
                return None
            dep = decode(orjson.dumps(doc["deployment"]))
            if dep is None:
                return None
            return LocalStored(int(doc["revision"]), dep, saved=str(doc.get("saved", "")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("etcd store: the local copy %s cannot be read: %s", path, e)
            return None

    async def close(self) -> None:
        await self.http.close()
