"""The rules of a meeting, as an embedder meets them: build a command, `decide`, `fold`.

Every rule of DESIGN.md section 3 and every rejection code of the core has a test
here. Commands go through `Room`, which checks on every step what holds for all
of them: an accepted command moves the meeting along its row of `TRANSITIONS`,
`fold(log)` equals the live state and versions have no gaps; a rejected one names
a code of its row and changes nothing; `decide` never touches the state it is given.
"""

from __future__ import annotations

import itertools
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import meetcore
from meetcore import ErrorCode as E
from meetcore import LeaveReason as R
from meetcore import MeetingState, Participant, Phase, Refusal, Rejected, Rule, phase_of
from meetcore.commands import (
    COMMAND_TYPES,
    Activate,
    AnyCommand,
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
    Webhook,
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
    SessionStarted,
)

MID = "abc-def-ghi"
T0 = 1_700_000_000_000
MOD = ("allow_join", "allow_mod")
ASK = ("ask_join",)
#: Codes any command may be rejected with, whatever its row (bad `at`/`command_id`,
#: or a command for another meeting than the state given).
COMMON = frozenset({E.INVALID_PARAMETER, E.INVALID_MEETING_ID})

Snapshot = tuple[MeetingState, bytes] | None


def kinds(events: tuple[Event, ...]) -> list[type[Event]]:
    return [type(e) for e in events]


def snapshot(state: MeetingState | None) -> Snapshot:
    """A deep picture of `state`: a copy (compared by value) and its encoding."""
    return None if state is None else (state.copy(), msgspec.json.encode(state))


def row(state: MeetingState | None, command: Command) -> Rule | Refusal:
    return meetcore.TRANSITIONS[(phase_of(state), type(command))]


class Room:
    """One meeting driven through `decide` and `fold`, with its log and a clock."""

    def __init__(self, *, absent: bool = False, **config: Any) -> None:
        self.state: MeetingState | None = None
        self.log: list[Event] = []
        self._clock = itertools.count(T0, 1000)
        if not absent:
            self.run(InitMeeting(meeting_id=MID, at=self.now(), **config))

    # -- commands, built the way a user builds them

    def now(self) -> int:
        return next(self._clock)

    def cmd(self, cls: type[Command], /, **fields: Any) -> Any:
        fields.setdefault("meeting_id", MID)
        fields.setdefault("at", self.now())
        return cls(**fields)

    def join_cmd(self, pid: str, **fields: Any) -> Join:
        fields.setdefault("connection_id", f"{pid}-conn-1")
        fields.setdefault("session_id", "session-1")
        fields.setdefault("name", pid.title())
        result: Join = self.cmd(Join, participant_id=pid, **fields)
        return result

    def conn(self, pid: str) -> str:
        """The connection `pid` is joined (or waiting) on."""
        assert self.state is not None
        found = self.state.participants.get(pid) or self.state.waiting[pid]
        return found.connection_id

    def caller(self, pid: str) -> dict[str, str]:
        return {"participant_id": pid, "connection_id": self.conn(pid)}

    # -- running them

    def run(self, command: Command) -> tuple[Event, ...]:
        """Decide and apply `command`, which must be accepted."""
        before = snapshot(self.state)
        entry = row(self.state, command)
        events = meetcore.decide(self.state, command)
        assert snapshot(self.state) == before, "decide changed the state it was given"
        assert isinstance(entry, Rule), f"{type(command).__name__} accepted by a refusal row"
        assert isinstance(events, tuple)
        assert events, "an accepted command emits at least one event"
        for e in events:
            assert (e.meeting_id, e.at) == (command.meeting_id, command.at)
            assert msgspec.json.decode(msgspec.json.encode(e), type=AnyEvent) == e
        self.state = meetcore.fold(events, self.state)
        self.log += events
        assert self.state is not None
        assert phase_of(self.state) in entry.to
        assert self.state.version == len(self.log)
        assert meetcore.fold(self.log) == self.state
        return events

    def reject(self, command: Command, code: E) -> Rejected:
        """Decide `command`, which must be rejected with `code` and change nothing."""
        before = snapshot(self.state)
        with pytest.raises(Rejected) as info:
            meetcore.decide(self.state, command)
        error = info.value
        assert error.code == code, str(error)
        assert type(error.code) is E
        assert snapshot(self.state) == before, "a rejected command changed the state"
        entry = row(self.state, command)
        documented = {entry.code} if isinstance(entry, Refusal) else set(entry.codes)
        assert code in documented | COMMON, f"{code!r} is not in the row of the table"
        return error

    # -- shortcuts

    def join(self, pid: str, **fields: Any) -> tuple[Event, ...]:
        return self.run(self.join_cmd(pid, **fields))

    def leave(self, pid: str, **fields: Any) -> tuple[Event, ...]:
        return self.run(self.cmd(Leave, **self.caller(pid), **fields))

    @property
    def s(self) -> MeetingState:
        assert self.state is not None
        return self.state


def room_with(*pids: str, mods: tuple[str, ...] = ("alice",), **config: Any) -> Room:
    """A meeting in session with `pids` joined in order; `mods` have allow_mod."""
    room = Room(**config)
    for pid in pids:
        room.join(pid, permissions=MOD if pid in mods else ("allow_join",))
    return room


def room_in(phase: Phase) -> Room:
    """A meeting in `phase`; in session, alice (moderator) and bob are joined."""
    if phase is Phase.ABSENT:
        return Room(absent=True)
    room = Room()
    if phase is Phase.IN_SESSION:
        room.join("alice", permissions=MOD)
        room.join("bob")
    if phase is Phase.DEACTIVATED:
        room.run(room.cmd(Deactivate))
    assert phase_of(room.state) is phase
    return room


def some_command(room: Room, kind: type[Command], **fields: Any) -> Command:
    """A well-formed command of `kind`, from alice where a caller is needed."""
    who = {"participant_id": "alice", "connection_id": "alice-conn-1"}
    extra: dict[str, Any] = {
        InitMeeting: {},
        Join: {
            "participant_id": "zoe",
            "connection_id": "zoe-conn-1",
            "session_id": "session-9",
            "name": "Zoe",
        },
        Leave: who,
        End: who,
        RemoveParticipant: {"target_id": "bob", **who},
        SetMedia: {"kind": "mic", "enabled": True, **who},
        ChangeMode: {"mode": "RECV_ONLY", **who},
        RespondEntry: {"requester_id": "gus", "allowed": True, **who},
        Deactivate: {},
        Activate: {},
    }[kind]
    result: Command = room.cmd(kind, **{**extra, **fields})
    return result


# ---------------------------------------------------------------------------
# The transition table


def test_the_table_has_a_row_for_every_phase_and_command() -> None:
    pairs = {(phase, kind) for phase in Phase for kind in COMMAND_TYPES}
    assert set(meetcore.TRANSITIONS) == pairs
    for entry in meetcore.TRANSITIONS.values():
        if isinstance(entry, Rule):
            assert entry.to <= set(Phase) - {Phase.ABSENT}
            assert all(type(code) is E for code in entry.codes)
        else:
            assert type(entry.code) is E
            assert entry.why


REFUSALS = [
    (Phase.ABSENT, kind, E.INVALID_MEETING_ID) for kind in COMMAND_TYPES if kind is not InitMeeting
] + [
    (Phase.IDLE, InitMeeting, E.INVALID_MEETING_ID),
    (Phase.IDLE, End, E.ALREADY_IN_REQUESTED_STATE),
    (Phase.IDLE, RemoveParticipant, E.REMOVE_PARTICIPANT_FAILED),
    (Phase.IDLE, SetMedia, E.ACTION_BEFORE_JOINED),
    (Phase.IDLE, ChangeMode, E.ACTION_BEFORE_JOINED),
    (Phase.IDLE, RespondEntry, E.ACTION_BEFORE_JOINED),
    (Phase.IDLE, Activate, E.ALREADY_IN_REQUESTED_STATE),
    (Phase.IN_SESSION, InitMeeting, E.INVALID_MEETING_ID),
    (Phase.IN_SESSION, Activate, E.ALREADY_IN_REQUESTED_STATE),
    (Phase.DEACTIVATED, InitMeeting, E.INVALID_MEETING_ID),
    (Phase.DEACTIVATED, Join, E.MEETING_ID_DISABLED),
    (Phase.DEACTIVATED, Leave, E.ACTION_BEFORE_JOINED),
    (Phase.DEACTIVATED, End, E.ALREADY_IN_REQUESTED_STATE),
    (Phase.DEACTIVATED, RemoveParticipant, E.REMOVE_PARTICIPANT_FAILED),
    (Phase.DEACTIVATED, SetMedia, E.ACTION_BEFORE_JOINED),
    (Phase.DEACTIVATED, ChangeMode, E.ACTION_BEFORE_JOINED),
    (Phase.DEACTIVATED, RespondEntry, E.ACTION_BEFORE_JOINED),
    (Phase.DEACTIVATED, Deactivate, E.ALREADY_IN_REQUESTED_STATE),
]


@pytest.mark.parametrize(
    ("phase", "kind", "code"), REFUSALS, ids=lambda v: getattr(v, "__name__", str(v))
)
def test_refused_in_phase(phase: Phase, kind: type[Command], code: E) -> None:
    room = room_in(phase)
    entry = meetcore.TRANSITIONS[(phase, kind)]
    assert isinstance(entry, Refusal)
    assert entry.code == code
    room.reject(some_command(room, kind), code)


