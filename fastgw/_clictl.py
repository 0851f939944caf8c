"""The command line's control of a running gateway: `fastgw reload | stop | deploy | diff | deployments`, and the
pid file `fastgw serve` writes. Calls to the admin API send what it asks of every client (docs/security.md, "The
admin API"): the listener's address as Host, JSON bodies as `application/json`, the token as a bearer token."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from fastgw.config.errors import ConfigError
from fastgw.config.load import config_data


class CommandError(Exception):
    pass


# -- the pid file ---------------------------------------------------------------------------------------------


def pid_path(pid_file: str | None, config: str | None) -> Path | None:
    if pid_file:
        return Path(pid_file)
    if os.environ.get("FASTGW_PID_FILE"):
        return Path(os.environ["FASTGW_PID_FILE"])
    return Path(config + ".pid") if config else None


def write_pid_file(pid_file: str | None, config: str | None) -> Path | None:
    path = pid_path(pid_file, config)
    if path is None:
        return None
    try:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, path)
    except OSError as exc:
        print(f"fastgw: cannot write the pid file {path}: {exc.strerror or exc} (fastgw stop needs it)",
              file=sys.stderr)  # fmt: skip
        return None
    return path


def remove_pid_file(path: Path | None) -> None:
    if path is None:
        return
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text().strip()) == os.getpid():  # a worker forked from here never removes it
            path.unlink()


def _read_pid(pid_file: str | None, config: str | None) -> tuple[int, Path]:
    path = pid_path(pid_file, config)
    if path is None:
        raise CommandError("give CONFIG or --pid-file (or FASTGW_PID_FILE)")
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise CommandError(f"no running gateway: cannot read the pid file {path} ({exc})") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise CommandError(f"no running gateway: pid {pid} (from {path}) is not running") from None
    return pid, path


# -- the admin API --------------------------------------------------------------------------------------------


def _read_config(path: str) -> dict[str, Any]:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    try:
        # As the gateway reads a file: a SAM template is read into a config, OpenAPI files named in.
        data = config_data(raw, path, Path(path).resolve().parent)
    except ConfigError as exc:
        raise CommandError(f"invalid config: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"invalid config: {path}: $: expected a mapping at the top level")
    return data


def _admin_of(args: argparse.Namespace, config: dict[str, Any] | None) -> tuple[str, int, str | None]:
    token = getattr(args, "token", None) or os.environ.get("FASTGW_ADMIN_TOKEN")
    admin = (config or {}).get("admin") if isinstance((config or {}).get("admin"), dict) else None
    if token is None and admin is not None:
        token = admin.get("token") or next(
            (t.get("token") for t in admin.get("tokens") or [] if isinstance(t, dict) and t.get("role") == "write"),
            None,
        )
    if getattr(args, "admin", None):
        url = urlsplit(args.admin if "://" in args.admin else f"http://{args.admin}")
        if url.scheme != "http" or url.hostname is None or url.port is None:
            raise CommandError(f"--admin {args.admin}: expected http://HOST:PORT")
        return url.hostname, url.port, token
    if admin is None:
        raise CommandError("the config has no admin section: give --admin http://HOST:PORT")
    port = admin.get("port", 9901)
    if not port:
        raise CommandError("admin.port is 0 (chosen when the gateway started): give --admin http://HOST:PORT")
    host = str(admin.get("host") or "127.0.0.1")
    return ("127.0.0.1" if host == "0.0.0.0" else "::1" if host == "::" else host), int(port), token


def call(
    where: tuple[str, int, str | None], method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    host, port, token = where
    hdrs = {"host": f"[{host}]:{port}" if ":" in host else f"{host}:{port}", **(headers or {})}
    data = None
    if body is not None:
        data = orjson.dumps(body)
        hdrs["content-type"] = "application/json"
    if token:
        hdrs["authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(host, port, timeout=300)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
    except OSError as exc:
        raise CommandError(f"cannot reach the admin API on {host}:{port}: {exc.strerror or exc}") from None
    finally:
        conn.close()
    try:
        out = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        out = {"message": raw.decode(errors="replace")}
    return resp.status, out, {k.lower(): v for k, v in resp.getheaders()}


def _run(fn: Any, args: argparse.Namespace) -> int:
    try:
        return int(fn(args))
    except CommandError as exc:
        print(f"fastgw: {exc}", file=sys.stderr)
        return 2


def _say(status: int, out: Any) -> int:
    if status >= 400:
        print(f"fastgw: refused ({status}): {out.get('message', out)}", file=sys.stderr)
        return 1
    return 0


# -- the commands ---------------------------------------------------------------------------------------------


def reload(args: argparse.Namespace) -> int:
    def run(args: argparse.Namespace) -> int:
        config = _read_config(args.config)
        if config.get("admin") is not None or args.admin:
            where = _admin_of(args, config)
            body = {"description": args.description} if args.description else None
            status, out, _ = call(where, "POST", "/reload", body)
            if status == 200:
                workers = ", ".join(f"{w['worker']}" for w in out.get("workers") or [])
                state = "serving" if out.get("changed") else "unchanged, still serving"
                print(f"{args.config}: deployment {out['deployment']} {state} ({out.get('routes')} routes; {workers})")
            return _say(status, out)
        pid, path = _read_pid(args.pid_file, args.config)
        os.kill(pid, signal.SIGHUP)
        print(f"sent SIGHUP to pid {pid} (from {path}); the gateway's log says whether the reload was refused")
        return 0

    return _run(run, args)


def stop(args: argparse.Namespace) -> int:
    def run(args: argparse.Namespace) -> int:
        pid, path = _read_pid(args.pid_file, args.config)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"stopped pid {pid}")
                return 0
            time.sleep(0.05)
        print(f"fastgw: pid {pid} still runs after {args.timeout:.0f}s (requests in flight?)", file=sys.stderr)
        return 1

    return _run(run, args)


# -- the store, without a gateway (GitOps) ------------------------------------------------------------------


def _check_file(path: str) -> dict[str, Any]:
    """FILE checked exactly as `fastgw check` and a gateway's start check it, as the data a deployment keeps."""
    from fastgw.config.load import load_config

    data = _read_config(path)
    try:
        load_config(path)
    except ConfigError as exc:
        raise CommandError(f"invalid config: {exc}") from None
    return data


