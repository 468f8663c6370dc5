"""Smoke test of `benchmarks/run.py`: it runs and reports; how fast is not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def implied(ok: bool) -> str:
    """The verdict the report must give when its figure meets the target or not."""
    return "PASS" if ok else "BELOW"


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
    assert set(report["sections"]) == {"churn", "scaling", "engine", "replay", "memory"}
    churn = report["sections"]["churn"]
    assert churn["workload"]["commands"] > 0
    assert churn["workload"]["rejected"] > 0  # the workload has stale leaves and retries
    for runner in ("meetcore", "eventsourcing"):
        for key in ("commands_per_s", "events_per_s", "us_per_command", "seconds"):
            assert churn[runner][key] > 0, (runner, key)
        assert churn[runner]["rejected"] == churn["workload"]["rejected"]
    assert churn["meetcore"]["events"] == churn["eventsourcing"]["events"]
    assert churn["ratio_meetcore_to_eventsourcing"] > 0
    assert churn["verdict"] == implied(churn["meetcore"]["commands_per_s"] >= 300_000)

    scaling = report["sections"]["scaling"]
    assert [row["participants"] for row in scaling["rows"]] == [10, 100, 1_000, 10_000]
    for row in scaling["rows"]:
        assert row["us_per_command"] > 0
        assert row["us_per_event_evolve"] > 0
    assert scaling["ratio_command"] > 0
    assert scaling["ratio_evolve"] > 0

    engine = report["sections"]["engine"]
    assert engine["workload"]["commands"] > 0
    assert engine["workload"]["rejected"] > 0
    assert engine["target_commands_per_s"] == 100_000
    assert engine["target_ratio"] == 4
    for runner in (engine["engine"], engine["decide_evolve"], *engine["eventsourcing"].values()):
        for key in ("commands_per_s", "events_per_s", "us_per_command", "seconds"):
            assert runner[key] > 0, key
        assert runner["rejected"] == engine["workload"]["rejected"]
        assert runner["events"] == engine["engine"]["events"]
    assert 0 <= engine["engine"]["gc_share"] < 1
    assert set(engine["eventsourcing"]) == {"no_cache", "cache", "cache_no_deepcopy"}
    for peer in engine["eventsourcing"].values():
        assert peer["env"]["PERSISTENCE_MODULE"] == "eventsourcing.popo"
    assert engine["best_eventsourcing"] in engine["eventsourcing"]
    assert engine["ratio_engine_to_eventsourcing"] > 0
    assert set(engine["ratios"]) == set(engine["eventsourcing"])
    assert engine["verdict"] == implied(engine["engine"]["commands_per_s"] >= 100_000)
    assert engine["verdict_ratio"] == implied(engine["ratio_engine_to_eventsourcing"] >= 4)

    replay = report["sections"]["replay"]
    assert replay["events"] == 50_000  # --quick
    assert replay["meetings"] > 0
    assert sum(replay["event_counts"].values()) == replay["events"]
    assert replay["bytes_per_event"]["jsonl"] > replay["bytes_per_event"]["msgpack"] > 0
    assert replay["target_events_per_s"] == 1_000_000
    for key in (
        "fold_jsonl",
        "fold_msgpack",
        "read_jsonl_fold",
        "decode_only_jsonl",
        "decode_only_msgpack",
        "evolve_only",
    ):
        assert replay[key]["events_per_s"] > 0, key
        assert replay[key]["us_per_event"] > 0, key
    for form in ("jsonl", "msgpack"):
        rate = replay[f"fold_{form}"]["events_per_s"]
        assert replay[f"verdict_{form}"] == implied(rate >= 1_000_000)

    memory = report["sections"]["memory"]
    assert memory["participants"] == 10
    assert memory["records"] == memory["meetings"] * 12  # InitMeeting, SessionStarted, 10 joins
    assert memory["measured_at_full_size"] is False  # --quick
    assert memory["full_size_meetings"] == 10_000
    assert memory["target_mb"] == 150
    if memory["baseline_mb"] > 0:  # RSS comes from /proc (Linux)
        assert memory["after_gc_mb"] > memory["baseline_mb"]
        assert memory["per_meeting_kb"] > 0
        assert memory["projected_mb_at_full_size"] > memory["baseline_mb"]
        assert memory["verdict"] == implied(memory["projected_mb_at_full_size"] < 150)
    assert memory["traced_mb"] > 0
    assert memory["top_allocations"]
    for row in memory["top_allocations"]:
        assert row["mb"] > 0
        assert ":" in row["where"]


def test_only_runs_the_named_section() -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--json", "--only", "scaling"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert set(json.loads(done.stdout)["sections"]) == {"scaling"}
