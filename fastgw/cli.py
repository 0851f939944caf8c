"""`fastgw serve | check | routes | invoke | plugins | hash-password | ...`: the command line. Every serve flag can
also come from a FASTGW_* variable, and every command that reads a config file takes FASTGW_CONFIG when CONFIG is
not given."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fastgw import __version__

if TYPE_CHECKING:
    from fastgw.config.load import LoadedConfig, Override

log = logging.getLogger("fastgw")

_ENV_HELP = (
    "environment: FASTGW_CONFIG (the CONFIG of every command that reads one, when not given), FASTGW_HOST, "
    "FASTGW_PORT, FASTGW_WORKERS, FASTGW_LOG_LEVEL, FASTGW_ACCESS_LOG, FASTGW_ACCESS_LOG_FORMAT, FASTGW_STORE"
)
_CONFIG_HELP = "YAML or JSON config file (default: FASTGW_CONFIG)"
# The commands whose config file may come from FASTGW_CONFIG, and the argument that names it. (`serve` has its own
# rule: no CONFIG and no FASTGW_CONFIG serves the quickstart.)
_CONFIG_ARG = {
    "check": "config", "routes": "config", "invoke": "config", "plugins": "config", "cache-purge": "config",
    "deployments": "config", "reload": "config", "stop": "config", "deploy": "file", "diff": "file",
}  # fmt: skip
_OPTIONAL_CONFIG = ("plugins", "stop")  # these work without one


def _env_bool(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"fastgw: {name}={os.environ[name]!r} is not a boolean (true/false, 1/0, yes/no, on/off)")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"fastgw: {name}={value!r} is not an integer") from None


class _Version(argparse.Action):
    """`fastgw --version`, with the core as a fact: a pure-Python installation should be visible at a glance."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from fastgw import core

        print(f"fastgw {__version__}\ncore: {core.describe()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastgw",
        description="fastgw: an API gateway with a compiled router inside a uvloop + httptools proxy.",
        epilog=_ENV_HELP,
    )
    parser.add_argument(
        "-V", "--version", action=_Version, help="show the version and which core this installation runs"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. With no CONFIG it serves the built-in quickstart on http://127.0.0.1:8000/ "
        "(with --store, the fleet's newest deployment; 503 until the store holds one). "
        "SIGTERM/SIGINT stop it gracefully; SIGHUP reloads CONFIG (a broken config is refused, the old one stays).",
        epilog=_ENV_HELP + " (flags win over the environment, which wins over the config file)",
    )
    serve.add_argument("config", nargs="?", help="YAML or JSON config file (default: built-in quickstart)")
    serve.add_argument("--host", help="address to listen on (config: server.host)")
    serve.add_argument("--port", type=int, help="port to listen on; 0 picks a free one (config: server.port)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port (config: server.workers)")
    serve.add_argument(
        "--watch",
        action="store_true",
        help="reload when CONFIG changes, and restart a function's workers when its code changes (development; "
        "file system events with the watch extra, else or with FASTGW_WATCH_POLL=1 a poll a second)",
    )
    serve.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log level (config: logging.level)"
    )
    serve.add_argument(
        "--pid-file", help="write the gateway's pid here (default: CONFIG.pid beside CONFIG; `fastgw stop` reads it)"
    )
    serve.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=None,
        help="write the access log, or not (config: logging.access_log; FASTGW_ACCESS_LOG=true|false)",
    )  # fmt: skip
    serve.add_argument(
        "--access-log-format", choices=["json", "text"],
        help="the access log's lines: one JSON object, or text (config: logging.access_log_format)",
    )  # fmt: skip
    serve.add_argument(
        "--store", metavar="URL", help="keep deployments in etcd and join its fleet: etcd://HOST:PORT[,...]/PREFIX "
        "(config: store.etcd; FASTGW_STORE)",
    )  # fmt: skip
    _template_flags(serve)

    check = sub.add_parser(
        "check",
        help="validate a config without serving it",
        description="Load CONFIG as `fastgw serve` would (the schema, every cross-check, the plugins' and functions' "
        "settings, the files it names) without binding a socket, and print what it holds: 'CONFIG: ok (N routes, N "
        "upstreams, N functions, N apis)'. A broken config prints its error, with the file and the key path "
        "($.routes[3].plugins.rate-limit.rate), and exits 1. Example: fastgw check gw.yaml",
        epilog="environment: FASTGW_CONFIG names CONFIG when it is not given",
    )
    check.add_argument("config", nargs="?", help=_CONFIG_HELP)
    _template_flags(check)

    routes = sub.add_parser("routes", help="print the route table of a config")
    routes.add_argument("config", nargs="?", help=_CONFIG_HELP)
    routes.add_argument("--tree", action="store_true", help="print the routing trie instead of the table")
    _template_flags(routes)

    plugins = sub.add_parser(
        "plugins",
        help="list the plugins this installation can use (built-in, installed, and a config's plugin_modules)",
    )
    plugins.add_argument("config", nargs="?", help="also load this config's plugin_modules (default: FASTGW_CONFIG)")

    hp = sub.add_parser(
        "hash-password",
        help="print a password hash for a basic-auth credential (argon2id by default; reads the password from stdin)",
        description="Read a password from stdin (one line) and print the hash to put in a consumer's basic-auth "
        "credential as password_hash: argon2id (recommended; needs the auth extra), bcrypt (the auth extra) or "
        "pbkdf2 (fastgw's own format, needs nothing extra). Example: "
        "printf '%s' 's3cret' | fastgw hash-password",
    )
    hp.add_argument(
        "--scheme",
        choices=["argon2id", "bcrypt", "pbkdf2"],
        default=None,
        help="the hash (default: argon2id; pbkdf2 when --iterations is given)",
    )
    hp.add_argument("--iterations", type=int, default=None, help="PBKDF2 iterations (default: 600000)")

    purge = sub.add_parser(
        "cache-purge",
        help="delete proxy-cache entries (memory in every worker, and Redis): all, a route's, or by key prefix",
        description="Delete what the proxy-cache plugin stored for CONFIG. With an admin API (CONFIG's admin "
        "section, or --admin) the running gateway purges every worker's memory cache and CONFIG's Redis "
        "(POST /cache/purge) and says how many each held. Without one, only Redis can be reached: its entries are "
        "purged here, and a config that caches in memory (backend: memory) is refused with the reason, since "
        "nothing outside the gateway can reach its workers' memory. Keys read route|method|host|path|query|...; "
        "--route takes a route's label as the keys hold it (its name, else its methods and path template; "
        "api:.../stage for API routes). A purged entry's next request answers X-Cache-Status: MISS. Exit status "
        "1 when something could not be purged.",
    )
    purge.add_argument("config", nargs="?", help="YAML or JSON config file (default: FASTGW_CONFIG)")
    which = purge.add_mutually_exclusive_group()
    which.add_argument("--route", help="only this route's entries")
    which.add_argument("--prefix", help="only entries whose key starts with this")
    _admin_flags(purge)
    dep = sub.add_parser(
        "deployments",
        help="list the deployments of a config (every version that went live), or roll a running gateway back",
        description="List the deployments kept for CONFIG (admin.deployments_dir, default CONFIG.deployments/): "
        "id (a hash of the config), time, what made it; the first is the newest. With --rollback ID the running "
        "gateway (its admin API) serves that deployment again, as a new deployment; the file is not written.",
    )
    dep.add_argument("config", nargs="?", help=_CONFIG_HELP)
    dep.add_argument("--rollback", metavar="ID", help="make the running gateway serve this deployment again")
    dep.add_argument("--json", action="store_true", help="print the list as JSON")
    _admin_flags(dep)

    rl = sub.add_parser(
        "reload",
        help="reload a running gateway's config file; answers once every worker serves it",
        description="Ask the gateway serving CONFIG to deploy its file again: through its admin API when CONFIG "
        "has an admin section (the answer comes once every worker serves the new deployment, or says why none "
        "does), else with SIGHUP to the process in its pid file. Exit status 1 when the reload was refused.",
    )
    rl.add_argument("config", nargs="?", help="the config file the gateway serves (default: FASTGW_CONFIG)")
    rl.add_argument("--pid-file", help="default: CONFIG.pid")
    rl.add_argument("-m", "--description", default="", help="kept with the deployment")
    _admin_flags(rl)

    stop = sub.add_parser(
        "stop",
        help="stop a running gateway (SIGTERM to the process in its pid file), and wait until it has",
        description="Send SIGTERM to the gateway whose pid file is CONFIG.pid (or --pid-file): it stops "
        "accepting, finishes the requests in flight (server.shutdown_timeout) and exits.",
    )
    stop.add_argument("config", nargs="?", help="the config file the gateway serves (its pid file is CONFIG.pid; "
                      "default: FASTGW_CONFIG)")  # fmt: skip
    stop.add_argument("--pid-file", help="default: CONFIG.pid")
    stop.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to exit (default 60)")

    deploy = sub.add_parser(
        "deploy",
        help="deploy a config file to a running gateway through its admin API (PUT /config)",
        description="Check FILE and make it what the running gateway serves, as one deployment on every worker "
        "(PUT /config of the admin API named by FILE's admin section, or --admin). The gateway's own config file is "
        "not written: the deployment is kept in its deployment store. Exit status 1 when it was refused.",
    )
    deploy.add_argument("file", nargs="?", help="YAML or JSON config file (default: FASTGW_CONFIG)")
    deploy.add_argument("-m", "--description", default="", help="kept with the deployment")
    deploy.add_argument("--if-match", metavar="ID", help="refuse (409) unless deployment ID is what serves now "
                        "(with --store: the store's newest)")  # fmt: skip
    deploy.add_argument("--store", metavar="URL", help="write FILE straight into the etcd store of a fleet "
                        "(etcd://HOST:PORT[,...]/PREFIX), no gateway needed: compare-and-swap on the newest "
                        "deployment's revision; every gateway watching it serves FILE")  # fmt: skip
    _admin_flags(deploy)

    df = sub.add_parser(
        "diff",
        help="show how a config file differs from what a running gateway serves",
        description="Compare FILE with the config the running gateway serves (GET /config), key path by key "
        "path: '+ path: value' only in FILE, '- path: value' only in what serves, '~ path: serving -> FILE'. "
        "Secrets are compared masked. Exit status 0: the same, 1: they differ, 2: an error.",
    )
    df.add_argument("file", nargs="?", help="YAML or JSON config file (default: FASTGW_CONFIG)")
    df.add_argument("--json", action="store_true", help="print the changes as JSON")
    df.add_argument("--store", metavar="URL", help="compare with the newest deployment in the etcd store of a fleet "
                    "(etcd://HOST:PORT[,...]/PREFIX) instead of a running gateway")  # fmt: skip
    _admin_flags(df)

    inv = sub.add_parser(
        "invoke",
        help="test-invoke one request through the gateway without serving (like API Gateway's Test tab)",
        description="Run one request through CONFIG's routes, integrations and functions without opening a port, "
        "and print what API Gateway's Test tab shows: status, latency, response body and headers, the event sent "
        "to the function, its result or error, and its log lines. Exits 1 when the integration failed (an upstream "
        "that refused or timed out, a function error), with the reason in the log. Example: "
        "fastgw invoke examples/my-rest-api/fastgw.yaml GET /Prod",
    )
    inv.add_argument("config", nargs="?", help=_CONFIG_HELP)
    inv.add_argument("method", type=str.upper, help="HTTP method, e.g. GET")
    inv.add_argument("path", help="path as a client would call it, stage included, e.g. /Prod/items/1")
    inv.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE", help="request header")
    inv.add_argument("-q", "--query", action="append", default=[], metavar="NAME=VALUE", help="query parameter")
    inv.add_argument("-d", "--body", default="", help="request body; @FILE reads it from a file")
    inv.add_argument("--json", action="store_true", help="print one JSON object instead of the console layout")
    _template_flags(inv)
    return parser


