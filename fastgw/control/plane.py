"""The control plane of one gateway: every change of config (a reload of the file, an admin API write, a
rollback, `fastgw deploy`) becomes a **deployment** here, the same way:

1. the new config, as data in the file's schema, is checked exactly as a file is (`config.load.reconfigure`),
   in the caller's thread: never on a worker's serving loop;
2. every worker prepares it (a worker under the supervisor loads the deployment's JSON in a thread beside its
   loop; no worker reads the config file) and says so; one that cannot fails the deployment, and every worker
   keeps the previous one;
3. it is written to the store, compare-and-swap on the revision the change was based on (a concurrent writer
   gets 409);
4. every worker swaps it in (one reference), and only then does the caller get its answer.

One lock serializes deployments. The file and the store: a deployment remembers the id of the file's content it
derives from (`meta.file`). A reload (SIGHUP, `POST /reload`, `--watch`) of a file that has not changed since then
deploys nothing, so admin API edits made since survive it; a file that changed is deployed (its content is the
newer intent). At start the same rule picks the store's newest deployment (the file unchanged since) or the file.
The gateway never writes the config file: what serves and what the file says can differ, and `GET /config`,
`fastgw diff FILE` show how.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from fastgw.config.errors import ConfigError
from fastgw.config.load import config_data, default_config_path, file_stamp, reconfigure
from fastgw.control import deployment as dep
from fastgw.control.filestore import FileStore, MemoryStore, default_dir
from fastgw.control.store import Conflict, Deployment, Store, Stored, StoreUnavailable, TooLarge

if TYPE_CHECKING:
    from fastgw.config.load import LoadedConfig

log = logging.getLogger("fastgw.control")
audit = logging.getLogger("fastgw.audit")


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Around building a config beside a serving loop: no cyclic garbage collection meanwhile. A build makes
    hundreds of thousands of objects, which sets off full collections that stop the whole process, serving loop
    included, for 0.2-0.7 s each (10,000 routes: a 760 ms stall with it, 130 ms without). The serving process
    freezes what it serves after each swap (`gc.freeze`, Server.swap), so later collections skip it; the previous
    config is freed by reference counting (60 objects in cycles left after 6 reloads of 10,000 routes)."""
    enabled = gc.isenabled()
    switch = sys.getswitchinterval()
    gc.disable()
    # NOTE: the building thread lets the loop have the GIL back within 1 ms instead of 5 (the loop's lag while
    # 10,000 routes build: p99 15 ms instead of 43; the build takes as long).
    sys.setswitchinterval(min(switch, 0.001))
    try:
        yield
    finally:
        sys.setswitchinterval(switch)
        if enabled:
            gc.enable()


class Refused(Exception):
    """A change that was not deployed: the HTTP status the admin API answers, and why."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def unavailable(exc: StoreUnavailable) -> Refused:
    """What a change or a read of the history answers when the store cannot be reached (etcd away, the deployments
    folder unwritable): 503, nothing deployed, the last good deployment serving."""
    return Refused(503, f"the deployment store is unavailable: {exc}")


class Workers(Protocol):
    """The processes that serve: the worker inside a single-process gateway, or the supervisor's workers."""

    def prepare(self, deployment: Deployment, payload: bytes, loaded: LoadedConfig) -> dict[str, str]:
        """Make every worker ready to serve `deployment` (not yet serving it): the workers that could not, with
        why (empty: all are ready)."""

    def commit(self, deployment: Deployment, loaded: LoadedConfig, changed: list[str]) -> dict[str, str]:
        """Swap the prepared deployment in on every worker; the workers that failed, with why."""

    def abort(self, deployment_id: str) -> None:
        """Forget a prepared deployment (the previous one keeps serving)."""

    def serving(self) -> list[dict[str, Any]]:
        """Each worker and the deployment it serves: `{"worker", "pid", "deployment"}`."""


