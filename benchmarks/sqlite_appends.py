"""meetcore-sqlite throughput: durable commands/s from 100 concurrent meetings through
`Engine.execute` (synchronous=FULL and NORMAL), and reading + folding one meeting of
10,000 events. Targets: 30,000 commands/s durable; the fold under 50 ms.

    uv run python benchmarks/sqlite_appends.py [--seconds 3] [--meetings 100] [--rounds 3]

Beside each, the peer: the eventsourcing library's SQLite persistence on the same
commands (the `Application` of `benchmarks/run.py`, its fastest configuration: an
aggregate cache without deep copies), one durable `save` per command, at the same
`synchronous` setting (the library leaves it at SQLite's default, FULL; for NORMAL the
benchmark sets the pragma on each connection the library opens). Target: meetcore at
least 8 times the peer. The peer runs its commands one after another: the library is
synchronous, and SQLite takes one writer at a time anyway.

Not a test: it prints numbers.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

from meetcore import Engine, fold
from meetcore.commands import InitMeeting, Join
from meetcore.testing import sample_events
from meetcore_sqlite import SQLiteStore

TARGET_COMMANDS = 30_000
TARGET_FOLD_MS = 50
TARGET_RATIO = 8


@contextmanager
def _synchronous(setting: str) -> Iterator[None]:
    """Make the eventsourcing library's SQLite connections use `synchronous=setting`."""
    from eventsourcing.sqlite import SQLiteConnectionPool

    create = SQLiteConnectionPool._create_connection

    def create_with_setting(self: SQLiteConnectionPool) -> object:
        connection = create(self)
        raw = connection._sqlite_conn
        raw.execute(f"PRAGMA synchronous={setting}")
        level = raw.execute("PRAGMA synchronous").fetchone()[0]
        assert level == {"FULL": 2, "NORMAL": 1}[setting], level
        return connection

    SQLiteConnectionPool._create_connection = create_with_setting  # type: ignore[method-assign]
    try:
        yield
    finally:
        SQLiteConnectionPool._create_connection = create  # type: ignore[method-assign]


def peer(path: Path, synchronous: str, meetings: int, seconds: float) -> int:
    """Commands/s of the eventsourcing Application on SQLite: the same joins."""
    from run import MeetingsApplication, peer_configs  # benchmarks/run.py

    env = {
        **peer_configs(meetings)["cache_no_deepcopy"],
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(path),
    }
    with _synchronous(synchronous):
        app = MeetingsApplication(env)
        ids = [f"m-{n}" for n in range(meetings)]
        now = int(time.time() * 1000)
        for meeting_id in ids:
            app.execute(InitMeeting(meeting_id=meeting_id, at=now))
        done = n = 0
        deadline = time.perf_counter() + seconds
        began = time.perf_counter()
        while time.perf_counter() < deadline:
            for meeting_id in ids:
                join = Join(
                    meeting_id=meeting_id,
                    participant_id=f"p{n}",
                    connection_id=f"c{n}",
                    session_id="s-1",
                    name=f"participant {n}",
                    at=now,
                )
                app.execute(join)
                done += 1
            n += 1
        elapsed = time.perf_counter() - began
        app.close()
    stored = sqlite3.connect(path).execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
    assert stored == meetings + done + meetings, (stored, done)  # inits, joins, sessions
    return round(done / elapsed)


async def appends(path: Path, synchronous: str, meetings: int, seconds: float) -> tuple[int, int]:
    """Commands executed in `seconds` by one task per meeting; and transactions used."""
    store = SQLiteStore(path, synchronous=synchronous)  # type: ignore[arg-type]
    done = 0
    try:
        async with Engine.open(store, autoload=False, sweep_leases=False) as engine:
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


async def main(seconds: float, meetings: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        for synchronous in ("FULL", "NORMAL"):
            # Rounds alternate meetcore and the peer, so that a slow spell of a shared
            # machine falls on both; the best round of each is compared.
            ours: list[tuple[int, int]] = []  # commands/s, transactions
            theirs: list[int] = []
            for n in range(rounds):
                path = Path(directory) / f"{synchronous}-{n}.db"
                ours.append(await appends(path, synchronous, meetings, seconds))
                path = Path(directory) / f"peer-{synchronous}-{n}.db"
                theirs.append(peer(path, synchronous, meetings, seconds))
            (rate, transactions), peer_rate = max(ours), max(theirs)
            verdict = "meets" if rate >= TARGET_COMMANDS else "misses"
            print(
                f"synchronous={synchronous:6} {rate:>8,} commands/s from {meetings} meetings "
                f"({transactions:,} transactions), best of {rounds} "
                f"({', '.join(f'{r:,}' for r, _ in ours)}; "
                f"{verdict} the {TARGET_COMMANDS:,}/s target)"
            )
            ratio = rate / peer_rate
            verdict = "meets" if ratio >= TARGET_RATIO else "misses"
            print(
                f"  eventsourcing SQLite {peer_rate:>8,} commands/s, best of {rounds} "
                f"({', '.join(f'{r:,}' for r in theirs)}): meetcore {ratio:.1f}x"
                f" ({verdict} the {TARGET_RATIO}x target)"
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
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    anyio.run(main, options.seconds, options.meetings, options.rounds)
