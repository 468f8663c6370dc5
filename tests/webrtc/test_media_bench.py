"""Smoke test of `benchmarks/media.py` at a small size: it runs and reports (one run:
the many-party mode runs the bare servers too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "media.py"


def run(*arguments: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments, "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def test_a_small_many_party_run_counts_streams_loss_and_frames() -> None:
    """2 publishers and 2 non-decoding subscribers in 2 processes through a real
    `meetcore serve`: 2 x 1 + 2 x 2 forwarded videos; on an idle loopback nearly every
    frame arrives; the bare servers' figures come from the same run."""
    results = run("--many", "2", "2", "--subscribers", "1", "--seconds", "2")
    result = results["many/2x2"]
    assert result["forwarded_streams"] == 6
    assert result["server_cpu_percent"] > 0 and result["streams_per_core"] > 0
    assert result["packets_per_second"] > 6 * 20  # 640x480 VP8: dozens of packets a second
    # counted exactly (the cameras are held at both ends of the window)
    assert 90 <= result["frames_delivered_percent"] <= 101
    assert 0 <= result["loss_percent"] < 50
    assert len(result["subscriber_processes_cpu_percent"]) == 2
    assert results["largest_under_1_percent_loss"] in (0, 6)
    # the bare servers, one subscriber each: 2 s, since forwarding one video takes about
    # 2% of a core and /proc counts CPU time in 10 ms ticks (over 0.5 s it was sometimes
    # 0 ticks in fresh-ci)
    for mode in ("forward", "relay"):
        assert results[mode]["server_cpu_percent"] > 0  # it did work: 2 s of video
        assert results[mode]["fps_per_subscriber"] > 0  # the subscriber got frames
        assert results[mode]["streams_per_core"] > 0
