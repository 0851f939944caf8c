"""The admin API: JSON in and out on its own listener, 127.0.0.1:9901 by default (Envoy's admin, Kong's Admin
API). One request per connection (`Connection: close`): an operator's curl and a scraper are its only clients, so
keep-alive would buy nothing and cost code.

It reads what serves and writes new deployments (docs/admin-api.md): every write goes through the control plane
(fastgw.control.plane), in a thread, so the serving loop never parses nor checks a config. What it reports and
does goes through a `Control` (the single-worker `Server`, or the supervisor with `--workers N`), so this module
never imports the server."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import orjson

from fastgw.admin import console, writes
from fastgw.config.checks import is_loopback
from fastgw.control import deployment as dep
from fastgw.control.plane import Refused

if TYPE_CHECKING:
    from fastgw.config.load import LoadedConfig
    from fastgw.config.schema import AdminConfig
    from fastgw.control.plane import ControlPlane

log = logging.getLogger("fastgw.admin")
audit = logging.getLogger("fastgw.audit")

MAX_HEAD = 16 * 1024
MAX_BODY = 32 * 1024 * 1024  # a whole config (PUT /config): 10,000 routes are ~2 MiB of JSON
READ_TIMEOUT = 60.0  # a deployment of a large config, on every worker, is answered within this
MASK = writes.MASK
# Keys whose string values are secrets wherever they stand in a config (credentials, the admin token...).
_SECRET_KEY = re.compile(r"(secret|password|token|key|credentials?)$", re.I)
_ID = r"([0-9a-f]{1,64})"
_NAME = r"([A-Za-z0-9_.~-]{1,128})"


class Control(Protocol):
    """What the admin API reads and drives: one worker's server or the supervisor."""

    workers: int
    started: float
    plane: ControlPlane | None

    @property
    def loaded(self) -> LoadedConfig: ...

    def metrics(self) -> dict[str, Any] | None: ...  # summed counters (fastgw.observability.metrics.merge)
    def invoke(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Awaitable[dict[str, Any]]: ...
    # Every worker's memory caches: [{"worker", "pid", "purged": N} or {"worker", "pid", "error": why}].
    def purge_cache(self, prefix: str) -> Awaitable[list[dict[str, Any]]]: ...


Answer = tuple[int, str, bytes, dict[str, str]]  # status, content type, body, headers of its own


class AdminError(Exception):
    pass


def check_bind(conf: AdminConfig) -> None:
    """The rule the config loader also checks, enforced again where the socket is bound."""
    if not conf.token and not conf.tokens and not is_loopback(conf.host):
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
    """The handlers. `handle` takes a parsed request and returns (status, content type, body[, headers])."""

    def __init__(self, control: Control, conf: AdminConfig) -> None:
        self.control = control
        self.conf = conf
        # Token -> (its name for the audit log, may it write). `admin.token` is a write token named "admin".
        self._tokens: list[tuple[bytes, str, bool]] = [
            (t.token.encode(), t.name, t.role == "write") for t in conf.tokens
        ]
        if conf.token:
            self._tokens.append((conf.token.encode(), "admin", True))
        # (method, path pattern, handler, path template of the OpenAPI file, writes?)
        self.table: list[tuple[str, re.Pattern[str], Callable[..., Awaitable[Answer]], str, bool]] = []
        routes: list[tuple[str, str, Any, bool]] = [
            ("/status", "GET", self.status, False),
            ("/config", "GET", self.get_config, False),
            ("/config", "PUT", self.put_config, True),
            ("/routes", "GET", self.routes, False),
            ("/upstreams", "GET", self.upstreams, False),
            ("/plugins", "GET", self.plugins, False),
            ("/metrics", "GET", self.metrics, False),
            ("/reload", "POST", self.reload, True),
            ("/invoke", "POST", self.invoke, True),
            ("/cache/purge", "POST", self.purge_cache, True),
            ("/deployments", "GET", self.deployments, False),
            ("/deployments/{id}", "GET", self.deployment, False),
            ("/deployments/{id}/diff/{other}", "GET", self.diff, False),
            ("/deployments/{id}/rollback", "POST", self.rollback, True),
            *[(f"/{s}/{{name}}", m, partial(h, section=s), w) for s in writes.SECTIONS
              for m, h, w in (("GET", self.get_item, False), ("PUT", self.put_item, True),
                              ("DELETE", self.delete_item, True))],
        ]  # fmt: skip
        for template, method, handler, writing in routes:
            pattern = "^" + template.replace("{id}", _ID).replace("{other}", _ID).replace("{name}", _NAME) + "$"
            self.table.append((method, re.compile(pattern), handler, template, writing))

    def who(self, headers: dict[str, str]) -> tuple[str, bool] | None:
        """The caller's token's name and whether it may write; None when refused (401). With no token configured
        (a loopback listener) everyone may do everything, as "-"."""
        if not self._tokens:
            return "-", True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        given = token.strip().encode()
        found = None
        for secret, name, write in self._tokens:
            # NOTE: compared in constant time, and against every token whatever matched: the answer's timing says
            # nothing of how much of a guess was right, nor of which token it was close to.
            if hmac.compare_digest(given, secret) and found is None:
                found = (name, write)
        return found

    def refuse_browser(self, method: str, headers: dict[str, str], body: bytes) -> Answer | None:
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

    async def handle(self, method: str, path: str, headers: dict[str, str], body: bytes, peer: str = "") -> Answer:
        refused = self.refuse_browser(method, headers, body)
        if refused is not None:
            return refused
        who = self.who(headers)
        if who is None:
            return _json(401, {"message": "Unauthorized"})
        path = path.split("?", 1)[0]
        allowed = []
        for m, pattern, handler, _template, writing in self.table:
            match = pattern.match(path)
            if match is None:
                continue
            if m != method:
                allowed.append(m)
                continue
            if writing and not who[1]:
                self._audit(who[0], peer, method, path, 403, "")
                return _json(403, {"message": "this token may only read (role: read)"})
            answer = await handler(*match.groups(), headers=headers, body=body, author=who[0])
            if writing:
                did = orjson.loads(answer[2]).get("deployment", "") if answer[1] == "application/json" else ""
                self._audit(who[0], peer, method, path, answer[0], did if isinstance(did, str) else "")
            return answer
        if allowed:
            return _json(405, {"message": "Method Not Allowed"}, {"allow": ", ".join(allowed)})
        return _json(404, {"message": "Not Found"})

    def _audit(self, who: str, peer: str, method: str, path: str, status: int, deployment: str) -> None:
        """One line per write, whatever its outcome: who (the token's name), from where, what, and the deployment
        it made."""
        audit.info("admin %s %s by %s from %s: %d%s", method, path, who, peer or "-", status,
                   f" deployment {deployment}" if deployment else "")  # fmt: skip

    # -- running the control plane off the loop -------------------------------------------------------------------

    async def _plane(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Answer:
        """Call the control plane in a thread (it parses, checks and waits for every worker); its answer, or its
        refusal, as JSON with the deployment as ETag."""
        plane = self.control.plane
        if plane is None:
            return _json(404, {"message": "this gateway keeps no deployments"})
        try:
            out = await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args, **kw))
        except Refused as exc:
            return _json(exc.status, {"message": exc.message, **exc.extra})
        status = 200
        if isinstance(out, tuple):  # an edit: (created?, answer)
            created, out = out
            status = 201 if created else 200
        return _json(status, out, {"etag": f'"{out["deployment"]}"'})

    def _etag(self) -> dict[str, str]:
        plane = self.control.plane
        return {"etag": f'"{plane.id}"'} if plane is not None and plane.id else {}

    # -- reads --------------------------------------------------------------------------------------------------

    async def status(self, **_: Any) -> Answer:
        from fastgw import core

        loaded = self.control.loaded
        plane = self.control.plane
        return _json(200, {
            "status": "serving",
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.control.started, 3),
            "workers": self.control.workers,
            "config": loaded.source,
            "routes": len(loaded.entries),
            "core": "compiled" if core.COMPILED else "pure",
            "deployment": plane.id if plane is not None else None,
            "serving": plane.workers.serving() if plane is not None else [],
        }, self._etag())  # fmt: skip

    async def _serving(self) -> dict[str, Any]:
        """The serving config as data (a copy), made in a thread: for a large config it takes tens of ms."""
        plane = self.control.plane
        if plane is None:
            return msgspec.to_builtins(self.control.loaded.config)
        return await asyncio.get_running_loop().run_in_executor(None, plane.config)

    async def get_config(self, **_: Any) -> Answer:
        data = await self._serving()
        return _json(200, mask(data), self._etag())

    async def get_item(self, name: str, *, section: str, **_: Any) -> Answer:
        data = await self._serving()
        try:
            item = writes.get_item(data, section, name)
        except Refused as exc:
            return _json(exc.status, {"message": exc.message})
        return _json(200, mask(item), self._etag())

    async def deployments(self, **_: Any) -> Answer:
        plane = self.control.plane
        if plane is None:
            return _json(200, {"deployments": []})
        try:
            history = await asyncio.get_running_loop().run_in_executor(None, plane.history, 100)
        except Refused as exc:  # the store away: 503
            return _json(exc.status, {"message": exc.message})
        listed = [{**dep.summary(s.deployment, s.revision), "active": s.deployment.id == plane.id and i == 0}
                  for i, s in enumerate(history)]  # fmt: skip
        return _json(200, {"deployments": listed, "active": plane.id}, self._etag())

    async def deployment(self, did: str, **_: Any) -> Answer:
        plane = self.control.plane
        try:
            found = await asyncio.get_running_loop().run_in_executor(None, plane.get, did) if plane else None
        except Refused as exc:
            return _json(exc.status, {"message": exc.message})
        if found is None:
            return _json(404, {"message": f"no deployment {did}"})
        return _json(200, {**dep.summary(found.deployment, found.revision), "config": mask(found.deployment.config)})

    async def diff(self, a: str, b: str, **_: Any) -> Answer:
        plane = self.control.plane
        if plane is None:
            return _json(404, {"message": "this gateway keeps no deployments"})
        loop = asyncio.get_running_loop()
        try:
            found = [await loop.run_in_executor(None, plane.get, d) for d in (a, b)]
        except Refused as exc:
            return _json(exc.status, {"message": exc.message})
        for did, f in zip((a, b), found, strict=True):
            if f is None or not f.deployment.config:
                return _json(404, {"message": f"no deployment {did}"})
        before, after = (mask(f.deployment.config) for f in found)  # type: ignore[union-attr]
        return _json(200, {"from": a, "to": b, "changes": dep.diff(before, after)})

    # -- writes -------------------------------------------------------------------------------------------------

    async def reload(self, *, body: bytes, author: str, **_: Any) -> Answer:
        try:
            description = str((orjson.loads(body) if body else {}).get("description") or "")
        except (orjson.JSONDecodeError, AttributeError):
            return _json(400, {"message": 'the body is not {"description": "..."}'})
        plane = self.control.plane
        if plane is None:
            return _json(400, {"reloaded": False, "message": "this gateway keeps no deployments"})
        status, _ctype, out, _headers = await self._plane(plane.reload_file, description or "POST /reload", author)
        result = orjson.loads(out)
        result["reloaded"] = status == 200
        return _json(status, result, self._etag())

    async def rollback(self, did: str, *, headers: dict[str, str], author: str, **_: Any) -> Answer:
        plane = self.control.plane
        if plane is None:
            return _json(404, {"message": f"no deployment {did}"})
        answer = await self._plane(plane.rollback, did, author, headers.get("if-match"))
        if answer[0] == 200:
            out = orjson.loads(answer[2])
            out["reloaded"] = True
            return _json(200, out, answer[3])
        return answer

    async def put_config(self, *, headers: dict[str, str], body: bytes, author: str, **_: Any) -> Answer:
        data = _body(body)
        if not isinstance(data, dict):
            return _json(400, {"message": "$: the body is not a JSON object (a whole config)", "path": "$"})
        plane = self.control.plane
        if plane is None:
            return _json(404, {"message": "this gateway keeps no deployments"})
        data = writes.unmask(data, await self._serving())
        source = headers.get("x-fastgw-source") or "admin API"  # `fastgw deploy` says it is itself
        return await self._plane(plane.apply, data, source=source[:200], description=_description(headers),
                                 author=author, if_match=headers.get("if-match"))  # fmt: skip

    async def put_item(
        self, name: str, *, section: str, headers: dict[str, str], body: bytes, author: str, **_: Any
    ) -> Answer:
        value = _body(body)
        if value is _BAD:
            return _json(400, {"message": "$: the body is not JSON", "path": "$"})
        plane = self.control.plane
        if plane is None:
            return _json(404, {"message": "this gateway keeps no deployments"})
        return await self._plane(
            plane.edit, lambda cfg: writes.put_item(cfg, section, name, value), source=f"PUT /{section}/{name}",
            description=_description(headers), author=author, if_match=headers.get("if-match"),
        )  # fmt: skip

    async def delete_item(self, name: str, *, section: str, headers: dict[str, str], author: str, **_: Any) -> Answer:
        plane = self.control.plane
        if plane is None:
            return _json(404, {"message": "this gateway keeps no deployments"})
        return await self._plane(
            plane.edit, lambda cfg: writes.delete_item(cfg, section, name), source=f"DELETE /{section}/{name}",
            description=_description(headers), author=author, if_match=headers.get("if-match"),
        )  # fmt: skip

    async def routes(self, **_: Any) -> Answer:
        return _json(200, self.route_table())

    def route_table(self) -> list[dict[str, Any]]:
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

    async def upstreams(self, **_: Any) -> Answer:
        return _json(200, self.upstream_table())

    def upstream_table(self) -> dict[str, Any]:
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

    async def plugins(self, **_: Any) -> Answer:
        return _json(200, self.plugin_table())

    def plugin_table(self) -> dict[str, Any]:
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

    async def metrics(self, **_: Any) -> Answer:
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
        return 200, ctype, body, {}

    async def invoke(self, *, body: bytes, **_: Any) -> Answer:
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

    async def purge_cache(self, *, body: bytes, **_: Any) -> Answer:
        """Delete proxy-cache entries (`fastgw cache-purge` calls this): every worker's memory caches, and the Redis
        of the config's `redis:` section. The body selects as the command's flags do: {} (all), {"route": NAME} or
        {"prefix": KEY}."""
        req = _body(body) if body else {}
        bad = _json(400, {"message": 'expected {}, {"route": "NAME"} or {"prefix": "KEY"} (one of them)'})
        if not isinstance(req, dict) or set(req) - {"route", "prefix"} or len(req) > 1:
            return bad
        if not all(isinstance(v, str) and v for v in req.values()):
            return bad
        prefix = f"{req['route']}|" if "route" in req else req.get("prefix", "")
        workers = await self.control.purge_cache(prefix)
        out: dict[str, Any] = {"purged": sum(w.get("purged", 0) for w in workers), "workers": workers, "redis": None}
        conf = self.control.loaded.config.redis
        if conf is not None:
            from fastgw.state.cache import purge_redis
            from fastgw.state.redis import SharedRedis

            shared = SharedRedis(conf)  # (its own client: the serving one belongs to the gateway's loop)
            try:
                out["redis"] = await purge_redis(shared, prefix)
                out["purged"] += out["redis"]
            except Exception as exc:  # noqa: BLE001 - Redis unreachable: said, with what was purged
                out["message"] = f"cannot purge Redis: {type(exc).__name__}: {exc}"
            finally:
                await shared.aclose()
        failed = [w for w in workers if "error" in w]
        if failed:
            out["message"] = "; ".join(
                [f"worker {w['worker']} did not purge: {w['error']}" for w in failed]
                + ([out["message"]] if "message" in out else [])
            )
        return _json(200 if "message" not in out else 503, out)