def _store_call(url: str, work: Any) -> Any:
    """Run `work(store)` against the etcd store of `url` (its own short-lived loop), closing the store after."""
    import asyncio

    from fastgw.control.etcd import store_from_url
    from fastgw.control.store import StoreUnavailable, TooLarge

    try:
        store = store_from_url(url)
    except ValueError as exc:
        raise CommandError(f"--store: {exc}") from None

    async def go() -> Any:
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except StoreUnavailable as exc:
        raise CommandError(f"the deployment store {url.split('?')[0]} is unavailable: {exc}") from None
    except TooLarge as exc:  # the deployment's fault: the same write would fail again
        raise CommandError(f"the deployment store {url.split('?')[0]} refused the deployment: {exc}") from None


def _deploy_to_store(args: argparse.Namespace) -> int:
    """`fastgw deploy FILE --store URL`: FILE becomes the store's newest deployment, compare-and-swap on the
    revision read just before (or refused when --if-match names another than the newest); every gateway watching
    the store serves it. No gateway is needed: what a CI job of a GitOps repository runs."""
    from fastgw.control import deployment as dep
    from fastgw.control.store import Conflict

    data = _check_file(args.file)
    payload = dep.canonical(data)
    d = dep.make(orjson.loads(payload), f"fastgw deploy {args.file}", author=os.environ.get("USER", ""),
                 description=args.description)  # fmt: skip

    async def work(store: Any) -> tuple[int, str]:
        latest = await store.latest()
        newest = latest.deployment.id if latest is not None else ""
        if args.if_match and args.if_match.strip('"') not in ("*", newest):
            return 1, f"refused (409): --if-match {args.if_match} is stale: deployment {newest or '(none)'} is newest"
        if latest is not None and latest.deployment.id == d.id:
            return 0, f"{args.file}: deployment {d.id} is already the newest (revision {latest.revision}), unchanged"
        try:
            revision = await store.put(d, expect_revision=latest.revision if latest is not None else 0)
        except Conflict as exc:
            return 1, f"refused (409): the store moved on (revision {exc.actual}) while deploying: read and try again"
        return 0, f"{args.file}: deployment {d.id} stored (revision {revision}, was {newest or 'none'})"

    status, message = _store_call(args.store, work)
    print(message if status == 0 else f"fastgw: {message}", file=sys.stdout if status == 0 else sys.stderr)
    return status