# ---------------------------------------------------------------------------
# InitMeeting


@pytest.mark.parametrize("meeting_id", ["abc-def-ghi", "abc-1234-xyz", "a" * 64, "A_b-9", "x"])
def test_init_meeting(meeting_id: str) -> None:
    command = InitMeeting(meeting_id=meeting_id, at=T0)
    events = meetcore.decide(None, command)
    assert events == (
        MeetingInitialized(
            meeting_id=meeting_id,
            at=T0,
            custom_room_id=None,
            max_participants=None,
            auto_close="session-ends",
            duplicate_policy="replace",
            webhook=None,
        ),
    )
    state = meetcore.fold(events)
    assert state is not None
    assert (state.meeting_id, state.version, state.created_at) == (meeting_id, 1, T0)
    assert state.active
    assert state.session_id is None
    assert state.participants == {}
    assert state.waiting == {}
    assert phase_of(state) is Phase.IDLE


def test_init_meeting_records_its_configuration() -> None:
    hook = Webhook(end_point="https://example.com/hook", events=("participant-joined",))
    room = Room(absent=True)
    (event,) = room.run(
        room.cmd(
            InitMeeting,
            custom_room_id="team-standup_2",
            max_participants=5,
            auto_close="session-end-and-deactivate",
            duplicate_policy="reject",
            webhook=hook,
        )
    )
    assert isinstance(event, MeetingInitialized)
    assert event.custom_room_id == "team-standup_2"
    assert event.max_participants == 5
    assert event.auto_close == "session-end-and-deactivate"
    assert event.duplicate_policy == "reject"
    assert event.webhook == hook
    s = room.s
    assert s.custom_room_id == "team-standup_2"
    assert (s.max_participants, s.auto_close, s.duplicate_policy) == (
        5,
        "session-end-and-deactivate",
        "reject",
    )
    assert s.webhook == hook


@pytest.mark.parametrize(
    "meeting_id",
    ["", "a" * 65, "abc def", "abc-d\u00e9f-ghi", "abc/def", "abc\\def", "abc-def\n", "abc.def"],
)
def test_init_meeting_with_an_invalid_id(meeting_id: str) -> None:
    room = Room(absent=True)
    room.reject(room.cmd(InitMeeting, meeting_id=meeting_id), E.INVALID_MEETING_ID)


@pytest.mark.parametrize(
    "config",
    [
        {"custom_room_id": ""},
        {"custom_room_id": "has space"},
        {"custom_room_id": "x" * 65},
        {"custom_room_id": "a/b"},
        {"max_participants": 0},
        {"max_participants": -1},
        {"max_participants": 1_000_001},
        {"webhook": Webhook(end_point="ftp://example.com/hook")},
        {"webhook": Webhook(end_point="example.com/hook")},
        {"webhook": Webhook(end_point="")},
        {"webhook": Webhook(end_point="https://example.com/" + "a" * 2029)},
        {"webhook": Webhook(end_point="https://x.io", events=tuple(f"e{i}" for i in range(33)))},
        {"webhook": Webhook(end_point="https://x.io", events=("",))},
        {"webhook": Webhook(end_point="https://x.io", events=("e" * 65,))},
    ],
    ids=repr,
)
def test_init_meeting_with_a_bad_configuration(config: dict[str, Any]) -> None:
    room = Room(absent=True)
    room.reject(room.cmd(InitMeeting, **config), E.INVALID_PARAMETER)


@pytest.mark.parametrize(
    "config",
    [
        {"max_participants": 1},
        {"max_participants": 1_000_000},
        {"custom_room_id": "c" * 64},
        {"webhook": Webhook(end_point="http://example.com/" + "a" * 2029)},
        {"webhook": Webhook(end_point="https://x.io", events=tuple(f"e{i}" for i in range(32)))},
        {"webhook": Webhook(end_point="https://x.io", events=("e" * 64,))},
    ],
    ids=repr,
)
def test_init_meeting_configuration_limits_are_accepted(config: dict[str, Any]) -> None:
    room = Room(absent=True)
    (event,) = room.run(room.cmd(InitMeeting, **config))
    for name, value in config.items():
        assert getattr(event, name) == value
        assert getattr(room.s, name) == value


@pytest.mark.parametrize("phase", [Phase.IDLE, Phase.IN_SESSION, Phase.DEACTIVATED])
def test_init_meeting_that_already_exists(phase: Phase) -> None:
    room = room_in(phase)
    error = room.reject(room.cmd(InitMeeting), E.INVALID_MEETING_ID)
    assert "exists" in error.message


# ---------------------------------------------------------------------------
# Join


def test_first_join_starts_the_session() -> None:
    room = Room()
    command = room.join_cmd(
        "alice",
        session_id="sess-1",
        name="Alice",
        permissions=MOD,
        mic_enabled=True,
        webcam_enabled=True,
        meta_data={"role": "host"},
        multistream=False,
        debug_mode=True,
    )
    started, joined = room.run(command)
    assert started == SessionStarted(meeting_id=MID, at=command.at, session_id="sess-1")
    assert joined == ParticipantJoined(
        meeting_id=MID,
        at=command.at,
        participant_id="alice",
        connection_id="alice-conn-1",
        name="Alice",
        meta_data={"role": "host"},
        mic_enabled=True,
        webcam_enabled=True,
        mode="SEND_AND_RECV",
        permissions=MOD,
        multistream=False,
        debug_mode=True,
    )
    s = room.s
    assert (s.session_id, s.session_started_at) == ("sess-1", command.at)
    assert phase_of(s) is Phase.IN_SESSION
    assert s.participants == {
        "alice": Participant(
            participant_id="alice",
            connection_id="alice-conn-1",
            name="Alice",
            meta_data={"role": "host"},
            mic_enabled=True,
            webcam_enabled=True,
            mode="SEND_AND_RECV",
            permissions=MOD,
            multistream=False,
            debug_mode=True,
            joined_at=command.at,
        )
    }


def test_second_join_does_not_start_a_session() -> None:
    room = Room()
    room.join("alice", session_id="sess-1")
    events = room.join("bob", session_id="sess-other")
    assert kinds(events) == [ParticipantJoined]
    assert room.s.session_id == "sess-1"
    assert list(room.s.participants) == ["alice", "bob"]


def test_join_a_meeting_that_does_not_exist() -> None:
    room = Room(absent=True)
    room.reject(room.join_cmd("alice"), E.INVALID_MEETING_ID)


@pytest.mark.parametrize("permissions", [("allow_join",), ASK])
def test_join_a_deactivated_meeting(permissions: tuple[str, ...]) -> None:
    room = room_in(Phase.DEACTIVATED)
    room.reject(room.join_cmd("alice", permissions=permissions), E.MEETING_ID_DISABLED)


@pytest.mark.parametrize(
    "pid",
    [
        "",
        " ",
        "a b",
        "\talice",
        "alice\n",
        "a\u00a0b",
        "a\u2028b",
        "a" * 65,
        "a\x00b",
        "a\x1bb",
        "a\x7fb",
        "\ud800",
    ],
    ids=repr,
)
def test_join_with_an_invalid_participant_id(pid: str) -> None:
    room = Room()
    room.reject(room.join_cmd(pid, connection_id="c1"), E.INVALID_PARTICIPANT_ID)


@pytest.mark.parametrize("pid", ["a" * 64, "p\u00e9p\u00e9", "user@example.com", "abc-1234-xyz"])
def test_join_with_a_valid_participant_id(pid: str) -> None:
    room = Room()
    room.join(pid, connection_id="c1")
    assert list(room.s.participants) == [pid]


@pytest.mark.parametrize(
    "fields",
    [
        {"connection_id": ""},
        {"connection_id": "c 1"},
        {"connection_id": "c" * 129},
        {"session_id": ""},
        {"session_id": "s\n1"},
        {"name": "n" * 257},
        {"name": "Ana\nLee"},
        {"name": "Ana\x00"},
    ],
    ids=repr,
)
def test_join_with_a_bad_parameter(fields: dict[str, Any]) -> None:
    room = Room()
    room.reject(room.join_cmd("alice", **fields), E.INVALID_PARAMETER)


def test_the_session_id_is_only_checked_when_it_opens_a_session() -> None:
    # A join into an open session does not use its session id (core's choice).
    room = room_with("alice")
    assert kinds(room.join("bob", session_id="")) == [ParticipantJoined]
    assert room.s.session_id == "session-1"


@pytest.mark.parametrize("name", ["n" * 256, "Zo\u00eb O'Neil", ""])
def test_join_with_an_acceptable_name(name: str) -> None:
    room = Room()
    room.join("alice", name=name)
    assert room.s.participants["alice"].name == name


@pytest.mark.parametrize(
    "meta_data",
    [
        {"k": object()},
        {"k": "x" * 4089},  # 4097 bytes encoded
        {"k": ["\u00e9" * 2045]},  # short in characters, long in UTF-8
        {"k": 2**70},  # JSON takes it, msgpack cannot
        {"k": 1 + 2j},
    ],
    ids=["object", "4097-bytes", "utf8-bytes", "bigint", "complex"],
)
def test_join_with_bad_meta_data(meta_data: dict[str, Any]) -> None:
    room = Room()
    error = room.reject(room.join_cmd("alice", meta_data=meta_data), E.INVALID_PARAMETER)
    assert "metaData" in error.message


def test_join_with_cyclic_meta_data() -> None:
    meta_data: dict[str, Any] = {}
    meta_data["self"] = meta_data
    room = Room()
    room.reject(room.join_cmd("alice", meta_data=meta_data), E.INVALID_PARAMETER)


