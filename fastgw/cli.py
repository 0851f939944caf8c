"""`fastgw serve | check | routes | invoke | plugins | hash-password`: the command line. Every serve flag can
also come from a FASTGW_* variable."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from fastgw import __version__

log = logging.getLogger("fastgw")

_ENV_HELP = "environment: FASTGW_CONFIG, FASTGW_HOST, FASTGW_PORT, FASTGW_WORKERS, FASTGW_LOG_LEVEL"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"fastgw: {name}={value!r} is not an integer") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastgw",
        description="fastgw: an API gateway with a compiled router inside a uvloop + httptools proxy.",
        epilog=_ENV_HELP,
    )
    parser.add_argument("--version", action="version", version=f"fastgw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. With no CONFIG it serves the built-in quickstart on http://127.0.0.1:8000/. "
        "SIGTERM/SIGINT stop it gracefully; SIGHUP reloads CONFIG (a broken config is refused, the old one stays).",
        epilog=_ENV_HELP + " (flags win over the environment, which wins over the config file)",
    )
    serve.add_argument("config", nargs="?", help="YAML or JSON config file (default: built-in quickstart)")
    serve.add_argument("--host", help="address to listen on (config: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on; 0 picks a free one (config: server.port)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port (config: server.workers)")
    serve.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log level (config: logging.level)"
    )

    check = sub.add_parser("check", help="validate a config without serving it")
    check.add_argument("config", help="YAML or JSON config file")

    routes = sub.add_parser("routes", help="print the route table of a config")
    routes.add_argument("config", help="YAML or JSON config file")
    routes.add_argument("--tree", action="store_true", help="print the routing trie instead of the table")

    plugins = sub.add_parser(
        "plugins",
        help="list the plugins this installation can use (built-in, installed, and a config's plugin_modules)",
    )
    plugins.add_argument("config", nargs="?", help="also load this config's plugin_modules")

    hp = sub.add_parser(
        "hash-password",
        help="print a PBKDF2 hash for a basic-auth credential (reads the password from stdin)",
        description="Read a password from stdin (one line) and print the pbkdf2_sha256$... hash to put in a "
        "consumer's basic-auth credential as password_hash. Example: "
        "printf '%%s' 's3cret' | fastgw hash-password",
    )
    hp.add_argument("--iterations", type=int, default=None, help="PBKDF2 iterations (default: 600000)")

    inv = sub.add_parser(
        "invoke",
        help="test-invoke one request through the gateway without serving (like API Gateway's Test tab)",
        description="Run one request through CONFIG's routes, integrations and functions without opening a port, "
        "and print what API Gateway's Test tab shows: status, latency, response body and headers, the event sent "
        "to the function, its result or error, and its log lines. Example: "
        "fastgw invoke examples/my-rest-api/fastgw.yaml GET /Prod",
    )
    inv.add_argument("config", help="YAML or JSON config file")
    inv.add_argument("method", type=str.upper, help="HTTP method, e.g. GET")
    inv.add_argument("path", help="path as a client would call it, stage included, e.g. /Prod/items/1")
    inv.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE", help="request header")
    inv.add_argument("-q", "--query", action="append", default=[], metavar="NAME=VALUE", help="query parameter")
    inv.add_argument("-d", "--body", default="", help="request body; @FILE reads it from a file")
    inv.add_argument("--json", action="store_true", help="print one JSON object instead of the console layout")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "serve":
        return _serve(args)
    if args.command == "check":
        return _check(args.config)
    if args.command == "routes":
        return _routes(args.config, args.tree)
    if args.command == "invoke":
        return _invoke(args)
    if args.command == "plugins":
        return _plugins(args.config)
    if args.command == "hash-password":
        return _hash_password(args.iterations)
    parser.error(f"unknown command {args.command}")
    return 2


def _load(path: str):  # type: ignore[no-untyped-def]
    from fastgw.config.load import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"fastgw: invalid config: {exc}", file=sys.stderr)
        return None


def _check(path: str) -> int:
    loaded = _load(path)
    if loaded is None:
        return 1
    cfg = loaded.config
    print(
        f"{path}: ok ({len(loaded.entries)} routes, {len(cfg.upstreams)} upstreams, {len(cfg.functions)} functions, "
        f"{len(cfg.apis)} apis)"
    )
    return 0


def _routes(path: str, tree: bool) -> int:
    loaded = _load(path)
    if loaded is None:
        return 1
    if tree:
        print(loaded.router.dump(), end="")
        return 0
    from fastgw.config.schema import AggregateIntegration, HttpIntegration, LambdaIntegration

    rows = [("METHODS", "HOST", "PATH", "INTEGRATION", "NAME", "PLUGINS")]
    for entry in loaded.entries:
        route, integ = entry.route, entry.integration
        if isinstance(integ, HttpIntegration):
            target = f"http -> {integ.upstream}"
            if integ.path:
                target += f" {integ.path}"
            elif integ.strip_prefix:
                target += f" (strip {integ.strip_prefix})"
        elif isinstance(integ, LambdaIntegration):
            fmt = integ.payload_format or ("1.0" if entry.api_type == "rest" else "2.0")
            target = f"lambda -> {integ.function} ({fmt})"
        elif isinstance(integ, AggregateIntegration):
            target = "aggregate -> " + ", ".join(
                f"{b.upstream} {b.path}" if b.upstream else f"function {b.function}" for b in integ.backends
            )
        else:
            target = f"mock {integ.status}"
        rows.append((",".join(route.methods), route.host or "*", entry.path, target, entry.label, "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _plugins(config: str | None) -> int:
    from fastgw.plugins.chain import PluginError, Registry, phases_of

    extra: list[str] = []
    if config is not None:
        loaded = _load(config)
        if loaded is None:
            return 1
        extra = list(loaded.config.plugin_modules)
    try:
        reg = Registry.load(extra)
    except PluginError as exc:
        print(f"fastgw: {exc}", file=sys.stderr)
        return 1
    rows = [("NAME", "PRIORITY", "PHASES", "CREDENTIALS", "FROM")]
    for name, cls in sorted(reg.classes.items(), key=lambda kv: (-kv[1].priority, kv[0])):
        creds = "yes" if cls.Credential is not None else "-"
        rows.append((name, str(cls.priority), ",".join(phases_of(cls)), creds, reg.origins[name]))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _hash_password(iterations: int | None) -> int:
    from fastgw.plugins.basic_auth import PBKDF2_ITERATIONS, hash_password

    password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("fastgw: no password on stdin", file=sys.stderr)
        return 2
    print(hash_password(password, iterations or PBKDF2_ITERATIONS))
    return 0


def _invoke(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path
    from urllib.parse import quote, urlencode

    from fastgw.server.invoke import invoke

    headers: dict[str, str] = {}
    for h in args.header:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            print(f"fastgw: --header expects NAME:VALUE, got {h!r}", file=sys.stderr)
            return 2
        headers[name.strip()] = value.strip()
    path = args.path if args.path.startswith("/") else "/" + args.path
    path = quote(path, safe="/?=&%:@!$'()*+,;~-._")
    if args.query:
        pairs = [q.partition("=")[::2] for q in args.query]
        path += ("&" if "?" in path else "?") + urlencode(pairs)
    body = args.body.encode()
    if args.body.startswith("@"):
        try:
            body = Path(args.body[1:]).read_bytes()
        except OSError as exc:
            print(f"fastgw: cannot read the body file: {exc.strerror or exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    loaded = _load(args.config)
    if loaded is None:
        return 1
    result = asyncio.run(invoke(loaded, args.method, path, headers, body))
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(result.to_text())
    return 0


def _serve(args: argparse.Namespace) -> int:
    from fastgw.config.load import default_config_path
    from fastgw.server.server import run_worker, setup_logging, supervise

    path = args.config or os.environ.get("FASTGW_CONFIG") or str(default_config_path())
    level = args.log_level or os.environ.get("FASTGW_LOG_LEVEL") or None
    setup_logging(level or "info")
    loaded = _load(path)
    if loaded is None:
        return 1
    cfg = loaded.config
    if level is None:
        logging.getLogger().setLevel(cfg.logging.level.upper())
    host = args.host or os.environ.get("FASTGW_HOST") or cfg.server.host
    port = args.port if args.port is not None else _env_int("FASTGW_PORT")
    port = cfg.server.port if port is None else port
    workers = args.workers if args.workers is not None else _env_int("FASTGW_WORKERS")
    workers = cfg.server.workers if workers is None else workers
    if workers < 1:
        print("fastgw: --workers must be at least 1", file=sys.stderr)
        return 2

    from fastgw import core

    if not core.COMPILED:
        log.warning(
            "RUNNING ON THE PURE-PYTHON CORE (%s): routing and rate limiting are several times slower. "
            "Unset FASTGW_NO_EXTENSIONS or reinstall fastgw with a C compiler.",
            core.FALLBACK_REASON,
        )
    try:
        if workers == 1:
            run_worker(loaded, host, port)
            return 0
        return supervise(loaded, host, port, workers)
    except OSError as exc:
        print(f"fastgw: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
