"""The supervisor of `fastgw serve --workers N`: it forks the workers, restarts any that dies, passes signals on,
follows the config file under `--watch`, runs the control plane (a reload is parsed and checked here, never on a
worker's loop, and handed to every worker as one deployment: `SupervisorWorkers`), and the admin API of the whole
gateway (`SupervisorControl`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastgw.config.load import LoadedConfig
from fastgw.control import channel
from fastgw.control.plane import ControlPlane, Refused
from fastgw.control.store import Deployment
from fastgw.observability.metrics import merge, read_snapshots
from fastgw.server.server import describe_core, run_worker
from fastgw.server.tls import listener_urls
from fastgw.server.watch import INTERVAL as WATCH_INTERVAL
from fastgw.server.watch import Watcher

if TYPE_CHECKING:
    from fastgw.admin.api import AdminListener

log = logging.getLogger("fastgw.server")


def supervise(loaded: LoadedConfig, host: str, port: int, workers: int, *, watch: bool = False) -> int:
    """Fork `workers` processes that each bind the port with SO_REUSEPORT; restart any that dies. With `watch`
    the supervisor follows the config file (a change is a SIGHUP) and each worker its functions' code.

    The parent binds the port too (without listening) to learn a port chosen by the kernel and to hold it while
    workers come and go; only listening sockets get connections, so it never takes a share of the traffic.
    """
    holders = [_hold(host, port)]
    port = holders[0].getsockname()[1]
    tls = loaded.config.server.tls
    tls_port = None
    if tls is not None and tls.port is not None:  # TLS on a port of its own: held too, so port 0 is one port for all
        holders.append(_hold(host, tls.port))
        tls_port = holders[1].getsockname()[1]
    plain = None if tls is not None and tls.port is None else port
    urls = listener_urls(host, plain, None if tls is None else port if tls_port is None else tls_port)
    log.info("fastgw supervisor pid %d: %d workers on %s (core %s)", os.getpid(), workers, urls, describe_core())

    stopping = False
    reload_requested = False
    children: dict[int, float] = {}  # pid -> start time
    workers_ = SupervisorWorkers(children)
    plane = ControlPlane(loaded, workers_)
    loaded = plane.start()  # the file, or the store's newest deployment made over it
    control = SupervisorControl(plane, workers, children) if loaded.config.admin is not None else None
    if control is not None:
        control.start()

    stop_signal = ""

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping, stop_signal
        stopping = True
        stop_signal = stop_signal or signal.Signals(signum).name

    def on_hup(signum: int, frame: object) -> None:
        nonlocal reload_requested
        reload_requested = True

    def on_usr1(signum: int, frame: object) -> None:
        for pid in children:  # each worker holds its own access log file open
            _kill(pid, signal.SIGUSR1)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGUSR1, on_usr1)

    def spawn() -> None:
        # NOTE: under the plane's lock, so a worker never starts between a deployment's prepare and its commit:
        # it starts with what every other worker serves, from the supervisor's memory (no file is read).
        with plane.lock:
            mine, theirs = socket.socketpair()
            serving = plane.loaded
            # PERF: what the supervisor holds (the modules, the deployment every worker starts with) is frozen out
            # of the cyclic GC before the fork: a worker's collections would otherwise write into every object's GC
            # header and so copy every page the two processes share (bench/memory.py: a worker's own memory, USS,
            # 13.5 -> 7.4 MiB). Garbage is collected first: what is frozen is never looked at again, so cycles
            # left by the reloads since the last fork would stay for good, here and in the worker.
            gc.collect()
            gc.freeze()
            pid = os.fork()
            if pid == 0:  # the worker
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                    signal.signal(sig, signal.SIG_DFL)
                for holder in holders:
                    holder.close()
                mine.close()
                for other in workers_.channels.values():
                    other.close()
                metrics_dir = workers_.metrics_dir
                if control is not None:
                    control.forget()
                code = 0
                try:
                    run_worker(
                        serving, host, port, tls_port=tls_port, reuse_port=True, announce=False,
                        metrics_dir=metrics_dir, watch="code" if watch else "", channel_sock=theirs,
                    )  # fmt: skip
                except BaseException:
                    log.exception("worker %d failed", os.getpid())
                    code = 1
                finally:
                    logging.shutdown()
                    os._exit(code)
            theirs.close()
            children[pid] = time.monotonic()
            workers_.channels[pid] = mine
            workers_.served[pid] = plane.id

    def reload(cause: str) -> None:
        try:
            plane.reload_file(cause)
        except Refused as exc:
            log.debug("%s: refused, every worker keeps deployment %s: %s", cause, plane.id, exc.message)
        except Exception:  # noqa: BLE001 - a reload that breaks must not take the supervisor down
            log.exception("reload failed")

    for _ in range(workers):
        spawn()
    plane.watch()  # a fleet's store: what other gateways deploy is handed to every worker here too
    restart_at: list[float] = []
    watcher = Watcher(loaded.source, loaded_from=loaded.stamp) if watch and not loaded.source.startswith("<") else None
    workers_.watcher = watcher
    next_poll = time.monotonic() + WATCH_INTERVAL
    reloading: threading.Thread | None = None
    pending: str | None = None
    while not stopping:
        # A reload already asked for (SIGHUP) goes first: the poll after it sees that file state applied.
        if watcher is not None and time.monotonic() >= next_poll and not reload_requested and pending is None:
            next_poll = time.monotonic() + WATCH_INTERVAL
            changes = watcher.poll()
            if watcher.wants_reload(changes):
                log.info("watch: %s changed; reloading it", loaded.source)
                pending = "watch"
        if reload_requested:
            reload_requested = False
            pending = "SIGHUP"
        if (
            pending is not None
            and (reloading is None or not reloading.is_alive())
            and not loaded.source.startswith("<")
        ):
            # In a thread: the supervisor goes on reaping and restarting workers while the file is checked.
            reloading = threading.Thread(target=reload, args=(pending,), name="fastgw-reload", daemon=True)
            reloading.start()
            pending = None
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
        if pid and pid in children:
            started = children.pop(pid)
            workers_.gone(pid)
            log.error("worker %d exited (%s); starting a new one", pid, _wait_status(status))
            # Back off when workers die right after start, so a broken environment does not spin the CPU.
            delay = 1.0 if time.monotonic() - started < 1.0 else 0.0
            restart_at.append(time.monotonic() + delay)
        now = time.monotonic()
        for due in [t for t in restart_at if t <= now]:
            restart_at.remove(due)
            spawn()
        time.sleep(0.05)

    # Each worker says how many connections it drains (its own "shutting down" line); this says the whole.
    log.info("shutting down (signal %s), %d workers draining their connections", stop_signal, len(children))
    for pid in children:
        _kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + loaded.config.server.shutdown_timeout + 5
    while children and time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid:
            children.pop(pid, None)
        else:
            time.sleep(0.05)
    for pid in children:
        _kill(pid, signal.SIGKILL)
    for holder in holders:
        holder.close()
    if control is not None:
        control.stop()
    plane.close()
    workers_.close()
    log.info("stopped")
    return 0


class SupervisorWorkers:
    """The supervisor's workers as the control plane sees them (fastgw.control.plane.Workers): each one is sent
    the deployment over its channel, loads it in a thread beside its serving loop and says when it is ready; then
    all swap it in. One that cannot (or does not answer in time) fails the deployment everywhere."""

    PREPARE_TIMEOUT = 120.0  # seconds for every worker to load a deployment (10,000 routes: ~1-2 s)
    COMMIT_TIMEOUT = 30.0

    def __init__(self, children: dict[int, float]) -> None:
        import tempfile

        self.children = children
        self.channels: dict[int, socket.socket] = {}
        self.served: dict[int, str] = {}  # pid -> the deployment it serves
        self.watcher: Watcher | None = None
        self._tmp = tempfile.mkdtemp(prefix="fastgw-metrics-")
        self.metrics_dir = Path(self._tmp)  # where the workers write their counters

    def gone(self, pid: int) -> None:
        sock = self.channels.pop(pid, None)
        if sock is not None:
            sock.close()
        self.served.pop(pid, None)

    def _ask(
        self,
        header: dict[str, Any],
        payload: bytes,
        answer: str,
        timeout: float,
        answers: dict[int, dict[str, Any]] | None = None,
    ) -> dict[int, str]:
        """Send to every worker; wait for each one's answer (kept in `answers`); the workers that failed, with
        why."""
        failed: dict[int, str] = {}
        asked = []
        for pid, sock in list(self.channels.items()):
            try:
                channel.send(sock, header, payload)
                asked.append(pid)
            except OSError as exc:
                failed[pid] = f"cannot reach it: {exc.strerror or exc}"
        deadline = time.monotonic() + timeout
        for pid in asked:
            sock = self.channels[pid]
            while True:
                try:
                    got, _ = channel.recv(sock, deadline)
                except TimeoutError:
                    failed[pid] = f"no answer in {timeout:.0f}s"
                    break
                except (EOFError, OSError):
                    failed[pid] = "it exited"
                    break
                if got.get("op") == answer and got.get("id") == header["id"]:  # older answers are skipped
                    if got.get("error"):
                        failed[pid] = str(got["error"])
                    elif answers is not None:
                        answers[pid] = got
                    break
        return failed

    @staticmethod
    def _names(failed: dict[int, str]) -> dict[str, str]:
        return {f"pid {pid}": why for pid, why in failed.items()}

    def prepare(self, d: Deployment, payload: bytes, loaded: LoadedConfig) -> dict[str, str]:
        header = {"op": "prepare", "id": d.id, "time": d.time, "source": d.source, "author": d.author,
                  "description": d.description}  # fmt: skip
        admin = loaded.config.admin
        timeout = admin.deploy_timeout if admin is not None else self.PREPARE_TIMEOUT
        return self._names(self._ask(header, payload, "prepared", timeout))

    def commit(self, d: Deployment, loaded: LoadedConfig, changed: list[str]) -> dict[str, str]:
        failed = self._ask({"op": "commit", "id": d.id, "changed": changed}, b"", "committed", self.COMMIT_TIMEOUT)
        for pid in self.channels:
            if pid not in failed:
                self.served[pid] = d.id
        return self._names(failed)

    PURGE_TIMEOUT = 10.0

    def purge(self, prefix: str) -> list[dict[str, Any]]:
        """Every worker purges its memory caches (the caller holds the plane's lock, so no deployment's messages
        interleave); each one's count, or why it did not answer."""
        import uuid

        answers: dict[int, dict[str, Any]] = {}
        header = {"op": "purge", "id": uuid.uuid4().hex, "prefix": prefix}
        failed = self._ask(header, b"", "purged", self.PURGE_TIMEOUT, answers)
        out: list[dict[str, Any]] = []
        for pid in sorted(set(answers) | set(failed)):
            row: dict[str, Any] = {"worker": f"pid {pid}", "pid": pid}
            row.update({"error": failed[pid]} if pid in failed else {"purged": int(answers[pid].get("purged", 0))})
            out.append(row)
        return out

    def abort(self, deployment_id: str) -> None:
        for sock in self.channels.values():
            with contextlib.suppress(OSError):
                channel.send(sock, {"op": "abort", "id": deployment_id})

    def serving(self) -> list[dict[str, Any]]:
        return [
            {"worker": f"pid {pid}", "pid": pid, "deployment": self.served.get(pid)} for pid in sorted(self.children)
        ]

    def file_applied(self, stamp: Any) -> None:
        if self.watcher is not None:
            self.watcher.applied(stamp)

    def close(self) -> None:
        import shutil

        for sock in self.channels.values():
            sock.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


