"""The `meetcore.Checkpoints` store capability: the contract for the memory and SQLite
stores, durability across reopening and processes, and the SQLite schema 1 -> 2 upgrade."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

import meetcore
from meetcore import Checkpoints, MemoryStore
from meetcore.testing import CheckpointsContract, EventStoreContract, sample_events
from meetcore_sqlite import SCHEMA_VERSION, SQLiteStore

pytestmark = pytest.mark.anyio


class TestMemoryStore(CheckpointsContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        yield store
        await store.close()


class TestSQLiteStore(CheckpointsContract):
    @pytest.fixture(params=["FULL", "NORMAL"])
    async def store(
        self, tmp_path: Path, request: pytest.FixtureRequest
    ) -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "meetcore.db", synchronous=request.param)
        yield store
        await store.close()


class TestSQLiteStoreKeepsBothContracts(EventStoreContract, CheckpointsContract):
    """One class may subclass both contracts: no test name is shared."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "meetcore.db", synchronous="NORMAL")
        yield store
        await store.close()


def test_the_capability_is_exported() -> None:
    assert meetcore.Checkpoints is Checkpoints
    assert not isinstance(object(), Checkpoints)


async def test_checkpoints_survive_reopening(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "meetcore.db")
    await store.save_checkpoint("cursor", b"42")
    await store.close()
    again = SQLiteStore(tmp_path / "meetcore.db")
    try:
        assert await again.load_checkpoint("cursor") == b"42"
    finally:
        await again.close()


async def test_two_stores_on_one_file_swap_atomically(tmp_path: Path) -> None:
    one, two = SQLiteStore(tmp_path / "m.db"), SQLiteStore(tmp_path / "m.db")
    try:
        await one.save_checkpoint("lease", b"free")
        results: list[bool] = []

        async def take(store: SQLiteStore, n: int) -> None:
            results.append(await store.swap_checkpoint("lease", b"free", f"{n}".encode()))

        async with anyio.create_task_group() as tasks:
            for n in range(10):
                tasks.start_soon(take, one if n % 2 else two, n)
        assert results.count(True) == 1
        assert await one.load_checkpoint("lease") == await two.load_checkpoint("lease")
    finally:
        await one.close()
        await two.close()


async def test_checkpoints_and_appends_share_the_writer_in_order(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    try:
        async with anyio.create_task_group() as tasks:
            for n in range(20):
                tasks.start_soon(store.append, f"m-{n}", 0, sample_events(f"m-{n}", count=2), None)
                tasks.start_soon(store.save_checkpoint, f"c-{n}", f"{n}".encode())
        assert len(await store.read_all()) == 40
        for n in range(20):
            assert await store.load_checkpoint(f"c-{n}") == f"{n}".encode()
    finally:
        await store.close()


async def test_a_closed_store_refuses_checkpoints(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    await store.close()
    with pytest.raises(meetcore.StoreError, match="closed"):
        await store.save_checkpoint("x", b"1")
    with pytest.raises(meetcore.StoreError, match="closed"):
        await store.load_checkpoint("x")


def test_a_schema_1_file_is_upgraded_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"

    async def write() -> None:
        store = SQLiteStore(path)
        await store.append("m-1", 0, sample_events("m-1", count=4), None)
        await store.close()

    anyio.run(write)
    with sqlite3.connect(path) as connection:  # as meetcore-sqlite 0.1 (schema 1) left it
        connection.execute("DROP TABLE checkpoints")
        connection.execute("PRAGMA user_version = 1")
    connection.close()

    async def reopen() -> None:
        store = SQLiteStore(path)
        try:
            assert len(await store.read("m-1")) == 4
            assert await store.load_checkpoint("cursor") is None
            await store.save_checkpoint("cursor", b"4")
            assert await store.load_checkpoint("cursor") == b"4"
        finally:
            await store.close()

    anyio.run(reopen)
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert SCHEMA_VERSION == 2
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert {"records", "checkpoints"} <= tables
