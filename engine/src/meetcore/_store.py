"""The event store contract (`EventStore`), its `Conflict`, and the in-memory store.

A store keeps records per meeting, versions 1, 2, 3... with no gaps, and a global
`position` that orders all records. `append` is atomic and optimistic: it fails
with `Conflict` when the meeting is no longer at `expected_version`. A reader
tailing `read_all` never misses a record: positions become visible in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from meetcore._record import Record
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent

__all__ = ["Conflict", "EventStore", "MemoryStore", "StoreError", "wall_clock_ms"]


def wall_clock_ms() -> int:
    """Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


class StoreError(Exception):
    """A store cannot do what was asked: a bad URL, an unreadable file, a lost database."""


class Conflict(Exception):
    """The meeting moved on: it is at `actual_version`, not the `expected_version` given."""

    def __init__(self, meeting_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"meeting {meeting_id!r} is at version {actual_version}, not {expected_version}"
        )
        self.meeting_id = meeting_id
        self.expected_version = expected_version
        self.actual_version = actual_version


@runtime_checkable
class EventStore(Protocol):
    """What every storage plugin implements. All methods are async (anyio)."""

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> list[Record]:
        """Append `events` after version `expected_version`, all or none.

        Returns the new records (versions `expected_version + 1` ...; positions
        assigned by the store). Raises `Conflict` if the meeting is not at
        `expected_version`.
        """
        ...

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        """The meeting's records with a version above `after_version`, in order."""
        ...

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        """Up to `limit` records of any meeting with a position above `after_position`,
        in position order, never skipping a position that may still appear."""
        ...

    async def close(self) -> None:
        """Release the store's resources. Safe to call twice."""
        ...


class MemoryStore:
    """An `EventStore` in a Python list: for tests, embedding and benchmarks (`memory://`).

    Its methods never wait, so each one is atomic with respect to other tasks.
    """

    def __init__(self, clock: Callable[[], int] = wall_clock_ms) -> None:
        self._clock = clock
        self._all: list[Record] = []
        self._by_meeting: dict[str, list[Record]] = {}

    async def append(
        self,
        meeting_id: str,
        expected_version: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> list[Record]:
        if any(e.meeting_id != meeting_id for e in events):
            raise ValueError(f"every event appended to {meeting_id!r} must belong to it")
        # No await between the check and the write, so the append is atomic.
        stream = self._by_meeting.get(meeting_id)
        actual = len(stream) if stream is not None else 0
        if actual != expected_version:
            raise Conflict(meeting_id, expected_version, actual)
        if stream is None:
            stream = self._by_meeting[meeting_id] = []
        now = self._clock()
        position = len(self._all)
        records = [
            Record(
                meeting_id=meeting_id,
                version=expected_version + i,
                position=position + i,
                recorded_at=now,
                event=event,
                cause=cause,
            )
            for i, event in enumerate(events, 1)
        ]
        stream.extend(records)
        self._all.extend(records)
        return records

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        return self._by_meeting.get(meeting_id, [])[max(after_version, 0) :]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        start = max(after_position, 0)
        return self._all[start : start + max(limit, 0)]

    async def close(self) -> None:
        return None
