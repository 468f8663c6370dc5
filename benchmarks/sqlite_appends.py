"""meetcore-sqlite throughput: durable commands/s from 100 concurrent meetings through
`Engine.execute` (synchronous=FULL and NORMAL), and reading + folding one meeting of
10,000 events. Targets: 30,000 commands/s durable; the fold under 50 ms.

    uv run python benchmarks/sqlite_appends.py [--seconds 3] [--meetings 100]

Not a test: it prints numbers. (A comparison with the eventsourcing library's SQLite
persistence is still to be written.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import anyio

from meetcore import Engine, fold
from meetcore.commands import InitMeeting, Join
from meetcore.testing import sample_events
from meetcore_sqlite import SQLiteStore

TARGET_COMMANDS = 30_000
TARGET_FOLD_MS = 50


async def appends(path: Path, synchronous: str, meetings: int, seconds: float) -> tuple[int, int]:
    """Commands executed in `seconds` by one task per meeting; and transactions used."""
    store = SQLiteStore(path, synchronous=synchronous)  # type: ignore[arg-type]
    done = 0
    try:
        async with Engine.open(store, sweep_leases=False) as engine:
            ids = [f"m-{n}" for n in range(meetings)]
            for meeting_id in ids:
                await engine.execute(InitMeeting(meeting_id=meeting_id))
            start = store.transactions
            deadline = time.perf_counter() + seconds

            async def worker(meeting_id: str) -> None:
                nonlocal done
                n = 0
                while time.perf_counter() < deadline:
                    await engine.execute(
                        Join(
                            meeting_id=meeting_id,
                            participant_id=f"p{n}",
                            connection_id=f"c{n}",
                            session_id="s-1",
                            name=f"participant {n}",
                        )
                    )
                    n += 1
                    done += 1

            began = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for meeting_id in ids:
                    tasks.start_soon(worker, meeting_id)
            elapsed = time.perf_counter() - began
            transactions = store.transactions - start
    finally:
        await store.close()
    return round(done / elapsed), transactions


async def read_and_fold(path: Path, events: int) -> tuple[float, float]:
    """Milliseconds to read one meeting of `events` events, and to fold them (best of 5)."""
    store = SQLiteStore(path, synchronous="NORMAL")
    try:
        version = 0
        while version < events:
            batch = sample_events("big", start=version, count=min(100, events - version))
            version = (await store.append("big", version, batch, None))[-1].version
        best_read = best_fold = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            records = await store.read("big")
            read = time.perf_counter() - began
            began = time.perf_counter()
            state = fold(r.event for r in records)
            folded = time.perf_counter() - began
            assert state is not None
            assert state.version == events
            best_read, best_fold = min(best_read, read), min(best_fold, folded)
    finally:
        await store.close()
    return best_read * 1000, best_fold * 1000


async def main(seconds: float, meetings: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for synchronous in ("FULL", "NORMAL"):
            path = Path(directory) / f"{synchronous}.db"
            rate, transactions = await appends(path, synchronous, meetings, seconds)
            verdict = "meets" if rate >= TARGET_COMMANDS else "misses"
            print(
                f"synchronous={synchronous:6} {rate:>8,} commands/s from {meetings} meetings "
                f"({transactions:,} transactions; {verdict} the {TARGET_COMMANDS:,}/s target)"
            )
        read_ms, fold_ms = await read_and_fold(Path(directory) / "fold.db", 10_000)
        verdict = "meets" if read_ms + fold_ms < TARGET_FOLD_MS else "misses"
        print(
            f"one meeting of 10,000 events: read {read_ms:.1f} ms + fold {fold_ms:.1f} ms "
            f"= {read_ms + fold_ms:.1f} ms ({verdict} the {TARGET_FOLD_MS} ms target)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--meetings", type=int, default=100)
    options = parser.parse_args()
    anyio.run(main, options.seconds, options.meetings)
