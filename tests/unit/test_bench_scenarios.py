"""The configs bench/run.py's ratelimit, cache, tls and chain scenarios serve load and put the plugins on the routes
(the scenarios themselves are run by hand: they are load tests; tests/integration/test_bench_smoke.py runs a few
for a second)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastgw.config.load import load_config_bytes

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_scenario_configs_load_with_their_plugins():
    bench = _bench()
    for text, plugin in (
        (bench.ratelimit_config(18001, 18002, "local", 18003), "rate-limit"),
        (bench.ratelimit_config(18001, 18002, "redis", 18003), "rate-limit"),
        (bench.cache_config(18001, 18002), "proxy-cache"),
    ):
        loaded = load_config_bytes(text.encode(), "bench.yaml")
        assert loaded.config.server.port == 18001
        assert all(plugin in r.plugins for r in loaded.config.routes)
        assert (loaded.config.redis is not None) == ("policy: redis" in text)


def test_the_tls_scenario_config_loads_pinned_to_tls12_and_one_cipher(tmp_path):
    import shutil

    import pytest

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    bench = _bench()
    cert, key = bench.bench_certificate(tmp_path)
    loaded = load_config_bytes(bench.tls_config(18001, 18002, cert, key).encode(), "bench.yaml")
    tls = loaded.config.server.tls
    assert tls is not None and tls.port is None  # TLS only, on server.port
    assert (tls.min_version, tls.max_version, tls.ciphers) == ("TLSv1.2", "TLSv1.2", bench.TLS_CIPHER)
    assert f"ssl_ciphers {bench.TLS_CIPHER};" in bench.nginx_tls_server(18003, cert, key)


def test_the_chain_scenario_config_loads_issue_22s_chain(tmp_path):
    # key-auth reading the key from the query only, request-id, request-transformer adding a header, on every route;
    # the JSON access log to a file; the consumer holding the key wrk sends.
    bench = _bench()
    log = tmp_path / "access.log"
    loaded = load_config_bytes(bench.chain_config(18001, 18002, log).encode(), "bench.yaml")
    config = loaded.config
    assert config.server.port == 18001
    for route in config.routes:
        assert list(route.plugins) == ["key-auth", "request-id", "request-transformer"]
        assert route.plugins["key-auth"] == {"in_header": False}
        assert route.plugins["request-transformer"] == {"add": {"headers": {"x-bench-chain": "on"}}}
    logging = config.logging
    assert (logging.access_log, logging.access_log_format, logging.access_log_path) == (True, "json", str(log))
    assert config.consumers["bench"].credentials["key-auth"][0]["key"] == bench.BENCH_KEY


def test_last_line_counts_whole_lines_and_parses_the_last(tmp_path):
    bench = _bench()
    log = tmp_path / "access.log"
    assert bench.last_line(log) == (0, {})
    log.write_bytes(b'{"status": 200, "n": 1}\n{"status": 200, "n": 2}\n{"status": 2')  # a line being written
    assert bench.last_line(log) == (2, {"status": 200, "n": 2})
