"""meetcore-sqlite beyond the contract: group commit, clear errors, URLs, the engine and
the CLI on a file, and two engine processes on one file."""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from click.testing import CliRunner
from support import eventually

import meetcore
import meetcore_sqlite
from meetcore import Conflict, Engine, InvalidLog, StoreError, fold, plugin_manager
from meetcore.cli import build_cli
from meetcore.commands import InitMeeting, Join, Leave
from meetcore.testing import race_engines, sample_events
from meetcore_sqlite import SCHEMA_VERSION, SQLiteStore, Synchronous, open_url
from meetcore_sqlite._store import _Settled


def replay(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_cli(plugin_manager()), ["replay", *args])
    return result.exit_code, result.output


# -- group commit ------------------------------------------------------------------


@pytest.mark.anyio
async def test_appends_that_arrive_together_share_a_transaction(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "group.db")
    try:
        meetings = [f"m-{n}" for n in range(200)]
        async with anyio.create_task_group() as tasks:
            for meeting_id in meetings:
                tasks.start_soon(store.append, meeting_id, 0, sample_events(meeting_id), None)
        assert store.appends == 200
        assert store.transactions < 100, "concurrent appends should be committed in groups"
        for meeting_id in meetings:
            assert [r.version for r in await store.read(meeting_id)] == [1, 2, 3]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_cancelled_append_returns_once_it_is_settled(tmp_path: Path) -> None:
    # once queued, an append is committed whatever its caller does; a cancelled caller
    # waits for that (one commit) before it gives up, and then the log has it
    store = SQLiteStore(tmp_path / "cancel.db")
    try:
        for n in range(20):
            with anyio.CancelScope() as scope:
                scope.cancel()
                await store.append(f"m-{n}", 0, sample_events(f"m-{n}"), None)
            assert scope.cancelled_caught
            assert [r.version for r in await store.read(f"m-{n}")] == [1, 2, 3]
        records = await store.append("m-0", 3, sample_events("m-0", start=3, count=1), None)
        assert [r.version for r in records] == [4]
    finally:
        await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("set_first", [True, False])
async def test_the_asyncio_waiter_can_be_awaited_again_after_a_cancelled_wait(
    set_first: bool,
) -> None:
    done = _Settled(asyncio.get_running_loop())

    async def wait() -> None:
        await done.wait()

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if set_first:
        done.set()
        await asyncio.wait_for(done.wait(), 5)
    else:
        again = asyncio.ensure_future(wait())
        await asyncio.sleep(0)
        assert not again.done()
        done.set()
        await asyncio.wait_for(again, 5)


async def writing_alone(store: SQLiteStore) -> None:
    """Wait until the writer thread has taken the one append queued (alone in its group)
    and holds its transaction, stuck on the write lock another connection holds."""
    await anyio.wait_all_tasks_blocked()  # the append is queued
    await eventually(lambda: store._queue.qsize() == 0 and store._transaction.locked())


async def queued(store: SQLiteStore, count: int) -> None:
    """Wait until `count` appends wait in the store's queue for the writer thread."""
    await eventually(lambda: store._queue.qsize() == count)


