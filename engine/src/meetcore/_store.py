"""The event store contract (`EventStore`), its `Conflict`, the optional `Checkpoints`
capability, and the in-memory store.

A store keeps records per meeting, versions 1, 2, 3... with no gaps, and a global
`position` that orders all records. `append` is atomic and optimistic: it fails
with `Conflict` when the meeting is no longer at `expected_version`. A reader
tailing `read_all` never misses a record: positions become visible in order.
"""

from __future__ import annotations

import re
import time
from array import array
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from meetcore._record import Record
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent

__all__ = [
    "Checkpoints",
    "Conflict",
    "EventStore",
    "ExclusiveLeases",
    "MediaPlacement",
    "MemoryStore",
    "SharedLeases",
    "StoreBusy",
    "StoreError",
    "WatchableStore",
    "wall_clock_ms",
]


_last_ms = [0]  # the last reading, handed out again while the millisecond lasts


def wall_clock_ms() -> int:
    """Unix time in milliseconds.

    Readings within one millisecond are the same int object, so the stamps of the
    many records written in it cost memory once.
    """
    now = time.time_ns() // 1_000_000
    last = _last_ms[0]
    if now == last:
        return last
    _last_ms[0] = now
    return now


class StoreError(Exception):
    """A store cannot do what was asked: a bad URL, an unreadable file, a lost database."""


class StoreBusy(StoreError):
    """The store's leases are held by another engine (`ExclusiveLeases.claim_leases`)."""


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


@runtime_checkable
class Checkpoints(Protocol):
    """An optional store capability: small named values kept with the log, durably.

    For a reader that follows `read_all` and must resume where it stopped after a
    restart (a cursor, with whatever goes with it: meetcore-webhooks keeps its delivery
    queues here). Values are opaque bytes; they are not part of the log, and `read_all`
    never returns them. Test for it with `isinstance(store, Checkpoints)`;
    `meetcore.testing.CheckpointsContract` is its contract.
    """

    async def load_checkpoint(self, name: str) -> bytes | None:
        """The value saved under `name`, or None if there is none."""
        ...

    async def save_checkpoint(self, name: str, value: bytes) -> None:
        """Replace the value under `name` with `value`, atomically and as durably as
        the store keeps its records."""
        ...

    async def swap_checkpoint(self, name: str, expected: bytes | None, value: bytes) -> bool:
        """Replace the value under `name` with `value` only if it is `expected` now
        (None: only if there is none); True if it did. Atomic against every other
        writer of the store, in this process or another (a compare-and-swap)."""
        ...


@runtime_checkable
class WatchableStore(Protocol):
    """An optional store capability, for a store that several processes write to (a
    cluster of nodes on PostgreSQL): it tells which meetings the other writers changed.

    `Engine.open` consumes `watch()` in the background: for each meeting id, the cached
    state is read again before the next decision and the meeting's subscribers read the
    new records from the store. The log stays the truth: a meeting may be reported more
    than once, or when nothing changed; a lost report must be made up for soon (by
    reading the log). Appends made through the same store object need not be reported.
    `meetcore.testing.WatchableStoreContract` is its contract.
    """

    def watch(self) -> AsyncIterator[str]:
        """Yields the id of each meeting other writers append to, until cancelled."""
        ...


@runtime_checkable
class ExclusiveLeases(Protocol):
    """An optional store capability: for a store whose engines cannot share leases (they
    live in each engine's memory), one engine at a time may keep them.

    An engine that keeps leases reads every join in the log as a lease of its own and
    expires the connections it does not see renewed: two such engines on one store
    would record `participant-left` 1001 for each other's live participants. So
    `Engine.open` claims the store before it keeps leases (`sweep_leases=True` on a
    store without `SharedLeases`), and a second claim fails with `StoreBusy`, whose
    message names the holder. The claim ends with `release_leases`, or with the
    holder's process (it must not outlive a killed process).
    """

    async def claim_leases(self, holder: str) -> None:
        """Claim the store's leases for `holder` (words naming this engine: process,
        host, since when), or raise `StoreBusy` naming the current holder."""
        ...

    async def release_leases(self) -> None:
        """End this store object's claim, if it has one. Safe to call twice."""
        ...


@runtime_checkable
class SharedLeases(Protocol):
    """An optional store capability: connection leases kept in the store and shared by
    every engine on it, so that no node expires a connection another live node holds
    and the connections of a node that died still leave (1001).

    The store grants a connection its lease in the transaction that appends its
    `ParticipantJoined` or `EntryRequested`, and drops it in the one that appends its
    `ParticipantLeft` or `EntryWithdrawn`: a connection in a meeting always has a lease,
    whatever crashes when. Lease times are the store's clock, not the engine's.
    With such a store the engine renews in batches and asks the store which leases ran
    out. `meetcore.testing.SharedLeasesContract` is its contract.
    """

    async def renew_leases(self, connections: Collection[tuple[str, str]]) -> None:
        """Mark the leases of these (meeting_id, connection_id) renewed now; those that
        are gone are skipped."""
        ...

    async def claim_expired_leases(
        self, ttl_ms: int, limit: int = 100
    ) -> list[tuple[str, str, str]]:
        """Up to `limit` leases not renewed for `ttl_ms`, as (meeting_id, connection_id,
        participant_id), each one claimed: it counts as renewed now, so that other callers
        leave it to this one for `ttl_ms` (time to record the leave; if this caller dies
        first, another one claims it then). Atomic against every other caller."""
        ...

    async def drop_leases(self, connections: Collection[tuple[str, str]]) -> None:
        """Forget the leases of these (meeting_id, connection_id): their connections are
        no longer in their meetings."""
        ...


