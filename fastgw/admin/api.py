"""The admin API: JSON in and out on its own listener, 127.0.0.1:9901 by default (Envoy's admin, Kong's Admin
API). One request per connection (`Connection: close`): an operator's curl and a scraper are its only clients, so
keep-alive would buy nothing and cost code.

What it reports and does goes through a `Control` (the single-worker `Server`, or the supervisor with
`--workers N`), so this module never imports the server."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import orjson

from fastgw.config.checks import is_loopback

if TYPE_CHECKING:
    from fastgw.admin.deployments import DeploymentStore
    from fastgw.config.load import LoadedConfig
    from fastgw.config.schema import AdminConfig

log = logging.getLogger("fastgw.admin")

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
READ_TIMEOUT = 10.0
MASK = "********"
# Keys whose string values are secrets wherever they stand in a config (credentials, the admin token...).
_ROLLBACK = re.compile(r"^/deployments/([0-9a-f]{1,64})/rollback$")
_SECRET_KEY = re.compile(r"(secret|password|token|key|credentials?)$", re.I)


class Control(Protocol):
    """What the admin API reads and drives: one worker's server or the supervisor."""

    workers: int
    started: float
    deployments: DeploymentStore | None  # None: the config is not a file, nothing is kept

    @property
    def loaded(self) -> LoadedConfig: ...

    def metrics(self) -> dict[str, Any] | None: ...  # summed counters (fastgw.observability.metrics.merge)
    # The two answer None when the new config serves, else why it was refused.
    def admin_reload(self, description: str = "") -> str | None: ...
    def rollback(self, deployment: str) -> str | None: ...  # the deployment's config back in the file, reloaded
    def invoke(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Awaitable[dict[str, Any]]: ...


class AdminError(Exception):
    pass


def check_bind(conf: AdminConfig) -> None:
    """The rule the config loader also checks, enforced again where the socket is bound."""
    if not conf.token and not is_loopback(conf.host):
        raise AdminError(f"refusing to listen on {conf.host} (not a loopback address) without admin.token")


def mask(value: Any, key: str = "") -> Any:
    """The config as JSON, every secret replaced by a mask."""
    if isinstance(value, dict):
        return {k: mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        if key.lower() in ("credentials", "credential"):
            return [mask_all(v) for v in value]
        return [mask(v, key) for v in value]
    if isinstance(value, str) and key and _SECRET_KEY.search(key):
        return MASK
    return value


def mask_all(value: Any) -> Any:
    """A credential: every string in it is a secret or names one."""
    if isinstance(value, dict):
        return {k: mask_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_all(v) for v in value]
    return MASK if isinstance(value, str) else value


class AdminAPI:
    """The handlers. `handle` takes a parsed request and returns (status, content type, body)."""

    def __init__(self, control: Control, conf: AdminConfig) -> None:
        self.control = control
        self.conf = conf
        self._token = conf.token.encode() if conf.token else None
        self._get: dict[str, Callable[[], Any]] = {
            "/status": self.status,
            "/config": self.config,
            "/routes": self.routes,
            "/upstreams": self.upstreams,
            "/plugins": self.plugins,
        }

    def authorized(self, headers: dict[str, str]) -> bool:
        if self._token is None:
            return True
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        # NOTE: compared in constant time, so the answer's timing says nothing of how much of a guess was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._token)

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        if not self.authorized(headers):
            return _json(401, {"message": "Unauthorized"})
        path = path.split("?", 1)[0]
        if path == "/metrics" and method == "GET":
            return self.metrics()
        get = self._get.get(path)
        if get is not None:
            return _json(200, get()) if method == "GET" else _json(405, {"message": "Method Not Allowed"})
        if path == "/reload":
            if method != "POST":
                return _json(405, {"message": "Method Not Allowed"})
            try:
                description = str((orjson.loads(body) if body else {}).get("description") or "")
            except (orjson.JSONDecodeError, AttributeError):
                return _json(400, {"message": 'the body is not {"description": "..."}'})
            error = self.control.admin_reload(description or "POST /reload")
            return self._reloaded(error)
        if path == "/deployments":
            if method != "GET":
                return _json(405, {"message": "Method Not Allowed"})
            store = self.control.deployments
            return _json(200, {"deployments": store.history() if store is not None else []})
        m = _ROLLBACK.match(path)
        if m is not None:
            if method != "POST":
                return _json(405, {"message": "Method Not Allowed"})
            if self.control.deployments is None or self.control.deployments.config(m.group(1)) is None:
                return _json(404, {"message": f"no deployment {m.group(1)}"})
            return self._reloaded(self.control.rollback(m.group(1)))
        if path == "/invoke":
            if method != "POST":
                return _json(405, {"message": "Method Not Allowed"})
            return await self.invoke(body)
        return _json(404, {"message": "Not Found"})

    def _reloaded(self, error: str | None) -> tuple[int, str, bytes]:
        if error is not None:
            return _json(400, {"reloaded": False, "message": error})
        store = self.control.deployments
        history = store.history() if store is not None else []
        return _json(
            200,
            {"reloaded": True, "routes": len(self.control.loaded.entries),
             "deployment": history[0]["id"] if history else None},
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        from fastgw import core

        loaded = self.control.loaded
        return {
            "status": "serving",
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.control.started, 3),
            "workers": self.control.workers,
            "config": loaded.source,
            "routes": len(loaded.entries),
            "core": "compiled" if core.COMPILED else "pure",
        }

    def config(self) -> Any:
        return mask(msgspec.to_builtins(self.control.loaded.config))

    def routes(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.control.loaded.entries:
            out.append(
                {
                    "name": entry.label,
                    "methods": list(entry.route.methods),
                    "path": entry.path,
                    "host": entry.route.host,
                    "headers": msgspec.to_builtins(entry.route.headers),
                    "integration": msgspec.to_builtins(entry.integration),
                    "api": entry.api,
                    "stage": entry.stage,
                    "plugins": sorted(k for k, v in entry.route.plugins.items() if v is not False),
                }
            )
        return out

    def upstreams(self) -> dict[str, Any]:
        """Each upstream's targets as this process sees them now: `health` is `healthy` while the target is in
        rotation (active checks passing, not ejected, breaker not open) and `unhealthy` otherwise, with the details
        (`proxy.pool.Target.status`). NOTE: under `--workers N` each worker keeps its own view of its targets and
        the supervisor answering here serves none: targets are listed as configured, with `health: "per worker"`
        (the workers' verdicts are summed in /metrics)."""
        gateway = getattr(self.control, "gateway", None)
        live = gateway.upstream_status() if gateway is not None else {}
        out: dict[str, Any] = {}
        for name, up in self.control.loaded.config.upstreams.items():
            status = live.get(name)
            if status is not None:
                targets = [{**t, "health": "healthy" if t["in_rotation"] else "unhealthy"} for t in status["targets"]]
            else:
                urls = [t if isinstance(t, str) else t.url for t in up.targets]
                targets = [{"url": url, "health": "per worker"} for url in urls]
            out[name] = {
                "balancer": up.balancer,
                "targets": targets,
                "retries": status["retries"] if status is not None else None,
                "connect_timeout": up.connect_timeout,
                "read_timeout": up.read_timeout,
                "send_timeout": up.send_timeout,
            }
        return out

    def plugins(self) -> dict[str, Any]:
        from fastgw.plugins.chain import PluginError, Registry, phases_of

        cfg = self.control.loaded.config
        try:
            reg = Registry.load(list(cfg.plugin_modules))
        except PluginError as exc:
            return {"available": [], "error": str(exc)}
        used: dict[str, int] = {}
        for entry in self.control.loaded.entries:
            for name in _plugins_of(cfg, entry):
                used[name] = used.get(name, 0) + 1
        available = [
            {"name": name, "priority": cls.priority, "phases": list(phases_of(cls)), "from": reg.origins[name],
             "routes": used.get(name, 0)}
            for name, cls in sorted(reg.classes.items(), key=lambda kv: (-kv[1].priority, kv[0]))
        ]  # fmt: skip
        return {"global": sorted(cfg.plugins), "available": available}

    def metrics(self) -> tuple[int, str, bytes]:
        if self.control.metrics() is None:
            return _json(404, {"message": "metrics are off (admin.metrics: false)"})
        try:
            from fastgw.observability.metrics import exposition
        except ImportError:  # pragma: no cover - the extra is in the test deps
            return _json(501, {"message": "metrics need prometheus-client: pip install 'fastgw[metrics]'"})
        try:
            body, ctype = exposition(lambda: self.control.metrics() or {})
        except ImportError:
            return _json(501, {"message": "metrics need prometheus-client: pip install 'fastgw[metrics]'"})
        return 200, ctype, body

    async def invoke(self, body: bytes) -> tuple[int, str, bytes]:
        try:
            req = orjson.loads(body or b"{}")
        except orjson.JSONDecodeError as exc:
            return _json(400, {"message": f"the body is not JSON: {exc}"})
        if not isinstance(req, dict) or not isinstance(req.get("path"), str) or not req["path"].startswith("/"):
            return _json(400, {"message": 'expected {"method": "GET", "path": "/...", "headers": {}, "body": ""}'})
        headers = req.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            return _json(400, {"message": "headers: a mapping of strings"})
        payload = req.get("body") or ""
        data = payload.encode() if isinstance(payload, str) else orjson.dumps(payload)
        method = str(req.get("method") or "GET").upper()
        return _json(200, await self.control.invoke(method, req["path"], headers, data))


def _plugins_of(cfg: Any, entry: Any) -> set[str]:
    names = {k for k, v in cfg.plugins.items() if v is not False}
    if entry.api is not None:
        for k, v in cfg.apis[entry.api].plugins.items():
            (names.add if v is not False else names.discard)(k)
    for k, v in entry.route.plugins.items():
        (names.add if v is not False else names.discard)(k)
    return names


def _json(status: int, obj: Any) -> tuple[int, str, bytes]:
    return status, "application/json", orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 501: "Not Implemented", 500: "Internal Server Error"}  # fmt: skip


class AdminListener:
    """The admin API's listening socket, on the loop it is started on."""

    def __init__(self, api: AdminAPI) -> None:
        self.api = api
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        conf = self.api.conf
        check_bind(conf)
        self._server = await asyncio.start_server(self._serve, conf.host, conf.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("admin API listening on http://%s:%d", conf.host, self.port)

    def fds(self) -> list[int]:
        return [sock.fileno() for sock in self._server.sockets] if self._server is not None else []

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body = await asyncio.wait_for(self._read_and_handle(reader), READ_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()
            return
        except Exception:
            log.exception("admin API request failed")
            status, ctype, body = _json(500, {"message": "Internal server error"})
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\ncontent-type: {ctype}\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _read_and_handle(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        raw = await reader.readuntil(b"\r\n\r\n")
        if len(raw) > MAX_HEAD:
            return _json(400, {"message": "request head too large"})
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return _json(400, {"message": "malformed request line"})
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return _json(400, {"message": "bad content-length"})
        if length < 0 or length > MAX_BODY:
            return _json(413, {"message": "request body too large"})
        body = await reader.readexactly(length) if length else b""
        return await self.api.handle(method, target, headers, body)
