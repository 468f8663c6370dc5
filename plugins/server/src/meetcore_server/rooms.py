"""Rooms and sessions as the REST API shows them: a projection of the log.

`RoomsView` tails the store's global log (`EventStore.read_all`) and folds each
record into plain views: a `RoomView` per meeting, a `SessionView` per session
with the `ParticipantView`s of everyone who joined it and their time logs. It is
not a second source of truth: it holds nothing that the log does not, and a view
built from an empty position on any node, after any restart, is the same.

`await view.catch_up()` applies the records appended since the last call (by this
process or by any other writer of the same store) and costs O(new records). Calls
are serialized, so concurrent requests never apply a record twice. Lookups by id
are dict lookups; rooms and sessions are kept in creation order for paging.

Times are the events' `at` (unix milliseconds, stamped by the engine that decided
them).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from meetcore import EventStore, Record
from meetcore.commands import AutoClose, Webhook
from meetcore.events import (
    MeetingActivated,
    MeetingDeactivated,
    MeetingInitialized,
    ParticipantJoined,
    ParticipantLeft,
    SessionEnded,
    SessionStarted,
)

__all__ = [
    "BATCH",
    "ParticipantView",
    "RoomView",
    "RoomsView",
    "SessionView",
    "TimeLog",
    "newest_first",
    "page_of",
]

T = TypeVar("T")

#: Records read from the store per `read_all` call while catching up.
BATCH = 1000


@dataclass(slots=True)
class TimeLog:
    """One stay of a participant in a session: from `start` to `end` (None: still there)."""

    start: int
    end: int | None = None


@dataclass(slots=True)
class ParticipantView:
    """A participant of one session: its latest name and every stay, in order."""

    participant_id: str
    name: str
    timelog: list[TimeLog] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """True while the participant is in the session."""
        return bool(self.timelog) and self.timelog[-1].end is None


@dataclass(slots=True)
class SessionView:
    """One session of a room: from the first join (`start`) until it ends (`end`)."""

    session_id: str
    room_id: str
    custom_room_id: str | None
    start: int
    end: int | None = None
    #: Everyone who joined, in the order of their first join.
    participants: list[ParticipantView] = field(default_factory=list)
    #: The same views by participant id.
    by_id: dict[str, ParticipantView] = field(default_factory=dict)
    #: Who is in the session now, in the order of their latest join.
    active: dict[str, ParticipantView] = field(default_factory=dict)

    @property
    def ongoing(self) -> bool:
        """True until the session ends."""
        return self.end is None

    def active_duration(self, now: int) -> int:
        """Whole seconds from the start to the end, or to `now` while ongoing."""
        until = self.end if self.end is not None else now
        return max(until - self.start, 0) // 1000


@dataclass(slots=True)
class RoomView:
    """A room (a meeting id) with its configuration and its sessions, oldest first.

    `updated_at` moves when the room is deactivated or activated; sessions do not
    change the room itself.
    """

    room_id: str
    custom_room_id: str | None
    created_at: int
    updated_at: int
    auto_close: AutoClose
    webhook: Webhook | None
    max_participants: int | None
    disabled: bool = False
    sessions: list[SessionView] = field(default_factory=list)
    #: The session in progress, if any (also the last of `sessions`).
    open_session: SessionView | None = None


class RoomsView:
    """The rooms and sessions folded from `store`'s log; see the module docstring."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        #: The position of the last record applied (0: none yet).
        self.position = 0
        self._lock = anyio.Lock()
        self._rooms: dict[str, RoomView] = {}
        self._order: list[RoomView] = []
        self._sessions: dict[str, SessionView] = {}

    # -- reading the log ------------------------------------------------------------

    async def catch_up(self) -> int:
        """Apply every record appended after `position`; returns how many were applied.

        Serialized: a second caller waits for the first, then reads what is left.
        After it returns, everything appended before it was called is visible.
        """
        applied = 0
        async with self._lock:
            while True:
                batch = await self.store.read_all(after_position=self.position, limit=BATCH)
                for record in batch:
                    if record.position > self.position:  # never twice, whatever the store does
                        self.apply(record)
                        self.position = record.position
                        applied += 1
                if len(batch) < BATCH:
                    return applied

    def apply(self, record: Record) -> None:
        """Fold one record into the views. Records that change no room or session
        (media, modes, entry requests) are skipped."""
        event = record.event
        if isinstance(event, MeetingInitialized):
            if event.meeting_id in self._rooms:
                return  # cannot happen in a valid log; the first one stands
            room = RoomView(
                room_id=event.meeting_id,
                custom_room_id=event.custom_room_id,
                created_at=event.at,
                updated_at=event.at,
                auto_close=event.auto_close,
                webhook=event.webhook,
                max_participants=event.max_participants,
            )
            self._rooms[room.room_id] = room
            self._order.append(room)
            return
        room_or_none = self._rooms.get(event.meeting_id)
        if room_or_none is None:
            return
        room = room_or_none
        if isinstance(event, ParticipantJoined):
            session = room.open_session
            if session is None:
                return
            participant = session.by_id.get(event.participant_id)
            if participant is None:
                participant = ParticipantView(event.participant_id, event.name)
                session.participants.append(participant)
                session.by_id[event.participant_id] = participant
            else:
                participant.name = event.name
            if not participant.active:
                participant.timelog.append(TimeLog(event.at))
            session.active[event.participant_id] = participant
        elif isinstance(event, ParticipantLeft):
            session = room.open_session
            participant = session.active.pop(event.participant_id, None) if session else None
            if participant is not None and participant.timelog:
                participant.timelog[-1].end = event.at
        elif isinstance(event, SessionStarted):
            session = SessionView(
                session_id=event.session_id,
                room_id=room.room_id,
                custom_room_id=room.custom_room_id,
                start=event.at,
            )
            room.sessions.append(session)
            room.open_session = session
            self._sessions[session.session_id] = session
        elif isinstance(event, SessionEnded):
            session = room.open_session
            if session is not None:
                session.end = event.at
                for participant in session.active.values():  # none in a valid log
                    participant.timelog[-1].end = event.at
                session.active.clear()
                room.open_session = None
        elif isinstance(event, MeetingDeactivated):
            room.disabled = True
            room.updated_at = event.at
        elif isinstance(event, MeetingActivated):
            room.disabled = False
            room.updated_at = event.at

    # -- lookups ------------------------------------------------------------------------

    def room(self, room_id: str) -> RoomView | None:
        """The room with this id (a generated id, or the custom id it was created with)."""
        return self._rooms.get(room_id)

    def session(self, session_id: str) -> SessionView | None:
        """The session with this id (if an id was used twice, the later session)."""
        return self._sessions.get(session_id)

    @property
    def room_count(self) -> int:
        """How many rooms exist."""
        return len(self._order)

    def rooms(self, offset: int, limit: int) -> list[RoomView]:
        """Up to `limit` rooms, newest first, skipping the `offset` newest. O(limit)."""
        return newest_first(self._order, offset, limit)


def newest_first(items: Sequence[T], offset: int, limit: int) -> list[T]:
    """`items` (oldest first) read backwards: up to `limit` of them after skipping `offset`."""
    stop = len(items) - offset
    if stop <= 0 or limit <= 0:
        return []
    return list(reversed(items[max(stop - limit, 0) : stop]))


def page_of(items: Iterator[T] | Sequence[T], offset: int, limit: int) -> list[T]:
    """Up to `limit` of `items` in their order, skipping the first `offset`."""
    if isinstance(items, Sequence):
        return list(items[offset : offset + limit])
    return list(itertools.islice(items, offset, offset + limit))
