"""The rules of a meeting: `decide` (command -> events or `Rejected`) and `evolve`.

This module is the whole of the meeting's logic and is pure, like h11's state
machine: no I/O, no clock, no randomness, no asyncio. Time and identifiers
arrive inside commands.

`TRANSITIONS` is the table the rules run from: for each (phase, command type)
either a `Refusal` (that command is never accepted in that phase) or a `Rule`:
the function that decides it, the phases the meeting may be in afterwards, and
every code it may reject with. `docs/domain.md` is generated from this table
and the tests hold every rule to its row.

`decide` raises `Rejected` for an illegal command and nothing else: any other
exception is a bug. `evolve` raises `InvalidLog` for an event that cannot follow
the state it is applied to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec

from meetcore._codes import ErrorCode, LeaveReason, Rejected
from meetcore._state import MeetingState, Participant, Phase
from meetcore.commands import (
    COMMAND_TYPES,
    Activate,
    ChangeMode,
    Command,
    Deactivate,
    End,
    InitMeeting,
    Join,
    Leave,
    RemoveParticipant,
    RespondEntry,
    SetMedia,
)
from meetcore.events import (
    AnyEvent,
    EntryRequested,
    EntryResponded,
    EntryWithdrawn,
    Event,
    MediaChanged,
    MeetingActivated,
    MeetingDeactivated,
    MeetingInitialized,
    ModeChanged,
    ParticipantJoined,
    ParticipantLeft,
    SessionEnded,
    SessionEndReason,
    SessionStarted,
    StreamMode,
)

__all__ = [
    "TRANSITIONS",
    "InvalidLog",
    "Refusal",
    "Rule",
    "decide",
    "evolve",
    "fold",
]

E = ErrorCode
ABSENT, IDLE, IN_SESSION, DEACTIVATED = (
    Phase.ABSENT,
    Phase.IDLE,
    Phase.IN_SESSION,
    Phase.DEACTIVATED,
)


class InvalidLog(ValueError):
    """The events do not make a valid history: bad, reordered or tampered with."""


# ---------------------------------------------------------------------------
# Validation of values (types were checked when the command was built)

MEETING_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# printable, no whitespace, and encodable as UTF-8 (no lone surrogates)
PARTICIPANT_ID: Final = re.compile(r"[^\s\x00-\x1f\x7f\ud800-\udfff]{1,64}")
TOKEN_ID: Final = re.compile(
    r"[^\s\x00-\x1f\x7f\ud800-\udfff]{1,128}"
)  # connection, session, command ids
MAX_NAME: Final = 256
MAX_META_DATA: Final = 4096
MAX_WEBHOOK_URL: Final = 2048
PERMISSIONS: Final = frozenset({"allow_join", "ask_join", "allow_mod"})
MODES: Final[Mapping[str, StreamMode]] = {
    "SEND_AND_RECV": "SEND_AND_RECV",
    "SIGNALLING_ONLY": "SIGNALLING_ONLY",
    "RECV_ONLY": "RECV_ONLY",
    "CONFERENCE": "SEND_AND_RECV",
    "VIEWER": "SIGNALLING_ONLY",
}
_LEAVE_REASONS: Final = {int(r): r for r in LeaveReason}
_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode
_msgpack_encode = msgspec.msgpack.encode


def _invalid(message: str) -> Rejected:
    return Rejected(E.INVALID_PARAMETER, message)


def _id(value: str, pattern: re.Pattern[str], what: str, code: ErrorCode) -> None:
    if pattern.fullmatch(value) is None:
        raise Rejected(code, f"{what} {value[:80]!r} is invalid")


def _mode(value: str) -> StreamMode:
    mode = MODES.get(value)
    if mode is None:
        raise _invalid(f"mode {value[:40]!r} is not one of {', '.join(MODES)}")
    return mode


def _reason(value: int) -> LeaveReason:
    reason = _LEAVE_REASONS.get(value)
    if reason is None:
        raise _invalid(f"leave reason {value!r} is not a LeaveReason")
    return reason


def _meta_data(value: dict[str, Any]) -> dict[str, Any]:
    """The caller's metaData as the log will hold it: a fresh JSON object.

    Going through JSON makes the event equal to its own JSON round trip (tuples
    become lists, NaN becomes null) and keeps a caller's later changes to its
    dict out of the log.
    """
    if not value:
        return {}
    try:
        encoded = _json_encode(value)
        if len(encoded) <= MAX_META_DATA:
            normalized: dict[str, Any] = _json_decode(encoded)
            _msgpack_encode(normalized)  # ints past 64 bits fit JSON but not msgpack
            return normalized
    except Exception as exc:  # whatever the caller put there: unencodable, cyclic, too deep
        raise _invalid(f"metaData must be a JSON object ({str(exc)[:100]})") from None
    raise _invalid(f"metaData is {len(encoded)} bytes encoded, more than {MAX_META_DATA}")


def _name(value: str) -> None:
    if len(value) > MAX_NAME or not value.isprintable():
        raise _invalid(f"name must be at most {MAX_NAME} printable characters")


# The few permission sets tokens carry: each judged once, and one tuple of each shared
# by every event that carries it (a bounded cache: permissions come from outside).
_PERMISSION_SETS: dict[tuple[str, ...], tuple[tuple[str, ...], bool]] = {}


def _permissions(value: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """Check a join's permissions: the set as events carry it, and whether the
    participant must ask to join."""
    known = _PERMISSION_SETS.get(value)
    if known is None:
        known = (value, _judge_permissions(value))
        if len(_PERMISSION_SETS) < 64:
            _PERMISSION_SETS[value] = known
    return known


def _judge_permissions(value: tuple[str, ...]) -> bool:
    unknown = [p for p in value if p not in PERMISSIONS]
    if unknown:
        raise Rejected(E.INVALID_PERMISSIONS, f"unknown permission {unknown[0][:40]!r}")
    if "ask_join" in value:
        if "allow_join" in value or "allow_mod" in value:
            raise Rejected(
                E.INVALID_PERMISSIONS, "ask_join cannot be combined with allow_join or allow_mod"
            )
        return True
    if "allow_join" not in value:
        raise Rejected(E.INVALID_PERMISSIONS, "joining needs allow_join or ask_join")
    return False


def _caller(
    state: MeetingState, participant_id: str | None, connection_id: str | None
) -> Participant:
    """The joined participant issuing a command, on the connection it is joined with."""
    participant = state.participants.get(participant_id) if participant_id is not None else None
    if participant is None or participant.connection_id != connection_id:
        raise Rejected(
            E.ACTION_BEFORE_JOINED,
            f"participant {str(participant_id)[:64]!r} is not joined on connection "
            f"{str(connection_id)[:128]!r}",
        )
    return participant


# ---------------------------------------------------------------------------
# Shared event sequences


def _session_closed(state: MeetingState, at: int, reason: SessionEndReason) -> list[AnyEvent]:
    """`SessionEnded`, then the room's auto-close if it deactivates with its session."""
    assert state.session_id is not None
    events: list[AnyEvent] = [
        SessionEnded(meeting_id=state.meeting_id, at=at, session_id=state.session_id, reason=reason)
    ]
    if state.auto_close == "session-end-and-deactivate" and reason != "deactivated":
        if reason == "empty":  # `End` has withdrawn the waiting requests already
            events += _withdraw_all(state, at, LeaveReason.ROOM_CLOSE)
        events.append(MeetingDeactivated(meeting_id=state.meeting_id, at=at))
    return events


