"""Smoke test of `benchmarks/media.py` at a small size: it runs and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "media.py"


def test_a_small_media_run_reports_server_cpu_for_forwarding_and_relaying() -> None:
    command = [sys.executable, str(SCRIPT), "--modes", "forward", "relay", "--subscribers", "1"]
    done = subprocess.run(
        [*command, "--seconds", "0.5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for key in ("forward/1", "relay/1"):
        assert results[key]["server_cpu_percent"] >= 0
        assert results[key]["fps_per_subscriber"] > 0  # the subscriber got frames