@pytest.mark.anyio
async def test_the_checkpointer_copies_the_wal_into_the_file_while_open(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    store = SQLiteStore(path, synchronous="NORMAL")
    try:
        empty = path.stat().st_size
        for n in range(300):  # commits that the writer itself never checkpoints
            await store.append(f"m-{n}", 0, sample_events(f"m-{n}"), None)
        with anyio.fail_after(5):
            while path.stat().st_size <= empty:
                await anyio.sleep(0.01)
        probe = sqlite3.connect(path)
        try:
            rows = probe.execute("SELECT count(*) FROM records").fetchone()[0]
            assert rows == 900
        finally:
            probe.close()
    finally:
        await store.close()
    assert not path.with_name("wal.db-wal").exists()  # the last close checkpoints the rest


@pytest.mark.anyio
@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
async def test_a_conflict_in_a_group_spoils_nothing_else(
    tmp_path: Path, synchronous: Synchronous
) -> None:
    path = tmp_path / "group.db"
    store = SQLiteStore(path, synchronous=synchronous)
    try:
        await store.append("busy", 0, sample_events("busy", count=2), None)
        before = store.transactions
        outcomes: dict[str, object] = {}

        async def append(name: str, meeting_id: str, expected: int) -> None:
            events = sample_events(meeting_id, start=expected, count=2)
            try:
                outcomes[name] = await store.append(meeting_id, expected, events, None)
            except Conflict as exc:
                outcomes[name] = exc

        # Another process holds the write lock: the appends queue up (and wait, not fail),
        # then go in together once it lets go.
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(append, "first", "m-first", 0)
            await anyio.wait_all_tasks_blocked()  # it waits for the write lock
            for n in range(10):
                tasks.start_soon(append, f"good-{n}", f"m-{n}", 0)
            tasks.start_soon(append, "stale", "busy", 1)
            tasks.start_soon(append, "next", "busy", 2)
            tasks.start_soon(append, "late", "busy", 2)  # the same version, after "next"
            await anyio.wait_all_tasks_blocked()  # all queued behind it
            assert outcomes == {}
            blocker.execute("ROLLBACK")
        blocker.close()

        # 14 appends in a few transactions (the first alone or not, the rest in one to
        # three groups as the writer thread and the event loop take turns), never one each
        assert 1 <= store.transactions - before <= 4
        stale, late = outcomes.pop("stale"), outcomes.pop("late")
        assert isinstance(stale, Conflict) and stale.actual_version == 2
        assert isinstance(late, Conflict) and late.actual_version == 4
        assert all(isinstance(o, list) and len(o) == 2 for o in outcomes.values()), outcomes
        assert [r.version for r in await store.read("busy")] == [1, 2, 3, 4]
        everything = await store.read_all()
        assert [r.position for r in everything] == list(range(1, len(everything) + 1))
    finally:
        await store.close()


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two stores on one file. `ours` remembers the versions and the last position it
    committed, and appends in one statement when they vouch for an append; `theirs`
    writes behind its back, as another process would."""
    ours, theirs = SQLiteStore(tmp_path / "two.db"), SQLiteStore(tmp_path / "two.db")
    yield ours, theirs
    await ours.close()
    await theirs.close()


@pytest.mark.anyio
async def test_a_writer_that_missed_another_process_writes_nothing_then_decides_again(
    two: tuple[SQLiteStore, SQLiteStore],
) -> None:
    ours, theirs = two
    await ours.append("m", 0, sample_events("m", count=2), None)
    await theirs.append("other", 0, sample_events("other", count=3), None)
    # The positions ours remembers are taken: the append goes in after theirs.
    appended = await ours.append("m", 2, sample_events("m", start=2, count=1), None)
    assert [(r.version, r.position) for r in appended] == [(3, 6)]
    await theirs.append("m", 3, sample_events("m", start=3, count=1), None)
    # The version ours remembers is taken: a conflict with the version in the file.
    with pytest.raises(Conflict) as conflict:
        await ours.append("m", 3, sample_events("m", start=3, count=1), None)
    assert conflict.value.actual_version == 4
    # A meeting ours never saw, expected new: theirs made it, its version 1 is taken.
    await theirs.append("new", 0, sample_events("new", count=2), None)
    with pytest.raises(Conflict) as conflict:
        await ours.append("new", 0, sample_events("new", count=1), None)
    assert conflict.value.actual_version == 2
    everything = await ours.read_all()
    assert [r.position for r in everything] == list(range(1, 10))
    assert [r.version for r in await theirs.read("m")] == [1, 2, 3, 4]
    assert [r.version for r in await ours.read("other")] == [1, 2, 3]
    assert [r.version for r in await ours.read("new")] == [1, 2]


@pytest.mark.anyio
async def test_a_statement_that_collides_on_a_later_row_writes_none_of_its_rows(
    two: tuple[SQLiteStore, SQLiteStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts: list[tuple[bool, int]] = []  # (in a transaction, rows) of each INSERT
    insert = meetcore_sqlite._store._insert

    def spy(connection: sqlite3.Connection, rows: list[Any], max_rows: int) -> None:
        inserts.append((connection.in_transaction, len(rows) // 5))  # five values a row
        insert(connection, rows, max_rows)

    monkeypatch.setattr(meetcore_sqlite._store, "_insert", spy)
    ours, theirs = two
    outcomes: dict[str, object] = {}

    async def append(meeting_id: str, count: int) -> None:
        try:
            outcomes[meeting_id] = await ours.append(
                meeting_id, 0, sample_events(meeting_id, count=count), None
            )
        except Conflict as exc:
            outcomes[meeting_id] = exc

    await theirs.append("new", 0, sample_events("new", count=2), None)
    await ours.append("x", 0, sample_events("x", count=3), None)  # positions 3 to 5
    blocker = sqlite3.connect(ours.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(append, "z", 1)  # waits for the lock, alone in its group
        await writing_alone(ours)
        tasks.start_soon(append, "y", 2)  # then these two go together: both look
        tasks.start_soon(append, "new", 1)  # new to ours; "new" is not
        await queued(ours, 2)
        blocker.execute("ROLLBACK")
    blocker.close()
    # The group's one statement (y, y, new) failed on its third row, outside any
    # transaction; then the careful way wrote y and found the conflict.
    assert (False, 3) in inserts
    conflict = outcomes["new"]
    assert isinstance(conflict, Conflict) and conflict.actual_version == 2
    assert [r.version for r in await theirs.read("y")] == [1, 2]
    assert [r.version for r in await theirs.read("new")] == [1, 2]
    everything = await theirs.read_all()
    assert [r.position for r in everything] == list(range(1, 9))


@pytest.mark.anyio
@pytest.mark.parametrize("careful", [False, True], ids=["one statement", "transaction"])
async def test_an_append_that_cannot_be_stored_fails_alone(
    two: tuple[SQLiteStore, SQLiteStore], careful: bool
) -> None:
    # Events the log cannot hold (an integer msgpack cannot encode, a record over
    # SQLite's length limit) fail their own append only: the rest of the group commits,
    # and the writer goes on.
    ours, theirs = two
    ours._max_record = 20_000  # SQLite's limit is about 1 GB; the same rule, smaller
    await theirs.append("known", 0, sample_events("known", count=2), None)
    outcomes: dict[str, object] = {}

    def joined(meeting_id: str, start: int, meta_data: dict[str, Any]) -> list[Any]:
        events = sample_events(meeting_id, start=start, count=start + 1 if start else 3)
        return [*events[:-1], msgspec.structs.replace(events[-1], meta_data=meta_data)]

    async def append(name: str, meeting_id: str, expected: int, events: list[Any]) -> None:
        try:
            outcomes[name] = await ours.append(meeting_id, expected, events, None)
        except (Conflict, StoreError) as exc:
            outcomes[name] = exc

    blocker = sqlite3.connect(ours.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(append, "first", "first", 0, sample_events("first"))
        await writing_alone(ours)  # the rest queue up behind it, as one group
        tasks.start_soon(append, "good", "good", 0, sample_events("good"))
        tasks.start_soon(append, "huge int", "bad", 0, joined("bad", 0, {"n": 2**70}))
        tasks.start_soon(append, "after", "bad", 3, sample_events("bad", start=3, count=1))
        tasks.start_soon(append, "too big", "big", 0, joined("big", 0, {"x": "x" * 30_000}))
        if careful:  # a meeting ours does not know: the group goes in a transaction
            tasks.start_soon(append, "known", "known", 2, sample_events("known", start=2))
        tasks.start_soon(append, "good too", "good-2", 0, sample_events("good-2"))
        await queued(ours, 6 if careful else 5)
        blocker.execute("ROLLBACK")
    blocker.close()

    for name, why in [
        ("huge int", "'bad'.*serialize ints"),
        ("too big", r"'big': a record of 3\d,\d{3} bytes is over SQLite's limit \(20,000\)"),
    ]:
        with pytest.raises(StoreError, match=why):
            raise outcomes.pop(name)  # type: ignore[misc]
    after = outcomes.pop("after")
    assert isinstance(after, Conflict) and after.actual_version == 0  # "bad" never began
    assert all(isinstance(o, list) and len(o) == 3 for o in outcomes.values()), outcomes
    assert await ours.read("bad") == [] and await ours.read("big") == []
    everything = await ours.read_all()
    assert [r.position for r in everything] == list(range(1, len(everything) + 1))
    assert len(everything) == 2 + 3 * len(outcomes)
    # and the writer goes on
    assert len(await ours.append("later", 0, sample_events("later"), None)) == 3


@pytest.mark.anyio
async def test_the_writer_survives_a_failure_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug in the writer fails the group it was committing, with a clear error to
    # every caller, and is logged; the writer thread lives on.
    insert = meetcore_sqlite._store._insert
    failures = [RuntimeError("a bug")]

    def failing(connection: sqlite3.Connection, rows: list[Any], max_rows: int) -> None:
        if failures:
            raise failures.pop()
        insert(connection, rows, max_rows)

    monkeypatch.setattr(meetcore_sqlite._store, "_insert", failing)
    store = SQLiteStore(tmp_path / "bug.db")
    try:
        with pytest.raises(StoreError, match=r"bug\.db: the append failed: RuntimeError"):
            await store.append("m", 0, sample_events("m"), None)
        assert "a group of 1 appends failed" in caplog.text
        assert await store.read("m") == []
        appended = await store.append("m", 0, sample_events("m"), None)
        assert [r.version for r in appended] == [1, 2, 3]  # the writer goes on
    finally:
        await store.close()


@pytest.mark.anyio
async def test_the_writer_forgets_versions_past_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(meetcore_sqlite._store, "MAX_REMEMBERED", 5)
    store = SQLiteStore(tmp_path / "forget.db")
    try:
        for n in range(12):
            await store.append(f"m-{n}", 0, sample_events(f"m-{n}"), None)
            assert len(store._versions) <= 5
        for n in range(12):  # forgotten or not, the next append finds its version
            await store.append(f"m-{n}", 3, sample_events(f"m-{n}", start=3, count=1), None)
        with pytest.raises(Conflict):
            await store.append("m-0", 3, sample_events("m-0", start=3, count=1), None)
        assert [r.version for r in await store.read("m-0")] == [1, 2, 3, 4]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_more_rows_than_one_statement_takes(tmp_path: Path) -> None:
    # SQLite before 3.32 allows 999 variables a statement: 199 rows of five.
    connection = sqlite3.connect(":memory:")
    connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    assert meetcore_sqlite._store._max_rows(connection) == 199
    connection.close()
    store = SQLiteStore(tmp_path / "rows.db")
    try:
        await store.append("small", 0, sample_events("small"), None)
        big = sample_events("big", count=meetcore_sqlite._store.MAX_ROWS + 500)
        records = await store.append("big", 0, big, None)
        assert [r.version for r in await store.read("big")] == [r.version for r in records]
        assert records[-1].position == 3 + len(big)
    finally:
        await store.close()


@pytest.mark.anyio
async def test_the_wal_starts_again_under_steady_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite starts the WAL again only at a commit that finds it all copied: with
    # commits coming all the time, the checkpointer has to hold the writer back once.
    monkeypatch.setattr(meetcore_sqlite._store, "RESTART_FRAMES", 20)
    path = tmp_path / "steady.db"
    store = SQLiteStore(path, synchronous="NORMAL")
    deadline = anyio.current_time() + 0.5
    frames: list[int] = []  # the WAL's length, as the wal-index header says

    async def append(meeting_id: str) -> None:
        version = 0
        while anyio.current_time() < deadline:
            events = sample_events(meeting_id, start=version, count=1)
            version = (await store.append(meeting_id, version, events, None))[-1].version

    async def watch() -> None:
        with path.with_name("steady.db-shm").open("rb", buffering=0) as shm:
            while anyio.current_time() < deadline:
                shm.seek(16)  # mxFrame, a native u32 (sqlite.org/walformat.html)
                frames.append(int.from_bytes(shm.read(4), sys.byteorder))
                await anyio.sleep(0.002)

    try:
        await store.append("first", 0, sample_events("first"), None)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            for n in range(10):
                tasks.start_soon(append, f"m-{n}")
        assert store.transactions > 100
        assert max(frames) > 20
        assert any(later < earlier for earlier, later in itertools.pairwise(frames))
    finally:
        await store.close()


@pytest.mark.anyio
async def test_the_writer_waits_for_another_writer_up_to_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = SQLiteStore(path, busy_timeout=0.5)
    try:
        # The first append goes in a transaction, the next ones in one statement (the
        # writer's cache vouches for them): each waits for the lock once, not twice.
        for version in (0, 3):
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            try:
                began = anyio.current_time()
                with pytest.raises(StoreError, match=r"busy\.db: database is locked"):
                    await store.append("m-1", version, sample_events("m-1", start=version), None)
                assert anyio.current_time() - began < 0.9  # 0.5 s, not 1 s
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            # and works again once the lock is free
            appended = await store.append("m-1", version, sample_events("m-1", start=version), None)
            assert len(appended) == 3
    finally:
        await store.close()


@pytest.mark.anyio
async def test_hostile_arguments_and_a_corrupt_record(tmp_path: Path) -> None:
    path = tmp_path / "hostile.db"
    store = SQLiteStore(path)
    try:
        await store.append("m", 0, sample_events("m"), None)
        # an id SQLite cannot hold as text: no such meeting, and none can be appended
        assert await store.read("\ud800") == []
        with pytest.raises(ValueError, match="not valid text"):
            await store.append("\ud800", 0, sample_events("\ud800"), None)
        # numbers past SQLite's integers mean "all" (or "after everything")
        assert await store.read("m", 2**70) == []
        assert await store.read_all(2**70) == []
        assert [r.position for r in await store.read_all(0, 2**70)] == [1, 2, 3]
        # a record damaged in the file: InvalidLog names its position
        with sqlite3.connect(path) as other:
            other.execute("UPDATE records SET record = x'c1' WHERE position = 2")
        other.close()
        for read in (store.read("m"), store.read_all()):
            with pytest.raises(InvalidLog, match=r"hostile\.db: the record at position 2: "):
                await read
        assert [r.version for r in await store.read("m", 2)] == [3]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_closed_store_refuses_politely(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "closed.db")
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.append("m-1", 0, sample_events("m-1"), None)
    with pytest.raises(StoreError, match="closed"):
        await store.read("m-1")


@pytest.mark.anyio
async def test_close_waits_for_a_read_in_flight(tmp_path: Path) -> None:
    # a read running in its worker thread when close() is called finishes with its rows,
    # and close() returns only after its connection is closed too: no WAL left behind
    path = tmp_path / "reading.db"
    store = SQLiteStore(path)
    await store.append("m-1", 0, sample_events("m-1"), None)
    entered, release = threading.Event(), threading.Event()

    class Slow(sqlite3.Connection):
        def execute(self, *args: Any) -> sqlite3.Cursor:
            entered.set()
            release.wait(10)
            return super().execute(*args)

    store._readers[:] = [sqlite3.connect(path, factory=Slow, check_same_thread=False)]
    read: list[int] = []
    closed = anyio.Event()

    async def reading() -> None:
        read.extend(r.version for r in await store.read("m-1"))

    async def closing() -> None:
        await store.close()
        closed.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(reading)
        await anyio.to_thread.run_sync(entered.wait, 10)
        tasks.start_soon(closing)
        try:
            with anyio.move_on_after(0.3):
                await closed.wait()
            assert not closed.is_set(), "close() returned while a read was running"
            with pytest.raises(StoreError, match="closed"):
                await store.read("m-1")  # a read that starts after close() is refused
        finally:
            release.set()
    assert read == [1, 2, 3]
    assert not path.with_name("reading.db-wal").exists()


def test_an_append_from_another_thread_racing_close_never_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An append made in another thread's event loop as close() runs is either done or
    # refused as closed; it never waits for a writer that has stopped. The race is
    # widened: the append pauses after it starts, while close() runs to the end.
    waiter = meetcore_sqlite._store._waiter
    started, closed = threading.Event(), threading.Event()

    def slow_waiter() -> Any:
        started.set()
        closed.wait(5)
        return waiter()

    monkeypatch.setattr(meetcore_sqlite._store, "_waiter", slow_waiter)
    store = SQLiteStore(tmp_path / "race.db")
    outcome: list[object] = []

    async def append() -> None:
        try:
            outcome.append(await store.append("m", 0, sample_events("m"), None))
        except StoreError as exc:
            outcome.append(exc)

    other = threading.Thread(target=anyio.run, args=(append,), daemon=True)
    other.start()
    assert started.wait(5)
    anyio.run(store.close)
    closed.set()
    other.join(5)
    assert not other.is_alive(), "the append waits for a writer that has stopped"
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
    assert "closed" in str(outcome[0])


# -- the file ------------------------------------------------------------------------


def test_the_file_is_wal_with_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "meetcore.db"
    anyio.run(SQLiteStore(path).close)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def _write_some(path: Path, meetings: int = 50) -> None:
    async def write() -> None:
        store = SQLiteStore(path, synchronous="NORMAL")
        try:
            for n in range(meetings):
                await store.append(f"m-{n}", 0, sample_events(f"m-{n}", count=10), None)
        finally:
            await store.close()

    anyio.run(write)


def _open_and_read(path: Path) -> None:
    async def read() -> None:
        store = SQLiteStore(path)
        try:
            await store.read_all(limit=100_000)
        finally:
            await store.close()

    anyio.run(read)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    _write_some(path, meetings=1)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA user_version = 3")
    connection.close()
    before = path.read_bytes()
    message = (
        f"{path}: was written by a newer meetcore (schema 3, this one reads up to "
        f"{SCHEMA_VERSION}): "
        "upgrade meetcore-sqlite"
    )
    with pytest.raises(StoreError) as raised:
        SQLiteStore(path)
    assert str(raised.value) == message
    code, output = replay(f"sqlite:///{path}")
    assert code != 0
    assert "newer meetcore (schema 3" in output
    assert "Traceback" not in output
    assert path.read_bytes() == before, "a file refused was changed"


def _text(path: Path) -> None:
    path.write_text("meeting notes, not a database\n")


def _random(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _short(path: Path) -> None:
    _write_some(path, meetings=1)
    path.write_bytes(path.read_bytes()[:60])


def _truncated(path: Path) -> None:
    _write_some(path)
    data = path.read_bytes()
    assert len(data) > 8 * 4096
    path.write_bytes(data[: len(data) // 2])


def _scrambled(path: Path) -> None:
    _write_some(path)
    # a WAL left behind now and then would serve the pages from there, uncorrupted
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    data[4096:] = os.urandom(len(data) - 4096)  # every page but the first
    path.write_bytes(bytes(data))


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_text, "not an SQLite database, so not a meetcore store"),
        (_random, "not an SQLite database, so not a meetcore store"),
        (_short, "truncated"),
        (_truncated, "truncated"),
        (_scrambled, "corrupt|malformed|not a database"),
        (_foreign, "an SQLite database of another application, not a meetcore store"),
    ],
    ids=["text", "random-bytes", "short", "truncated", "scrambled", "foreign"],
)
def test_a_file_that_is_not_a_meetcore_store_gives_one_clear_line(
    tmp_path: Path, make: object, reason: str
) -> None:
    path = tmp_path / "bad.db"
    make(path)  # type: ignore[operator]
    before = path.read_bytes()
    with pytest.raises(StoreError, match=reason) as raised:
        _open_and_read(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert "\n" not in str(raised.value)
    code, output = replay(f"sqlite:///{path}", "--verify")
    assert code != 0
    assert str(path) in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output
    assert path.read_bytes() == before, "a file refused was changed"


def test_places_that_cannot_hold_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        SQLiteStore(tmp_path)
    with pytest.raises(StoreError, match=r"directory .*nowhere does not exist"):
        SQLiteStore(tmp_path / "nowhere" / "meetcore.db")


@pytest.mark.anyio
async def test_vacuum_into_copies_a_consistent_snapshot_under_load(tmp_path: Path) -> None:
    # docs/storage.md's backup: VACUUM INTO (the statement the sqlite3 CLI runs) while
    # meetings keep appending gives a meetcore store whose every meeting is whole
    path, copy = tmp_path / "live.db", tmp_path / "copy.db"
    store = SQLiteStore(path, synchronous="NORMAL")
    stop = anyio.Event()

    async def meeting(meeting_id: str) -> None:
        version = 0
        while not stop.is_set():
            events = sample_events(meeting_id, start=version, count=version + 3)[-3:]
            version = (await store.append(meeting_id, version, events, None))[-1].version

    def vacuum_into() -> None:
        connection = sqlite3.connect(path)
        try:
            connection.execute("VACUUM INTO ?", (str(copy),))
        finally:
            connection.close()

    try:
        async with anyio.create_task_group() as tasks:
            for n in range(20):
                tasks.start_soon(meeting, f"m-{n}")
            await eventually(lambda: store.appends > 20 * 3)  # the meetings are writing
            before = store.appends
            await anyio.to_thread.run_sync(vacuum_into)
            assert store.appends > before, "the appends went on during the copy"
            stop.set()
    finally:
        await store.close()
    backup = SQLiteStore(copy)
    try:
        everything = await backup.read_all(0, 10**6)
        assert len(everything) > 20 * 3
        assert [r.position for r in everything] == list(range(1, len(everything) + 1))
        for n in range(20):
            versions = [r.version for r in await backup.read(f"m-{n}")]
            assert versions == list(range(1, len(versions) + 1))
    finally:
        await backup.close()


# -- URLs and the plugin -----------------------------------------------------------------


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_url("sqlite:///relative.db")
    absolute = open_url(f"sqlite:///{tmp_path}/absolute.db?synchronous=normal&busy_timeout=2")
    try:
        assert relative.path == Path("relative.db")
        assert (tmp_path / "relative.db").exists()
        assert absolute.path == tmp_path / "absolute.db"
        assert (absolute.synchronous, absolute.busy_timeout) == ("NORMAL", 2.0)
    finally:
        anyio.run(relative.close)
        anyio.run(absolute.close)
    for bad, message in [
        ("sqlite://", "names no file"),
        ("sqlite://host/x.db", "names no file"),
        ("sqlite://:memory:", "use memory://"),
        ("sqlite:///x.db?synchronous=off", "synchronous must be FULL, NORMAL or EXTRA"),
        ("sqlite:///x.db?busy_timeout=soon", "busy_timeout must be a number"),
        ("sqlite:///x.db?busy_timeout=-1", "busy_timeout must be a number"),
        ("sqlite:///x.db?busy_timeout=nan", "busy_timeout must be a number"),
        ("sqlite:///x.db?busy_timeout=inf", "busy_timeout must be a number"),
        ("sqlite:///x.db?busy_timeout=1e400", "busy_timeout must be a number"),
        ("sqlite:///x%00y.db", "x\x00y.db: cannot use this path: embedded null byte"),
        (f"sqlite:///{tmp_path}/{'x' * 300}.db", "cannot use this path: .*too long"),
        (f"sqlite:///{tmp_path}/{'deep/' * 1000}x.db", "cannot use this path: .*too long"),
        ("sqlite:///x.db?journal=delete", "unknown option 'journal'"),
    ]:
        with pytest.raises(StoreError, match=message):
            open_url(bad)
    with pytest.raises(ValueError, match="busy_timeout must be a number"):
        SQLiteStore(tmp_path / "x.db", busy_timeout=float("nan"))
    # and the CLI says it in one line
    code, output = replay(f"sqlite:///{tmp_path}/{'x' * 300}.db")
    assert code != 0 and "too long" in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1, output


def test_the_plugin_opens_sqlite_urls_only(tmp_path: Path) -> None:
    pm = plugin_manager()
    for read_only in (False, True):
        assert (
            meetcore_sqlite.meetcore_open_store(url="postgresql://db/meetcore", read_only=read_only)
            is None
        )
    store = pm.hook.meetcore_open_store(url=f"sqlite:///{tmp_path}/p.db", read_only=False)
    assert isinstance(store, SQLiteStore)
    assert isinstance(store, meetcore.EventStore)
    assert not store.read_only
    anyio.run(store.close)
    store = pm.hook.meetcore_open_store(url=f"sqlite:///{tmp_path}/p.db", read_only=True)
    assert isinstance(store, SQLiteStore)
    assert store.read_only
    anyio.run(store.close)


# -- the engine and the CLI on a file --------------------------------------------------------


def test_the_engine_on_a_file_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/meetcore.db"

    async def first() -> None:
        async with Engine.open(url) as engine:
            await engine.execute(InitMeeting(meeting_id="abc-def-ghi"))
            for n in range(3):
                await engine.execute(
                    Join(
                        meeting_id="abc-def-ghi",
                        participant_id=f"p{n}",
                        connection_id=f"c{n}",
                        session_id="s-1",
                        name=f"P {n}",
                    )
                )

    async def second() -> None:
        async with Engine.open(url) as engine:
            state = await engine.state("abc-def-ghi")
            assert state is not None
            assert state.version == 5
            assert sorted(state.participants) == ["p0", "p1", "p2"]
            records = await engine.execute(
                Leave(meeting_id="abc-def-ghi", participant_id="p1", connection_id="c1")
            )
            assert [r.version for r in records] == [6]

    anyio.run(first)
    anyio.run(second)
    code, output = replay(url, "--meeting", "abc-def-ghi")
    assert code == 0, output
    assert "p0" in output and "p2" in output
    code, output = replay(url, "--verify")
    assert code == 0, output
    code, output = replay(url, "--meeting", "abc-def-ghi", "--json")
    assert code == 0, output


def test_two_engine_processes_on_one_file_never_both_win_a_version(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    meetings, joins = 3, 150

    async def init() -> None:
        async with Engine.open(f"sqlite:///{path}") as engine:
            for m in range(meetings):
                await engine.execute(InitMeeting(meeting_id=f"m-{m}"))

    anyio.run(init)
    results = race_engines(f"sqlite:///{path}", meetings=meetings, joins=joins)
    assert all(r["commands"] == meetings * joins for r in results)
    retries = sum(r["attempts"] - r["commands"] for r in results)
    print("conflict retries:", retries, results)
    assert retries > 0, "the two processes should have conflicted at least once"
    assert [r["gave_up"] for r in results] == [0, 0], "a command gave up with Conflict"

    async def check() -> None:
        store = SQLiteStore(path)
        try:
            for m in range(meetings):
                records = await store.read(f"m-{m}")
                assert [r.version for r in records] == list(range(1, len(records) + 1))
                state = fold(r.event for r in records)
                assert state is not None
                assert len(state.participants) == 2 * joins
        finally:
            await store.close()

    anyio.run(check)
    code, output = replay(f"sqlite:///{path}", "--verify")
    assert code == 0, output