def _withdraw_all(state: MeetingState, at: int, reason: LeaveReason) -> list[AnyEvent]:
    return [
        EntryWithdrawn(
            meeting_id=state.meeting_id,
            at=at,
            participant_id=w.participant_id,
            connection_id=w.connection_id,
            reason=reason,
        )
        for w in state.waiting.values()
    ]


def _everyone_leaves(state: MeetingState, at: int, reason: LeaveReason) -> list[AnyEvent]:
    return [
        ParticipantLeft(
            meeting_id=state.meeting_id,
            at=at,
            participant_id=p.participant_id,
            connection_id=p.connection_id,
            reason=reason,
        )
        for p in state.participants.values()
    ]


def _left(state: MeetingState, at: int, who: Participant, reason: LeaveReason) -> list[AnyEvent]:
    """`who` leaves; the session closes if that empties the room."""
    events: list[AnyEvent] = [
        ParticipantLeft(
            meeting_id=state.meeting_id,
            at=at,
            participant_id=who.participant_id,
            connection_id=who.connection_id,
            reason=reason,
        )
    ]
    if len(state.participants) == 1:
        events += _session_closed(state, at, "empty")
    return events


# ---------------------------------------------------------------------------
# The rules, one function per command; each raises Rejected or returns events


def _init_meeting(state: MeetingState | None, c: InitMeeting) -> list[AnyEvent]:
    _id(c.meeting_id, MEETING_ID, "meeting id", E.INVALID_MEETING_ID)
    if c.custom_room_id is not None:
        _id(c.custom_room_id, MEETING_ID, "customRoomId", E.INVALID_PARAMETER)
    if c.max_participants is not None and not 1 <= c.max_participants <= 1_000_000:
        raise _invalid(f"maxParticipants must be 1 to 1000000, not {c.max_participants}")
    if c.auto_close not in ("session-ends", "session-end-and-deactivate"):
        raise _invalid(f"autoClose {c.auto_close[:40]!r} is not a known type")
    if c.duplicate_policy not in ("replace", "reject"):
        raise _invalid(f"duplicatePolicy {c.duplicate_policy[:40]!r} is not replace or reject")
    if c.webhook is not None:
        url = c.webhook.end_point
        if (
            not url.startswith(("http://", "https://"))
            or len(url) > MAX_WEBHOOK_URL
            or not (url.isascii() and url.isprintable())
        ):
            raise _invalid("webhook endPoint must be an http(s) URL of at most 2048 characters")
        names = c.webhook.events
        if len(names) > 32 or not all(0 < len(e) <= 64 and e.isprintable() for e in names):
            raise _invalid("webhook events must be at most 32 names of 1 to 64 characters")
    return [
        MeetingInitialized(
            meeting_id=c.meeting_id,
            at=c.at,
            custom_room_id=c.custom_room_id,
            max_participants=c.max_participants,
            auto_close=c.auto_close,
            duplicate_policy=c.duplicate_policy,
            webhook=c.webhook,
        )
    ]