def test_meta_data_of_exactly_4096_bytes_is_accepted() -> None:
    meta_data = {"k": "x" * 4088}
    assert len(msgspec.json.encode(meta_data)) == 4096
    room = Room()
    _, joined = room.join("alice", meta_data=meta_data)
    assert isinstance(joined, ParticipantJoined)
    assert joined.meta_data == meta_data


def test_meta_data_is_normalized_and_copied() -> None:
    meta_data: dict[str, Any] = {"tags": ("a", "b"), "n": float("nan"), "nested": {"t": (1,)}}
    room = Room()
    events = meetcore.decide(room.state, room.join_cmd("alice", meta_data=meta_data))
    joined = events[-1]
    expected = {"tags": ["a", "b"], "n": None, "nested": {"t": [1]}}
    assert isinstance(joined, ParticipantJoined)
    assert joined.meta_data == expected
    # the caller changes its dict after deciding: the event and the state keep the old value
    meta_data["tags"] = ("changed",)
    meta_data["nested"]["t"] = (2,)
    meta_data["new"] = 1
    assert joined.meta_data == expected
    state = meetcore.fold(events, room.state)
    assert state is not None
    assert state.participants["alice"].meta_data == expected
    assert msgspec.json.decode(msgspec.json.encode(joined), type=AnyEvent) == joined


@pytest.mark.parametrize(
    "permissions",
    [
        ("allow_join", "superuser"),
        ("ALLOW_JOIN",),
        (),
        ("allow_mod",),
        ("ask_join", "allow_join"),
        ("ask_join", "allow_mod"),
    ],
    ids=repr,
)
def test_join_with_invalid_permissions(permissions: tuple[str, ...]) -> None:
    room = room_with("alice")
    room.reject(room.join_cmd("bob", permissions=permissions), E.INVALID_PERMISSIONS)


def test_join_a_full_meeting() -> None:
    room = room_with("alice", "bob", max_participants=2)
    room.reject(room.join_cmd("carol"), E.MAX_PARTICIPANT_REACHED)
    # a duplicate that replaces its old connection is not a new participant
    events = room.join("alice", connection_id="alice-conn-2")
    assert kinds(events) == [ParticipantLeft, ParticipantJoined]
    assert len(room.s.participants) == 2
    room.leave("bob")
    room.join("carol")
    assert list(room.s.participants) == ["alice", "carol"]


@pytest.mark.parametrize("others", [(), ("bob",)], ids=["alone", "with-bob"])
def test_duplicate_join_replaces_the_old_connection(others: tuple[str, ...]) -> None:
    room = room_with("alice", *others)
    command = room.join_cmd("alice", connection_id="alice-conn-2", name="Alice 2")
    left, joined = room.run(command)
    assert left == ParticipantLeft(
        meeting_id=MID,
        at=command.at,
        participant_id="alice",
        connection_id="alice-conn-1",
        reason=R.DUPLICATE_PARTICIPANT,
    )
    assert isinstance(joined, ParticipantJoined)
    assert (joined.connection_id, joined.name) == ("alice-conn-2", "Alice 2")
    assert room.s.session_id == "session-1"  # the session goes on
    assert room.s.participants["alice"].connection_id == "alice-conn-2"
    assert len(room.s.participants) == 1 + len(others)
    # the replaced connection is stale: its leave is refused and changes nothing
    room.reject(
        room.cmd(Leave, participant_id="alice", connection_id="alice-conn-1"),
        E.ACTION_BEFORE_JOINED,
    )
    (left, *_) = room.leave("alice")
    assert isinstance(left, ParticipantLeft)
    assert left.connection_id == "alice-conn-2"


def test_duplicate_join_under_policy_reject() -> None:
    room = room_with("alice", duplicate_policy="reject")
    room.reject(room.join_cmd("alice", connection_id="alice-conn-2"), E.DUPLICATE_PARTICIPANT)
    room.join("gus", permissions=ASK)
    room.reject(room.join_cmd("gus", connection_id="gus-conn-2"), E.DUPLICATE_PARTICIPANT)
    room.reject(
        room.join_cmd("gus", connection_id="gus-conn-2", permissions=ASK), E.DUPLICATE_PARTICIPANT
    )


@pytest.mark.parametrize("policy", ["replace", "reject"])
@pytest.mark.parametrize("permissions", [("allow_join",), ASK])
def test_join_again_on_the_same_connection(policy: str, permissions: tuple[str, ...]) -> None:
    room = room_with("alice", duplicate_policy=policy)
    room.join("gus", permissions=permissions)
    room.reject(room.join_cmd("gus", permissions=permissions), E.ALREADY_IN_REQUESTED_STATE)


@pytest.mark.parametrize(
    ("mode", "stored", "sends"),
    [
        ("SEND_AND_RECV", "SEND_AND_RECV", True),
        ("CONFERENCE", "SEND_AND_RECV", True),
        ("RECV_ONLY", "RECV_ONLY", False),
        ("SIGNALLING_ONLY", "SIGNALLING_ONLY", False),
        ("VIEWER", "SIGNALLING_ONLY", False),
    ],
)
@pytest.mark.parametrize("permissions", [("allow_join",), ASK])
def test_join_modes(mode: str, stored: str, sends: bool, permissions: tuple[str, ...]) -> None:
    room = room_with("alice")
    (event,) = room.join(
        "bob", mode=mode, mic_enabled=True, webcam_enabled=True, permissions=permissions
    )
    assert isinstance(event, ParticipantJoined | EntryRequested)
    assert (event.mode, event.mic_enabled, event.webcam_enabled) == (stored, sends, sends)


def test_join_with_media_off() -> None:
    room = Room()
    _, joined = room.join("alice", mic_enabled=False, webcam_enabled=True)
    assert isinstance(joined, ParticipantJoined)
    assert (joined.mic_enabled, joined.webcam_enabled) == (False, True)


# ---------------------------------------------------------------------------
# Asking to join (ask_join) and RespondEntry


def test_ask_join_requests_entry() -> None:
    room = room_with("alice")
    command = room.join_cmd("gus", permissions=ASK, name="Gus", meta_data={"a": (1,)})
    (requested,) = room.run(command)
    assert requested == EntryRequested(
        meeting_id=MID,
        at=command.at,
        participant_id="gus",
        connection_id="gus-conn-1",
        name="Gus",
        meta_data={"a": [1]},
        mic_enabled=False,
        webcam_enabled=False,
        mode="SEND_AND_RECV",
        permissions=ASK,
        multistream=True,
        debug_mode=False,
    )
    assert list(room.s.waiting) == ["gus"]
    assert "gus" not in room.s.participants


def test_ask_join_in_an_empty_room_starts_no_session() -> None:
    room = Room()
    assert kinds(room.join("gus", permissions=ASK)) == [EntryRequested]
    assert room.s.session_id is None
    assert phase_of(room.s) is Phase.IDLE
    assert list(room.s.waiting) == ["gus"]


def test_waiting_requests_are_not_counted_against_the_limit() -> None:
    room = room_with("alice", max_participants=1)
    assert kinds(room.join("gus", permissions=ASK)) == [EntryRequested]


def test_respond_entry_allowed() -> None:
    room = room_with("alice", mods=())
    room.join("gus", permissions=ASK, mic_enabled=True, name="Gus")
    command = room.cmd(RespondEntry, **room.caller("alice"), requester_id="gus", allowed=True)
    responded, joined = room.run(command)
    assert responded == EntryResponded(
        meeting_id=MID,
        at=command.at,
        participant_id="gus",
        connection_id="gus-conn-1",
        allowed=True,
        responder_id="alice",
    )
    assert isinstance(joined, ParticipantJoined)
    assert (joined.participant_id, joined.connection_id) == ("gus", "gus-conn-1")
    assert (joined.name, joined.mic_enabled, joined.permissions) == ("Gus", True, ASK)
    assert room.s.waiting == {}
    assert list(room.s.participants) == ["alice", "gus"]
    assert room.s.participants["gus"].joined_at == command.at


def test_respond_entry_denied() -> None:
    room = room_with("alice")
    room.join("gus", permissions=ASK)
    command = room.cmd(RespondEntry, **room.caller("alice"), requester_id="gus", allowed=False)
    (responded,) = room.run(command)
    assert isinstance(responded, EntryResponded)
    assert (responded.participant_id, responded.allowed) == ("gus", False)
    assert room.s.waiting == {}
    assert list(room.s.participants) == ["alice"]


@pytest.mark.parametrize(
    "caller",
    [
        {"participant_id": "nobody", "connection_id": "x"},
        {"participant_id": "alice", "connection_id": "alice-conn-old"},
        {"participant_id": "gus", "connection_id": "gus-conn-1"},  # waiting is not joined
    ],
    ids=["unknown", "wrong-connection", "waiting"],
)
def test_respond_entry_from_someone_not_joined(caller: dict[str, str]) -> None:
    room = room_with("alice")
    room.join("gus", permissions=ASK)
    room.reject(
        room.cmd(RespondEntry, **caller, requester_id="gus", allowed=True), E.ACTION_BEFORE_JOINED
    )


def test_respond_entry_without_allow_join() -> None:
    room = room_with("alice")
    room.join("gus", permissions=ASK)
    room.run(room.cmd(RespondEntry, **room.caller("alice"), requester_id="gus", allowed=True))
    room.join("hal", permissions=ASK)
    # gus came in with ask_join only: he may not let others in
    room.reject(
        room.cmd(RespondEntry, **room.caller("gus"), requester_id="hal", allowed=True),
        E.UNAUTHORIZED_REQUEST,
    )


