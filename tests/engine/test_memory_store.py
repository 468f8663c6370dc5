"""The in-memory store passes the contract every store must pass."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from meetcore import MemoryStore
from meetcore.testing import EventStoreContract


class TestMemoryStore(EventStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        yield store
        await store.close()