def _join(state: MeetingState, c: Join) -> list[AnyEvent]:
    pid, cid = c.participant_id, c.connection_id
    if PARTICIPANT_ID.fullmatch(pid) is None:
        _id(pid, PARTICIPANT_ID, "participant id", E.INVALID_PARTICIPANT_ID)
    if TOKEN_ID.fullmatch(cid) is None:
        _id(cid, TOKEN_ID, "connection id", E.INVALID_PARAMETER)
    _name(c.name)
    mode = _mode(c.mode)
    meta_data = _meta_data(c.meta_data)
    permissions, asks = _permissions(c.permissions)

    joined = state.participants.get(pid)
    waiting = state.waiting.get(pid)
    if (joined is not None and joined.connection_id == cid) or (
        waiting is not None and waiting.connection_id == cid
    ):
        raise Rejected(E.ALREADY_IN_REQUESTED_STATE, f"{pid!r} already joined on {cid!r}")
    if (joined is not None or waiting is not None) and state.duplicate_policy == "reject":
        raise Rejected(E.DUPLICATE_PARTICIPANT, f"participant {pid!r} is already in the meeting")
    limit = state.max_participants
    if not asks and joined is None and limit is not None and len(state.participants) >= limit:
        raise Rejected(E.MAX_PARTICIPANT_REACHED, f"the meeting is full ({limit} participants)")
    opens_session = not asks and state.session_id is None
    if opens_session:
        _id(c.session_id, TOKEN_ID, "session id", E.INVALID_PARAMETER)

    mid, at = state.meeting_id, c.at
    events: list[AnyEvent] = []
    if waiting is not None:
        events.append(
            EntryWithdrawn(
                meeting_id=mid,
                at=at,
                participant_id=pid,
                connection_id=waiting.connection_id,
                reason=LeaveReason.DUPLICATE_PARTICIPANT,
            )
        )
    if joined is not None:
        if asks:  # the newcomer waits outside: the old connection really leaves
            events += _left(state, at, joined, LeaveReason.DUPLICATE_PARTICIPANT)
        else:  # replaced in place: the session goes on
            events.append(
                ParticipantLeft(
                    meeting_id=mid,
                    at=at,
                    participant_id=pid,
                    connection_id=joined.connection_id,
                    reason=LeaveReason.DUPLICATE_PARTICIPANT,
                )
            )
    sends = mode == "SEND_AND_RECV"
    joined_event = ParticipantJoined(
        meeting_id=mid,
        at=at,
        participant_id=pid,
        connection_id=cid,
        name=c.name,
        meta_data=meta_data,
        mic_enabled=c.mic_enabled and sends,
        webcam_enabled=c.webcam_enabled and sends,
        mode=mode,
        permissions=permissions,
        multistream=c.multistream,
        debug_mode=c.debug_mode,
    )
    if asks:  # the same details, as a request to be let in
        if events and isinstance(events[-1], MeetingDeactivated):
            return events  # the old connection's leave closed the room; nothing to wait for
        events.append(EntryRequested(**msgspec.structs.asdict(joined_event)))
        return events
    if opens_session:
        events.append(SessionStarted(meeting_id=mid, at=at, session_id=c.session_id))
    events.append(joined_event)
    return events