@pytest.mark.parametrize("requester", ["nobody", "bob"], ids=["unknown", "already-joined"])
def test_respond_entry_with_no_pending_request(requester: str) -> None:
    room = room_with("alice", "bob")
    room.reject(
        room.cmd(RespondEntry, **room.caller("alice"), requester_id=requester, allowed=True),
        E.RESPOND_ENTRY_FAILED,
    )


def test_respond_entry_when_the_room_is_full() -> None:
    room = room_with("alice", max_participants=1)
    room.join("gus", permissions=ASK)
    room.reject(
        room.cmd(RespondEntry, **room.caller("alice"), requester_id="gus", allowed=True),
        E.MAX_PARTICIPANT_REACHED,
    )
    # denying is still possible
    room.run(room.cmd(RespondEntry, **room.caller("alice"), requester_id="gus", allowed=False))
    assert room.s.waiting == {}


@pytest.mark.parametrize("reason", [R.MANUAL_LEAVE_CALLED, R.WEBSOCKET_DISCONNECTED])
@pytest.mark.parametrize("others", [(), ("alice",)], ids=["idle", "in-session"])
def test_leave_while_waiting_withdraws_the_request(others: tuple[str, ...], reason: R) -> None:
    room = room_with(*others)
    room.join("gus", permissions=ASK)
    command = room.cmd(Leave, **room.caller("gus"), reason=reason)
    events = room.run(command)
    assert events == (
        EntryWithdrawn(
            meeting_id=MID,
            at=command.at,
            participant_id="gus",
            connection_id="gus-conn-1",
            reason=reason,
        ),
    )
    assert room.s.waiting == {}
    assert list(room.s.participants) == list(others)


def test_duplicate_ask_join_replaces_the_waiting_request() -> None:
    room = room_with("alice")
    room.join("gus", permissions=ASK)
    command = room.join_cmd("gus", connection_id="gus-conn-2", permissions=ASK)
    withdrawn, requested = room.run(command)
    assert withdrawn == EntryWithdrawn(
        meeting_id=MID,
        at=command.at,
        participant_id="gus",
        connection_id="gus-conn-1",
        reason=R.DUPLICATE_PARTICIPANT,
    )
    assert isinstance(requested, EntryRequested)
    assert requested.connection_id == "gus-conn-2"
    assert room.s.waiting["gus"].connection_id == "gus-conn-2"
    room.reject(
        room.cmd(Leave, participant_id="gus", connection_id="gus-conn-1"), E.ACTION_BEFORE_JOINED
    )


def test_direct_join_replaces_a_waiting_request() -> None:
    room = room_with("alice")
    room.join("gus", permissions=ASK)
    events = room.join("gus", connection_id="gus-conn-2")
    assert kinds(events) == [EntryWithdrawn, ParticipantJoined]
    assert isinstance(events[0], EntryWithdrawn)
    assert events[0].reason == R.DUPLICATE_PARTICIPANT
    assert room.s.waiting == {}
    assert room.s.participants["gus"].connection_id == "gus-conn-2"


def test_ask_join_of_a_joined_participant() -> None:
    # the old connection really leaves; the newcomer waits outside (core's choice)
    room = room_with("alice", "bob")
    events = room.join("bob", connection_id="bob-conn-2", permissions=ASK)
    assert kinds(events) == [ParticipantLeft, EntryRequested]
    assert isinstance(events[0], ParticipantLeft)
    assert events[0].reason == R.DUPLICATE_PARTICIPANT
    assert list(room.s.participants) == ["alice"]
    assert room.s.waiting["bob"].connection_id == "bob-conn-2"
    # alone, that leave ends the session first
    room = room_with("alice")
    events = room.join("alice", connection_id="alice-conn-2", permissions=ASK)
    assert kinds(events) == [ParticipantLeft, SessionEnded, EntryRequested]
    assert room.s.session_id is None


# ---------------------------------------------------------------------------
# Leave


@pytest.mark.parametrize(
    "reason", [R.MANUAL_LEAVE_CALLED, R.WEBSOCKET_DISCONNECTED, R.JOIN_ROOM_FAILED, 1001]
)
def test_leave(reason: int) -> None:
    room = room_with("alice", "bob")
    command = room.cmd(Leave, **room.caller("bob"), reason=reason)
    (left,) = room.run(command)
    assert left == ParticipantLeft(
        meeting_id=MID,
        at=command.at,
        participant_id="bob",
        connection_id="bob-conn-1",
        reason=R(reason),
    )
    assert isinstance(left, ParticipantLeft)
    assert type(left.reason) is R
    assert list(room.s.participants) == ["alice"]
    assert room.s.session_id == "session-1"


def test_leave_defaults_to_manual_leave() -> None:
    room = room_with("alice", "bob")
    (left,) = room.leave("bob")
    assert isinstance(left, ParticipantLeft)
    assert left.reason == R.MANUAL_LEAVE_CALLED


def test_last_leave_ends_the_session() -> None:
    room = room_with("alice", "bob")
    room.leave("alice")
    command = room.cmd(Leave, **room.caller("bob"))
    left, ended = room.run(command)
    assert isinstance(left, ParticipantLeft)
    assert ended == SessionEnded(
        meeting_id=MID, at=command.at, session_id="session-1", reason="empty"
    )
    s = room.s
    assert (s.session_id, s.session_started_at, s.participants) == (None, None, {})
    assert s.active
    assert phase_of(s) is Phase.IDLE


@pytest.mark.parametrize(
    "caller",
    [
        {"participant_id": "nobody", "connection_id": "nobody-conn-1"},
        {"participant_id": "bob", "connection_id": "alice-conn-1"},
        {"participant_id": "bob", "connection_id": "bob-conn-0"},
    ],
    ids=["unknown", "other's-connection", "wrong-connection"],
)
def test_leave_when_not_joined(caller: dict[str, str]) -> None:
    room = room_with("alice", "bob")
    room.reject(room.cmd(Leave, **caller), E.ACTION_BEFORE_JOINED)


def test_leave_in_an_empty_room() -> None:
    room = Room()
    room.reject(
        room.cmd(Leave, participant_id="alice", connection_id="alice-conn-1"),
        E.ACTION_BEFORE_JOINED,
    )


def test_leave_from_a_replaced_connection_changes_nothing() -> None:
    room = room_with("alice", "bob")
    room.join("bob", connection_id="bob-conn-2")
    before = room.s.copy()
    room.reject(
        room.cmd(Leave, participant_id="bob", connection_id="bob-conn-1"), E.ACTION_BEFORE_JOINED
    )
    assert room.s == before
    assert room.s.participants["bob"].connection_id == "bob-conn-2"


def test_the_room_is_reused_by_a_new_session() -> None:
    room = Room()
    room.join("alice", session_id="session-1")
    room.leave("alice")
    command = room.join_cmd("bob", session_id="session-2")
    started, joined = room.run(command)
    assert started == SessionStarted(meeting_id=MID, at=command.at, session_id="session-2")
    assert isinstance(joined, ParticipantJoined)
    assert (room.s.session_id, room.s.session_started_at) == ("session-2", command.at)
    sessions = [e.session_id for e in room.log if isinstance(e, SessionStarted | SessionEnded)]
    assert sessions == ["session-1", "session-1", "session-2"]


def test_waiting_requests_outlive_a_session_that_empties() -> None:
    # with auto_close "session-ends", nobody closes the room: the request still waits
    room = room_with("alice")
    room.join("gus", permissions=ASK)
    assert kinds(room.leave("alice")) == [ParticipantLeft, SessionEnded]
    assert list(room.s.waiting) == ["gus"]


# ---------------------------------------------------------------------------
# End


def test_end_by_a_moderator() -> None:
    room = room_with("alice", "bob", "carol", mods=("bob",))
    command = room.cmd(End, **room.caller("bob"))
    events = room.run(command)
    assert events == (
        *(
            ParticipantLeft(
                meeting_id=MID,
                at=command.at,
                participant_id=pid,
                connection_id=f"{pid}-conn-1",
                reason=R.REMOVE_ALL,
            )
            for pid in ("alice", "bob", "carol")
        ),
        SessionEnded(meeting_id=MID, at=command.at, session_id="session-1", reason="ended"),
    )
    assert room.s.participants == {}
    assert phase_of(room.s) is Phase.IDLE


def test_end_by_a_lone_participant_without_allow_mod() -> None:
    room = room_with("alice", mods=())
    events = room.run(room.cmd(End, **room.caller("alice")))
    assert kinds(events) == [ParticipantLeft, SessionEnded]
    assert isinstance(events[0], ParticipantLeft)
    assert events[0].reason == R.REMOVE_ALL


def test_end_by_a_participant_without_allow_mod_with_others_present() -> None:
    room = room_with("alice", "bob")
    room.reject(room.cmd(End, **room.caller("bob")), E.UNAUTHORIZED_REQUEST)


@pytest.mark.parametrize(
    "caller",
    [
        {"participant_id": "nobody", "connection_id": "x"},
        {"participant_id": "alice", "connection_id": "alice-conn-0"},
        {"participant_id": "alice"},
        {"connection_id": "alice-conn-1"},
    ],
    ids=["unknown", "wrong-connection", "no-connection", "no-participant"],
)
def test_end_by_someone_not_joined(caller: dict[str, str]) -> None:
    room = room_with("alice", "bob")
    room.reject(room.cmd(End, **caller), E.ACTION_BEFORE_JOINED)


