"""Smoke test of `benchmarks/run.py`: it runs and reports; how fast is not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def test_quick_json_run_reports_every_section() -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    assert report["meta"]["quick"] is True
    assert report["meta"]["target_commands_per_s"] == 300_000
    churn = report["sections"]["churn"]
    assert churn["workload"]["commands"] > 0
    assert churn["workload"]["rejected"] > 0  # the workload has stale leaves and retries
    for runner in ("meetcore", "eventsourcing"):
        for key in ("commands_per_s", "events_per_s", "us_per_command", "seconds"):
            assert churn[runner][key] > 0, (runner, key)
        assert churn[runner]["rejected"] == churn["workload"]["rejected"]
    assert churn["meetcore"]["events"] == churn["eventsourcing"]["events"]
    assert churn["ratio_meetcore_to_eventsourcing"] > 0
    assert churn["verdict"] in {"PASS", "BELOW"}

    scaling = report["sections"]["scaling"]
    assert [row["participants"] for row in scaling["rows"]] == [10, 100, 1_000, 10_000]
    for row in scaling["rows"]:
        assert row["us_per_command"] > 0
        assert row["us_per_event_evolve"] > 0
    assert scaling["ratio_command"] > 0
    assert scaling["ratio_evolve"] > 0


def test_only_runs_the_named_section() -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", "--only", "scaling"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert set(json.loads(done.stdout)["sections"]) == {"scaling"}