def _template_flags(parser: argparse.ArgumentParser) -> None:
    """`sam local start-api`'s options, for a CONFIG that is a SAM/CloudFormation template."""
    group = parser.add_argument_group("SAM/CloudFormation templates (CONFIG is a template.yaml)")
    group.add_argument(
        "--parameter-overrides", nargs="+", action="extend", metavar="KEY=VALUE",
        help="template parameters, as sam's: 'Key1=Value1 Key2=Value2' or 'ParameterKey=K,ParameterValue=V'",
    )  # fmt: skip
    group.add_argument(
        "--env-vars", metavar="FILE",
        help='environment variables as sam reads them: {"FunctionLogicalId": {"VAR": "value"}, "Parameters": {...}}',
    )  # fmt: skip
    group.add_argument(
        "--stage-prefix", action="store_true",
        help="serve each API under /{StageName} as the deployed API answers (default: at the root, as sam local)",
    )  # fmt: skip
    group.add_argument(
        "--unenforced-auth", choices=("closed", "open"), default="closed",
        help="routes behind authorizers fastgw does not run (Cognito, IAM, API keys): closed answers 401 (default), "
        "open serves them without authorization as sam local does; listed once at start either way",
    )  # fmt: skip


def _template_overrides(args: argparse.Namespace) -> list[Override]:
    """The template options as overrides (keys under `aws.`, read by fastgw.aws), so a reload keeps them."""
    import shlex

    from fastgw.config.load import Override

    out = []
    if args.parameter_overrides:
        params: dict[str, str] = {}
        for word in [w for arg in args.parameter_overrides for w in shlex.split(arg)]:
            if word.startswith("ParameterKey="):
                fields = dict(f.partition("=")[::2] for f in word.split(",", 1))
                key, value = fields.get("ParameterKey", ""), fields.get("ParameterValue", "")
            else:
                key, _, value = word.partition("=")
            if not key or "=" not in word:
                raise SystemExit(f"fastgw: --parameter-overrides expects KEY=VALUE, got {word!r}")
            params[key] = value
        out.append(Override("aws.parameter_overrides", params, "--parameter-overrides"))
    if args.env_vars:
        out.append(Override("aws.env_vars", os.path.abspath(args.env_vars), "--env-vars"))
    if args.stage_prefix:
        out.append(Override("aws.stage_prefix", True, "--stage-prefix"))
    if args.unenforced_auth != "closed":
        out.append(Override("aws.unenforced_auth", args.unenforced_auth, "--unenforced-auth"))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "serve":
        return _serve(args)
    args.config_from = ""
    dest = _CONFIG_ARG.get(args.command)
    if dest is not None and getattr(args, dest) is None:
        if os.environ.get("FASTGW_CONFIG"):
            setattr(args, dest, os.environ["FASTGW_CONFIG"])
            args.config_from = "FASTGW_CONFIG"
        elif args.command not in _OPTIONAL_CONFIG:
            what = "CONFIG METHOD PATH" if args.command == "invoke" else dest.upper()
            parser.error(f"{args.command}: give {what}, or set FASTGW_CONFIG to the config file")
    if args.command == "check":
        return _check(args.config, _template_overrides(args), path_from=args.config_from)
    if args.command == "routes":
        return _routes(args.config, args.tree, _template_overrides(args), path_from=args.config_from)
    if args.command == "invoke":
        return _invoke(args)
    if args.command == "plugins":
        return _plugins(args.config, path_from=args.config_from)
    if args.command == "cache-purge":
        return _cache_purge(args, path_from=args.config_from)
    if args.command == "deployments":
        return _deployments(args)
    if args.command in ("reload", "stop", "deploy", "diff"):
        from fastgw import _clictl

        return int(getattr(_clictl, args.command)(args))
    if args.command == "hash-password":
        return _hash_password(args.iterations, args.scheme)
    parser.error(f"unknown command {args.command}")
    return 2