def _leave(state: MeetingState, c: Leave) -> list[AnyEvent]:
    reason = _reason(c.reason)
    joined = state.participants.get(c.participant_id)
    if joined is not None and joined.connection_id == c.connection_id:
        return _left(state, c.at, joined, reason)
    waiting = state.waiting.get(c.participant_id)
    if waiting is not None and waiting.connection_id == c.connection_id:
        return [
            EntryWithdrawn(
                meeting_id=state.meeting_id,
                at=c.at,
                participant_id=waiting.participant_id,
                connection_id=waiting.connection_id,
                reason=reason,
            )
        ]
    stale = " (a newer connection replaced it)" if joined is not None or waiting else ""
    raise Rejected(
        E.ACTION_BEFORE_JOINED,
        f"participant {c.participant_id[:64]!r} is not in the meeting on connection "
        f"{c.connection_id[:128]!r}{stale}",
    )


def _end(state: MeetingState, c: End) -> list[AnyEvent]:
    if c.participant_id is None and c.connection_id is None:
        reason = LeaveReason.MEETING_END_API
    else:
        caller = _caller(state, c.participant_id, c.connection_id)
        if "allow_mod" not in caller.permissions and len(state.participants) > 1:
            raise Rejected(E.UNAUTHORIZED_REQUEST, "ending the meeting for others needs allow_mod")
        reason = LeaveReason.REMOVE_ALL
    return (
        _everyone_leaves(state, c.at, reason)
        + _withdraw_all(state, c.at, reason)
        + _session_closed(state, c.at, "ended")
    )


def _remove_participant(state: MeetingState, c: RemoveParticipant) -> list[AnyEvent]:
    if c.participant_id is None and c.connection_id is None:
        reason = LeaveReason.REMOVE_PEER_API
    else:
        caller = _caller(state, c.participant_id, c.connection_id)
        if "allow_mod" not in caller.permissions:
            raise Rejected(E.UNAUTHORIZED_REQUEST, "removing a participant needs allow_mod")
        reason = LeaveReason.REMOVE_PEER
    target = state.participants.get(c.target_id)
    if target is None:
        raise Rejected(
            E.REMOVE_PARTICIPANT_FAILED, f"participant {c.target_id[:64]!r} is not joined"
        )
    return _left(state, c.at, target, reason)


def _set_media(state: MeetingState, c: SetMedia) -> list[AnyEvent]:
    caller = _caller(state, c.participant_id, c.connection_id)
    if c.kind not in ("mic", "webcam"):
        raise _invalid(f"media kind {c.kind[:20]!r} is not mic or webcam")
    target = caller
    if c.target_id is not None and c.target_id != caller.participant_id:
        found = state.participants.get(c.target_id)
        if found is None:
            raise _invalid(f"participant {c.target_id[:64]!r} is not joined")
        if c.enabled:
            raise Rejected(E.UNAUTHORIZED_REQUEST, "only the participant can switch its media on")
        if "allow_mod" not in caller.permissions:
            raise Rejected(E.UNAUTHORIZED_REQUEST, "switching off another's media needs allow_mod")
        target = found
    if c.enabled and target.mode != "SEND_AND_RECV":
        raise Rejected(E.NOT_SUPPORTED_IN_MODE, f"cannot send media in mode {target.mode}")
    current = target.mic_enabled if c.kind == "mic" else target.webcam_enabled
    if current == c.enabled:
        state_name = "on" if c.enabled else "off"
        raise Rejected(E.ALREADY_IN_REQUESTED_STATE, f"{c.kind} is already {state_name}")
    return [
        MediaChanged(
            meeting_id=state.meeting_id,
            at=c.at,
            participant_id=target.participant_id,
            kind=c.kind,
            enabled=c.enabled,
            by=None if target is caller else caller.participant_id,
        )
    ]