def default_local_copy(endpoints: Sequence[str], prefix: str) -> str:
    """Where a gateway keeps its local copy of a fleet's newest deployment when the config names no file:
    `$XDG_STATE_HOME/fastgw/` (`~/.local/state/fastgw/`), one file per store (its endpoints and prefix)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    key = hashlib.sha256("\0".join([prefix, *sorted(endpoints)]).encode()).hexdigest()[:16]
    return os.path.join(state, "fastgw", f"etcd-{key}.json")


def open_store(loaded: LoadedConfig) -> Any:
    """The store of `loaded`'s deployments: etcd (`store: {etcd: ...}`, a fleet), else the folder beside its file,
    or memory for a config not from a file."""
    store = loaded.config.store
    if store is not None and store.etcd is not None:
        import msgspec

        from fastgw.control.etcd import store_from_config

        conf = store.etcd
        # A gateway always keeps a local copy (issue 20: it serves the last good deployment across a restart while
        # etcd is away), in the user's state folder unless `local_copy` names a file; "" switches it off.
        copy = default_local_copy(conf.endpoints, conf.prefix) if conf.local_copy is None else conf.local_copy or None
        return store_from_config(msgspec.structs.replace(conf, local_copy=copy))
    admin = loaded.config.admin
    if admin is not None and admin.deployments_dir:
        return FileStore(Path(admin.deployments_dir))
    if admin is None or loaded.source.startswith("<"):
        return MemoryStore()
    return FileStore(default_dir(loaded.source))


class _Sync:
    """Runs an async store's calls from the plane's threads, on a loop of its own (a store without `*_now`)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="fastgw-store", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)