def _plugins_of(cfg: Any, entry: Any) -> set[str]:
    names = {k for k, v in cfg.plugins.items() if v is not False}
    if entry.api is not None:
        for k, v in cfg.apis[entry.api].plugins.items():
            (names.add if v is not False else names.discard)(k)
    for k, v in entry.route.plugins.items():
        (names.add if v is not False else names.discard)(k)
    return names


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, "application/json", orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), headers or {}


_BAD = object()


def _body(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body else _BAD
    except orjson.JSONDecodeError:
        return _BAD


def _description(headers: dict[str, str]) -> str:
    return headers.get("x-fastgw-description", "")[:500]


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
            412: "Precondition Failed",
            413: "Payload Too Large", 415: "Unsupported Media Type", 428: "Precondition Required",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}  # fmt: skip


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
            status, ctype, body, headers = await asyncio.wait_for(
                self._read_and_handle(reader, _peer(writer)), READ_TIMEOUT
            )
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            writer.close()
            return
        except Exception:
            log.exception("admin API request failed")
            status, ctype, body, headers = _json(500, {"message": "Internal server error"})
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
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

    async def _read_and_handle(self, reader: asyncio.StreamReader, peer: str = "") -> Answer:
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
        headers = console.own_origin(headers)  # the console's own page calls the API (docs/console.md)
        if console.mine(target):
            return await console.handle(self.api, method, target, headers, body, peer)
        cors: dict[str, str] = {}
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") in self.api.conf.allow_origins:
            # A console served from an allowed origin reads the answers (CORS); any other origin was refused.
            cors = {
                "access-control-allow-origin": origin.rstrip("/"),
                "access-control-allow-methods": "GET, POST, PUT, DELETE",
                "access-control-allow-headers": "authorization, content-type, if-match",
                "access-control-expose-headers": "etag",
                "vary": "origin",
            }
            if method == "OPTIONS" and self.api.refuse_browser("GET", headers, b"") is None:
                return 204, "application/json", b"", cors
        status, ctype, out, own = await self.api.handle(method, target, headers, body, peer)
        return status, ctype, out, {**own, **cors}


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""
