"""bench/run.py still works end to end (a very short run; the figures themselves are not judged here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastgw import core

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("nginx", "wrk", "taskset")) or (os.cpu_count() or 1) < 2,
    reason="needs nginx, wrk, taskset and 2 CPUs (.ci/run installs them)",
)
def test_bench_runs_and_writes_a_result(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--duration",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "1",
            "--connections",
            "4",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    for side in ("fastgw", "nginx"):
        assert result[side]["rps"] > 0 and result[side]["p99_ms"] > 0 and result[side]["errors"] == 0
    assert result["ratio_rps"] > 0 and result["ratio_rps_paired"] > 0
    assert result["fastgw_core"] == ("compiled" if core.COMPILED else "pure-python")
    assert "fastgw/nginx: throughput" in proc.stdout


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("nginx", "wrk", "taskset", "node")) or (os.cpu_count() or 1) < 2,
    reason="needs wrk, taskset, node and 2 CPUs (.ci/run installs them)",
)
def test_function_bench_runs_and_writes_a_result(tmp_path):
    out = tmp_path / "functions.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "functions.py"), "--duration", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    for runtime in ("python", "nodejs"):
        light = result["runs"][runtime]["light_c1"]
        assert light["rps"] > 0 and light["p50_ms"] > 0 and light["non_2xx"] == 0 and light["socket_errors"] == 0
    assert result["summary"]["overlapping_at_pool_size"] > 1  # the sleeping handler ran in parallel workers


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("nginx", "wrk", "taskset", "openssl")) or (os.cpu_count() or 1) < 2,
    reason="needs nginx, wrk, taskset, openssl and 2 CPUs (.ci/run installs them)",
)
def test_tls_bench_runs_both_proxies_on_the_same_protocol_and_cipher(tmp_path):
    out = tmp_path / "tls.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--scenario", "tls", "--duration", "1", "--rounds", "1",
           "--warmup", "1", "--connections", "4", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    for side in ("gw-tls", "ngx-tls"):
        assert result[side]["rps"] > 0 and result[side]["errors"] == 0
        assert result["tls_negotiated"][side] == ["TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"]
    assert result["tls_ratio_rps"] > 0 and result["tls_ratio_rps_paired"] > 0
    assert "TLS fastgw/nginx: throughput" in proc.stdout


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("nginx", "wrk", "taskset")) or (os.cpu_count() or 1) < 2,
    reason="needs nginx, wrk, taskset and 2 CPUs (.ci/run installs them)",
)
def test_chain_bench_reports_the_chains_cpu_per_request_beside_nginx(tmp_path):
    out = tmp_path / "chain.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--scenario", "chain", "--duration", "1", "--rounds", "1",
           "--warmup", "1", "--connections", "4", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    for side in ("fastgw", "nginx", "chain"):
        assert result[side]["rps"] > 0 and result[side]["errors"] == 0  # (a 401 from key-auth counts as an error)
        assert result[side]["cpu_us_per_request"] > 0
    assert result["chain_ratio_cpu_efficiency"] == round(
        result["nginx"]["cpu_us_per_request"] / result["chain"]["cpu_us_per_request"], 3
    )
    assert result["chain_vs_plain"] > 0 and result["chain_ratio_rps_vs_nginx"] > 0
    # The chain ran: the JSON access log has the requests, by the consumer key-auth found, each with its request id.
    log = result["chain_access_log"]
    assert log["lines"] > 0
    assert log["last"]["consumer"] == "bench" and log["last"]["request_id"] and log["last"]["status"] == 200
    assert "chain (key-auth query key, request-id, request-transformer, JSON access log): CPU per request" in (
        proc.stdout
    )