class ControlPlane:
    def __init__(self, loaded: LoadedConfig, workers: Workers, store: Store | Any | None = None) -> None:
        self.loaded = loaded  # what serves
        self.workers = workers
        self.store = store if store is not None else open_store(loaded)
        self.current: Stored | None = None
        self.lock = threading.RLock()
        self.file = None if loaded.source.startswith("<") else loaded.source
        self._sync = _Sync()
        # A shared store (etcd): what any gateway of the fleet writes serves here too (`watch`), and at start the
        # store's newest deployment wins over the file, which only seeds an empty store.
        self.shared = not isinstance(self.store, (FileStore, MemoryStore))
        self._watching: Any = None
        # `fastgw serve --store URL` with no CONFIG: the built-in quickstart only gives the listeners; it is never
        # written into a store a fleet shares, at start (`_start_waiting`) nor by a reload (there is no file).
        self.joining = self.shared and self.file is not None and Path(self.file) == default_config_path()
        if self.joining:
            self.file = None

    # -- the store, whatever its kind -------------------------------------------------------------------------

    def _store(self, name: str, *args: Any, **kw: Any) -> Any:
        now = getattr(self.store, f"{name}_now", None)
        if now is not None:
            return now(*args, **kw)
        return self._sync.run(getattr(self.store, name)(*args, **kw))

    def history(self, limit: int = 100) -> list[Stored]:
        """Newest first. The store unreachable: Refused 503 (the admin API's answer)."""
        try:
            return list(self._store("history", limit))
        except StoreUnavailable as exc:
            raise unavailable(exc) from None

    def get(self, deployment_id: str) -> Stored | None:
        """A deployment by id, or None. The store unreachable: Refused 503."""
        try:
            found = self._store("get", deployment_id)
        except StoreUnavailable as exc:
            raise unavailable(exc) from None
        return found if isinstance(found, Stored) else None

    @property
    def id(self) -> str:
        return self.current.deployment.id if self.current is not None else ""

    def config(self) -> dict[str, Any]:
        """The config that serves, in the file's schema (a copy the caller may change)."""
        data = self.current.deployment.config if self.current is not None else self.loaded.data or {}
        out: dict[str, Any] = orjson.loads(dep.canonical(data))
        return out

    # -- start --------------------------------------------------------------------------------------------------

    def start(self) -> LoadedConfig:
        """Called once, before any worker serves: the deployment to serve first. It is the file's (recorded as a
        new deployment unless the store's newest already is it), or the store's newest when that derives from
        the file as it is now (admin API edits and rollbacks made since the file was last deployed)."""
        with self.lock:
            data = self.loaded.data or {}
            file_id = dep.deployment_id(data)
            try:
                # A fleet's store that cannot be reached gives the last deployment it delivered (its local copy).
                store: Any = self.store
                latest: Stored | None = (
                    self._sync.run(store.latest(fallback_local=True)) if self.shared else self._store("latest")
                )
            except StoreUnavailable as exc:
                log.error("deployment store unavailable, serving the file: %s", exc)
                latest = None
            if self.shared:
                return self._start_shared(latest, data, file_id)
            if latest is not None and latest.deployment.meta.get("file") == file_id and latest.deployment.config:
                if latest.deployment.id == file_id:
                    self.current = latest
                    return self.loaded
                try:
                    loaded, _ = reconfigure(self.loaded, latest.deployment.config)
                except ConfigError as exc:
                    log.error("the newest deployment %s no longer loads, serving the file: %s", latest.deployment.id,
                              exc)  # fmt: skip
                else:
                    log.info("serving deployment %s (%s) over %s: the file has not changed since it was made",
                             latest.deployment.id, latest.deployment.source, self.file)  # fmt: skip
                    self.current, self.loaded = latest, loaded
                    return loaded
            d = dep.make(data, self.file or self.loaded.source, description="start", meta={"file": file_id})
            self.current = Stored(0, d)
            if latest is None or latest.deployment.id != d.id:
                try:
                    self.current = Stored(self._store("put", d, expect_revision=None), d)
                except StoreUnavailable as exc:
                    log.error("could not keep deployment %s: %s", d.id, exc)
            else:
                self.current = latest
            log.info("deployment %s live (start)", self.current.deployment.id)
            return self.loaded

    def _start_shared(self, latest: Stored | None, data: dict[str, Any], file_id: str) -> LoadedConfig:
        """A fleet's store: its newest deployment serves (the last good one from the store's local copy when etcd
        is away); the file only seeds a store that holds none yet (compare-and-swap on revision 0, so two
        gateways starting at once seed it once)."""
        if latest is not None and latest.deployment.config:
            try:
                loaded, _ = reconfigure(self.loaded, latest.deployment.config)
            except ConfigError as exc:
                log.error("the store's newest deployment %s does not load here, serving the file: %s",
                          latest.deployment.id, exc)  # fmt: skip
            else:
                self.current, self.loaded = latest, loaded
                if getattr(latest, "local", False):
                    log.warning("deployment %s live (start, from the local copy saved %s: the store is unreachable; "
                                "it is followed from revision %d once it answers)", latest.deployment.id,
                                getattr(latest, "saved", "") or "earlier", latest.revision)  # fmt: skip
                else:
                    log.info("deployment %s live (start, from the store)", latest.deployment.id)
                return loaded
        if self.joining:
            return self._start_waiting(data)
        d = dep.make(data, self.file or self.loaded.source, description="start", meta={"file": file_id})
        try:
            self.current = Stored(self._store("put", d, expect_revision=0 if latest is None else None), d)
        except (Conflict, StoreUnavailable, TooLarge) as exc:
            # (Too large for the store: served here all the same, as with the store away; a write is refused 413.)
            log.warning("could not seed the store with %s (%s): serving it; the store's deployments follow", d.id, exc)
            self.current = Stored(0, d)
        log.info("deployment %s live (start)", d.id)
        return self.loaded

    def _start_waiting(self, data: dict[str, Any]) -> LoadedConfig:
        """`fastgw serve --store URL` with no CONFIG joins a fleet whose store holds no deployment yet: it never
        writes the built-in quickstart into a store others share (it would serve as every gateway's config), but
        listens and answers every request 503 `{"message": "No deployment yet"}` until the first deployment
        comes (from `fastgw deploy FILE --store URL` or another gateway), as a Kong data plane that has not had
        its config reports not ready. Nothing of this placeholder is written to the store."""
        waiting: dict[str, Any] = {key: data[key] for key in ("server", "logging") if key in data}
        answer = {"type": "mock", "status": 503, "body": {"message": "No deployment yet"}}
        waiting["routes"] = [
            {"name": "no-deployment-yet", "methods": ["ANY"], "path": "/", "integration": answer},
            {"name": "no-deployment-yet-any", "methods": ["ANY"], "path": "/{proxy+}", "integration": answer},
        ]
        loaded, _ = reconfigure(self.loaded, waiting)
        d = dep.make(waiting, "waiting for the store's first deployment", description="start")
        self.current, self.loaded = Stored(0, d), loaded
        log.warning("no deployment in the store yet and no CONFIG given: answering 503 until one is deployed "
                    "(fastgw deploy FILE --store URL, or any gateway of the fleet)")  # fmt: skip
        return loaded

    def watch(self) -> None:
        """With a shared store: follow it from the revision serving now, in the background; each deployment
        another gateway writes is checked and served here as any other (`follow`). A store away is the store's
        to retry; what serves meanwhile is the last good deployment."""
        if not self.shared or self._watching is not None:
            return
        after = self.current.revision if self.current is not None else 0

        async def run() -> None:
            loop = asyncio.get_running_loop()
            async for stored in self.store.watch(after):
                try:
                    await loop.run_in_executor(None, self.follow, stored)
                except Refused as exc:
                    log.error("deployment %s from the store refused, still serving %s: %s", stored.deployment.id,
                              self.id, exc.message)  # fmt: skip
                except Exception:  # noqa: BLE001 - the watch must go on
                    log.exception("deployment %s from the store failed", stored.deployment.id)

        self._sync.run(_noop())  # the store's loop runs
        assert self._sync._loop is not None
        self._watching = asyncio.run_coroutine_threadsafe(run(), self._sync._loop)

    def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
        if self.shared and self._sync._loop is not None:
            with contextlib.suppress(Exception):
                self._sync.run(self.store.close(), timeout=5)

    # -- changes ------------------------------------------------------------------------------------------------

    def reload_file(self, description: str = "SIGHUP", author: str = "") -> dict[str, Any]:
        """Deploy the config file if it changed since the deployment serving now derives from it."""
        if self.joining:
            log.warning("reload: no CONFIG was given, this gateway serves its fleet's store: nothing to reload "
                        "(fastgw deploy FILE --store URL changes what the fleet serves)")  # fmt: skip
            raise Refused(400, "no CONFIG was given: this gateway serves its fleet's store, nothing to reload")
        if self.file is None:
            raise Refused(400, "the config did not come from a file: nothing to reload")
        with self.lock:
            stamp = file_stamp(self.file)
            try:
                raw = Path(self.file).read_bytes()
            except OSError as exc:
                raise Refused(400, f"{self.file}: $: cannot read the file: {exc.strerror or exc}") from None
            try:
                # As the file is read at start: a SAM template is read into a config, OpenAPI files named in.
                data = config_data(raw, self.file, self.loaded.base_dir, self.loaded.overrides)
                if not isinstance(data, dict):
                    raise ConfigError(self.file, "$", "expected a mapping at the top level")
                data = orjson.loads(dep.canonical(data))
            except ConfigError as exc:
                log.error("reload refused, still serving deployment %s: %s", self.id, exc)
                raise Refused(400, str(exc), path=exc.path) from None
            file_id = dep.deployment_id(data)
            if self.current is not None and self.current.deployment.meta.get("file") == file_id:
                # The deployment serving is built again (not recorded again): the certificates and other files it
                # names are read anew, as a reload after renewing a certificate expects.
                current = self.current
                answer = self._deploy(current.deployment.config, current.deployment.source, description, author,
                                      current.deployment.meta, None, file=True, written=current)  # fmt: skip
                self._file_applied(stamp)
                return {
                    **answer,
                    "changed": False,
                    "message": f"{self.file} has not changed since deployment "
                    f"{current.deployment.id}: it was built again (files it names read anew), nothing recorded",
                }
            answer = self._deploy(data, self.file, description, author, {"file": file_id}, None, file=True)
            self._file_applied(stamp)
            return answer

    def apply(
        self, data: dict[str, Any], *, source: str, description: str = "", author: str = "",
        if_match: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Deploy `data` (a whole config) in place of what serves (`PUT /config`, `fastgw deploy`)."""
        with self.lock:
            self._check_match(if_match)
            meta = {"file": self.current.deployment.meta.get("file")} if self.current is not None else {}
            return self._deploy(data, source, description, author, meta, self._revision())

    def edit(
        self, change: Callable[[dict[str, Any]], Any], *, source: str, description: str = "", author: str = "",
        if_match: str | None = None,
    ) -> tuple[Any, dict[str, Any]]:  # fmt: skip
        """Change the serving config with `change` (given a copy; may raise Refused) and deploy the result; returns
        what `change` returned and the deployment's answer."""
        with self.lock:
            self._check_match(if_match)
            data = self.config()
            result = change(data)
            meta = {"file": self.current.deployment.meta.get("file")} if self.current is not None else {}
            return result, self._deploy(data, source, description, author, meta, self._revision())

    def rollback(self, deployment_id: str, author: str = "", if_match: str | None = None) -> dict[str, Any]:
        """Deploy an earlier deployment's config again, as a new deployment. Nothing is overwritten: the config
        file is not touched, and edits made since stay in the history."""
        with self.lock:
            self._check_match(if_match)
            target = self.get(deployment_id)
            if target is None or not target.deployment.config:
                raise Refused(404, f"no deployment {deployment_id}")
            meta = {"file": self.current.deployment.meta.get("file")} if self.current is not None else {}
            answer = self._deploy(target.deployment.config, f"rollback to {deployment_id}", "", author, meta,
                                  self._revision())  # fmt: skip
            if self.file is not None:
                answer["file"] = self.file_state()
            return answer

    def follow(self, stored: Stored) -> dict[str, Any]:
        """Serve a deployment another writer put in the store (a fleet's store, watched from `stored.revision`):
        checked and swapped in on every worker as any other, not written again. A newer one than it already
        serves only; one that does not load is refused (Refused 400) and the last good one keeps serving."""
        with self.lock:
            if self.current is not None and 0 < stored.revision <= self.current.revision:
                return self._answer(self.current, changed=False)
            return self._deploy(stored.deployment.config, stored.deployment.source, stored.deployment.description,
                                stored.deployment.author, stored.deployment.meta, None, written=stored)  # fmt: skip

    def file_state(self) -> str:
        """Whether the config file says what serves: "same", "differs" (or "unreadable")."""
        if self.file is None:
            return "none"
        try:
            data = config_data(Path(self.file).read_bytes(), self.file, self.loaded.base_dir, self.loaded.overrides)
        except (OSError, ConfigError):
            return "unreadable"
        return "same" if dep.deployment_id(data) == self.id else "differs"

    def _revision(self) -> int | None:
        return self.current.revision if self.current is not None and self.current.revision else None

    def _check_match(self, if_match: str | None) -> None:
        if if_match is None:
            return
        wanted = [t.strip().removeprefix("W/").strip('"') for t in if_match.split(",")]
        if "*" not in wanted and self.id not in wanted:
            raise Refused(409, f"If-Match {if_match} is stale: deployment {self.id} serves now", deployment=self.id)

    def _file_applied(self, stamp: Any) -> None:
        """Tell `serve --watch` the file's state that now serves, so it does not load it again."""
        hook = getattr(self.workers, "file_applied", None)
        if hook is not None:
            hook(stamp)

    def _deploy(
        self, data: dict[str, Any], source: str, description: str, author: str, meta: dict[str, Any],
        expect: int | None, *, file: bool = False, written: Stored | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        # NOTE: the GC waits from the build to the swap, which freezes what then serves: re-enabled any earlier,
        # it would at once collect over the whole new config (a 170 ms stall), in this thread or the loop's.
        with quiet_gc():
            return self._deploy_quietly(data, source, description, author, meta, expect, file=file, written=written)

    def _deploy_quietly(
        self, data: dict[str, Any], source: str, description: str, author: str, meta: dict[str, Any],
        expect: int | None, *, file: bool = False, written: Stored | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        payload = dep.canonical(data)
        if not _plain(data):  # what is checked is what is kept: a YAML date becomes the string JSON has for it
            data = orjson.loads(payload)
        d = Deployment(dep.deployment_id(payload), data, dep.now(), source, author, description, meta)
        if written is not None:
            d = written.deployment
        try:
            loaded, changed = reconfigure(self.loaded, data)
        except ConfigError as exc:
            log.error("%s refused (%s), still serving deployment %s: %s", "reload" if file else "deployment", source,
                      self.id, exc)  # fmt: skip
            raise Refused(400, str(exc) if file else f"{exc.path}: {exc.message}", path=exc.path) from None
        failed = self.workers.prepare(d, payload, loaded)
        if failed:
            self.workers.abort(d.id)
            log.error("deployment %s refused by %s; every worker keeps %s", d.id, _names(failed), self.id)
            raise Refused(502, f"deployment {d.id} failed on {_names(failed)}; every worker keeps {self.id}",
                          workers=failed)  # fmt: skip
        try:
            revision = written.revision if written is not None else self._store("put", d, expect_revision=expect)
        except Conflict as exc:
            self.workers.abort(d.id)
            raise Refused(409, f"the deployment store moved on (revision {exc.actual}): read and try again") from None
        except StoreUnavailable as exc:
            self.workers.abort(d.id)
            raise unavailable(exc) from None
        except TooLarge as exc:
            self.workers.abort(d.id)
            raise Refused(413, f"the deployment store refused it as too large: {exc}") from None
        # NOTE: recorded before the swap, so that no client can see the new deployment served and still read the
        # old one's ETag (a write on it was refused with 409 for that moment).
        self.current, self.loaded = Stored(revision, d), loaded
        failed = self.workers.commit(d, loaded, changed)
        settle = getattr(self.workers, "settle", None)
        if settle is not None:  # the workers free what they replaced, off their loop
            settle()
        if failed:  # pragma: no cover - a swap of a prepared deployment does not fail
            log.error("deployment %s: swap failed on %s", d.id, _names(failed))
        log.info("deployment %s live (%s)", d.id, description or source)
        if changed:
            log.warning("deployment %s: %s changed and needs a restart to apply; the rest serves", d.id,
                        "; ".join(changed))  # fmt: skip
        answer = self._answer(self.current, changed=True)
        if changed:
            answer["restart_needed"] = changed
        return answer

    def _answer(self, stored: Stored, *, changed: bool) -> dict[str, Any]:
        return {
            "deployment": stored.deployment.id,
            "revision": stored.revision,
            "changed": changed,
            "routes": len(self.loaded.entries),
            "workers": self.workers.serving(),
        }


def _names(failed: dict[str, str]) -> str:
    return ", ".join(f"{w} ({why})" for w, why in failed.items())


def _plain(value: Any) -> bool:
    """Whether `value` is JSON's own types all the way down (then its canonical JSON reads back equal). A walk in
    Python rather than one orjson.loads of the whole: it lets the serving loop have the GIL as it goes."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            if not all(type(k) is str for k in v):
                return False
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif type(v) is float:
            if not math.isfinite(v):  # JSON has no inf nor nan (orjson writes null)
                return False
        elif not (v is None or type(v) in (str, int, bool)):
            return False
    return True


async def _noop() -> None:
    return None
