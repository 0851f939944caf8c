"""Binding, the worker's event loop, signals, graceful shutdown and reload (the supervisor of `--workers N` is
fastgw.server.supervisor)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fastgw.config.load import ConfigError, LoadedConfig, load_config, reconfigure
from fastgw.control.deployment import deployment_id
from fastgw.control.plane import ControlPlane, Refused, quiet_gc
from fastgw.control.store import Deployment
from fastgw.gateway import Gateway
from fastgw.observability.accesslog import AccessLog
from fastgw.observability.metrics import Counters, merge, observer
from fastgw.observability.otel import span_export
from fastgw.pipeline.exchange import Worker
from fastgw.pipeline.head import DATE
from fastgw.server.protocol import ClientProtocol
from fastgw.server.tls import Certificates, TLSListener, listener_urls
from fastgw.server.watch import Watcher, follow

if TYPE_CHECKING:
    from fastgw.admin.api import AdminListener

log = logging.getLogger("fastgw.server")

TICK = 0.25  # seconds between housekeeping rounds: the Date line, upstream expiry, log flush, counters
SNAPSHOT_TICKS = 4  # a worker under a supervisor writes its counters every 4 ticks (once a second)


class Server:
    """One worker: a listening socket, its connections, and the tick that keeps house."""

    def __init__(
        self,
        loaded: LoadedConfig,
        host: str | None = None,
        port: int | None = None,
        *,
        tls_port: int | None = None,
        reuse_port: bool = False,
        access_log: AccessLog | None = None,
        admin: bool = True,
        metrics_dir: Path | None = None,
        watch: str = "",
    ) -> None:
        cfg = loaded.config
        self.host = host if host is not None else cfg.server.host
        self.port = port if port is not None else cfg.server.port
        # TLS: on its own port beside plain HTTP on `port` (`server.tls.port`), or on `port` alone. Both are fixed
        # for the life of the worker (a reload changes certificates, not listeners).
        tls = cfg.server.tls
        self.plain = tls is None or tls.port is not None
        self.tls_port = None if tls is None else (tls_port if tls_port is not None else tls.port)
        self.tls: TLSListener | None = None
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
        self._servers: list[asyncio.AbstractServer] = []
        self._tick: asyncio.TimerHandle | None = None
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
        # The control plane: here for a gateway of one process; under a supervisor (`metrics_dir` given) the
        # supervisor's, which hands this worker checked deployments over `channel` (fastgw.control.channel).
        self.plane: ControlPlane | None = None
        self.deployment = ""  # the id of the deployment this worker serves
        self._prepared: dict[str, tuple[LoadedConfig, list[str], Certificates | None]] = {}
        self._following: asyncio.Task[None] | None = None
        self._retired: list[Any] = []  # what a swap replaced, for `dismantle` to free off the loop
        self._gc_paused = False  # a worker under a supervisor: the GC waits from `prepare` to `commit`/abort
        # `serve --watch`: "all" follows the config file and the functions' code, "code" only the code (a worker
        # under a supervisor, which follows the config file itself and passes SIGHUP on).
        self.watch = watch
        self.watcher: Watcher | None = None
        self._watching: asyncio.Task[None] | None = None

    @property
    def loaded(self) -> LoadedConfig:
        return self._loaded

    def metrics(self) -> dict[str, Any] | None:
        return merge([self.counters.snapshot()]) if self.counters is not None else None

    async def purge_cache(self, prefix: str) -> list[dict[str, Any]]:
        """The admin API's cache purge in a gateway of one process: this process's memory caches."""
        from fastgw.plugins.proxy_cache import purge_memory

        return [
            {"worker": f"pid {os.getpid()}", "pid": os.getpid(), "purged": purge_memory(self._loaded.plugins, prefix)}
        ]

    async def invoke(self, method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        from fastgw.server.invoke import invoke

        return (await invoke(self._loaded, method, path, headers, body)).to_json()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        if self.metrics_dir is None:
            self.plane = ControlPlane(self._loaded, LocalWorkers(self))
            self._loaded = self.plane.start()  # the file, or the store's newest deployment made over it
            self.deployment = self.plane.id
        else:
            self.deployment = deployment_id(self._loaded.data or {})
        gateway = self.gateway = Gateway(self._loaded)
        state = self.state = Worker(loop, gateway, observer(self._access_log, self.counters, self.spans))
        if self.counters is not None:
            self.counters.worker = state
        gateway.start()
        gc.collect()
        gc.freeze()  # the config served is never scanned by the cyclic GC (control.plane.quiet_gc says why)
        if self._admin_conf is not None:
            # NOTE: imported here, not at the top: a gateway without an admin listener (its workers under a
            # supervisor never have one) does not keep the admin API, the console and their imports in memory.
            from fastgw.admin.api import AdminAPI, AdminListener

            self.admin = AdminListener(AdminAPI(self, self._admin_conf))
            await self.admin.start()
        tls = self._loaded.config.server.tls
        if tls is not None:
            self.tls = TLSListener(tls, self._loaded.source, self._loaded.base_dir)
        if self.plain:
            self.port = await self._listen(state, self.port, None)
        if self.tls is not None:
            port = await self._listen(state, self.port if self.tls_port is None else self.tls_port, self.tls.context)
            self.tls_port = port
            if not self.plain:
                self.port = port
        self._stopped = asyncio.Event()
        self._tick = loop.call_later(TICK, self._on_tick)
        if self.plane is not None:
            self.plane.watch()  # a fleet's store: what other gateways deploy serves here too
        if self.watch:
            config = self._loaded.source if self.watch == "all" and not self._loaded.source.startswith("<") else None
            pools = lambda: self.gateway.functions if self.gateway is not None else {}  # noqa: E731
            self.watcher = Watcher(config, loaded_from=self._loaded.stamp)
            self._watching = loop.create_task(follow(self.watcher, self._watch_reload, pools))

    def _watch_reload(self) -> None:
        self.reload_soon("watch")

    def reload_soon(self, description: str = "SIGHUP") -> None:
        """SIGHUP, `--watch`: the file is read and checked in a thread, off the serving loop; the swap, when the
        deployment is ready, takes one step on it."""

        def run() -> None:
            try:
                self.plane.reload_file(description)  # type: ignore[union-attr]
            except Refused as exc:
                self.last_error = exc.message
            except Exception:  # noqa: BLE001 - a reload that breaks must not take the gateway down
                log.exception("reload failed")

        if self.plane is not None:
            self._loop.run_in_executor(None, run)

    async def _listen(self, state: Worker, port: int, tls: ssl.SSLContext | None) -> int:
        server = await state.loop.create_server(
            lambda: ClientProtocol(state),
            self.host,
            port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
            backlog=self._loaded.config.server.backlog,
            ssl=tls,
            # A client gets header_timeout for its handshake (then as long again for its request head): one that
            # connects and says nothing holds no more than a plain connection would.
            ssl_handshake_timeout=self._loaded.config.limits.header_timeout if tls is not None else None,
        )
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    def urls(self) -> str:
        return listener_urls(self.host, self.port if self.plain else None, self.tls_port)

    def _on_tick(self) -> None:
        state = self.state
        assert state is not None
        DATE.refresh()
        now = state.loop.time()
        # NOTE: connections' and exchanges' deadlines have timers of their own (fastgw.pipeline.deadline): they
        # fire on time, not on this tick.
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

    def reload(self, path: str | None = None) -> bool:
        """Load the config file again and swap it in, here and now (on the loop: for tests and the like; SIGHUP
        and the admin API take `reload_soon`'s way). On any error the running config stays."""
        assert self.plane is not None
        if path is not None and path != self._loaded.source:
            try:
                fresh = load_config(path)
            except ConfigError as exc:
                self.last_error = str(exc)
                return False
            try:
                self.plane.apply(fresh.data or {}, source=path, description="reload")
            except Refused as exc:
                self.last_error = exc.message
                return False
            return True
        try:
            self.plane.reload_file("reload")
        except Refused as exc:
            self.last_error = exc.message
            return False
        return True

    def _resume_gc(self) -> None:
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def dismantle(self) -> None:
        """Off the loop, after a swap: free the config and gateway it replaced a few hundred routes at a time.
        Freed at once (its last reference dropped), a 10,000-route config is one deallocation of ~250,000 objects
        that holds the GIL for 50-250 ms, a stall of the serving loop; in pieces, the loop gets the GIL between
        them. Nothing here is mutated: the pieces are lists of this method's own."""
        retired, self._retired = self._retired, []
        pieces: list[list[Any]] = []
        for obj in retired:
            if isinstance(obj, LoadedConfig):
                pieces += [list(obj.entries), list(obj.config.routes), list((obj.data or {}).get("routes") or [])]
                if obj.plugins is not None:
                    pieces.append(list(obj.plugins.chains))
            elif isinstance(obj, Gateway):
                pieces.append(list(obj.routes))
        del retired, obj
        for piece in pieces:
            while piece:
                del piece[-200:]
                time.sleep(0)  # the GIL goes to the loop if it waits for it

    async def follow(self, sock: socket.socket) -> None:
        """A worker under a supervisor: take deployments from it, prepare each in a thread (the loop goes on
        serving), swap it in when told to."""
        from fastgw.control import channel

        reader, writer = await asyncio.open_unix_connection(sock=sock)
        loop = asyncio.get_running_loop()
        while True:
            try:
                header, payload = await channel.read(reader)
            except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                return  # the supervisor is gone: it stops this worker too
            op, did = header.get("op"), str(header.get("id", ""))
            if op == "prepare":
                d = Deployment(did, {}, header.get("time", ""), header.get("source", ""), header.get("author", ""),
                               header.get("description", ""))  # fmt: skip
                error = await loop.run_in_executor(None, self.prepare, d, payload)
                await channel.write(writer, {"op": "prepared", "id": did, "error": error})
            elif op == "commit":
                try:
                    error = self.commit(did, header.get("changed") or [])
                except Exception as exc:  # noqa: BLE001 - said to the supervisor
                    log.exception("deployment %s: swap failed", did)
                    error = f"{type(exc).__name__}: {exc}"
                await channel.write(writer, {"op": "committed", "id": did, "error": error})
                await loop.run_in_executor(None, self.dismantle)
            elif op == "abort":
                self._prepared.pop(did, None)
                self._resume_gc()
            elif op == "purge":  # the admin API's POST /cache/purge: this worker's memory caches
                from fastgw.plugins.proxy_cache import purge_memory

                n = purge_memory(self._loaded.plugins, str(header.get("prefix") or ""))
                await channel.write(writer, {"op": "purged", "id": did, "purged": n, "error": None})

    def prepare(self, d: Deployment, payload: bytes) -> str | None:
        """A worker under a supervisor, in a thread beside its loop: load and check the deployment's config and
        keep it ready (None), or say why it cannot serve it."""
        # NOTE: the GC waits until the swap (`commit`, which freezes what then serves) or `abort`: re-enabled at
        # the end of the build, it would at once collect over the whole new config, stalling the loop.
        if gc.isenabled():
            gc.disable()
            self._gc_paused = True
        try:
            with quiet_gc():
                loaded, changed = reconfigure(self._loaded, orjson.loads(payload))
            tls = loaded.config.server.tls
            certificates = Certificates(tls, loaded.source, loaded.base_dir) if tls and self.tls else None
        except ConfigError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - said to the supervisor, which keeps the previous deployment
            log.exception("preparing deployment %s failed", d.id)
            return f"{type(exc).__name__}: {exc}"
        self._prepared = {d.id: (loaded, changed, certificates)}
        return None

    def commit(self, deployment: str, changed: list[str]) -> str | None:
        """On the loop: swap the prepared deployment in."""
        prepared = self._prepared.pop(deployment, None)
        if prepared is None:
            self._resume_gc()
            return f"deployment {deployment} was not prepared"
        loaded, _, certificates = prepared
        try:
            self.swap(loaded, changed, deployment, certificates)
        finally:
            self._resume_gc()
        return None

    def swap(
        self, loaded: LoadedConfig, needs_restart: list[str], deployment: str, certificates: Certificates | None = None
    ) -> None:
        """On the loop, one step: a checked config becomes what new requests are served with. Settings that only
        a restart can change (the address, workers, backlog, access log on/off) keep their running values.
        NOTE: building the Gateway is the only work done here (10,000 routes: ~25 ms); the parse and the checks,
        which take the time, were done off the loop. The cyclic GC waits meanwhile: the deployment's new objects
        would set off a full collection here, on the loop (~0.7 s for 10,000 routes); what serves is then frozen
        (`gc.freeze`), so no later collection scans it either."""
        with quiet_gc():
            self._swap(loaded, needs_restart, deployment, certificates)
            gc.freeze()

    def _swap(
        self, loaded: LoadedConfig, needs_restart: list[str], deployment: str, certificates: Certificates | None
    ) -> None:
        state = self.state
        assert state is not None
        tls = loaded.config.server.tls
        if certificates is None and tls and self.tls:
            certificates = Certificates(tls, loaded.source, loaded.base_dir)
        # Taken before the gateway is made: making it moves the pools it keeps out of the running gateway.
        running = {id(pool) for pool in self.gateway.functions.values()} if self.gateway is not None else set()
        gateway = Gateway(loaded, previous=self.gateway)
        old, self.gateway = self.gateway, gateway
        self._retired += [self._loaded, old]
        for pool in gateway.functions.values():
            if id(pool) not in running:
                # A pool this reload made (a function new or changed) must not load bytecode that the previous
                # pool's workers compiled from code edited since: like a recycled pool, it compiles afresh.
                pool.fresh_bytecode()
        if certificates is not None and tls is not None and self.tls is not None:
            self.tls.update(tls, certificates)  # the next handshakes get the new certificates
        state.gateway = gateway  # new requests start on it; exchanges in flight keep the old one
        if loaded.config.logging.level != self._loaded.config.logging.level:
            logging.getLogger().setLevel(loaded.config.logging.level.upper())
        self._loaded = loaded
        self.deployment = deployment
        self.shutdown_timeout = loaded.config.server.shutdown_timeout
        gateway.start()
        if old is not None:
            old.close()  # its upstream pools, and the function pools the new config did not keep
        log.info("reloaded %s: deployment %s, %d routes", loaded.source, deployment, len(loaded.entries))
        if needs_restart:
            log.warning(
                "reload: %s changed in %s and needs a restart to apply (still listening on %s:%d%s); the rest of "
                "the new config is serving",
                "; ".join(needs_restart),
                loaded.source,
                self.host,
                self.port,
                f", TLS on {self.tls_port}" if self.plain and self.tls_port is not None else "",
            )

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, let requests in flight finish for up to `timeout` seconds, then close the rest."""
        state = self.state
        if state is None or state.closing:
            return
        state.closing = True
        timeout = self.shutdown_timeout if timeout is None else timeout
        for listener in self._servers:
            listener.close()
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
        if self._watching is not None:
            self._watching.cancel()
        if self._following is not None:
            self._following.cancel()
        if self.plane is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.plane.close)
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


class LocalWorkers:
    """The workers of a gateway of one process (fastgw.control.plane.Workers): the server itself. The plane
    calls these from a thread; the swap runs on the server's loop, and the call returns once it has."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def _name(self) -> str:
        return f"pid {os.getpid()}"

    def prepare(self, d: Deployment, payload: bytes, loaded: LoadedConfig) -> dict[str, str]:
        tls = loaded.config.server.tls
        try:
            certificates = Certificates(tls, loaded.source, loaded.base_dir) if tls and self.server.tls else None
        except ConfigError as exc:
            return {self._name(): str(exc)}
        self.server._prepared = {d.id: (loaded, [], certificates)}
        return {}

    def commit(self, d: Deployment, loaded: LoadedConfig, changed: list[str]) -> dict[str, str]:
        server = self.server
        certificates = server._prepared.pop(d.id, (loaded, [], None))[2]
        if threading.get_ident() == server._loop_thread:
            server.swap(loaded, changed, d.id, certificates)
            return {}
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def swap() -> None:
            try:
                server.swap(loaded, changed, d.id, certificates)
                done.set_result(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                done.set_exception(exc)

        server._loop.call_soon_threadsafe(swap)
        try:
            done.result(60)
        except Exception as exc:  # noqa: BLE001 - said to the caller
            return {self._name(): f"{type(exc).__name__}: {exc}"}
        return {}

    def abort(self, deployment_id: str) -> None:
        self.server._prepared.pop(deployment_id, None)

    def settle(self) -> None:
        """The plane no longer holds the previous deployment either: free it, in this thread."""
        self.server.dismantle()

    def serving(self) -> list[dict[str, Any]]:
        return [{"worker": self._name(), "pid": os.getpid(), "deployment": self.server.deployment}]

    def file_applied(self, stamp: Any) -> None:
        if self.server.watcher is not None:
            self.server.watcher.applied(stamp)


def describe_core() -> str:
    from fastgw import core

    # Short: on the pure core, `fastgw serve` has said why once already (core.fallback_notice).
    return "compiled" if core.COMPILED else "pure-Python"


def run_worker(
    loaded: LoadedConfig,
    host: str,
    port: int,
    *,
    tls_port: int | None = None,
    reuse_port: bool = False,
    announce: bool = True,
    metrics_dir: Path | None = None,
    watch: str = "",
    channel_sock: socket.socket | None = None,
) -> None:
    """Serve in this process until SIGTERM/SIGINT; SIGHUP reloads the config file. A worker under a supervisor
    (`metrics_dir` given) runs no admin listener: the supervisor's reads the counters it writes there, and hands
    it deployments over `channel_sock`."""
    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = Server(
        loaded,
        host,
        port,
        tls_port=tls_port,
        reuse_port=reuse_port,
        admin=metrics_dir is None,
        metrics_dir=metrics_dir,
        watch=watch,
    )

    async def main() -> None:
        await server.start()
        if channel_sock is not None:
            server._following = loop.create_task(server.follow(channel_sock))

        def stop(sig: signal.Signals) -> None:
            state = server.state
            if state is not None and not state.closing:
                # An operator stopping the gateway should see it start, and how much it waits for.
                log.info("shutting down (signal %s), %d connections draining", sig.name, len(state.connections))
            loop.create_task(server.shutdown())

        loop.add_signal_handler(signal.SIGTERM, stop, signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, stop, signal.SIGINT)
        if metrics_dir is not None:  # under a supervisor: deployments come from it, over the channel
            loop.add_signal_handler(signal.SIGHUP, lambda: log.info("SIGHUP ignored: send it to the supervisor"))
        elif not loaded.source.startswith("<"):
            loop.add_signal_handler(signal.SIGHUP, server.reload_soon)
        loop.add_signal_handler(signal.SIGUSR1, server.reopen_logs)
        if announce:
            log.info(
                "fastgw listening on %s (pid %d, %d routes, core %s)",
                server.urls(),
                os.getpid(),
                len(loaded.entries),
                describe_core(),
            )
        else:
            log.info("worker pid %d ready on port %d", os.getpid(), server.port)
        await server.wait_stopped()
        if metrics_dir is None:
            log.info("stopped")
        else:  # a worker: the supervisor says "stopped" for the gateway once all are
            log.info("worker pid %d stopped", os.getpid())

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


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