def deploy(args: argparse.Namespace) -> int:
    def run(args: argparse.Namespace) -> int:
        if getattr(args, "store", None):
            return _deploy_to_store(args)
        config = _read_config(args.file)
        where = _admin_of(args, config)
        headers = {"x-fastgw-source": f"fastgw deploy {args.file}"}
        if args.description:
            headers["x-fastgw-description"] = args.description
        if args.if_match:
            headers["if-match"] = f'"{args.if_match}"'
        status, out, _ = call(where, "PUT", "/config", config, headers)
        if status == 200:
            print(f"{args.file}: deployment {out['deployment']} serving on {len(out.get('workers') or [])} workers"
                  + ("" if out.get("changed", True) else " (unchanged)"))  # fmt: skip
        return _say(status, out)

    return _run(run, args)


def diff(args: argparse.Namespace) -> int:
    from fastgw.admin.api import mask
    from fastgw.control.deployment import diff as changes_of
    from fastgw.control.deployment import render

    def run(args: argparse.Namespace) -> int:
        config = _read_config(args.file)
        if getattr(args, "store", None):
            latest = _store_call(args.store, lambda store: store.latest())
            serving = mask(latest.deployment.config) if latest is not None else {}
            deployment = latest.deployment.id if latest is not None else "(none: the store is empty)"
            what = "the store's newest"
        else:
            status, serving, headers = call(_admin_of(args, config), "GET", "/config")
            if status != 200:
                _say(status, serving)
                return 2
            deployment = headers.get("etag", "").strip('"')
            what = "serving"
        changes = changes_of(serving, mask(orjson.loads(orjson.dumps(config, option=orjson.OPT_NON_STR_KEYS))))
        if args.json:
            sys.stdout.write(orjson.dumps({"deployment": deployment, "changes": changes}).decode() + "\n")
        elif changes:
            print(f"--- {what}: deployment {deployment}\n+++ {args.file}")
            print(render(changes))
        return 1 if changes else 0

    return _run(run, args)


def deployments(args: argparse.Namespace) -> int:
    from fastgw.control.filestore import FileStore, default_dir

    def run(args: argparse.Namespace) -> int:
        config = _read_config(args.config)
        if args.rollback:
            status, out, _ = call(_admin_of(args, config), "POST", f"/deployments/{args.rollback}/rollback")
            if status == 200:
                print(f"deployment {out['deployment']} serving again (the config file is unchanged: "
                      f"{out.get('file', 'none')} from what serves)")  # fmt: skip
            return _say(status, out)
        admin = config.get("admin") if isinstance(config.get("admin"), dict) else {}
        where = admin.get("deployments_dir") if admin else None
        store = FileStore(Path(where) if where else default_dir(args.config))
        history = store.history_now(limit=0)
        if args.json:
            listed = [{"revision": s.revision, "id": s.deployment.id, "time": s.deployment.time,
                       "source": s.deployment.source, "author": s.deployment.author,
                       "description": s.deployment.description} for s in history]  # fmt: skip
            sys.stdout.write(orjson.dumps(listed, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        if not history:
            print(f"no deployments in {store.dir} (kept by a gateway serving this config with an admin section)")
            return 0
        for i, s in enumerate(history):
            d = s.deployment
            what = d.description or d.source
            print(f"{'*' if i == 0 else ' '} {d.id}  {d.time}  r{s.revision}  {what}" + (f" by {d.author}"
                  if d.author and d.author != "-" else ""))  # fmt: skip
        return 0

    return _run(run, args)
