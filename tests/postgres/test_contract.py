"""The PostgreSQL store passes the contracts of meetcore.testing: the event store's, and
those of its optional capabilities (checkpoints, shared leases, watching other writers,
placing meetings' media on nodes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meetcore.testing import (
    CheckpointsContract,
    EventStoreContract,
    MediaPlacementContract,
    SharedLeasesContract,
    SharedStorageContract,
    WatchableStoreContract,
)
from meetcore_postgres import PostgresStore


class TestPostgresStore(
    EventStoreContract,
    CheckpointsContract,
    MediaPlacementContract,
    SharedLeasesContract,
    SharedStorageContract,
    WatchableStoreContract,
):
    @pytest.fixture
    async def store(self, url: str) -> AsyncIterator[PostgresStore]:
        store = PostgresStore(url)
        yield store
        await store.close()

    @pytest.fixture
    async def other(self, url: str) -> AsyncIterator[PostgresStore]:
        """Another node's store object on the same database and schema."""
        store = PostgresStore(url)
        yield store
        await store.close()


class TestPostgresStoreReopened(EventStoreContract):
    """The schema created by one store object, used by the next."""

    @pytest.fixture
    async def store(self, url: str) -> AsyncIterator[PostgresStore]:
        await PostgresStore(url).close()
        store = PostgresStore(url)
        yield store
        await store.close()
