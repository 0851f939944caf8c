"""The failure drill (bench/failover.py) and the aggregate bench (bench/aggregate.py) are run by hand; their fastgw
configs are checked here."""

from __future__ import annotations

import sys
from pathlib import Path

from fastgw.config.load import load_config_bytes
from fastgw.config.schema import AggregateIntegration

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_drill_config_loads_with_retries_and_checks():
    sys.path.insert(0, str(BENCH))
    try:
        import failover
    finally:
        sys.path.remove(str(BENCH))
    raw = failover.FASTGW_CONFIG.format(port=8000, targets='"http://127.0.0.1:1", "http://127.0.0.1:2"')
    up = load_config_bytes(raw.encode()).config.upstreams["backend"]
    assert up.retries.attempts == 2 and up.health.passive is not None and up.health.active is not None
    assert "function response(status" in failover.WRK_SCRIPT


def test_the_aggregate_bench_config_loads():
    sys.path.insert(0, str(BENCH))
    try:
        import aggregate
    finally:
        sys.path.remove(str(BENCH))
    raw = aggregate.FASTGW_CONFIG.format(port=8000, users=1, orders=2)
    routes = load_config_bytes(raw.encode()).config.routes
    integ = routes[0].integration
    assert isinstance(integ, AggregateIntegration)
    assert [b.group for b in integ.backends] == ["user", "orders"]