def _load(
    path: str, overrides: Sequence[Override] = (), *, to_serve: bool = False, path_from: str = ""
) -> LoadedConfig | None:
    from fastgw.config.load import ConfigError, load_config, require_routes

    try:
        loaded = load_config(path, overrides)
        return require_routes(loaded) if to_serve else loaded
    except ConfigError as exc:
        where = f" (the config named by {path_from})" if path_from else ""
        print(f"fastgw: invalid config{where}: {exc}", file=sys.stderr)
        return None


def _cache_purge(args: argparse.Namespace, path_from: str = "") -> int:
    import asyncio

    from fastgw import _clictl
    from fastgw.plugins.proxy_cache import memory_caches
    from fastgw.state.cache import purge_redis
    from fastgw.state.redis import SharedRedis

    path, route, prefix = args.config, args.route, args.prefix
    loaded = _load(path, path_from=path_from)
    if loaded is None:
        return 1
    key = f"{route}|" if route is not None else (prefix or "")
    what = f" of route {route}" if route else f" with prefix {prefix!r}" if prefix else ""
    if loaded.config.admin is not None or args.admin:
        # The running gateway purges: its workers' memory is out of reach of any other process.
        body = {"route": route} if route is not None else {"prefix": prefix} if prefix else {}
        try:
            where = _clictl._admin_of(args, _clictl._read_config(path))
            status, out, _ = _clictl.call(where, "POST", "/cache/purge", body)
        except _clictl.CommandError as exc:
            print(f"fastgw: {exc}; nothing was purged", file=sys.stderr)
            return 1
        if status not in (200, 503):
            print(f"fastgw: refused ({status}): {out.get('message', out)}", file=sys.stderr)
            return 1
        parts = [f"{w['purged']} in the memory of worker {w['worker']}" for w in out["workers"] if "purged" in w]
        if out.get("redis") is not None:
            parts.append(f"{out['redis']} in Redis")
        print(f"purged {out['purged']} cache entries{what}" + (f" ({', '.join(parts)})" if parts else ""))
        if status != 200:
            print(f"fastgw: {out.get('message')}", file=sys.stderr)
            return 1
        return 0
    code = 0
    if loaded.config.redis is not None:
        shared = SharedRedis(loaded.config.redis)

        async def run() -> int:
            try:
                return await purge_redis(shared, key)
            finally:
                await shared.aclose()

        try:
            n = asyncio.run(run())
        except Exception as exc:  # noqa: BLE001 - Redis unreachable: said, not a traceback
            print(f"fastgw: cannot purge Redis: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"purged {n} cache entries{what}")
    if memory_caches(loaded.plugins):
        print(f"fastgw: {path} caches in the gateway's memory (proxy-cache backend: memory), which only the running "
              "gateway can purge, through its admin API: add an admin: section (or give --admin URL) and run this "
              "again; a reload (SIGHUP) empties it too", file=sys.stderr)  # fmt: skip
        code = 1
    elif loaded.config.redis is None:
        print(f"fastgw: {path} has no proxy-cache to purge (no redis: section, no route caching in memory)",
              file=sys.stderr)  # fmt: skip
        code = 1
    return code


def _check(path: str, overrides: Sequence[Override] = (), path_from: str = "") -> int:
    loaded = _load(path, overrides, to_serve=True, path_from=path_from)
    if loaded is None:
        return 1
    cfg = loaded.config
    print(
        f"{path}: ok ({len(loaded.entries)} routes, {len(cfg.upstreams)} upstreams, {len(cfg.functions)} functions, "
        f"{len(cfg.apis)} apis)"
    )
    return 0


def _routes(path: str, tree: bool, overrides: Sequence[Override] = (), path_from: str = "") -> int:
    loaded = _load(path, overrides, path_from=path_from)
    if loaded is None:
        return 1
    if tree:
        print(loaded.router.dump(), end="")
        return 0
    from fastgw.config.schema import AggregateIntegration, HttpIntegration, LambdaIntegration

    rows = [("METHODS", "HOST", "PATH", "HEADERS", "INTEGRATION", "NAME", "PLUGINS")]
    chains = loaded.plugins.chains if loaded.plugins is not None else (None,) * len(loaded.entries)
    for entry, chain in zip(loaded.entries, chains, strict=True):
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
        # In the order they run (priority, higher first); a consumer's own plugins are not listed.
        plugins = ",".join(name for _, _, name in chain.entries) if chain is not None and chain.entries else "-"
        headers = ",".join(_condition(k, v) for k, v in route.headers.items()) if route.headers else "-"
        rows.append((",".join(route.methods), route.host or "*", entry.path, headers, target, entry.label, plugins))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _condition(name: str, cond: Any) -> str:
    """A route's header condition as `fastgw routes` prints it: name=v1|v2, name^=prefix, name~=regex, name, !name."""
    if isinstance(cond, str):
        return f"{name}={cond}"
    if isinstance(cond, list):
        return f"{name}={'|'.join(cond)}"
    if cond.exact is not None:
        return f"{name}={cond.exact}"
    if cond.prefix is not None:
        return f"{name}^={cond.prefix}"
    if cond.regex is not None:
        return f"{name}~={cond.regex}"
    return name if cond.present else f"!{name}"


def _plugins(config: str | None, path_from: str = "") -> int:
    from fastgw.plugins.chain import PluginError, Registry, phases_of

    extra: list[str] = []
    if config is not None:
        loaded = _load(config, path_from=path_from)
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


def _admin_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--admin", metavar="URL", help="the admin API, e.g. http://127.0.0.1:9901 (default: the config's "
                   "admin section)")  # fmt: skip
    p.add_argument("--token", help="admin token (default: FASTGW_ADMIN_TOKEN, else the config's admin.token)")


