"""Smoke test of `benchmarks/signaling.py` at a small size: it runs and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "signaling.py"


def test_a_small_signaling_run_reports_every_phase() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--participants", "20", "--joins", "20"),
            "--requests",
            "30",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    converge, latency = report["converge"], report["latency"]
    assert converge["participants"] == 20 and converge["same_roster"] is True
    assert 0 < converge["seconds"] < 60
    assert latency["joins"] == 20
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    keepalive = report["keepalive"]
    assert keepalive["requests"] == 30
    assert 0 < keepalive["keepalive_p50_ms"] <= keepalive["keepalive_max_ms"]
    assert keepalive["ratio"] == keepalive["keepalive_p50_ms"] / keepalive["new_connection_p50_ms"]
    for phase in (converge, latency):
        assert phase["server_cpu_s"] > 0
        assert phase["server_peak_rss_mb"] > 10
