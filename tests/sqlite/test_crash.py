"""Crash safety: a writer process killed with SIGKILL at random points loses nothing it
acknowledged, and leaves a log with contiguous versions and positions."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from meetcore_sqlite import SQLiteStore

WRITER = Path(__file__).with_name("_writer.py")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


async def _check(path: Path, acknowledged: dict[str, int]) -> dict[str, int]:
    """The log is intact; returns each meeting's last version."""
    store = SQLiteStore(path)
    try:
        everything = []
        after = 0
        while batch := await store.read_all(after, limit=5000):
            everything += batch
            after = batch[-1].position
        assert [r.position for r in everything] == list(range(1, len(everything) + 1))
        last: dict[str, int] = {}
        for record in everything:
            assert record.version == last.get(record.meeting_id, 0) + 1, record
            last[record.meeting_id] = record.version
        for meeting_id, version in acknowledged.items():
            assert last.get(meeting_id, 0) >= version, f"{meeting_id} v{version} was lost"
            assert [r.version for r in await store.read(meeting_id)] == list(
                range(1, last[meeting_id] + 1)
            )
    finally:
        await store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    return last


@pytest.mark.parametrize(("synchronous", "rounds"), [("FULL", 12), ("NORMAL", 5)])
def test_sigkill_at_random_points_loses_no_acknowledged_append(
    tmp_path: Path, synchronous: str, rounds: int
) -> None:
    path = tmp_path / "crash.db"
    # a new seed each run unless MEETCORE_CRASH_SEED gives one; printed, so that a failure
    # can be run again with it (pytest shows the output of a failed test)
    seed = int(os.environ.get("MEETCORE_CRASH_SEED", "0")) or random.randrange(1, 2**32)
    print(f"MEETCORE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    acknowledged: dict[str, int] = {}
    total = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(rounds):
        process = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), synchronous],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert process.stdout is not None
        first = process.stdout.readline()  # it is writing: now kill it at a random moment
        assert first, process.stderr.read().decode() if process.stderr else ""
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        output = first + process.stdout.read()
        process.wait()
        assert process.returncode == -signal.SIGKILL
        lines = output.decode().splitlines()
        if output and not output.endswith(b"\n"):
            lines.pop()  # a line cut by the kill was not fully acknowledged
        for line in lines:
            meeting_id, version = line.split()
            acknowledged[meeting_id] = max(acknowledged.get(meeting_id, 0), int(version))
        total += len(lines)
        last = anyio.run(_check, path, acknowledged)
        assert set(last) >= set(acknowledged)
    assert total > rounds, "the writer should have acknowledged appends"