def test_end_from_the_api() -> None:
    room = room_with("alice", "bob")
    events = room.run(room.cmd(End))
    assert kinds(events) == [ParticipantLeft, ParticipantLeft, SessionEnded]
    assert [e.reason for e in events if isinstance(e, ParticipantLeft)] == [R.MEETING_END_API] * 2
    assert isinstance(events[-1], SessionEnded)
    assert events[-1].reason == "ended"


@pytest.mark.parametrize("phase", [Phase.IDLE, Phase.DEACTIVATED])
def test_end_with_no_session(phase: Phase) -> None:
    room = room_in(phase)
    room.reject(room.cmd(End), E.ALREADY_IN_REQUESTED_STATE)


@pytest.mark.parametrize(
    ("by_api", "reason"), [(True, R.MEETING_END_API), (False, R.REMOVE_ALL)], ids=["api", "mod"]
)
def test_end_withdraws_waiting_requests(by_api: bool, reason: R) -> None:
    room = room_with("alice", "bob")
    room.join("gus", permissions=ASK)
    command = room.cmd(End) if by_api else room.cmd(End, **room.caller("alice"))
    events = room.run(command)
    assert kinds(events) == [ParticipantLeft, ParticipantLeft, EntryWithdrawn, SessionEnded]
    assert events[2] == EntryWithdrawn(
        meeting_id=MID,
        at=command.at,
        participant_id="gus",
        connection_id="gus-conn-1",
        reason=reason,
    )
    assert (room.s.participants, room.s.waiting) == ({}, {})


def test_a_join_after_end_starts_a_new_session() -> None:
    room = room_with("alice")
    room.run(room.cmd(End))
    assert kinds(room.join("alice", session_id="session-2")) == [SessionStarted, ParticipantJoined]
    assert room.s.session_id == "session-2"


# ---------------------------------------------------------------------------
# RemoveParticipant


@pytest.mark.parametrize(
    ("by_api", "reason"), [(False, R.REMOVE_PEER), (True, R.REMOVE_PEER_API)], ids=["mod", "api"]
)
def test_remove_participant(by_api: bool, reason: R) -> None:
    room = room_with("alice", "bob", "carol")
    caller = {} if by_api else room.caller("alice")
    command = room.cmd(RemoveParticipant, **caller, target_id="bob")
    assert room.run(command) == (
        ParticipantLeft(
            meeting_id=MID,
            at=command.at,
            participant_id="bob",
            connection_id="bob-conn-1",
            reason=reason,
        ),
    )
    assert list(room.s.participants) == ["alice", "carol"]


def test_remove_participant_without_allow_mod() -> None:
    room = room_with("alice", "bob", "carol")
    room.reject(
        room.cmd(RemoveParticipant, **room.caller("bob"), target_id="carol"), E.UNAUTHORIZED_REQUEST
    )


def test_remove_participant_by_someone_not_joined() -> None:
    room = room_with("alice", "bob")
    room.reject(
        room.cmd(RemoveParticipant, participant_id="alice", connection_id="x", target_id="bob"),
        E.ACTION_BEFORE_JOINED,
    )


@pytest.mark.parametrize("by_api", [False, True], ids=["mod", "api"])
@pytest.mark.parametrize("target", ["nobody", "gus"], ids=["unknown", "waiting"])
def test_remove_participant_not_joined(by_api: bool, target: str) -> None:
    room = room_with("alice", "bob")
    room.join("gus", permissions=ASK)
    caller = {} if by_api else room.caller("alice")
    room.reject(
        room.cmd(RemoveParticipant, **caller, target_id=target), E.REMOVE_PARTICIPANT_FAILED
    )


@pytest.mark.parametrize(
    ("by_api", "reason"), [(False, R.REMOVE_PEER), (True, R.REMOVE_PEER_API)], ids=["self", "api"]
)
def test_removing_the_last_participant_ends_the_session(by_api: bool, reason: R) -> None:
    room = room_with("alice")
    caller = {} if by_api else room.caller("alice")
    command = room.cmd(RemoveParticipant, **caller, target_id="alice")
    left, ended = room.run(command)
    assert isinstance(left, ParticipantLeft)
    assert left.reason == reason
    assert ended == SessionEnded(
        meeting_id=MID, at=command.at, session_id="session-1", reason="empty"
    )
    assert phase_of(room.s) is Phase.IDLE


# ---------------------------------------------------------------------------
# SetMedia


@pytest.mark.parametrize("kind", ["mic", "webcam"])
def test_set_own_media_on_and_off(kind: str) -> None:
    room = room_with("alice", mods=())
    field = f"{kind}_enabled"
    for enabled in (True, False):
        command = room.cmd(SetMedia, **room.caller("alice"), kind=kind, enabled=enabled)
        assert room.run(command) == (
            MediaChanged(
                meeting_id=MID,
                at=command.at,
                participant_id="alice",
                kind=kind,  # type: ignore[arg-type]
                enabled=enabled,
                by=None,
            ),
        )
        assert getattr(room.s.participants["alice"], field) is enabled
    other = "webcam_enabled" if kind == "mic" else "mic_enabled"
    assert getattr(room.s.participants["alice"], other) is False


@pytest.mark.parametrize("kind", ["mic", "webcam"])
@pytest.mark.parametrize("enabled", [True, False])
def test_set_media_already_in_that_state(kind: str, enabled: bool) -> None:
    room = Room()
    room.join("alice", mic_enabled=enabled, webcam_enabled=enabled)
    room.reject(
        room.cmd(SetMedia, **room.caller("alice"), kind=kind, enabled=enabled),
        E.ALREADY_IN_REQUESTED_STATE,
    )


@pytest.mark.parametrize("mode", ["RECV_ONLY", "SIGNALLING_ONLY", "VIEWER"])
@pytest.mark.parametrize("kind", ["mic", "webcam"])
def test_set_media_on_in_a_mode_that_cannot_send(mode: str, kind: str) -> None:
    room = Room()
    room.join("alice", mode=mode)
    room.reject(
        room.cmd(SetMedia, **room.caller("alice"), kind=kind, enabled=True),
        E.NOT_SUPPORTED_IN_MODE,
    )
    room.reject(
        room.cmd(SetMedia, **room.caller("alice"), kind=kind, enabled=False),
        E.ALREADY_IN_REQUESTED_STATE,
    )


@pytest.mark.parametrize("kind", ["mic", "webcam"])
def test_moderator_switches_off_another_participants_media(kind: str) -> None:
    room = Room()
    room.join("alice", permissions=MOD)
    room.join("bob", mic_enabled=True, webcam_enabled=True)
    command = room.cmd(SetMedia, **room.caller("alice"), kind=kind, enabled=False, target_id="bob")
    assert room.run(command) == (
        MediaChanged(
            meeting_id=MID,
            at=command.at,
            participant_id="bob",
            kind=kind,  # type: ignore[arg-type]
            enabled=False,
            by="alice",
        ),
    )
    assert getattr(room.s.participants["bob"], f"{kind}_enabled") is False
    # off already: nothing to do
    room.reject(
        room.cmd(SetMedia, **room.caller("alice"), kind=kind, enabled=False, target_id="bob"),
        E.ALREADY_IN_REQUESTED_STATE,
    )


def test_target_id_naming_the_caller_is_the_callers_own_media() -> None:
    room = room_with("alice", mods=())
    (event,) = room.run(
        room.cmd(SetMedia, **room.caller("alice"), kind="mic", enabled=True, target_id="alice")
    )
    assert isinstance(event, MediaChanged)
    assert (event.participant_id, event.by) == ("alice", None)


def test_switching_off_another_participants_media_needs_allow_mod() -> None:
    room = Room()
    room.join("alice")
    room.join("bob", mic_enabled=True)
    room.reject(
        room.cmd(SetMedia, **room.caller("alice"), kind="mic", enabled=False, target_id="bob"),
        E.UNAUTHORIZED_REQUEST,
    )


@pytest.mark.parametrize("caller_permissions", [MOD, ("allow_join",)], ids=["mod", "non-mod"])
def test_nobody_switches_on_another_participants_media(caller_permissions: tuple[str, ...]) -> None:
    room = Room()
    room.join("alice", permissions=caller_permissions)
    room.join("bob")
    room.reject(
        room.cmd(SetMedia, **room.caller("alice"), kind="webcam", enabled=True, target_id="bob"),
        E.UNAUTHORIZED_REQUEST,
    )


def test_set_media_by_someone_not_joined() -> None:
    room = room_with("alice")
    room.reject(
        room.cmd(SetMedia, participant_id="alice", connection_id="x", kind="mic", enabled=True),
        E.ACTION_BEFORE_JOINED,
    )


def test_set_media_of_a_target_that_is_not_joined() -> None:
    # core's choice: an unknown target is a bad parameter (3073)
    room = room_with("alice")
    room.reject(
        room.cmd(SetMedia, **room.caller("alice"), kind="mic", enabled=False, target_id="nobody"),
        E.INVALID_PARAMETER,
    )


# ---------------------------------------------------------------------------
# ChangeMode


