"""Commands: what someone asks of a meeting. `decide` turns each into events or a rejection.

Every command names its meeting and carries `at` (unix milliseconds, stamped by
the engine) and an optional `command_id` that makes a retry idempotent. Field
types are checked when a command is built or decoded; the values are judged by
`decide`, which answers a bad value with `Rejected` and its documented code.

The caller of a participant command is `participant_id` on `connection_id`; for
`End` and `RemoveParticipant` both are `None` when the server API is the caller.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import msgspec

from meetcore._codes import LeaveReason
from meetcore._struct import Checked

__all__ = [
    "Activate",
    "AutoClose",
    "ChangeMode",
    "Command",
    "Deactivate",
    "DuplicatePolicy",
    "End",
    "InitMeeting",
    "Join",
    "Leave",
    "MediaKind",
    "Mode",
    "RemoveParticipant",
    "RespondEntry",
    "SetMedia",
    "Webhook",
]

#: Modes as VideoSDK names them; "CONFERENCE" and "VIEWER" are the deprecated
#: names of "SEND_AND_RECV" and "SIGNALLING_ONLY" and are accepted as aliases.
Mode = Literal["SEND_AND_RECV", "SIGNALLING_ONLY", "RECV_ONLY", "CONFERENCE", "VIEWER"]
AutoClose = Literal["session-ends", "session-end-and-deactivate"]
DuplicatePolicy = Literal["replace", "reject"]
MediaKind = Literal["mic", "webcam"]


class Webhook(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Where a room's webhooks go (`end_point`) and which event types (`events`)."""

    end_point: str
    events: tuple[str, ...] = ()


class Command(Checked, frozen=True, kw_only=True, gc=False):
    """Base of every command. `Engine.execute` stamps `at` with its clock.

    Untracked by the garbage collector (`gc=False`), like events: a command holds
    strings, numbers and JSON data, so it cannot be part of a reference cycle, and the
    causes kept in a log of millions of records must not make every collection walk
    them. (Do not put objects that refer back to the command into `meta_data`.)
    """

    at: int = 0
    command_id: str | None = None


class InitMeeting(Command, frozen=True, kw_only=True):
    """Create a room (VideoSDK: `POST /v2/rooms`)."""

    custom_room_id: str | None = None
    max_participants: int | None = None
    auto_close: AutoClose = "session-ends"
    duplicate_policy: DuplicatePolicy = "replace"
    webhook: Webhook | None = None


class Join(Command, frozen=True, kw_only=True):
    """A participant joins (or, with only `ask_join`, asks to join) on one connection.

    `permissions` come from the participant's token; `session_id` names the
    session this join starts if none is open.
    """

    participant_id: str
    connection_id: str
    session_id: str
    name: str
    permissions: tuple[str, ...] = ("allow_join",)
    mic_enabled: bool = False
    webcam_enabled: bool = False
    meta_data: dict[str, Any] = msgspec.field(default_factory=dict)
    mode: Mode = "SEND_AND_RECV"
    multistream: bool = True
    debug_mode: bool = False


class Leave(Command, frozen=True, kw_only=True):
    """The participant on `connection_id` leaves (or withdraws its entry request)."""

    participant_id: str
    connection_id: str
    reason: LeaveReason = LeaveReason.MANUAL_LEAVE_CALLED


class End(Command, frozen=True, kw_only=True):
    """End the session for everyone, from a participant or (both ids `None`) the API."""

    participant_id: str | None = None
    connection_id: str | None = None


class RemoveParticipant(Command, frozen=True, kw_only=True):
    """Remove `target_id`, by a moderator or (both caller ids `None`) the API."""

    target_id: str
    participant_id: str | None = None
    connection_id: str | None = None


class SetMedia(Command, frozen=True, kw_only=True):
    """Switch a mic or webcam; a moderator may switch off another's (`target_id`)."""

    participant_id: str
    connection_id: str
    kind: MediaKind
    enabled: bool
    target_id: str | None = None


class ChangeMode(Command, frozen=True, kw_only=True):
    """Change the caller's mode."""

    participant_id: str
    connection_id: str
    mode: Mode


class RespondEntry(Command, frozen=True, kw_only=True):
    """Allow or deny `requester_id`'s pending entry request."""

    participant_id: str
    connection_id: str
    requester_id: str
    allowed: bool


class Deactivate(Command, frozen=True, kw_only=True):
    """Disable the room: everyone leaves, and joining gives 4052 until `Activate`."""


class Activate(Command, frozen=True, kw_only=True):
    """Enable a deactivated room again."""


AnyCommand = (
    InitMeeting
    | Join
    | Leave
    | End
    | RemoveParticipant
    | SetMedia
    | ChangeMode
    | RespondEntry
    | Deactivate
    | Activate
)
#: The command types, in the order of `AnyCommand` (which is where they are listed).
COMMAND_TYPES: tuple[type[Command], ...] = typing.get_args(AnyCommand)
__all__ += ["COMMAND_TYPES", "AnyCommand"]
