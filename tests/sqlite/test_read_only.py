"""meetcore-sqlite opened read-only (`read_only=True`, what `meetcore replay`, `export`
and `inspect` ask for): it never creates nor changes a file, and still reads what a
writer has in its WAL, whether the writer is live, came and went, or crashed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

import meetcore_sqlite
from meetcore import StoreError, plugin_manager
from meetcore.cli import build_cli
from meetcore.testing import sample_events
from meetcore_sqlite import SQLiteStore, open_url

WAL_WRITER = Path(__file__).with_name("_wal_writer.py")


def files(path: Path) -> dict[str, tuple[bytes, int]]:
    """The store's files (the database, its -wal and -shm): each one's bytes and mtime."""
    return {
        f.name: (f.read_bytes(), f.stat().st_mtime_ns)
        for f in sorted(path.parent.iterdir())
        if f.name.startswith(path.name)
    }


async def write(path: Path, meetings: range) -> None:
    """Append meetings m-N (three events each) and close the store cleanly."""
    store = SQLiteStore(path, synchronous="NORMAL")
    try:
        for n in meetings:
            await store.append(f"m-{n}", 0, sample_events(f"m-{n}"), None)
    finally:
        await store.close()


async def meetings_in(store: SQLiteStore) -> list[str]:
    """The meetings of every record, in position order."""
    return [r.meeting_id for r in await store.read_all(0, 10_000)]


def expected(count: int) -> list[str]:
    return [f"m-{n}" for n in range(count) for _ in range(3)]


def test_a_missing_store_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(StoreError) as raised:
        SQLiteStore(path, read_only=True)
    assert str(raised.value) == f"no such store: {path} does not exist"
    with pytest.raises(StoreError, match="no such store"):
        open_url(f"sqlite:///{path}", read_only=True)
    with pytest.raises(StoreError, match="no such store"):
        plugin_manager([meetcore_sqlite], autoload=False).hook.meetcore_open_store(
            url=f"sqlite:///{path}", read_only=True
        )
    assert list(tmp_path.iterdir()) == []


def test_an_empty_file_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    before = files(path)
    with pytest.raises(StoreError) as raised:
        SQLiteStore(path, read_only=True)
    assert str(raised.value) == f"{path}: an empty SQLite database, not a meetcore store"
    assert files(path) == before


@pytest.mark.anyio
async def test_a_closed_store_is_read_and_left_exactly_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "closed.db"
    await write(path, range(4))
    before = files(path)
    assert list(before) == ["closed.db"]
    store = SQLiteStore(path, read_only=True)
    try:
        assert await meetings_in(store) == expected(4)
        assert [r.version for r in await store.read("m-2")] == [1, 2, 3]
        assert await store.load_checkpoint("cursor") is None
        with pytest.raises(StoreError, match="opened read-only"):
            await store.append("m-9", 0, sample_events("m-9"), None)
        with pytest.raises(StoreError, match="opened read-only"):
            await store.save_checkpoint("cursor", b"1")
        with pytest.raises(StoreError, match="opened read-only"):
            await store.swap_checkpoint("cursor", None, b"1")
        assert files(path) == before, "reading created or changed a file"
    finally:
        await store.close()
    assert files(path) == before


@pytest.mark.anyio
async def test_a_writer_that_opens_the_file_while_it_is_read(tmp_path: Path) -> None:
    # the reader started on a closed file (immutable): once a writer has the file,
    # it reads it the usual way and sees the new appends
    path = tmp_path / "shared.db"
    await write(path, range(2))
    reader = SQLiteStore(path, read_only=True)
    writer = SQLiteStore(path)
    try:
        assert await meetings_in(reader) == expected(2)
        await writer.append("m-2", 0, sample_events("m-2"), None)
        assert await meetings_in(reader) == expected(3)
        await writer.append("m-3", 0, sample_events("m-3"), None)
        assert [r.version for r in await reader.read("m-3")] == [1, 2, 3]
    finally:
        await reader.close()
        await writer.close()
    assert sorted(os.listdir(tmp_path)) == ["shared.db"]


@pytest.mark.anyio
async def test_a_writer_that_came_and_went_between_two_reads(tmp_path: Path) -> None:
    # the file changed under the reader's immutable connection while no WAL is left to
    # show it: the changed file is noticed, and read again
    path = tmp_path / "shared.db"
    await write(path, range(2))
    reader = SQLiteStore(path, read_only=True)
    try:
        assert await meetings_in(reader) == expected(2)
        await write(path, range(2, 40))
        assert sorted(os.listdir(tmp_path)) == ["shared.db"]
        assert await meetings_in(reader) == expected(40)
    finally:
        await reader.close()
    assert sorted(os.listdir(tmp_path)) == ["shared.db"]


@contextmanager
def wal_writer(path: Path, *options: str) -> Iterator[subprocess.Popen[str]]:
    """The writer process of _wal_writer.py, once it has written its first meetings."""
    process = subprocess.Popen(
        [sys.executable, str(WAL_WRITER), str(path), *options],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = process.stdout.readline()
        assert line == "ready 3\n", process.stderr.read() if process.stderr else line
        yield process
    finally:
        process.stdin.close()
        process.wait(timeout=60)
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


def test_a_crashed_writers_wal_is_read_and_its_files_are_left_as_they_were(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crashed.db"
    with wal_writer(path, "crash") as process:
        process.wait(timeout=60)
    before = files(path)
    assert sorted(before) == ["crashed.db", "crashed.db-shm", "crashed.db-wal"]

    async def read() -> list[str]:
        store = SQLiteStore(path, read_only=True)
        try:
            return await meetings_in(store)
        finally:
            await store.close()

    assert anyio.run(read) == expected(3)
    after = files(path)
    assert sorted(after) == sorted(before)
    # the -shm is SQLite's index of the WAL, which a reader may rebuild; the rest is as it was
    assert after["crashed.db"] == before["crashed.db"]
    assert after["crashed.db-wal"] == before["crashed.db-wal"]


def test_a_wal_without_its_shm_is_read_but_gets_an_shm(tmp_path: Path) -> None:
    # a copied store (the file and its -wal, not the -shm): SQLite must rebuild its
    # index of the WAL to read it, and leaves that -shm behind (docs/storage.md says so)
    path = tmp_path / "copied.db"
    with wal_writer(path, "crash") as process:
        process.wait(timeout=60)
    (tmp_path / "copied.db-shm").unlink()
    before = files(path)

    async def read() -> list[str]:
        store = SQLiteStore(path, read_only=True)
        try:
            return await meetings_in(store)
        finally:
            await store.close()

    assert anyio.run(read) == expected(3)
    after = files(path)
    assert sorted(after) == ["copied.db", "copied.db-shm", "copied.db-wal"]
    assert {name: after[name] for name in before} == before


def test_a_live_writers_appends_in_its_wal_are_read(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    with wal_writer(path) as process:
        assert process.stdin is not None and process.stdout is not None
        before = files(path)
        store = SQLiteStore(path, read_only=True)
        try:
            assert anyio.run(meetings_in, store) == expected(3)
            process.stdin.write("2\n")
            process.stdin.flush()
            assert process.stdout.readline() == "ready 5\n"
            assert anyio.run(meetings_in, store) == expected(5)
        finally:
            anyio.run(store.close)
        # the writer holds its checkpoints back: the records are in its WAL only, and
        # the reader changed nothing of the database file
        assert files(path)["live.db"] == before["live.db"]


def test_the_command_line_reads_a_live_writers_store(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    cli = build_cli(plugin_manager([meetcore_sqlite], autoload=False))

    def meetcore(*args: str) -> str:
        result = CliRunner().invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    with wal_writer(path) as process:
        assert process.stdin is not None and process.stdout is not None
        before = files(path)
        for source in (str(path), f"sqlite:///{path}"):
            assert (
                meetcore("replay", source, "--verify") == "verified 9 records of 3 meetings: OK\n"
            )
        process.stdin.write("2\n")
        process.stdin.flush()
        assert process.stdout.readline() == "ready 5\n"
        assert meetcore("replay", str(path), "--verify") == (
            "verified 15 records of 5 meetings: OK\n"
        )
        state = json.loads(meetcore("inspect", str(path), "--meeting", "m-4", "--json"))
        assert state["version"] == 3
        assert len(meetcore("export", "--store", f"sqlite:///{path}").splitlines()) == 15
        assert files(path)["live.db"] == before["live.db"]
    assert sorted(os.listdir(tmp_path)) == ["live.db"]  # the writer closed: the WAL is gone