@pytest.mark.parametrize(
    ("joined_in", "asked"),
    [
        ("SEND_AND_RECV", "SEND_AND_RECV"),
        ("SEND_AND_RECV", "CONFERENCE"),
        ("VIEWER", "SIGNALLING_ONLY"),
    ],
)
def test_change_to_the_same_mode(joined_in: str, asked: str) -> None:
    room = Room()
    room.join("alice", mode=joined_in)
    room.reject(
        room.cmd(ChangeMode, **room.caller("alice"), mode=asked), E.ALREADY_IN_REQUESTED_STATE
    )


@pytest.mark.parametrize(
    ("mode", "stored"),
    [
        ("SIGNALLING_ONLY", "SIGNALLING_ONLY"),
        ("VIEWER", "SIGNALLING_ONLY"),
        ("RECV_ONLY", "RECV_ONLY"),
    ],
)
def test_change_to_a_mode_that_cannot_send_switches_media_off_first(mode: str, stored: str) -> None:
    room = Room()
    room.join("alice", mic_enabled=True, webcam_enabled=True)
    command = room.cmd(ChangeMode, **room.caller("alice"), mode=mode)
    common = {"meeting_id": MID, "at": command.at, "participant_id": "alice"}
    assert room.run(command) == (
        MediaChanged(**common, kind="mic", enabled=False, by=None),
        MediaChanged(**common, kind="webcam", enabled=False, by=None),
        ModeChanged(**common, mode=stored),
    )
    alice = room.s.participants["alice"]
    assert (alice.mode, alice.mic_enabled, alice.webcam_enabled) == (stored, False, False)


def test_change_mode_switches_off_only_what_is_on() -> None:
    room = Room()
    room.join("alice", webcam_enabled=True)
    events = room.run(room.cmd(ChangeMode, **room.caller("alice"), mode="RECV_ONLY"))
    assert kinds(events) == [MediaChanged, ModeChanged]
    assert isinstance(events[0], MediaChanged)
    assert events[0].kind == "webcam"


def test_change_back_to_send_and_recv() -> None:
    room = Room()
    room.join("alice", mode="RECV_ONLY")
    command = room.cmd(ChangeMode, **room.caller("alice"), mode="CONFERENCE")
    assert room.run(command) == (
        ModeChanged(meeting_id=MID, at=command.at, participant_id="alice", mode="SEND_AND_RECV"),
    )
    assert room.s.participants["alice"].mic_enabled is False
    room.run(room.cmd(SetMedia, **room.caller("alice"), kind="mic", enabled=True))
    assert room.s.participants["alice"].mic_enabled is True


def test_change_mode_by_someone_not_joined() -> None:
    room = room_with("alice")
    room.reject(
        room.cmd(ChangeMode, participant_id="bob", connection_id="bob-conn-1", mode="RECV_ONLY"),
        E.ACTION_BEFORE_JOINED,
    )


# ---------------------------------------------------------------------------
# Deactivate, Activate and auto-close


def test_deactivate_a_meeting_in_session() -> None:
    room = room_with("alice", "bob")
    room.join("gus", permissions=ASK)
    command = room.cmd(Deactivate)
    common = {"meeting_id": MID, "at": command.at}
    assert room.run(command) == (
        ParticipantLeft(
            **common, participant_id="alice", connection_id="alice-conn-1", reason=R.ROOM_CLOSE
        ),
        ParticipantLeft(
            **common, participant_id="bob", connection_id="bob-conn-1", reason=R.ROOM_CLOSE
        ),
        SessionEnded(**common, session_id="session-1", reason="deactivated"),
        EntryWithdrawn(
            **common, participant_id="gus", connection_id="gus-conn-1", reason=R.ROOM_CLOSE
        ),
        MeetingDeactivated(**common),
    )
    s = room.s
    assert not s.active
    assert (s.session_id, s.participants, s.waiting) == (None, {}, {})
    assert phase_of(s) is Phase.DEACTIVATED


def test_deactivate_an_idle_meeting() -> None:
    room = Room()
    assert kinds(room.run(room.cmd(Deactivate))) == [MeetingDeactivated]
    room = Room()
    room.join("gus", permissions=ASK)
    assert kinds(room.run(room.cmd(Deactivate))) == [EntryWithdrawn, MeetingDeactivated]
    assert room.s.waiting == {}


def test_deactivate_twice() -> None:
    room = room_in(Phase.DEACTIVATED)
    room.reject(room.cmd(Deactivate), E.ALREADY_IN_REQUESTED_STATE)


@pytest.mark.parametrize("phase", [Phase.IDLE, Phase.IN_SESSION])
def test_activate_an_active_meeting(phase: Phase) -> None:
    room = room_in(phase)
    room.reject(room.cmd(Activate), E.ALREADY_IN_REQUESTED_STATE)


def test_activate_lets_joins_in_again() -> None:
    room = room_in(Phase.DEACTIVATED)
    room.reject(room.join_cmd("alice"), E.MEETING_ID_DISABLED)
    command = room.cmd(Activate)
    assert room.run(command) == (MeetingActivated(meeting_id=MID, at=command.at),)
    assert room.s.active
    assert phase_of(room.s) is Phase.IDLE
    assert kinds(room.join("alice", session_id="session-2")) == [SessionStarted, ParticipantJoined]
    assert room.s.session_id == "session-2"


AUTO = {"auto_close": "session-end-and-deactivate"}


def test_auto_close_deactivates_when_the_last_one_leaves() -> None:
    room = room_with("alice", "bob", **AUTO)
    assert kinds(room.leave("alice")) == [ParticipantLeft]
    command = room.cmd(Leave, **room.caller("bob"))
    assert room.run(command) == (
        ParticipantLeft(
            meeting_id=MID,
            at=command.at,
            participant_id="bob",
            connection_id="bob-conn-1",
            reason=R.MANUAL_LEAVE_CALLED,
        ),
        SessionEnded(meeting_id=MID, at=command.at, session_id="session-1", reason="empty"),
        MeetingDeactivated(meeting_id=MID, at=command.at),
    )
    assert not room.s.active
    room.reject(room.join_cmd("alice", session_id="session-2"), E.MEETING_ID_DISABLED)
    room.run(room.cmd(Activate))
    assert kinds(room.join("alice", session_id="session-2")) == [SessionStarted, ParticipantJoined]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda r: r.cmd(Leave, **r.caller("alice")),
            [ParticipantLeft, SessionEnded, EntryWithdrawn],
        ),
        (lambda r: r.cmd(End), [ParticipantLeft, EntryWithdrawn, SessionEnded]),
        (
            lambda r: r.cmd(RemoveParticipant, target_id="alice"),
            [ParticipantLeft, SessionEnded, EntryWithdrawn],
        ),
        (lambda r: r.cmd(Deactivate), [ParticipantLeft, SessionEnded, EntryWithdrawn]),
    ],
    ids=["leave", "end", "remove", "deactivate"],
)
def test_auto_close_closes_the_room_once(
    make: Callable[[Room], Command], expected: list[type]
) -> None:
    room = room_with("alice", **AUTO)
    room.join("gus", permissions=ASK)
    events = room.run(make(room))
    assert kinds(events) == [*expected, MeetingDeactivated]
    assert (room.s.active, room.s.participants, room.s.waiting) == (False, {}, {})


def test_auto_close_session_end_reasons() -> None:
    reasons = {}
    for name, make in {
        "leave": lambda r: r.cmd(Leave, **r.caller("alice")),
        "end": lambda r: r.cmd(End),
        "deactivate": lambda r: r.cmd(Deactivate),
    }.items():
        room = room_with("alice", **AUTO)
        reasons[name] = [e.reason for e in room.run(make(room)) if isinstance(e, SessionEnded)]
    assert reasons == {"leave": ["empty"], "end": ["ended"], "deactivate": ["deactivated"]}


def test_auto_close_keeps_the_room_open_when_a_duplicate_replaces_the_last_one() -> None:
    room = room_with("alice", **AUTO)
    events = room.join("alice", connection_id="alice-conn-2")
    assert kinds(events) == [ParticipantLeft, ParticipantJoined]
    assert room.s.active
    assert room.s.session_id == "session-1"


def test_auto_close_when_an_ask_join_duplicate_empties_the_room() -> None:
    # core's choice: the old connection's leave closes the room, so nobody waits
    room = room_with("alice", **AUTO)
    events = room.join("alice", connection_id="alice-conn-2", permissions=ASK)
    assert kinds(events) == [ParticipantLeft, SessionEnded, MeetingDeactivated]
    assert (room.s.active, room.s.waiting) == (False, {})


# ---------------------------------------------------------------------------
# Checks common to every command