def _change_mode(state: MeetingState, c: ChangeMode) -> list[AnyEvent]:
    caller = _caller(state, c.participant_id, c.connection_id)
    mode = _mode(c.mode)
    if mode == caller.mode:
        raise Rejected(E.ALREADY_IN_REQUESTED_STATE, f"mode is already {mode}")
    mid, pid, at = state.meeting_id, caller.participant_id, c.at
    events: list[AnyEvent] = []
    if mode != "SEND_AND_RECV":  # a mode that cannot send switches media off first
        if caller.mic_enabled:
            events.append(
                MediaChanged(
                    meeting_id=mid, at=at, participant_id=pid, kind="mic", enabled=False, by=None
                )
            )
        if caller.webcam_enabled:
            events.append(
                MediaChanged(
                    meeting_id=mid, at=at, participant_id=pid, kind="webcam", enabled=False, by=None
                )
            )
    events.append(ModeChanged(meeting_id=mid, at=at, participant_id=pid, mode=mode))
    return events


def _respond_entry(state: MeetingState, c: RespondEntry) -> list[AnyEvent]:
    caller = _caller(state, c.participant_id, c.connection_id)
    if "allow_join" not in caller.permissions:
        raise Rejected(E.UNAUTHORIZED_REQUEST, "answering entry requests needs allow_join")
    request = state.waiting.get(c.requester_id)
    if request is None:
        raise Rejected(
            E.RESPOND_ENTRY_FAILED, f"no pending entry request from {c.requester_id[:64]!r}"
        )
    limit = state.max_participants
    if c.allowed and limit is not None and len(state.participants) >= limit:
        raise Rejected(E.MAX_PARTICIPANT_REACHED, f"the meeting is full ({limit} participants)")
    events: list[AnyEvent] = [
        EntryResponded(
            meeting_id=state.meeting_id,
            at=c.at,
            participant_id=request.participant_id,
            connection_id=request.connection_id,
            allowed=c.allowed,
            responder_id=caller.participant_id,
        )
    ]
    if c.allowed:  # the request carries the join's details
        events.append(ParticipantJoined(**(msgspec.structs.asdict(request) | {"at": c.at})))
    return events


def _deactivate(state: MeetingState, c: Deactivate) -> list[AnyEvent]:
    events = _everyone_leaves(state, c.at, LeaveReason.ROOM_CLOSE)
    if state.session_id is not None:
        events += _session_closed(state, c.at, "deactivated")
    events += _withdraw_all(state, c.at, LeaveReason.ROOM_CLOSE)
    events.append(MeetingDeactivated(meeting_id=state.meeting_id, at=c.at))
    return events


def _activate(state: MeetingState, c: Activate) -> list[AnyEvent]:
    return [MeetingActivated(meeting_id=state.meeting_id, at=c.at)]


# ---------------------------------------------------------------------------
# The transition table


class Refusal(msgspec.Struct, frozen=True):
    """A command that is never accepted in a phase, with its code and why."""

    code: ErrorCode
    why: str


class Rule(msgspec.Struct, frozen=True):
    """A command that may be accepted in a phase: who decides it, where it may lead,
    and every code it may reject with (besides the checks common to all commands)."""

    decide: Callable[[Any, Any], list[AnyEvent]]
    to: frozenset[Phase]
    codes: frozenset[ErrorCode]


def _rule(fn: Callable[[Any, Any], list[AnyEvent]], to: Iterable[Phase], *codes: ErrorCode) -> Rule:
    return Rule(fn, frozenset(to), frozenset(codes))


_EXISTS = Refusal(E.INVALID_MEETING_ID, "the meeting already exists")
_NO_SESSION = Refusal(E.ACTION_BEFORE_JOINED, "nobody has joined: no session is open")
_NOTHING_TO_END = Refusal(E.ALREADY_IN_REQUESTED_STATE, "no session is open to end")
_NOBODY_TO_REMOVE = Refusal(E.REMOVE_PARTICIPANT_FAILED, "nobody is joined")
_ALREADY_ACTIVE = Refusal(E.ALREADY_IN_REQUESTED_STATE, "the meeting is already active")
_AFTER_LEAVE = {IN_SESSION, IDLE, DEACTIVATED}  # the last leave may close the session and the room
_MEDIA_CODES = (
    E.ACTION_BEFORE_JOINED,
    E.INVALID_PARAMETER,
    E.UNAUTHORIZED_REQUEST,
    E.NOT_SUPPORTED_IN_MODE,
    E.ALREADY_IN_REQUESTED_STATE,
)
_JOIN_CODES = (
    E.INVALID_PARTICIPANT_ID,
    E.INVALID_PARAMETER,
    E.INVALID_PERMISSIONS,
    E.ALREADY_IN_REQUESTED_STATE,
    E.DUPLICATE_PARTICIPANT,
    E.MAX_PARTICIPANT_REACHED,
)

