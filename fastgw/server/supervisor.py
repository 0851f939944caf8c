"""The supervisor of `fastgw serve --workers N`: it forks the workers, restarts any that dies, passes signals on,
follows the config file under `--watch`, and runs the admin API of the whole gateway (`SupervisorControl`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from fastgw.admin.api import AdminAPI, AdminListener
from fastgw.admin.deployments import record, store_for
from fastgw.admin.deployments import rollback as rollback_to
from fastgw.config.load import ConfigError, LoadedConfig, reload_config
from fastgw.observability.metrics import merge, read_snapshots
from fastgw.server.server import describe_core, run_worker
from fastgw.server.tls import listener_urls
from fastgw.server.watch import INTERVAL as WATCH_INTERVAL
from fastgw.server.watch import Watcher

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
    control = SupervisorControl(loaded, workers, children) if loaded.config.admin is not None else None
    if control is not None:
        control.start()

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

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
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_DFL)
            for holder in holders:
                holder.close()
            metrics_dir = None
            if control is not None:
                control.forget()
                metrics_dir = control.metrics_dir
            code = 0
            try:
                run_worker(
                    loaded, host, port, tls_port=tls_port, reuse_port=True, announce=False, metrics_dir=metrics_dir,
                    watch="code" if watch else "",
                )  # fmt: skip
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = time.monotonic()

    for _ in range(workers):
        spawn()
    restart_at: list[float] = []
    watcher = Watcher(loaded.source, loaded_from=loaded.stamp) if watch and not loaded.source.startswith("<") else None
    next_poll = time.monotonic() + WATCH_INTERVAL
    cause = "SIGHUP"
    while not stopping:
        from_admin = control is not None and control.reload_requested
        if from_admin:
            control.reload_requested = False  # type: ignore[union-attr]
            reload_requested = True
        # A reload already asked for (SIGHUP, POST /reload) goes first: the poll after it sees that file state applied.
        if watcher is not None and time.monotonic() >= next_poll and not reload_requested:
            next_poll = time.monotonic() + WATCH_INTERVAL
            if watcher.poll().config:
                log.info("watch: %s changed; reloading it", loaded.source)
                reload_requested, cause = True, "watch"
        if reload_requested:
            reload_requested = False
            for pid in children:
                os.kill(pid, signal.SIGHUP)
            # The supervisor loads it too, so a worker started later (after one died) serves what the others do.
            if not loaded.source.startswith("<"):
                try:
                    loaded, _ = reload_config(loaded)
                    if watcher is not None:
                        watcher.applied(loaded.stamp)  # a SIGHUP or POST /reload: the watch does not repeat it
                    if control is not None:
                        control.current = loaded
                        if not from_admin:  # the admin API kept it when it checked it
                            record(control.deployments, loaded, cause)
                except ConfigError as exc:
                    log.error(
                        "supervisor: reload refused, workers started from now on keep the previous config: %s", exc
                    )
            cause = "SIGHUP"
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
        if pid and pid in children:
            started = children.pop(pid)
            log.error("worker %d exited (%s); starting a new one", pid, _wait_status(status))
            # Back off when workers die right after start, so a broken environment does not spin the CPU.
            delay = 1.0 if time.monotonic() - started < 1.0 else 0.0
            restart_at.append(time.monotonic() + delay)
        now = time.monotonic()
        for due in [t for t in restart_at if t <= now]:
            restart_at.remove(due)
            spawn()
        time.sleep(0.05)

    log.info("supervisor: stopping %d workers", len(children))
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
    return 0


class SupervisorControl:
    """The admin API of a gateway with `--workers N`: it runs in a thread of the supervisor, with its own event
    loop, and sums the counters the workers write to `metrics_dir` (fastgw.observability.metrics says why files).
    A reload it is asked for is checked here first, so the caller hears why a broken config is refused; the
    supervisor's loop then sends SIGHUP to every worker, as for a SIGHUP of its own."""

    def __init__(self, loaded: LoadedConfig, workers: int, children: dict[int, float]) -> None:
        import tempfile

        self.current = loaded
        self.workers = workers
        self.children = children
        self.started = time.time()
        self.reload_requested = False
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="fastgw-metrics-"))
        self.deployments = store_for(loaded)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: AdminListener | None = None
        self._thread: threading.Thread | None = None
        self._fds: list[int] = []

    @property
    def loaded(self) -> LoadedConfig:
        return self.current

    def metrics(self) -> dict[str, Any] | None:
        admin = self.current.config.admin
        if admin is None or not admin.metrics:
            return None
        return merge(read_snapshots(self.metrics_dir, set(self.children)))

    def admin_reload(self, description: str = "") -> str | None:
        if self.current.source.startswith("<"):
            return "the config did not come from a file: nothing to reload"
        try:
            fresh, _ = reload_config(self.current)
        except ConfigError as exc:
            log.error("reload refused, still serving the previous config: %s", exc)
            return str(exc)
        self.reload_requested = True
        record(self.deployments, fresh, description or "POST /reload")
        return None

    def rollback(self, deployment: str) -> str | None:
        return rollback_to(self, deployment)

    async def invoke(self, method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        from fastgw.server.invoke import invoke

        return (await invoke(self.current, method, path, headers, body)).to_json()

    def start(self) -> None:
        conf = self.current.config.admin
        assert conf is not None
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

        record(self.deployments, self.current, "start")

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
        import shutil

        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


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
