"""Events: what happened to a meeting. The log is a sequence of these, and only these.

Events are made by `decide` and applied by `evolve`. They are never edited; an
old shape is upcast when read. Field types are checked when an event is decoded.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from meetcore._codes import LeaveReason
from meetcore._struct import Message
from meetcore.commands import AutoClose, DuplicatePolicy, MediaKind, Webhook

__all__ = [
    "EVENT_TYPES",
    "AnyEvent",
    "Entrant",
    "EntryRequested",
    "EntryResponded",
    "EntryWithdrawn",
    "Event",
    "MediaChanged",
    "MeetingActivated",
    "MeetingDeactivated",
    "MeetingInitialized",
    "ModeChanged",
    "ParticipantJoined",
    "ParticipantLeft",
    "SessionEndReason",
    "SessionEnded",
    "SessionStarted",
    "StreamMode",
]

#: A participant's mode once aliases are resolved.
StreamMode = Literal["SEND_AND_RECV", "SIGNALLING_ONLY", "RECV_ONLY"]
#: Why a session ended: its last participant left, it was ended, or the room was closed.
SessionEndReason = Literal["empty", "ended", "deactivated"]


class Event(Message, frozen=True, kw_only=True, gc=False):
    """Base of every event.

    Untracked by the garbage collector (`gc=False`): an event holds strings, numbers
    and JSON-normalized data only, so it can never be part of a reference cycle, and
    a log of millions of them must not make every collection walk it.
    """


class MeetingInitialized(Event, frozen=True, kw_only=True):
    """The room exists, with this configuration."""

    custom_room_id: str | None
    max_participants: int | None
    auto_close: AutoClose
    duplicate_policy: DuplicatePolicy
    webhook: Webhook | None


class SessionStarted(Event, frozen=True, kw_only=True):
    """The first participant is joining an empty room: a new session begins."""

    session_id: str


class Entrant(Event, frozen=True, kw_only=True):
    """Who a join brings in: the fields `ParticipantJoined` and `EntryRequested` share."""

    participant_id: str
    connection_id: str
    name: str
    meta_data: dict[str, Any]
    mic_enabled: bool
    webcam_enabled: bool
    mode: StreamMode
    permissions: tuple[str, ...]
    multistream: bool
    debug_mode: bool


class ParticipantJoined(Entrant, frozen=True, kw_only=True):
    """A participant is in the meeting on `connection_id`."""


class ParticipantLeft(Event, frozen=True, kw_only=True):
    """The participant's `connection_id` is out of the meeting, for `reason`."""

    participant_id: str
    connection_id: str
    reason: LeaveReason


class SessionEnded(Event, frozen=True, kw_only=True):
    """The session is over: the room emptied, was ended, or was deactivated."""

    session_id: str
    reason: SessionEndReason


class MediaChanged(Event, frozen=True, kw_only=True):
    """A participant's mic or webcam was switched; `by` is the moderator who did it, if any."""

    participant_id: str
    kind: MediaKind
    enabled: bool
    by: str | None


class ModeChanged(Event, frozen=True, kw_only=True):
    """A participant's mode changed."""

    participant_id: str
    mode: StreamMode


class EntryRequested(Entrant, frozen=True, kw_only=True):
    """A participant with only `ask_join` waits to be let in; the fields are its join's."""


class EntryResponded(Event, frozen=True, kw_only=True):
    """`responder_id` allowed or denied the waiting `participant_id`."""

    participant_id: str
    connection_id: str
    allowed: bool
    responder_id: str


class EntryWithdrawn(Event, frozen=True, kw_only=True):
    """A waiting request ended unanswered: the requester left, was replaced or the room closed."""

    participant_id: str
    connection_id: str
    reason: LeaveReason


class MeetingDeactivated(Event, frozen=True, kw_only=True):
    """The room is disabled: joining it gives 4052."""


class MeetingActivated(Event, frozen=True, kw_only=True):
    """The room is enabled again."""


AnyEvent = (
    MeetingInitialized
    | SessionStarted
    | ParticipantJoined
    | ParticipantLeft
    | SessionEnded
    | MediaChanged
    | ModeChanged
    | EntryRequested
    | EntryResponded
    | EntryWithdrawn
    | MeetingDeactivated
    | MeetingActivated
)
#: The event types, in the order of `AnyEvent` (which is where they are listed).
EVENT_TYPES: tuple[type[Event], ...] = typing.get_args(AnyEvent)