TRANSITIONS: Final[Mapping[tuple[Phase, type[Command]], Rule | Refusal]] = {
    (ABSENT, InitMeeting): _rule(_init_meeting, {IDLE}, E.INVALID_MEETING_ID, E.INVALID_PARAMETER),
    **{
        (ABSENT, kind): Refusal(E.INVALID_MEETING_ID, "the meeting does not exist")
        for kind in COMMAND_TYPES
        if kind is not InitMeeting
    },
    (IDLE, InitMeeting): _EXISTS,
    (IDLE, Join): _rule(_join, {IN_SESSION, IDLE}, *_JOIN_CODES),
    (IDLE, Leave): _rule(_leave, {IDLE}, E.ACTION_BEFORE_JOINED, E.INVALID_PARAMETER),
    (IDLE, End): _NOTHING_TO_END,
    (IDLE, RemoveParticipant): _NOBODY_TO_REMOVE,
    (IDLE, SetMedia): _NO_SESSION,
    (IDLE, ChangeMode): _NO_SESSION,
    (IDLE, RespondEntry): _NO_SESSION,
    (IDLE, Deactivate): _rule(_deactivate, {DEACTIVATED}),
    (IDLE, Activate): _ALREADY_ACTIVE,
    (IN_SESSION, InitMeeting): _EXISTS,
    (IN_SESSION, Join): _rule(_join, _AFTER_LEAVE, *_JOIN_CODES),
    (IN_SESSION, Leave): _rule(_leave, _AFTER_LEAVE, E.ACTION_BEFORE_JOINED, E.INVALID_PARAMETER),
    (IN_SESSION, End): _rule(
        _end, {IDLE, DEACTIVATED}, E.ACTION_BEFORE_JOINED, E.UNAUTHORIZED_REQUEST
    ),
    (IN_SESSION, RemoveParticipant): _rule(
        _remove_participant,
        _AFTER_LEAVE,
        E.ACTION_BEFORE_JOINED,
        E.UNAUTHORIZED_REQUEST,
        E.REMOVE_PARTICIPANT_FAILED,
    ),
    (IN_SESSION, SetMedia): _rule(_set_media, {IN_SESSION}, *_MEDIA_CODES),
    (IN_SESSION, ChangeMode): _rule(
        _change_mode,
        {IN_SESSION},
        E.ACTION_BEFORE_JOINED,
        E.INVALID_PARAMETER,
        E.ALREADY_IN_REQUESTED_STATE,
    ),
    (IN_SESSION, RespondEntry): _rule(
        _respond_entry,
        {IN_SESSION},
        E.ACTION_BEFORE_JOINED,
        E.UNAUTHORIZED_REQUEST,
        E.RESPOND_ENTRY_FAILED,
        E.MAX_PARTICIPANT_REACHED,
    ),
    (IN_SESSION, Deactivate): _rule(_deactivate, {DEACTIVATED}),
    (IN_SESSION, Activate): _ALREADY_ACTIVE,
    (DEACTIVATED, InitMeeting): _EXISTS,
    (DEACTIVATED, Join): Refusal(E.MEETING_ID_DISABLED, "the meeting is deactivated"),
    (DEACTIVATED, Leave): Refusal(E.ACTION_BEFORE_JOINED, "nobody is in a deactivated meeting"),
    (DEACTIVATED, End): _NOTHING_TO_END,
    (DEACTIVATED, RemoveParticipant): _NOBODY_TO_REMOVE,
    (DEACTIVATED, SetMedia): _NO_SESSION,
    (DEACTIVATED, ChangeMode): _NO_SESSION,
    (DEACTIVATED, RespondEntry): _NO_SESSION,
    (DEACTIVATED, Deactivate): Refusal(
        E.ALREADY_IN_REQUESTED_STATE, "the meeting is already deactivated"
    ),
    (DEACTIVATED, Activate): _rule(_activate, {IDLE}),
}

