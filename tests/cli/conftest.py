"""Fixtures of the command line's tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import meetcore
from meetcore_sqlite import SQLiteStore

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "meeting.jsonl"


def _make_store(path: Path) -> Path:
    """A closed SQLite store at `path` holding docs/examples/meeting.jsonl exactly (same
    positions, versions, causes and times), so that exporting it gives that file back."""
    records = list(meetcore.read_jsonl(EXAMPLE.read_bytes().splitlines()))
    now = 0

    async def fill() -> None:
        nonlocal now
        store = SQLiteStore(path, clock=lambda: now)
        try:
            for _, grouped in itertools.groupby(records, key=lambda r: r.cause):
                first, *rest = grouped
                now = first.recorded_at
                events = [first.event, *(r.event for r in rest)]
                await store.append(first.meeting_id, first.version - 1, events, first.cause)
        finally:
            await store.close()

    anyio.run(fill)
    return path


@pytest.fixture
def make_store() -> Callable[[Path], Path]:
    """Makes an SQLite store holding docs/examples/meeting.jsonl at the path given."""
    return _make_store
