"""The admin API: JSON in and out on its own listener, 127.0.0.1:9901 by default (Envoy's admin, Kong's Admin
API). One request per connection (`Connection: close`): an operator's curl and a scraper are its only clients, so
keep-alive would buy nothing and cost code.

What it reports and does goes through a `Control` (the single-worker `Server`, or the supervisor with
`--workers N`), so this module never imports the server."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
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


def host_allowed(host: str, conf: AdminConfig) -> bool:
    """Whether a request's `Host` names this listener: its own address (any loopback name when it listens on a
    loopback address, any IP address when it listens on all of them), or a name in `admin.hosts`. The port is
    not compared: a port forwarded elsewhere (a container's) is still this listener."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")
    if name in (h.lower().rstrip(".") for h in conf.hosts) or name == conf.host.lower():
        return True
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        addr = None
    if is_loopback(conf.host):
        return name == "localhost" or (addr is not None and addr.is_loopback)
    if conf.host in ("0.0.0.0", "::", ""):
        return addr is not None  # every address of the machine is the listener's; a name needs admin.hosts
    return False


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

    def refuse_browser(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes] | None:
        """What keeps a web page from driving the API (issue 19, item 4): a page on another site can make a
        browser send requests to 127.0.0.1:9901 (CSRF), and a host name it controls can be re-pointed at
        127.0.0.1 (DNS rebinding) so that the page reads the answers too. Refused with 403: a `Host` that is not
        the listener's own address (or `admin.hosts`), an `Origin` not in `admin.allow_origins`; a call that
        changes state with a body that is not `application/json` is refused with 415 (a form or a `text/plain`
        fetch is what a page can send without asking first). A call with no body and no content type passes, so
        `curl -X POST http://127.0.0.1:9901/reload` works: a browser sends `Origin` on every cross-site POST,
        PUT and DELETE, and the Host check covers a rebound name."""
        host = headers.get("host")
        if host is not None and not host_allowed(host, self.conf):
            return _json(403, {"message": f"Host {host!r} is not this admin API's address (admin.hosts)"})
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.conf.allow_origins:
            return _json(403, {"message": f"Origin {origin!r} is not allowed (admin.allow_origins)"})
        if method in ("POST", "PUT", "PATCH", "DELETE"):
            ctype = headers.get("content-type")
            if ctype is None:
                if body:
                    return _json(415, {"message": "a request body needs content-type: application/json"})
            elif ctype.split(";", 1)[0].strip().lower() != "application/json":
                return _json(415, {"message": f"expected content-type: application/json, got {ctype!r}"})
        return None

    def authorized(self, headers: dict[str, str]) -> bool:
        if self._token is None:
            return True
        given = headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        # NOTE: compared in constant time, so the answer's timing says nothing of how much of a guess was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._token)

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        refused = self.refuse_browser(method, headers, body)
        if refused is not None:
            return refused
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


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 412: "Precondition Failed",
            413: "Payload Too Large", 415: "Unsupported Media Type", 428: "Precondition Required",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}  # fmt: skip


class AdminListener:
    """The admin API's listening socket, on the loop it is started on."""

    def __init__(self, api: AdminAPI) -> None:
        self.api = api
        self.port = 0
        self._server: asyncio.Server | None = None
        self._extra: dict[int, dict[str, str]] = {}  # response headers of the request read from a reader

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
            self._extra.pop(id(reader), None)
            writer.close()
            return
        except Exception:
            log.exception("admin API request failed")
            status, ctype, body = _json(500, {"message": "Internal server error"})
        extra = "".join(f"{k}: {v}\r\n" for k, v in self._extra.pop(id(reader), {}).items())
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\ncontent-type: {ctype}\r\n"
            f"content-length: {len(body)}\r\n{extra}connection: close\r\n\r\n"
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
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") in self.api.conf.allow_origins:
            # A console served from an allowed origin reads the answers (CORS); any other origin was refused.
            self._extra[id(reader)] = {
                "access-control-allow-origin": origin.rstrip("/"),
                "access-control-allow-methods": "GET, POST, PUT, DELETE",
                "access-control-allow-headers": "authorization, content-type, if-match",
                "access-control-expose-headers": "etag",
                "vary": "origin",
            }
            if method == "OPTIONS" and self.api.refuse_browser("GET", headers, b"") is None:
                return 204, "application/json", b""
        answer = await self.api.handle(method, target, headers, body)
        if len(answer) > 3:  # an answer with headers of its own (ETag, Location)
            self._extra.setdefault(id(reader), {}).update(answer[3])
        return answer[0], answer[1], answer[2]