#: TRANSITIONS by command type, each row in `Phase` order (absent, idle, in session, deactivated).
_ROWS: Final = {
    kind: tuple(TRANSITIONS[(phase, kind)] for phase in (ABSENT, IDLE, IN_SESSION, DEACTIVATED))
    for kind in COMMAND_TYPES
}

#: Codes any command may be rejected with, whatever its row: a bad `at` or
#: `command_id`, or a command for another meeting than the state given.
COMMON_CODES: Final = frozenset({E.INVALID_PARAMETER, E.INVALID_MEETING_ID})


def decide(state: MeetingState | None, command: Command) -> tuple[AnyEvent, ...]:
    """The events `command` causes in `state`, or `Rejected` with the rule it broke.

    Pure: `state` is not changed. Raises `Rejected` and nothing else; any other
    exception is a bug.
    """
    if command.at < 0:
        raise _invalid(f"at must be unix milliseconds, not {command.at}")
    if command.command_id is not None and TOKEN_ID.fullmatch(command.command_id) is None:
        raise _invalid("commandId must be 1 to 128 characters with no whitespace")
    if state is not None and command.meeting_id != state.meeting_id:
        raise Rejected(
            E.INVALID_MEETING_ID,
            f"command for meeting {command.meeting_id[:64]!r} given meeting {state.meeting_id!r}",
        )
    row = _ROWS.get(type(command))
    if row is None:
        raise Rejected(E.INVALID_PARAMETER, f"{type(command).__name__} is not a meeting command")
    # phase_of(state), inlined: this is the hot path
    if state is None:
        entry = row[0]
    elif not state.active:
        entry = row[3]
    else:
        entry = row[1] if state.session_id is None else row[2]
    if isinstance(entry, Refusal):
        raise Rejected(entry.code, entry.why)
    return tuple(entry.decide(state, command))


# ---------------------------------------------------------------------------
# evolve: apply one event. In place, O(1) in the number of participants.


def _on_initialized(state: MeetingState | None, e: MeetingInitialized) -> MeetingState:
    if state is not None:
        raise InvalidLog(f"meeting {e.meeting_id!r} is initialized twice")
    return MeetingState(
        meeting_id=e.meeting_id,
        version=0,
        created_at=e.at,
        custom_room_id=e.custom_room_id,
        max_participants=e.max_participants,
        auto_close=e.auto_close,
        duplicate_policy=e.duplicate_policy,
        webhook=e.webhook,
    )


def _on_session_started(state: MeetingState, e: SessionStarted) -> MeetingState:
    if state.session_id is not None or not state.active:
        raise InvalidLog(f"session {e.session_id!r} starts while another is open")
    state.session_id = e.session_id
    state.session_started_at = e.at
    return state


def _on_joined(state: MeetingState, e: ParticipantJoined) -> MeetingState:
    pid = e.participant_id
    if state.session_id is None or pid in state.participants or pid in state.waiting:
        raise InvalidLog(f"{pid!r} joins outside a session, twice, or while waiting")
    state.participants[e.participant_id] = Participant(
        participant_id=e.participant_id,
        connection_id=e.connection_id,
        name=e.name,
        meta_data=e.meta_data,
        mic_enabled=e.mic_enabled,
        webcam_enabled=e.webcam_enabled,
        mode=e.mode,
        permissions=e.permissions,
        multistream=e.multistream,
        debug_mode=e.debug_mode,
        joined_at=e.at,
    )
    return state


def _on_left(state: MeetingState, e: ParticipantLeft) -> MeetingState:
    if state.participants[e.participant_id].connection_id != e.connection_id:
        raise InvalidLog(f"{e.participant_id!r} leaves from a connection it did not join on")
    del state.participants[e.participant_id]
    return state


def _on_session_ended(state: MeetingState, e: SessionEnded) -> MeetingState:
    if state.session_id != e.session_id or state.participants:
        raise InvalidLog(f"session {e.session_id!r} ends while not open or not empty")
    state.session_id = None
    state.session_started_at = None
    return state