class SupervisorControl:
    """The admin API of a gateway with `--workers N`: it runs in a thread of the supervisor, with its own event
    loop, and sums the counters the workers write to `metrics_dir` (fastgw.observability.metrics says why files).
    Its writes and reloads go through the supervisor's control plane."""

    def __init__(self, plane: ControlPlane, workers: int, children: dict[int, float]) -> None:
        self.plane: ControlPlane | None = plane
        self.workers = workers
        self.children = children
        self.started = time.time()
        assert isinstance(plane.workers, SupervisorWorkers)
        self.metrics_dir = plane.workers.metrics_dir
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: AdminListener | None = None
        self._thread: threading.Thread | None = None
        self._fds: list[int] = []

    @property
    def loaded(self) -> LoadedConfig:
        assert self.plane is not None
        return self.plane.loaded

    def metrics(self) -> dict[str, Any] | None:
        admin = self.loaded.config.admin
        if admin is None or not admin.metrics:
            return None
        return merge(read_snapshots(self.metrics_dir, set(self.children)))

    async def invoke(self, method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        from fastgw.server.invoke import invoke

        return (await invoke(self.loaded, method, path, headers, body)).to_json()

    async def purge_cache(self, prefix: str) -> list[dict[str, Any]]:
        plane = self.plane
        assert plane is not None and isinstance(plane.workers, SupervisorWorkers)
        workers = plane.workers

        def run() -> list[dict[str, Any]]:
            with plane.lock:  # the workers' channels carry one conversation at a time
                return workers.purge(prefix)

        return await asyncio.get_running_loop().run_in_executor(None, run)

    def start(self) -> None:
        conf = self.loaded.config.admin
        assert conf is not None
        from fastgw.admin.api import AdminAPI, AdminListener  # only a gateway with an admin listener keeps them

        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                self._listener = AdminListener(AdminAPI(self, conf))
                loop.run_until_complete(self._listener.start())
                self._fds = self._listener.fds()
            except BaseException as exc:
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._listener.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="fastgw-admin", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]

    def forget(self) -> None:
        """In a new worker: close the inherited admin socket, so only the supervisor holds it."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def _hold(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"
