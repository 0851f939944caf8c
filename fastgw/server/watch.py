"""`fastgw serve --watch`: the config file and the functions' code, followed for changes.

With `watchfiles` installed (the `watch` extra; uvicorn's choice: inotify and its kin, in Rust), the file system's
events wake the watch, which then compares file states at once and again `SETTLE` later: a save is served within a
fraction of a second. Without it, or with `FASTGW_WATCH_POLL=1` (bind mounts of containers, where inotify events do
not cross), `os.stat` is polled once a second; events that never come cost nothing, since a poll still runs every
`INTERVAL` either way. A poll stats the config file
and walks each function's code folder: source files only, folders that hold no code of the function's own
(`node_modules`, `__pycache__`, `.git`, virtual environments) left out, at most `MAX_FILES` files a function, so a
poll stays cheap on a folder that grew large (a warning says when the bound cuts a function's files short).

A change is acted on only when a poll sees the same file state twice in a row: an editor that writes a file in
several steps is not caught half way, and a config saved twice in quick succession is loaded once. A reload made
some other way (SIGHUP, `POST /reload`, a rollback) tells the watcher the state of the file it loaded
(`Watcher.applied`), so a change already serving is not loaded a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fastgw.config.load import FileStamp, file_stamp

log = logging.getLogger("fastgw.watch")

INTERVAL = 1.0  # seconds between polls (with events too: a file system that sends none is still followed)
SETTLE = 0.1  # seconds from a poll that saw a change to the one that sees it hold still, when events wake the watch
MAX_FILES = 2000  # files watched per function folder
CODE_SUFFIXES = frozenset((".py", ".js", ".mjs", ".cjs", ".json"))
SKIPPED_DIRS = frozenset(("node_modules", "__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache"))

Stamp = FileStamp  # one stamp for both, so the config's loader and the watch compare like with like
State = dict[str, Stamp]
stamp = file_stamp


def code_files(folder: Path, exclude: str = "") -> State:
    """The state of the code files under `folder` (sorted walk, bounded by MAX_FILES)."""
    out: State = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(files):
            if os.path.splitext(name)[1] not in CODE_SUFFIXES:
                continue
            path = os.path.join(root, name)
            if path == exclude:
                continue
            s = stamp(path)
            if s is not None:
                out[path] = s
            if len(out) >= MAX_FILES:
                return out
    return out


@dataclass
class Changes:
    config: bool = False
    config_stamp: Stamp | None = None  # the config file's state the change was seen at
    functions: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return self.config or bool(self.functions)


class Watcher:
    """What `poll` compares: the config file's stamp and each function's code files. `functions` maps a
    function's name to its code folder (`retarget` after a reload changes them). `loaded_from` is the config
    file's stamp when the running config was read (LoadedConfig.stamp): a save between that read and the watch's
    start is still a change."""

    def __init__(
        self, config: str | None, functions: Mapping[str, Path] = {}, loaded_from: Stamp | None = None
    ) -> None:
        self.config = os.path.abspath(config) if config is not None else None
        self.folders: dict[str, Path] = {}
        self._config_seen: Stamp | None = None
        self._config_pending: Stamp | None = None
        self.loaded_from: Stamp | None = None  # the file's state the running config was loaded from
        self._code_seen: dict[str, State] = {}
        self._code_pending: dict[str, State] = {}
        self._short: set[str] = set()
        if self.config is not None:
            self._config_seen = loaded_from if loaded_from is not None else stamp(self.config)
            self.loaded_from = loaded_from
        self.retarget(functions)

    def applied(self, loaded_from: Stamp | None) -> None:
        """The running config was just (re)loaded from the file as it was at `loaded_from`, by whoever reloaded it:
        that state is no longer a change to act on (one seen once and still pending is dropped too)."""
        if self.config is None or loaded_from is None:
            return
        self.loaded_from = loaded_from
        self._config_seen, self._config_pending = loaded_from, None

    def wants_reload(self, changes: Changes) -> bool:
        """Whether `changes` still asks for the config to be loaded: not when a reload made meanwhile (between the
        poll, in its thread, and now) already loaded the file in that state."""
        return changes.config and (changes.config_stamp is None or changes.config_stamp != self.loaded_from)

    def retarget(self, functions: Mapping[str, Path]) -> None:
        """The functions (and their folders) of the config now serving; a function new to the watch starts from
        its files as they are now."""
        folders = dict(functions)
        for name in list(self._code_seen):
            if folders.get(name) != self.folders.get(name):
                del self._code_seen[name]
                self._code_pending.pop(name, None)
        self.folders = folders
        for name, folder in folders.items():
            if name not in self._code_seen:
                self._code_seen[name] = self._scan(name, folder)

    def _scan(self, name: str, folder: Path) -> State:
        state = code_files(folder, exclude=self.config or "")
        if len(state) >= MAX_FILES and name not in self._short:
            self._short.add(name)
            log.warning("watch: function %s has more than %d code files under %s; only the first are watched",
                        name, MAX_FILES, folder)  # fmt: skip
        return state

    @property
    def unsettled(self) -> bool:
        """A change seen once and not yet held still (the next poll decides)."""
        return self._config_pending is not None or bool(self._code_pending)

    def paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What file system events to follow: the config file's folder (not below it), and the code folders."""
        config = (os.path.dirname(self.config),) if self.config is not None else ()
        return config, tuple(sorted({str(f) for f in self.folders.values() if f.is_dir()}))

    def poll(self) -> Changes:
        """What changed since the last change acted on, once it has held still for one poll."""
        changes = Changes()
        if self.config is not None:
            now = stamp(self.config)
            if now == self._config_seen:
                self._config_pending = None
            elif now is not None:  # a file deleted (mid-save) is not a change yet
                if now == self._config_pending:
                    self._config_seen, self._config_pending = now, None
                    changes.config, changes.config_stamp = True, now
                else:
                    self._config_pending = now
        for name, folder in self.folders.items():
            now_code = self._scan(name, folder)
            if now_code != self._code_seen.get(name):
                if now_code == self._code_pending.get(name):
                    self._code_seen[name] = now_code
                    del self._code_pending[name]
                    changes.functions.add(name)
                else:
                    self._code_pending[name] = now_code
            else:
                self._code_pending.pop(name, None)
        return changes