def _on_media_changed(state: MeetingState, e: MediaChanged) -> MeetingState:
    p = state.participants[e.participant_id]
    current = p.mic_enabled if e.kind == "mic" else p.webcam_enabled
    if current == e.enabled or (e.enabled and p.mode != "SEND_AND_RECV"):
        raise InvalidLog(f"{e.kind} of {e.participant_id!r} cannot switch to {e.enabled}")
    if e.kind == "mic":
        p = msgspec.structs.replace(p, mic_enabled=e.enabled)
    else:
        p = msgspec.structs.replace(p, webcam_enabled=e.enabled)
    state.participants[e.participant_id] = p
    return state


def _on_mode_changed(state: MeetingState, e: ModeChanged) -> MeetingState:
    p = state.participants[e.participant_id]
    state.participants[e.participant_id] = msgspec.structs.replace(p, mode=e.mode)
    return state


def _on_entry_requested(state: MeetingState, e: EntryRequested) -> MeetingState:
    if e.participant_id in state.waiting or e.participant_id in state.participants:
        raise InvalidLog(f"{e.participant_id!r} asks to join while already in or waiting")
    if not state.active:
        raise InvalidLog(f"{e.participant_id!r} asks to join a deactivated meeting")
    state.waiting[e.participant_id] = e
    return state


def _on_entry_responded(state: MeetingState, e: EntryResponded) -> MeetingState:
    request = state.waiting[e.participant_id]
    if request.connection_id != e.connection_id:
        raise InvalidLog(f"answer to {e.participant_id!r} names another connection")
    del state.waiting[e.participant_id]
    return state


def _on_entry_withdrawn(state: MeetingState, e: EntryWithdrawn) -> MeetingState:
    if state.waiting[e.participant_id].connection_id != e.connection_id:
        raise InvalidLog(f"{e.participant_id!r} withdraws a request it did not make")
    del state.waiting[e.participant_id]
    return state


def _on_deactivated(state: MeetingState, e: MeetingDeactivated) -> MeetingState:
    if not state.active or state.participants or state.waiting or state.session_id is not None:
        raise InvalidLog("the meeting is deactivated while inactive or not empty")
    state.active = False
    return state


def _on_activated(state: MeetingState, e: MeetingActivated) -> MeetingState:
    if state.active:
        raise InvalidLog("the meeting is activated while active")
    state.active = True
    return state


_APPLY: Final[dict[type[Event], Callable[[Any, Any], MeetingState]]] = {
    MeetingInitialized: _on_initialized,
    SessionStarted: _on_session_started,
    ParticipantJoined: _on_joined,
    ParticipantLeft: _on_left,
    SessionEnded: _on_session_ended,
    MediaChanged: _on_media_changed,
    ModeChanged: _on_mode_changed,
    EntryRequested: _on_entry_requested,
    EntryResponded: _on_entry_responded,
    EntryWithdrawn: _on_entry_withdrawn,
    MeetingDeactivated: _on_deactivated,
    MeetingActivated: _on_activated,
}


def evolve(state: MeetingState | None, event: Event) -> MeetingState:
    """The state after `event`: a new state; `state` is left as it was.

    Pure: it copies the state's tables of participants (O(participants)); to apply a
    log, `fold` copies once. Raises `InvalidLog` when `event` cannot follow `state`.
    """
    return _evolve(state.copy() if state is not None else None, event)


def fold(events: Iterable[Event], state: MeetingState | None = None) -> MeetingState | None:
    """The state after `events`, in order, from `state` (None: from nothing); `state`
    is left as it was. O(1) per event."""
    if state is not None:
        state = state.copy()
    for event in events:
        state = _evolve(state, event)
    return state


def _evolve(state: MeetingState | None, event: Event) -> MeetingState:
    """`evolve` in place: `state` becomes the new state (O(1) whatever the number of
    participants). For the engine and folds over states they own; on `InvalidLog`,
    `state` may be half changed."""
    apply = _APPLY.get(type(event))
    if apply is None:
        raise InvalidLog(f"{type(event).__name__} is not a meeting event")
    try:
        if state is not None and event.meeting_id != state.meeting_id:
            raise InvalidLog(
                f"event for meeting {event.meeting_id!r} applied to {state.meeting_id!r}"
            )
        if state is None and type(event) is not MeetingInitialized:
            raise InvalidLog(f"{type(event).__name__} before the meeting was initialized")
        state = apply(state, event)
    except KeyError as exc:
        raise InvalidLog(
            f"{type(event).__name__} names {exc.args[0]!r}, who is not there"
        ) from None
    state.version += 1
    return state