@pytest.mark.parametrize("kind", COMMAND_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("phase", [Phase.ABSENT, Phase.IN_SESSION])
def test_negative_at(kind: type[Command], phase: Phase) -> None:
    room = room_in(phase)
    room.reject(some_command(room, kind, at=-1), E.INVALID_PARAMETER)


def test_at_zero_is_accepted() -> None:
    room = Room(absent=True)
    (event,) = room.run(room.cmd(InitMeeting, at=0))
    assert event.at == 0


def test_at_defaults_to_zero_for_the_engine_to_stamp() -> None:
    command = InitMeeting(meeting_id=MID)
    assert command.at == 0
    (event,) = meetcore.decide(None, command)
    assert event.at == 0


@pytest.mark.parametrize("command_id", ["", "a b", "x" * 129, "a\x00", "\n"], ids=repr)
@pytest.mark.parametrize("kind", COMMAND_TYPES, ids=lambda k: k.__name__)
def test_bad_command_id(kind: type[Command], command_id: str) -> None:
    room = room_in(Phase.ABSENT if kind is InitMeeting else Phase.IN_SESSION)
    room.reject(some_command(room, kind, command_id=command_id), E.INVALID_PARAMETER)


@pytest.mark.parametrize("command_id", ["cmd-1", "x" * 128, "0f8fad5b-d9cb-469f-a165-70867728950e"])
def test_good_command_id(command_id: str) -> None:
    room = room_in(Phase.IN_SESSION)
    events = room.run(some_command(room, Join, command_id=command_id))
    assert kinds(events) == [ParticipantJoined]


@pytest.mark.parametrize("kind", COMMAND_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("phase", [Phase.IDLE, Phase.IN_SESSION, Phase.DEACTIVATED])
def test_command_for_another_meeting(kind: type[Command], phase: Phase) -> None:
    room = room_in(phase)
    error = room.reject(some_command(room, kind, meeting_id="xyz-xyz-xyz"), E.INVALID_MEETING_ID)
    assert "xyz-xyz-xyz" in error.message


def test_the_common_checks_come_before_the_phase() -> None:
    room = room_in(Phase.ABSENT)
    room.reject(room.join_cmd("alice", at=-5), E.INVALID_PARAMETER)
    room = room_in(Phase.DEACTIVATED)
    room.reject(room.join_cmd("alice", command_id=""), E.INVALID_PARAMETER)


def test_a_command_type_the_core_does_not_know() -> None:
    class Wave(Command, frozen=True, kw_only=True):
        participant_id: str

    room = room_in(Phase.IN_SESSION)
    with pytest.raises(Rejected) as info:
        meetcore.decide(room.state, Wave(meeting_id=MID, at=T0, participant_id="alice"))
    assert info.value.code == E.INVALID_PARAMETER


# ---------------------------------------------------------------------------
# Types: commands are checked when built and when decoded


#: The fields each command needs, besides `meeting_id` and `at`.
REQUIRED: dict[type[Command], dict[str, Any]] = {
    InitMeeting: {},
    Join: {"participant_id": "p", "connection_id": "c", "session_id": "s", "name": "n"},
    Leave: {"participant_id": "p", "connection_id": "c"},
    End: {},
    RemoveParticipant: {"target_id": "t"},
    SetMedia: {"participant_id": "p", "connection_id": "c", "kind": "mic", "enabled": True},
    ChangeMode: {"participant_id": "p", "connection_id": "c", "mode": "RECV_ONLY"},
    RespondEntry: {
        "participant_id": "p",
        "connection_id": "c",
        "requester_id": "r",
        "allowed": True,
    },
    Deactivate: {},
    Activate: {},
}


def build(cls: type[Command], /, *, drop: str | None = None, **change: Any) -> Command:
    fields = {"meeting_id": MID, "at": 1, **REQUIRED[cls], **change}
    fields.pop(drop or "", None)
    return cls(**fields)


@pytest.mark.parametrize("cls", COMMAND_TYPES, ids=lambda k: k.__name__)
def test_building_every_command(cls: type[Command]) -> None:
    command = build(cls)
    assert (command.meeting_id, command.at, command.command_id) == (MID, 1, None)
    assert msgspec.json.decode(msgspec.json.encode(command), type=AnyCommand) == command


WRONG_TYPES = [
    (Join, "participant_id", 3),
    (Join, "at", "1"),
    (Join, "at", True),
    (Join, "at", 1.5),
    (Join, "meeting_id", None),
    (Join, "permissions", ["allow_join"]),
    (Join, "permissions", (1,)),
    (Join, "meta_data", [("a", 1)]),
    (Join, "meta_data", {1: "x"}),
    (Join, "mode", "STAGE"),
    (Join, "mic_enabled", 1),
    (Join, "name", None),
    (Leave, "reason", 999),
    (Leave, "command_id", 7),
    (SetMedia, "kind", "screen"),
    (SetMedia, "enabled", "yes"),
    (ChangeMode, "mode", "send_and_recv"),
    (RespondEntry, "allowed", "allowed"),
    (End, "participant_id", 5),
    (RemoveParticipant, "target_id", None),
    (InitMeeting, "max_participants", "3"),
    (InitMeeting, "auto_close", "never"),
    (InitMeeting, "duplicate_policy", "newest"),
    (InitMeeting, "webhook", {"endPoint": "https://x.io"}),
    (Deactivate, "meeting_id", b"abc"),
]


@pytest.mark.parametrize(("cls", "field", "value"), WRONG_TYPES, ids=repr)
def test_building_a_command_with_a_wrong_type(cls: type[Command], field: str, value: Any) -> None:
    with pytest.raises(TypeError, match=rf"^{cls.__name__}\.{field} must be "):
        build(cls, **{field: value})


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (Join, "participant_id"),
        (Join, "session_id"),
        (Leave, "connection_id"),
        (InitMeeting, "meeting_id"),
        (RespondEntry, "allowed"),
        (RemoveParticipant, "target_id"),
        (SetMedia, "kind"),
    ],
    ids=repr,
)
def test_building_a_command_with_a_missing_field(cls: type[Command], field: str) -> None:
    with pytest.raises(TypeError, match=f"'{field}'"):
        build(cls, drop=field)


def test_commands_are_frozen() -> None:
    command = Leave(meeting_id=MID, at=1, participant_id="p", connection_id="c")
    with pytest.raises(AttributeError):
        command.at = 2  # type: ignore[misc]


GOOD_JOIN = {
    "type": "join",
    "meetingId": MID,
    "at": T0 + 5,
    "participantId": "alice",
    "connectionId": "alice-conn-1",
    "sessionId": "session-1",
    "name": "Alice",
}


@pytest.mark.parametrize(
    "change",
    [
        {"at": "5"},
        {"at": None},
        {"participantId": None},
        {"participantId": 12},
        {"type": "wave"},
        {"mode": "STAGE"},
        {"metaData": [1, 2]},
        {"permissions": "allow_join"},
        {"micEnabled": "true"},
        {"commandId": 1},
    ],
    ids=repr,
)
def test_decoding_a_bad_command(change: dict[str, Any]) -> None:
    raw = msgspec.json.encode({**GOOD_JOIN, **change})
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=AnyCommand)


@pytest.mark.parametrize("missing", ["meetingId", "connectionId", "participantId", "type", "name"])
def test_decoding_a_command_with_a_missing_field(missing: str) -> None:
    raw = msgspec.json.encode({k: v for k, v in GOOD_JOIN.items() if k != missing})
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=AnyCommand)


def test_decoding_snake_case_field_names_fails() -> None:
    raw = msgspec.json.encode({"type": "deactivate", "meeting_id": MID, "at": 1})
    with pytest.raises(msgspec.ValidationError, match="meetingId"):
        msgspec.json.decode(raw, type=AnyCommand)


def test_a_decoded_command_decides_like_a_built_one() -> None:
    room = Room()
    decoded = msgspec.json.decode(msgspec.json.encode(GOOD_JOIN), type=AnyCommand)
    built = Join(
        meeting_id=MID,
        at=T0 + 5,
        participant_id="alice",
        connection_id="alice-conn-1",
        session_id="session-1",
        name="Alice",
    )
    assert decoded == built
    assert meetcore.decide(room.state, decoded) == meetcore.decide(room.state, built)
    leave = msgspec.json.decode(
        b'{"type":"leave","meetingId":"abc-def-ghi","at":1,"participantId":"a",'
        b'"connectionId":"c","reason":1001}',
        type=AnyCommand,
    )
    assert isinstance(leave, Leave)
    assert leave.reason == R.WEBSOCKET_DISCONNECTED


# ---------------------------------------------------------------------------
# Rejected


def test_rejected_carries_code_and_message() -> None:
    room = Room(absent=True)
    error = room.reject(room.join_cmd("alice"), E.INVALID_MEETING_ID)
    assert isinstance(error, Exception)
    assert type(error.code) is E
    assert isinstance(error.message, str)
    assert error.message
    assert "4003" in str(error)
    assert "INVALID_MEETING_ID" in str(error)
    assert error.message in str(error)


@pytest.mark.parametrize("code", list(E), ids=lambda c: c.name)
def test_rejected_str_repr_and_pickle(code: E) -> None:
    error = Rejected(code, "why it was refused")
    assert str(int(code)) in str(error)
    assert code.name in str(error)
    assert code.name in repr(error)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.code, copy.message) == (Rejected, code, "why it was refused")


# ---------------------------------------------------------------------------
# decide is pure


def _busy_room() -> Room:
    room = room_with("alice", "bob")
    room.join("carol", meta_data={"list": [1, 2], "d": {"x": 1}}, mic_enabled=True)
    room.join("gus", permissions=ASK, meta_data={"k": "v"})
    return room


