"""What a meeting looks like after its events: `MeetingState` and its `Participant`s."""

from __future__ import annotations

from enum import Enum
from typing import Any

import msgspec

from meetcore.commands import AutoClose, DuplicatePolicy, Webhook
from meetcore.events import EntryRequested, StreamMode

__all__ = ["MeetingState", "Participant", "Phase", "phase_of"]


class Participant(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """One participant in the meeting, on one connection (untracked by the GC, like events)."""

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
    joined_at: int


class MeetingState(msgspec.Struct, kw_only=True, rename="camel"):
    """A meeting folded from its events; `evolve` updates it in place.

    `participants` and `waiting` keep join order. `version` is the number of
    events applied. Use `copy()` to keep a snapshot while the meeting moves on.
    """

    meeting_id: str
    version: int
    created_at: int
    custom_room_id: str | None = None
    max_participants: int | None = None
    auto_close: AutoClose = "session-ends"
    duplicate_policy: DuplicatePolicy = "replace"
    webhook: Webhook | None = None
    active: bool = True
    session_id: str | None = None
    session_started_at: int | None = None
    participants: dict[str, Participant] = msgspec.field(default_factory=dict)
    waiting: dict[str, EntryRequested] = msgspec.field(default_factory=dict)

    def copy(self) -> MeetingState:
        """A snapshot that later `evolve` calls on `self` leave untouched."""
        return msgspec.structs.replace(
            self, participants=dict(self.participants), waiting=dict(self.waiting)
        )


class Phase(Enum):
    """The meeting's phase: the rows of the transition table."""

    ABSENT = "absent"
    IDLE = "idle"
    IN_SESSION = "in-session"
    DEACTIVATED = "deactivated"


def phase_of(state: MeetingState | None) -> Phase:
    """Which row of the transition table `state` is in."""
    if state is None:
        return Phase.ABSENT
    if not state.active:
        return Phase.DEACTIVATED
    return Phase.IDLE if state.session_id is None else Phase.IN_SESSION
