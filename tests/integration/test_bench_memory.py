"""bench/memory.py still works end to end (a short idle; the figures themselves are not judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_memory_bench_measures_every_process_and_the_import_steps(tmp_path):
    out = tmp_path / "memory.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory.py"), "--idle", "0.2", "--no-bytecode", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    layouts = [(r["config"], r["workers"], [p["role"] for p in r["processes"]]) for r in result["runs"]]
    assert layouts == [
        ("quickstart", 1, ["worker"]), ("quickstart", 2, ["supervisor", "worker", "worker"]),
        ("plain", 1, ["worker"]), ("plain", 2, ["supervisor", "worker", "worker"]),
        ("plain-json", 1, ["worker"]), ("plain-json", 2, ["supervisor", "worker", "worker"]),
    ]  # fmt: skip
    for run in result["runs"]:
        assert set(run["statuses"]) == {200}, run  # every request answered, the plain config's through its upstream
        for p in run["processes"]:
            assert 0 < p["Uss_kib"] <= p["Pss_kib"] <= p["Rss_kib"]
    steps = [row["step"] for row in result["imports"]["steps"]]
    assert steps[0] == "interpreter" and steps[-1] == "load the quickstart"
    assert "fastgw.plugins.chain" in result["imports"]["fastgw_modules"]