def _deployments(args: argparse.Namespace) -> int:
    from fastgw import _clictl

    return _clictl.deployments(args)


def _hash_password(iterations: int | None, scheme: str | None) -> int:
    from fastgw.plugins.basic_auth import PBKDF2_ITERATIONS, hash_password

    scheme = scheme or ("pbkdf2" if iterations else "argon2id")
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("fastgw: no password on stdin", file=sys.stderr)
        return 2
    try:
        print(hash_password(password, iterations or PBKDF2_ITERATIONS, scheme))
    except ImportError:
        print(f"fastgw: {scheme} needs the auth extra (pip install 'fastgw[auth]'), or use --scheme pbkdf2",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0


def _invoke(args: argparse.Namespace) -> int:
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
    loaded = _load(args.config, _template_overrides(args), path_from=args.config_from)
    if loaded is None:
        return 1
    import uvloop

    result = uvloop.run(invoke(loaded, args.method, path, headers, body))  # the loop `fastgw serve` runs on
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(result.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(result.to_text())
    # A script (or CI) calling invoke learns that the integration failed, not only that something was printed.
    return 1 if result.failure else 0


def _serve(args: argparse.Namespace) -> int:
    from fastgw.config.load import Override, default_config_path
    from fastgw.server.server import run_worker, setup_logging, use_log_format
    from fastgw.server.supervisor import supervise

    setup_logging("info")
    path = args.config or os.environ.get("FASTGW_CONFIG")
    path_from = "FASTGW_CONFIG" if path and not args.config else ""
    if not path:
        path = str(default_config_path())
        if not (args.store or os.environ.get("FASTGW_STORE")):  # with a store, the fleet's deployment serves
            log.info("no CONFIG given: serving the built-in quickstart %s (copy it to start your own)", path)
    overrides = _template_overrides(args)
    for key, flag, env, value in (
        ("server.host", "--host", "FASTGW_HOST", args.host),
        ("server.port", "--port", "FASTGW_PORT", args.port),
        ("server.workers", "--workers", "FASTGW_WORKERS", args.workers),
        ("logging.level", "--log-level", "FASTGW_LOG_LEVEL", args.log_level),
        ("logging.access_log", "--access-log" if args.access_log else "--no-access-log", "FASTGW_ACCESS_LOG",
         args.access_log),
        ("logging.access_log_format", "--access-log-format", "FASTGW_ACCESS_LOG_FORMAT", args.access_log_format),
    ):  # fmt: skip
        if value is not None:
            overrides.append(Override(key, value, flag))
        elif os.environ.get(env):
            env_value: object = os.environ[env]
            if key in ("server.port", "server.workers"):
                env_value = _env_int(env)
            elif key == "logging.access_log":
                env_value = _env_bool(env)
            overrides.append(Override(key, env_value, env))
    store = _store_override(args.store or os.environ.get("FASTGW_STORE"), "--store" if args.store else "FASTGW_STORE")
    if store is False:
        return 2
    if isinstance(store, Override):
        overrides.append(store)
    loaded = _load(path, overrides, to_serve=True, path_from=path_from)
    if loaded is None:
        return 1
    cfg = loaded.config
    if cfg.server.port == 0:
        # The port is chosen here rather than by the listening socket, so that the config (`${server.port}`, the
        # quickstart's upstream that is the gateway itself) knows it, now and on every reload.
        try:
            port = _free_port(cfg.server.host)
        except OSError as exc:
            print(f"fastgw: cannot listen on {cfg.server.host}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        loaded = _load(path, [*overrides, Override("server.port", port, "port 0 (a free port)")], to_serve=True)
        if loaded is None:
            return 1
        cfg = loaded.config
    logging.getLogger().setLevel(cfg.logging.level.upper())
    use_log_format(cfg.logging.format)
    host, port, workers = cfg.server.host, cfg.server.port, cfg.server.workers

    from fastgw import core

    notice = core.fallback_notice()
    if notice is not None:
        log.warning("%s", notice)
    from fastgw import _clictl

    pid_file = _clictl.write_pid_file(args.pid_file, args.config or os.environ.get("FASTGW_CONFIG"))
    try:
        if workers == 1:
            run_worker(loaded, host, port, watch="all" if args.watch else "")
            return 0
        return supervise(loaded, host, port, workers, watch=args.watch)
    except OSError as exc:
        print(f"fastgw: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        _clictl.remove_pid_file(pid_file)


def _store_override(url: str | None, origin: str) -> Override | None | bool:
    """`--store etcd://...` as the config's `store.etcd` (False: the URL is wrong, and said so)."""
    if not url:
        return None
    import msgspec

    from fastgw.config.load import Override
    from fastgw.control.etcd_config import store_config_from_url

    try:
        conf = store_config_from_url(url)
    except ValueError as exc:
        print(f"fastgw: {origin}: {exc}", file=sys.stderr)
        return False
    return Override("store.etcd", msgspec.to_builtins(conf), origin)


def _free_port(host: str) -> int:
    """A port the kernel would give a listener on `host` now. NOTE: another process could take it before the
    gateway binds it, as with any port picked ahead; the listener then fails loudly with "cannot listen"."""
    import socket

    family, kind, proto, _, addr = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as probe:
        probe.bind(addr)
        return int(probe.getsockname()[1])
