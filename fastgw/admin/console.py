"""The console: a web page served by the admin listener (`/console`), a client of the admin API like curl is
(docs/console.md). Its files ship in the wheel (fastgw/admin/console/); nothing is fetched from the internet.

Besides the files it serves the few calls the admin API lacks for a console, under `/console/api/` (behind the
API's own token check, and audited like its writes): a function's code (read, and written to a new folder), a test
invocation of a function with its log lines, what the gateway counts as JSON, and where the traffic port is."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mimetypes
import os
import re
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import orjson

audit = logging.getLogger("fastgw.audit")
Answer = tuple[int, str, bytes, dict[str, str]]  # as fastgw.admin.api's: status, content type, body, headers


class AdminAPI(Protocol):
    """What the console needs of fastgw.admin.api.AdminAPI (which imports this module, hence a protocol)."""

    control: Any

    def refuse_browser(self, method: str, headers: dict[str, str], body: bytes) -> Answer | None: ...
    def who(self, headers: dict[str, str]) -> tuple[str, bool] | None: ...


PREFIX = "/console"
API = "/console/api/"
MAX_CODE = 1024 * 1024  # bytes of code one write may carry (a console edits handlers, not bundles)
# A file the console may write into a function's folder: a plain name, no path, no dotfile.
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.(py|mjs|js|cjs|json|txt)$")
# A name as a path segment of the API: never `.` or `..`, which would lead out of the folders named after it.
_NAME = r"((?!\.\.?(?:/|$))[A-Za-z0-9_.~-]{1,128})"
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
          ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain"}  # fmt: skip


def mine(path: str) -> bool:
    path = path.split("?", 1)[0]
    return path == PREFIX or path.startswith(PREFIX + "/")


def own_origin(headers: dict[str, str]) -> dict[str, str]:
    """The headers without `Origin` when it names the listener itself (the console's own page): a browser sends
    `Origin` on a same-origin PUT too, and the admin API refuses every origin not in `admin.allow_origins`.
    NOTE: safe because `Host` is checked before anything (a rebound name is refused), and nothing but the admin
    API and this console is served on that origin, so a page there is the console."""
    origin, host = headers.get("origin"), headers.get("host")
    if (
        origin is not None
        and host
        and origin.rstrip("/").lower() in (f"http://{host}".lower(), f"https://{host}".lower())
    ):
        return {k: v for k, v in headers.items() if k != "origin"}
    return headers


def _json(status: int, obj: Any) -> Answer:
    return status, "application/json", orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), {}


async def handle(api: AdminAPI, method: str, target: str, headers: dict[str, str], body: bytes, peer: str) -> Answer:
    path = target.split("?", 1)[0]
    refused = api.refuse_browser(method, headers, body)
    if refused is not None:
        return refused
    if not path.startswith(API):
        if method != "GET":
            return _json(405, {"message": "Method Not Allowed"})
        if path == PREFIX:  # the page's relative URLs (js/app.js) resolve under /console/ only
            return 301, "text/plain", b"", {"location": PREFIX + "/"}
        return _asset(path)
    who = api.who(headers)  # the page is not secret; what it reads and does is, exactly as through the API
    if who is None:
        return _json(401, {"message": "Unauthorized"})
    for m, pattern, fn, writing in _CALLS:
        match = pattern.match(path)
        if match is None or m != method:
            continue
        if writing and not who[1]:
            audit.info("admin %s %s by %s from %s: %d", method, path, who[0], peer or "-", 403)
            return _json(403, {"message": "this token may only read (role: read)"})
        answer = await fn(api, *match.groups(), body=body)
        if writing:  # audited as the API's writes are (docs/admin-api.md, Tokens)
            audit.info("admin %s %s by %s from %s: %d", method, path, who[0], peer or "-", answer[0])
        return answer
    return _json(404, {"message": "Not Found"})


# -- the files ------------------------------------------------------------------------------------------------


def _root() -> Path:
    return Path(str(resources.files("fastgw.admin") / "console"))


def _asset(path: str) -> Answer:
    rel = path[len(PREFIX) :].lstrip("/") or "index.html"
    if rel.endswith("/"):
        rel += "index.html"
    root = _root().resolve()
    file = (root / rel).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        return _json(404, {"message": "Not Found"})
    ctype = _TYPES.get(file.suffix) or mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if ctype.startswith("text/"):
        ctype += "; charset=utf-8"
    # NOTE: no caching (an upgraded gateway serves new files under the same names), and the page may load only its
    # own files: no inline script, no other origin (what an injected string could do is little).
    headers = {
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
    }
    return 200, ctype, file.read_bytes(), headers


# -- functions' code --------------------------------------------------------------------------------------------


def handler_file(runtime: str, handler: str, folder: Path) -> str:
    """The file a function's handler names: `index.handler` -> index.mjs (or .js, .cjs); `app.main` -> app.py;
    `app.py:main` -> app.py."""
    if runtime == "nodejs":
        base = handler.rsplit(".", 1)[0]
        for ext in (".mjs", ".js", ".cjs"):
            if (folder / (base + ext)).is_file():
                return base + ext
        return base + ".mjs"
    if ":" in handler:
        return handler.split(":", 1)[0]
    return handler.rsplit(".", 1)[0].replace(".", "/") + ".py"


def code_root(api: AdminAPI) -> Path:
    """Where code written through the console is kept: `code/` in the deployment store's folder (beside the
    deployments that name it), else `.fastgw-code/` beside the config file."""
    plane = api.control.plane
    store_dir = getattr(plane.store, "dir", None) if plane is not None else None
    if isinstance(store_dir, Path):
        return store_dir / "code"
    return api.control.loaded.base_dir / ".fastgw-code"


async def _get_code(api: AdminAPI, name: str, **_: Any) -> Answer:
    loaded = api.control.loaded
    spec = loaded.config.functions.get(name)
    if spec is None:
        return _json(404, {"message": f"no function {name!r}"})
    folder = (loaded.base_dir / spec.code).resolve() if spec.code else loaded.base_dir
    file = handler_file(spec.runtime, spec.handler, folder)
    try:
        text = (folder / file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _json(404, {"message": f"cannot read {file} in {folder}: {exc}"})
    others = sorted(p.name for p in folder.iterdir() if p.name != file and not p.name.startswith("."))[:50]
    return _json(200, {"folder": str(folder), "file": file, "text": text, "others": others})


async def _put_code(api: AdminAPI, name: str, *, body: bytes, **_: Any) -> Answer:
    """Write `{"files": {"index.mjs": "..."}}` to a new folder named by its content, and answer the `code` to put
    in the function (relative to the config file). The folder is never changed again, so each deployment keeps
    the code it was made with (a rollback runs the old code)."""
    try:
        req = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError:
        return _json(400, {"message": "$: the body is not JSON", "path": "$"})
    files = req.get("files") if isinstance(req, dict) else None
    if not isinstance(files, dict) or not files:
        return _json(400, {"message": '$.files: expected {"index.mjs": "..."}', "path": "$.files"})
    total = 0
    digest = hashlib.sha256()
    for fname, text in sorted(files.items()):
        if not _FILE.match(fname) or not isinstance(text, str):
            return _json(400, {"message": f"$.files.{fname}: a plain file name (.py, .mjs, .js...) and its text",
                               "path": f"$.files.{fname}"})  # fmt: skip
        total += len(text.encode())
        digest.update(fname.encode() + b"\0" + text.encode() + b"\0")
    if total > MAX_CODE:
        return _json(413, {"message": f"$.files: more than {MAX_CODE} bytes of code", "path": "$.files"})
    folder = code_root(api) / name / digest.hexdigest()[:16]

    def write() -> None:
        if folder.is_dir():
            return
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for fname, text in files.items():
            (tmp / fname).write_text(text, "utf-8")
        os.replace(tmp, folder)

    try:
        await asyncio.get_running_loop().run_in_executor(None, write)
    except OSError as exc:
        return _json(500, {"message": f"cannot write the code to {folder}: {exc.strerror or exc}"})
    base = api.control.loaded.base_dir.resolve()
    code = os.path.relpath(folder.resolve(), base)
    return _json(201, {"code": code, "folder": str(folder)})


async def _invoke(api: AdminAPI, name: str, *, body: bytes, **_: Any) -> Answer:
    """Lambda's Test tab: the function run with the event given, its result or error, duration and log lines. The
    serving pool runs it where this process serves (warm, as the routes call it); else (the supervisor of
    `--workers N`) a pool of its own for this one call."""
    from fastgw.functions.pool import FunctionPool, Throttled

    try:
        event = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError as exc:
        return _json(400, {"message": f"$: the event is not JSON: {exc}", "path": "$"})
    loaded = api.control.loaded
    spec = loaded.config.functions.get(name)
    if spec is None:
        return _json(404, {"message": f"no function {name!r}"})
    gateway = getattr(api.control, "gateway", None)
    pool = gateway.functions.get(name) if gateway is not None else None
    own = pool is None or pool.closed
    if own:
        code = (loaded.base_dir / spec.code).resolve() if spec.code else loaded.base_dir
        pool = FunctionPool(name, spec, code)
    assert pool is not None
    request_id = str(uuid.uuid4())
    started = time.perf_counter()
    try:
        outcome = await pool.invoke(request_id, event)
    except Throttled:
        return _json(429, {"message": "Too Many Requests"})
    except Exception as exc:  # noqa: BLE001 - a function that cannot start is the answer, not a crash
        return _json(200, {"ok": False, "error": {"errorMessage": str(exc)}, "logs": [], "request_id": request_id,
                           "duration_ms": round((time.perf_counter() - started) * 1000, 2)})  # fmt: skip
    finally:
        if own:
            pool.close()
            await pool.wait_closed()
    out: dict[str, Any] = {"ok": outcome.ok, "request_id": request_id, "logs": outcome.logs,
                           "duration_ms": round(outcome.duration_ms, 2), "cold_start": outcome.cold_start}  # fmt: skip
    out["result" if outcome.ok else "error"] = outcome.value if outcome.ok else outcome.error
    return _json(200, out)


# -- drafts of APIs ---------------------------------------------------------------------------------------------
# NOTE: as in API Gateway, an API's resources and methods are edited as a draft that serves nowhere until it is
# deployed to a stage: a REST API with no stage is refused by the config (it would serve nothing), and a change to
# one that serves would otherwise be live on every stage at once. A draft is the API in the config's schema, kept
# as one JSON file beside the console's code (not a deployment: nothing serves it); Deploy writes it with
# PUT /apis/{name} and forgets it.


def _drafts(api: AdminAPI) -> Path:
    return code_root(api).parent / "console-drafts"


async def _list_drafts(api: AdminAPI, **_: Any) -> Answer:
    folder = _drafts(api)
    out: dict[str, Any] = {}
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out[file.stem] = orjson.loads(file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
    return _json(200, out)


async def _get_draft(api: AdminAPI, name: str, **_: Any) -> Answer:
    try:
        return 200, "application/json", (_drafts(api) / f"{name}.json").read_bytes(), {}
    except FileNotFoundError:
        return _json(404, {"message": f"no draft of API {name!r}"})


async def _put_draft(api: AdminAPI, name: str, *, body: bytes, **_: Any) -> Answer:
    try:
        draft = orjson.loads(body or b"null")
    except orjson.JSONDecodeError:
        draft = None
    if not isinstance(draft, dict) or not isinstance(draft.get("routes", []), list):
        return _json(400, {"message": "$: an API ({type, routes, stages}), as PUT /apis/{name} takes it", "path": "$"})
    if len(body) > MAX_CODE:
        return _json(413, {"message": f"$: a draft of more than {MAX_CODE} bytes", "path": "$"})
    folder = _drafts(api)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp{os.getpid()}"
        tmp.write_bytes(orjson.dumps(draft))
        os.replace(tmp, folder / f"{name}.json")
    except OSError as exc:
        return _json(500, {"message": f"cannot write the draft to {folder}: {exc.strerror or exc}"})
    return _json(200, draft)


async def _delete_draft(api: AdminAPI, name: str, **_: Any) -> Answer:
    try:
        (_drafts(api) / f"{name}.json").unlink()
    except FileNotFoundError:
        return _json(404, {"message": f"no draft of API {name!r}"})
    return _json(200, {"deleted": name})


# -- what serves, for the pages --------------------------------------------------------------------------------


async def _info(api: AdminAPI, **_: Any) -> Answer:
    """Where the traffic port is (for invoke URLs), and whether writes need a token."""
    control = api.control
    # The one-process Server's listeners; under `--workers N` the config's (the CLI chose a port 0 before serving).
    urls = control.urls() if hasattr(control, "urls") else ""
    server = control.loaded.config.server
    if not urls:
        urls = f"http://{server.host}:{server.port}"
    return _json(200, {"traffic": urls.split(" and ")[0], "urls": urls.split(" and "), "tokens": api.who({}) is None})


async def _stats(api: AdminAPI, **_: Any) -> Answer:
    """The counters /metrics reports, as JSON rows the live charts difference once a second: `series` [route,
    method, status, count, bytes in, bytes out, duration sum, bucket counts...], `upstreams` [upstream, target,
    count, latency sum, bucket counts...], `cache` [route, status, n], `limits` [route, decision, n]."""
    from fastgw.core.observe import BUCKETS

    data = api.control.metrics()
    if data is None:
        return _json(404, {"message": "metrics are off (admin.metrics: false)"})
    rows = {k: [[*key, *val] for key, val in data.get(k, {}).items()] for k in ("series", "upstreams", "targets")}
    flat = {k: [[*key, val] for key, val in data.get(k, {}).items()] for k in ("cache", "limits")}
    return _json(200, {"time": time.time(), "buckets": list(BUCKETS), "connections": data.get("connections", 0),
                       **rows, **flat})  # fmt: skip


_CALLS = [
    (method, re.compile("^" + API + template.replace("{name}", _NAME) + "$"), fn, writing)
    for method, template, fn, writing in (
        ("GET", "info", _info, False),
        ("GET", "stats", _stats, False),
        ("GET", "functions/{name}/code", _get_code, False),
        ("PUT", "functions/{name}/code", _put_code, True),
        ("POST", "functions/{name}/invoke", _invoke, True),
        ("GET", "drafts", _list_drafts, False),
        ("GET", "drafts/{name}", _get_draft, False),
        ("PUT", "drafts/{name}", _put_draft, True),
        ("DELETE", "drafts/{name}", _delete_draft, True),
    )
]
