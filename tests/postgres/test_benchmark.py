"""Smoke test of `benchmarks/postgres_appends.py` at a small size: it runs and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "postgres_appends.py"


def test_a_small_run_reports_appends_and_latency(database: str) -> None:
    server = database.rpartition("/")[0]  # the benchmark makes a database of its own
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--seconds", "0.3", "--meetings", "10", "--samples", "40", "--server", server),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    for nodes in ("one_node", "two_nodes"):
        assert report[nodes]["commands"] > 0
        assert report[nodes]["commands_per_s"] > 0
    assert len(report["two_nodes"]["per_node"]) == 2
    latency = report["latency"]
    assert latency["count"] == 40
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
