"""Binding, the worker's event loop, signals, graceful shutdown, reload, and the multi-worker supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fastgw.admin.api import AdminAPI, AdminListener
from fastgw.admin.deployments import DeploymentStore, default_dir, restore
from fastgw.config.load import ConfigError, LoadedConfig, load_config, reload_config
from fastgw.gateway import Gateway
from fastgw.observability.accesslog import AccessLog
from fastgw.observability.metrics import Counters, merge, observer, read_snapshots
from fastgw.observability.otel import span_export
from fastgw.pipeline.exchange import Worker
from fastgw.pipeline.head import DATE
from fastgw.server.protocol import ClientProtocol

log = logging.getLogger("fastgw.server")

TICK = 0.25  # seconds between deadline checks: every timeout fires within two ticks of its deadline
SNAPSHOT_TICKS = 4  # a worker under a supervisor writes its counters every 4 ticks (once a second)


class Server:
    """One worker: a listening socket, its connections, and the tick that enforces deadlines."""

    def __init__(
        self,
        loaded: LoadedConfig,
        host: str | None = None,
        port: int | None = None,
        *,
        reuse_port: bool = False,
        access_log: AccessLog | None = None,
        admin: bool = True,
        metrics_dir: Path | None = None,
    ) -> None:
        cfg = loaded.config
        self.host = host if host is not None else cfg.server.host
        self.port = port if port is not None else cfg.server.port
        self.reuse_port = reuse_port
        self.config_path = loaded.source
        self.shutdown_timeout = cfg.server.shutdown_timeout
        lc = cfg.logging
        self._access_log = (
            access_log
            if access_log is not None
            else (AccessLog(format=lc.access_log_format, path=lc.access_log_path) if lc.access_log else None)
        )
        self._loaded = loaded
        self.state: Worker | None = None
        self.gateway: Gateway | None = None  # what `state.gateway` serves, with the handles only the server uses
        self._server: asyncio.AbstractServer | None = None
        self._tick: asyncio.TimerHandle | None = None
        self._last_tick = 0.0
        self._stopped: asyncio.Event | None = None
        # Metrics: counters kept when the admin API serves /metrics (here, or the supervisor's from `metrics_dir`).
        self.metrics_dir = metrics_dir
        keep = cfg.admin is not None and cfg.admin.metrics
        self.counters = Counters() if keep else None
        self.spans = span_export(cfg.tracing)  # OpenTelemetry export, when configured
        self._admin_conf = cfg.admin if admin else None
        self.admin: AdminListener | None = None
        self.workers = 1
        self.started = time.time()
        self.last_error = ""
        self._ticks = 0
        self.deployments = _store(loaded) if self._admin_conf is not None else None
        self._description = "SIGHUP"

    @property
    def loaded(self) -> LoadedConfig:
        return self._loaded

    def metrics(self) -> dict[str, Any] | None:
        return merge([self.counters.snapshot()]) if self.counters is not None else None

    async def invoke(self, method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        from fastgw.server.invoke import invoke

        return (await invoke(self._loaded, method, path, headers, body)).to_json()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        gateway = self.gateway = Gateway(self._loaded)
        state = self.state = Worker(loop, gateway, observer(self._access_log, self.counters, self.spans))
        if self.counters is not None:
            self.counters.worker = state
        gateway.start()
        if self._admin_conf is not None:
            self.admin = AdminListener(AdminAPI(self, self._admin_conf))
            await self.admin.start()
            _record(self.deployments, self._loaded, "start")
        self._server = await loop.create_server(
            lambda: ClientProtocol(state),
            self.host,
            self.port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
            backlog=self._loaded.config.server.backlog,
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        self._stopped = asyncio.Event()
        self._last_tick = loop.time()
        self._tick = loop.call_later(TICK, self._on_tick)

    def _on_tick(self) -> None:
        state = self.state
        assert state is not None
        DATE.refresh()
        now = state.loop.time()
        checked_at, self._last_tick = self._last_tick, now
        # NOTE: the event loop runs due timers before it polls for I/O, so after a stall of the whole process (a
        # paused VM, a long GC) bytes that arrived in time are still unread when this tick runs. A deadline is
        # therefore enforced only if it had already passed at the previous tick: the loop has polled I/O since
        # then, and anything that arrived would have moved the deadline. Timeouts fire up to two ticks late.
        for conn in list(state.connections):
            conn.check_deadline(checked_at)  # and, through its exchange, the integration's deadlines
        assert self.gateway is not None
        for upstream in self.gateway.upstreams.values():
            upstream.expire(now)
        if self._access_log is not None:
            self._access_log.flush()
        self._ticks += 1
        if self.metrics_dir is not None and self.counters is not None and self._ticks % SNAPSHOT_TICKS == 0:
            self.counters.write_snapshot(self.metrics_dir)
        self._tick = state.loop.call_later(TICK, self._on_tick)

    def reopen_logs(self) -> None:
        """SIGUSR1 (logrotate): the access log file is opened again."""
        if self._access_log is not None:
            self._access_log.reopen()

    def admin_reload(self, description: str = "") -> str | None:
        """The admin API's reload: None when the new config serves, else why it was refused."""
        self._description = description or "POST /reload"
        try:
            return None if self.reload() else self.last_error
        finally:
            self._description = "SIGHUP"

    def rollback(self, deployment: str) -> str | None:
        return _rollback(self, deployment)

    def reload(self, path: str | None = None) -> bool:
        """Load the config again and swap it in; on any error the running config stays. Settings that only a
        restart can change (the address, workers, backlog, access log on/off) keep their running values, and the
        log says which ones the file changed."""
        state = self.state
        assert state is not None
        try:
            if path is None or path == self._loaded.source:
                loaded, needs_restart = reload_config(self._loaded)
            else:
                loaded, needs_restart = load_config(path), []
            gateway = Gateway(loaded, previous=self.gateway)
        except ConfigError as exc:
            log.error("reload refused, still serving the previous config: %s", exc)
            self.last_error = str(exc)
            return False
        old, self.gateway = self.gateway, gateway
        state.gateway = gateway  # new requests start on it; exchanges in flight keep the old one
        if loaded.config.logging.level != self._loaded.config.logging.level:
            logging.getLogger().setLevel(loaded.config.logging.level.upper())
        self._loaded = loaded
        self.shutdown_timeout = loaded.config.server.shutdown_timeout
        gateway.start()
        if old is not None:
            old.close()  # its upstream pools, and the function pools the new config did not keep
        log.info("reloaded %s: %d routes", loaded.source, len(loaded.entries))
        _record(self.deployments, loaded, self._description)
        if needs_restart:
            log.warning(
                "reload: %s changed in %s and needs a restart to apply (still listening on %s:%d); the rest of the "
                "new config is serving",
                "; ".join(needs_restart),
                loaded.source,
                self.host,
                self.port,
            )
        return True

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, let requests in flight finish for up to `timeout` seconds, then close the rest."""
        state = self.state
        if state is None or state.closing:
            return
        state.closing = True
        timeout = self.shutdown_timeout if timeout is None else timeout
        if self._server is not None:
            self._server.close()
        if self.admin is not None:
            await self.admin.close()
        for conn in list(state.connections):
            conn.shutdown()
        deadline = time.monotonic() + timeout
        while state.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(state.connections):
            log.warning("shutdown: closing a connection with a request still in flight after %.1fs", timeout)
            conn.transport.abort()
            conn.close()
        if self._tick is not None:
            self._tick.cancel()
        if self.gateway is not None:
            await self.gateway.aclose()
        if self._access_log is not None:
            self._access_log.close()
        if self.spans is not None:
            await self.spans.aclose(timeout)
        if self.metrics_dir is not None and self.counters is not None:
            self.counters.write_snapshot(self.metrics_dir)
        if self._stopped is not None:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        assert self._stopped is not None
        await self._stopped.wait()


def _describe_core() -> str:
    from fastgw import core

    return "compiled" if core.COMPILED else f"PURE PYTHON ({core.FALLBACK_REASON})"


def run_worker(
    loaded: LoadedConfig,
    host: str,
    port: int,
    *,
    reuse_port: bool = False,
    announce: bool = True,
    metrics_dir: Path | None = None,
) -> None:
    """Serve in this process until SIGTERM/SIGINT; SIGHUP reloads the config file. A worker under a supervisor
    (`metrics_dir` given) runs no admin listener: the supervisor's reads the counters it writes there."""
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(loaded, host, port, reuse_port=reuse_port, admin=metrics_dir is None, metrics_dir=metrics_dir)

    async def main() -> None:
        await server.start()
        stop = lambda: loop.create_task(server.shutdown())  # noqa: E731
        loop.add_signal_handler(signal.SIGTERM, stop)
        loop.add_signal_handler(signal.SIGINT, stop)
        if not loaded.source.startswith("<"):
            loop.add_signal_handler(signal.SIGHUP, server.reload)
        loop.add_signal_handler(signal.SIGUSR1, server.reopen_logs)
        if announce:
            log.info(
                "fastgw listening on http://%s:%d (pid %d, %d routes, core %s)",
                _url_host(server.host),
                server.port,
                os.getpid(),
                len(loaded.entries),
                _describe_core(),
            )
        else:
            log.info("worker pid %d ready on port %d", os.getpid(), server.port)
        await server.wait_stopped()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def supervise(loaded: LoadedConfig, host: str, port: int, workers: int) -> int:
    """Fork `workers` processes that each bind the port with SO_REUSEPORT; restart any that dies.

    The parent binds the port too (without listening) to learn a port chosen by the kernel and to hold it while
    workers come and go; only listening sockets get connections, so it never takes a share of the traffic.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    port = holder.getsockname()[1]
    log.info(
        "fastgw supervisor pid %d: %d workers on http://%s:%d (core %s)",
        os.getpid(),
        workers,
        _url_host(host),
        port,
        _describe_core(),
    )

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
            holder.close()
            metrics_dir = None
            if control is not None:
                control.forget()
                metrics_dir = control.metrics_dir
            code = 0
            try:
                run_worker(loaded, host, port, reuse_port=True, announce=False, metrics_dir=metrics_dir)
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
    while not stopping:
        from_admin = control is not None and control.reload_requested
        if from_admin:
            control.reload_requested = False  # type: ignore[union-attr]
            reload_requested = True
        if reload_requested:
            reload_requested = False
            for pid in children:
                os.kill(pid, signal.SIGHUP)
            # The supervisor loads it too, so a worker started later (after one died) serves what the others do.
            if not loaded.source.startswith("<"):
                try:
                    loaded, _ = reload_config(loaded)
                    if control is not None:
                        control.current = loaded
                        if not from_admin:  # the admin API kept it when it checked it
                            _record(control.deployments, loaded, "SIGHUP")
                except ConfigError as exc:
                    log.error(
                        "supervisor: reload refused, workers started from now on keep the previous config: %s", exc
                    )
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
        self.deployments = _store(loaded)
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
        _record(self.deployments, fresh, description or "POST /reload")
        return None

    def rollback(self, deployment: str) -> str | None:
        return _rollback(self, deployment)

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

        _record(self.deployments, self.current, "start")

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


def _store(loaded: LoadedConfig) -> DeploymentStore | None:
    admin = loaded.config.admin
    if admin is None or loaded.source.startswith("<"):
        return None
    return DeploymentStore(Path(admin.deployments_dir) if admin.deployments_dir else default_dir(loaded.source))


def _record(store: DeploymentStore | None, loaded: LoadedConfig, description: str) -> None:
    if store is None:
        return
    try:
        did = store.record(Path(loaded.source).read_bytes(), loaded.source, description)
    except OSError as exc:
        log.error("could not keep the deployment in %s: %s", store.dir, exc)
        return
    log.info("deployment %s live (%s)", did, description)


def _rollback(control: Any, deployment: str) -> str | None:
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


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


def setup_logging(level: str) -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )


class JsonFormatter(logging.Formatter):
    """`logging.format: json`: one object a line, for a log shipper to read without a pattern."""

    def format(self, record: logging.LogRecord) -> str:
        import orjson

        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


def use_log_format(fmt: str) -> None:
    """Switch the root logger's handlers to `fmt` ("text" or "json")."""
    if fmt != "json":
        return
    formatter = JsonFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
