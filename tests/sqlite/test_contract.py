"""The SQLite store passes the contract every store must pass, on both durability settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meetcore.testing import EventStoreContract, SharedStorageContract
from meetcore_sqlite import SQLiteStore


class TestSQLiteStore(EventStoreContract):
    @pytest.fixture(params=["FULL", "NORMAL"])
    async def store(
        self, tmp_path: Path, request: pytest.FixtureRequest
    ) -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "meetcore.db", synchronous=request.param)
        yield store
        await store.close()


class TestSQLiteStoreReopened(EventStoreContract):
    """The same file opened twice: records written before reopening are read back."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        await SQLiteStore(tmp_path / "meetcore.db").close()
        store = SQLiteStore(tmp_path / "meetcore.db")
        yield store
        await store.close()


class TestSQLiteStoreShared(SharedStorageContract):
    """Two store objects on one file, as two processes would have them."""

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "shared.db")
        yield store
        await store.close()

    @pytest.fixture
    async def other(self, tmp_path: Path) -> AsyncIterator[SQLiteStore]:
        store = SQLiteStore(tmp_path / "shared.db")
        yield store
        await store.close()