@runtime_checkable
class MediaPlacement(Protocol):
    """An optional store capability: the nodes that serve a store, and which of them
    carries each meeting's media, for a store that several nodes share.

    A meeting's media is forwarded within one node, so its participants must all
    connect to that node. Each node announces the URL clients reach it at, every
    fraction of `ttl_ms`; a node is live while its last announcement is younger than
    `ttl_ms`. `place_meeting` keeps a meeting on the node it was placed on while that
    node lives and someone is in the meeting (a connection holds a lease: a node that
    starts later takes no meeting in progress), and otherwise places it on a live node
    by a rule every node applies alike (so a room used again is spread like a new one).
    Times are the store's clock. `meetcore.testing.MediaPlacementContract` is its
    contract.
    """

    async def announce_node(self, url: str) -> None:
        """`url` is live now (added if new)."""
        ...

    async def drop_node(self, url: str) -> None:
        """`url` is gone (a node shutting down): its meetings move at their next join."""
        ...

    async def place_meeting(self, meeting_id: str, ttl_ms: int) -> str | None:
        """The URL of the node that carries the meeting's media: the one it was placed
        on, if that node announced itself within `ttl_ms` and someone is in the meeting;
        otherwise a live node, now recorded as its place (atomic against every other
        caller). None when no node is live."""
        ...


class MemoryStore:
    """An `EventStore` in Python lists: for tests, embedding and benchmarks (`memory://`).

    Its methods never wait, so each one is atomic with respect to other tasks. It keeps
    each event and cause, and the numbers of each record in arrays: records are made
    when they are read, as a store that decodes them would (a record object, and a
    position as an int object, would cost more memory than the event they number).
    """

    def __init__(self, clock: Callable[[], int] = wall_clock_ms) -> None:
        self._clock = clock
        # The log by position - 1: each record's event, cause and recorded_at.
        self._events: list[AnyEvent] = []
        self._causes: list[AnyCommand | None] = []
        self._recorded_at = array("q")
        self._by_meeting: dict[str, array[int]] = {}  # the positions of each meeting's records
        self._checkpoints: dict[str, bytes] = {}
        self._lease_holder: str | None = None  # `ExclusiveLeases`: the engine keeping them

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
            stream = self._by_meeting[meeting_id] = array("q")
        now = self._clock()
        position = len(self._events)
        records = Record.numbered(
            events,
            after_version=expected_version,
            after_position=position,
            recorded_at=now,
            cause=cause,
        )
        events_, causes, recorded_at = self._events, self._causes, self._recorded_at
        for record in records:
            stream.append(record.position)
            events_.append(record.event)
            causes.append(cause)
            recorded_at.append(now)
        return records

    def _record(self, position: int, version: int) -> Record:
        event = self._events[position - 1]
        return Record(
            meeting_id=event.meeting_id,
            version=version,
            position=position,
            recorded_at=self._recorded_at[position - 1],
            event=event,
            cause=self._causes[position - 1],
        )

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        after = max(after_version, 0)
        stream = self._by_meeting.get(meeting_id, array("q"))[after:]
        return [self._record(position, v) for v, position in enumerate(stream, after + 1)]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        start = max(after_position, 0)
        stop = min(start + max(limit, 0), len(self._events))
        records = []
        for position in range(start + 1, stop + 1):
            stream = self._by_meeting[self._events[position - 1].meeting_id]
            records.append(self._record(position, bisect_left(stream, position) + 1))
        return records

    async def claim_leases(self, holder: str) -> None:
        if self._lease_holder is not None:
            raise StoreBusy(f"this memory store's leases are kept by {self._lease_holder}")
        self._lease_holder = holder

    async def release_leases(self) -> None:
        self._lease_holder = None

    async def close(self) -> None:
        return None

    # -- checkpoints (the optional `Checkpoints` capability) ---------------------------

    async def load_checkpoint(self, name: str) -> bytes | None:
        return self._checkpoints.get(name)

    async def save_checkpoint(self, name: str, value: bytes) -> None:
        self._checkpoints[name] = bytes(value)

    async def swap_checkpoint(self, name: str, expected: bytes | None, value: bytes) -> bool:
        if self._checkpoints.get(name) != expected:
            return False
        self._checkpoints[name] = bytes(value)
        return True


def without_password(url: str) -> str:
    """A store URL as it may be printed: the password in it, and the values of the
    `password` and `sslpassword` options libpq also takes from the query, replaced by
    *** (`postgresql://app:***@db/meetcore`); nothing else changed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that cannot be read)"
    netloc, query = parts.netloc, parts.query
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    if query:
        query = _SECRET_OPTION.sub(r"\1***", query)
    # replaced in place: urlunsplit would drop the empty host of sqlite://// or
    # postgresql:///db
    shown = url.replace(parts.netloc, netloc, 1) if netloc != parts.netloc else url
    return shown.replace(f"?{parts.query}", f"?{query}", 1) if query != parts.query else shown


#: A query option whose value is a secret, up to its end.
_SECRET_OPTION = re.compile(r"((?:^|&)(?:ssl)?password=)[^&]*", re.IGNORECASE)