class Recyclable(Protocol):
    code: Path

    def recycle(self) -> None: ...


async def follow(
    watcher: Watcher,
    reload: Callable[[], object],
    pools: Callable[[], Mapping[str, Recyclable]],
    interval: float = INTERVAL,
) -> None:
    """Poll (in a thread, off the serving loop) until cancelled: a changed config file is reloaded, and a
    function whose code changed gets its workers restarted. A failing poll is logged and the next one tries
    again; nothing here stops the gateway."""
    loop = asyncio.get_running_loop()
    events = _Events.start()
    try:
        while True:
            await _follow_once(watcher, reload, pools, interval, events, loop)
    finally:
        if events is not None:
            events.stop()


async def _follow_once(
    watcher: Watcher,
    reload: Callable[[], object],
    pools: Callable[[], Mapping[str, Recyclable]],
    interval: float,
    events: _Events | None,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """One turn of the watch: wait (an event, or the interval), compare, act."""
    try:
        watcher.retarget({name: pool.code for name, pool in pools().items()})  # what a reload changed
        if events is None:
            await asyncio.sleep(interval)
        else:
            events.follow(watcher.paths())
            await events.wait(SETTLE if watcher.unsettled else interval)
        changes = await loop.run_in_executor(None, watcher.poll)
        if watcher.wants_reload(changes):
            log.info("watch: %s changed; reloading it", watcher.config)
            reload()
        current = pools()
        for name in sorted(changes.functions):
            pool = current.get(name)
            if pool is not None:
                log.info("watch: the code of function %s changed under %s; its workers restart", name, pool.code)
                pool.recycle()
    except Exception:  # noqa: BLE001 - the watch is a convenience: it must never take serving down
        log.exception("watch: poll failed; trying again in %.0fs", interval)
        await asyncio.sleep(interval)


def _relevant(change: object, path: str) -> bool:
    """A file the watch compares: code, or a config (YAML or JSON); not an editor's hidden temporary file."""
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1] in (*CODE_SUFFIXES, ".yaml", ".yml")


class _Events:
    """watchfiles' events as a waker: one task per set of folders followed (the config's folder alone, the code
    folders with what is below them), each setting `woken` when something relevant changed."""

    def __init__(self, awatch: Callable[..., object]) -> None:
        self.awatch = awatch
        self.woken = asyncio.Event()
        self.stop_event = asyncio.Event()
        self.following: tuple[tuple[str, ...], tuple[str, ...]] | None = None
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    def start(cls) -> _Events | None:
        if os.environ.get("FASTGW_WATCH_POLL", "") not in ("", "0"):
            return None
        try:
            from watchfiles import awatch
        except ImportError:
            return None
        return cls(awatch)

    def follow(self, paths: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
        if paths == self.following:
            return
        self.stop()
        self.stop_event = asyncio.Event()
        self.following = paths
        for folders, recursive in ((paths[0], False), (paths[1], True)):
            if folders:
                self.tasks.append(asyncio.get_running_loop().create_task(self._run(folders, recursive)))

    async def _run(self, folders: tuple[str, ...], recursive: bool) -> None:
        try:
            # debounce: events of one save arrive together; the poll's hold-still rule does the rest.
            async for _ in self.awatch(  # type: ignore[attr-defined]
                *folders, watch_filter=_relevant, recursive=recursive, debounce=50, step=20, stop_event=self.stop_event
            ):
                self.woken.set()
        except Exception:  # noqa: BLE001 - events are a shortcut: polling goes on without them
            log.warning("watch: file system events for %s failed; polling once a second", ", ".join(folders))

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.woken.wait(), timeout)
        self.woken.clear()

    def stop(self) -> None:
        self.stop_event.set()
        for task in self.tasks:
            task.cancel()
        self.tasks = []