PURE_CASES: list[Callable[[Room], Command]] = [
    lambda r: r.join_cmd("dan"),
    lambda r: r.join_cmd("bob", connection_id="bob-conn-2"),
    lambda r: r.join_cmd("gus", connection_id="gus-conn-2", permissions=ASK),
    lambda r: r.join_cmd("bob"),  # 3054
    lambda r: r.join_cmd("dan", meta_data={"k": object()}),  # 3073
    lambda r: r.cmd(Leave, **r.caller("carol")),
    lambda r: r.cmd(Leave, **r.caller("gus")),
    lambda r: r.cmd(Leave, participant_id="bob", connection_id="stale"),  # 3035
    lambda r: r.cmd(End, **r.caller("alice")),
    lambda r: r.cmd(End, **r.caller("bob")),  # 4025
    lambda r: r.cmd(RemoveParticipant, target_id="carol"),
    lambda r: r.cmd(SetMedia, **r.caller("alice"), kind="mic", enabled=False, target_id="carol"),
    lambda r: r.cmd(SetMedia, **r.caller("bob"), kind="webcam", enabled=True),
    lambda r: r.cmd(ChangeMode, **r.caller("carol"), mode="VIEWER"),
    lambda r: r.cmd(RespondEntry, **r.caller("bob"), requester_id="gus", allowed=True),
    lambda r: r.cmd(RespondEntry, **r.caller("bob"), requester_id="gus", allowed=False),
    lambda r: r.cmd(Deactivate),
    lambda r: r.cmd(Activate),  # 3054
    lambda r: r.cmd(InitMeeting),  # 4003
]


@pytest.mark.parametrize("make", PURE_CASES)
def test_decide_never_mutates_the_state(make: Callable[[Room], Command]) -> None:
    room = _busy_room()
    state = room.s
    copy, encoded = state.copy(), msgspec.json.encode(state)
    try:
        events = meetcore.decide(state, make(room))
    except Rejected:
        events = ()
    assert state == copy
    assert msgspec.json.encode(state) == encoded
    # and the events it gave still apply to the untouched state
    after = meetcore.fold(events, state)
    assert after is not None and after.version == copy.version + len(events)
    assert state == copy  # fold leaves it as it was too


def test_evolve_gives_a_new_state_and_leaves_the_one_it_is_given() -> None:
    room = room_with("alice")
    state = room.s
    (joined,) = meetcore.decide(state, room.join_cmd("bob"))
    result = meetcore.evolve(state, joined)
    assert result is not state
    assert list(result.participants) == ["alice", "bob"]
    assert list(state.participants) == ["alice"]
    assert result.version == state.version + 1


# ---------------------------------------------------------------------------
# evolve refuses impossible histories


INIT = MeetingInitialized(
    meeting_id=MID,
    at=T0,
    custom_room_id=None,
    max_participants=None,
    auto_close="session-ends",
    duplicate_policy="replace",
    webhook=None,
)
STARTED = SessionStarted(meeting_id=MID, at=T0 + 1, session_id="session-1")


def joined_event(pid: str, cid: str | None = None) -> ParticipantJoined:
    return ParticipantJoined(
        meeting_id=MID,
        at=T0 + 2,
        participant_id=pid,
        connection_id=cid or f"{pid}-conn-1",
        name=pid,
        meta_data={},
        mic_enabled=False,
        webcam_enabled=False,
        mode="SEND_AND_RECV",
        permissions=("allow_join",),
        multistream=True,
        debug_mode=False,
    )


def left_event(pid: str, cid: str | None = None) -> ParticipantLeft:
    return ParticipantLeft(
        meeting_id=MID,
        at=T0 + 3,
        participant_id=pid,
        connection_id=cid or f"{pid}-conn-1",
        reason=R.MANUAL_LEAVE_CALLED,
    )


def ended_event(session_id: str = "session-1") -> SessionEnded:
    return SessionEnded(meeting_id=MID, at=T0 + 4, session_id=session_id, reason="empty")


def requested_event(pid: str) -> EntryRequested:
    j = joined_event(pid)
    return EntryRequested(**{f: getattr(j, f) for f in j.__struct_fields__})


BAD_HISTORIES: dict[str, tuple[list[Event], Event]] = {
    "left-unknown-participant": ([INIT, STARTED, joined_event("alice")], left_event("bob")),
    "left-from-wrong-connection": (
        [INIT, STARTED, joined_event("alice")],
        left_event("alice", "alice-conn-2"),
    ),
    "initialized-twice": ([INIT], INIT),
    "session-started-before-init": ([], STARTED),
    "joined-before-init": ([], joined_event("alice")),
    "session-ended-with-participants": ([INIT, STARTED, joined_event("alice")], ended_event()),
    "session-ended-wrong-session": ([INIT, STARTED], ended_event("session-2")),
    "session-ended-while-none-open": ([INIT], ended_event()),
    "session-started-twice": ([INIT, STARTED], STARTED),
    "joined-outside-a-session": ([INIT], joined_event("alice")),
    "joined-twice": ([INIT, STARTED, joined_event("alice")], joined_event("alice", "c2")),
    "joined-while-waiting": ([INIT, STARTED, requested_event("gus")], joined_event("gus")),
    "media-of-unknown": (
        [INIT, STARTED],
        MediaChanged(meeting_id=MID, at=T0, participant_id="x", kind="mic", enabled=True, by=None),
    ),
    "mode-of-unknown": (
        [INIT, STARTED],
        ModeChanged(meeting_id=MID, at=T0, participant_id="x", mode="RECV_ONLY"),
    ),
    "withdrawn-unknown": (
        [INIT],
        EntryWithdrawn(
            meeting_id=MID, at=T0, participant_id="x", connection_id="c", reason=R.UNKNOWN
        ),
    ),
    "responded-unknown": (
        [INIT, STARTED],
        EntryResponded(
            meeting_id=MID,
            at=T0,
            participant_id="x",
            connection_id="c",
            allowed=True,
            responder_id="a",
        ),
    ),
    "requested-twice": ([INIT, requested_event("gus")], requested_event("gus")),
    "deactivated-with-participants": (
        [INIT, STARTED, joined_event("alice")],
        MeetingDeactivated(meeting_id=MID, at=T0),
    ),
    "deactivated-twice": (
        [INIT, MeetingDeactivated(meeting_id=MID, at=T0)],
        MeetingDeactivated(meeting_id=MID, at=T0),
    ),
    "activated-while-active": ([INIT], MeetingActivated(meeting_id=MID, at=T0)),
    "session-started-while-deactivated": (
        [INIT, MeetingDeactivated(meeting_id=MID, at=T0)],
        STARTED,
    ),
    "event-for-another-meeting": (
        [INIT],
        SessionStarted(meeting_id="xyz-xyz-xyz", at=T0, session_id="s"),
    ),
}


@pytest.mark.parametrize(("history", "bad"), BAD_HISTORIES.values(), ids=BAD_HISTORIES.keys())
def test_evolve_refuses_an_impossible_event(history: list[Event], bad: Event) -> None:
    state = meetcore.fold(history)
    with pytest.raises(meetcore.InvalidLog):
        meetcore.evolve(state, bad)
    with pytest.raises(meetcore.InvalidLog):
        meetcore.fold([*history, bad])


def test_fold() -> None:
    assert meetcore.fold([]) is None
    room = room_with("alice", "bob")
    room.leave("bob")
    whole = meetcore.fold(room.log)
    head = meetcore.fold(room.log[:3])
    assert head is not None
    assert head.version == 3
    rest = meetcore.fold(room.log[3:], head)
    assert rest is not head and head.version == 3  # the state given is left as it was
    assert rest == whole == room.s
    assert [s.version for s in _prefix_states(room.log)] == list(range(1, len(room.log) + 1))


def _prefix_states(log: list[Event]) -> list[MeetingState]:
    states, state = [], None
    for event in log:
        state = meetcore.evolve(state, event)
        states.append(state)
    return states


def test_evolve_leaves_the_state_untouched_when_it_refuses_an_event() -> None:
    """Regression: evolve used to drop the participant before noticing the wrong connection."""
    room = room_with("alice", "bob")
    assert room.state is not None
    before = room.state.copy()
    wrong = [
        ParticipantLeft(
            meeting_id=MID,
            at=9,
            participant_id="alice",
            connection_id="nope",
            reason=R.MANUAL_LEAVE_CALLED,
        ),
        MediaChanged(
            meeting_id=MID, at=9, participant_id="alice", kind="mic", enabled=False, by=None
        ),
    ]
    for event in wrong:
        with pytest.raises(meetcore.InvalidLog):
            meetcore.evolve(room.state, event)
        assert room.state == before


def test_the_pure_core_imports_no_engine_machinery() -> None:
    """`import meetcore` for `decide`/`evolve` loads neither anyio, pluggy nor click; the
    `Engine` (and `hookimpl`) load them when first named."""
    code = (
        "import sys, meetcore;"
        "loaded = {'anyio', 'pluggy', 'click'} & set(sys.modules);"
        "assert not loaded, loaded;"
        "meetcore.Engine, meetcore.hookimpl;"
        "assert {'anyio', 'pluggy'} <= set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:////tmp/meet core.db", "sqlite:////tmp/meet core.db"),
        ("sqlite:///meetcore.db", "sqlite:///meetcore.db"),
        ("postgresql://app:s%40cret@db:5432/m?schema=a", "postgresql://app:***@db:5432/m?schema=a"),
        ("postgresql://app@db/m", "postgresql://app@db/m"),
        ("postgresql://a:b@c@db/m", "postgresql://a:***@db/m"),
        ("memory://", "memory://"),
        (
            "postgresql://u@h/db?password=s3cret&schema=a",
            "postgresql://u@h/db?password=***&schema=a",
        ),
        ("postgresql:///db?user=u&sslpassword=k3y", "postgresql:///db?user=u&sslpassword=***"),
        ("postgresql://u:secret@h/db%0ALINE2", "postgresql://u:***@h/db%0ALINE2"),  # not decoded
        ("postgresql://[::1", "(a URL that cannot be read)"),
    ],
)
def test_a_store_url_is_printed_without_its_password(url: str, shown: str) -> None:
    assert meetcore.without_password(url) == shown
