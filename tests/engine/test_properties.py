"""Hypothesis drives random command sequences through the core and checks every invariant.

The invariants are DESIGN.md's: at most one connection per participant id; every
`ParticipantLeft` follows a `ParticipantJoined` of the same connection; participant
count equals joins minus leaves; a session is open exactly while the room is not
empty; versions run 1, 2, 3... without gaps; `fold(log)` equals the live state
after every command; a rejected command emits nothing and changes nothing; the
same commands give a byte-identical encoded log; every event round-trips through
JSON and msgpack.
"""

from __future__ import annotations

import io
import random
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import meetcore
from meetcore import TRANSITIONS, LeaveReason, Record, Rejected, Rule, phase_of
from meetcore._decider import COMMON_CODES
from meetcore.commands import (
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
    EVENT_TYPES,
    AnyEvent,
    EntryRequested,
    EntryResponded,
    EntryWithdrawn,
    Event,
    MeetingDeactivated,
    ParticipantJoined,
    ParticipantLeft,
    SessionEnded,
    SessionStarted,
)

MEETINGS = ("m0", "m1", "m2")
PEOPLE = ("p0", "p1", "p2", "p3", "p4")
PERMISSIONS = (("allow_join",), ("allow_join", "allow_mod"), ("ask_join",))
MODES = ("SEND_AND_RECV", "SIGNALLING_ONLY", "RECV_ONLY", "CONFERENCE", "VIEWER")

event_json = msgspec.json.Decoder(AnyEvent)
event_msgpack = msgspec.msgpack.Decoder(AnyEvent)


def run_commands(commands: list[Command]) -> bytes:
    """Decide and apply `commands` from nothing; the encoded log of what was accepted."""
    states: dict[str, meetcore.MeetingState | None] = {}
    log: list[Record] = []
    for command in commands:
        state = states.get(command.meeting_id)
        try:
            events = meetcore.decide(state, command)
        except Rejected:
            continue
        for event in events:
            state = meetcore.evolve(state, event)
            assert state is not None
            log.append(
                Record(
                    meeting_id=event.meeting_id,
                    version=state.version,
                    position=len(log) + 1,
                    recorded_at=command.at,
                    event=event,
                    cause=command,
                )
            )
        states[command.meeting_id] = state
    out = io.BytesIO()
    meetcore.write_jsonl(log, out)
    return out.getvalue()


class MeetingMachine(RuleBasedStateMachine):
    """Several meetings, a few participant ids, fresh and stale connections."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, meetcore.MeetingState] = {}
        self.logs: dict[str, list[Event]] = {m: [] for m in MEETINGS}
        self.commands: list[Command] = []
        # the model: which (participant, connection) pairs are in each meeting
        self.joined: dict[str, dict[str, str]] = {m: {} for m in MEETINGS}
        self.joins: dict[str, int] = dict.fromkeys(MEETINGS, 0)
        self.leaves: dict[str, int] = dict.fromkeys(MEETINGS, 0)
        self.connections: list[str] = ["c-none"]
        self.clock = 1_700_000_000_000
        self.sessions = 0
        self.accepted = 0

    # -- helpers ---------------------------------------------------------------

    def fresh_connection(self) -> str:
        cid = f"c{len(self.connections)}"
        self.connections.append(cid)
        return cid

    def connection_of(self, meeting: str, pid: str, data: st.DataObject) -> str:
        """The participant's live connection most of the time, else some other one."""
        state = self.states.get(meeting)
        live = None
        if state is not None:
            if pid in state.participants:
                live = state.participants[pid].connection_id
            elif pid in state.waiting:
                live = state.waiting[pid].connection_id
        if live is not None and data.draw(st.integers(0, 4), label="stale?") > 0:
            return live
        return data.draw(st.sampled_from(self.connections), label="connection")

    def execute(self, command: Command) -> None:
        self.commands.append(command)
        self.clock += 1
        mid = command.meeting_id
        state = self.states.get(mid)
        before = state.copy() if state is not None else None
        entry = TRANSITIONS[(phase_of(state), type(command))]
        try:
            events = meetcore.decide(state, command)
        except Rejected as rejected:
            allowed = entry.codes if isinstance(entry, Rule) else {entry.code}
            assert rejected.code in allowed | COMMON_CODES, (rejected, entry)
            assert state == before, "a rejected command changed the state"
            return
        assert isinstance(entry, Rule)
        assert events, "an accepted command must emit at least one event"
        assert state == before, "decide mutated the state"
        for event in events:
            self.check_event(mid, event)
            given = msgspec.json.encode(state) if state is not None else None
            after = meetcore.evolve(state, event)
            assert state is None or after is not state, "evolve returned the state it was given"
            assert given is None or msgspec.json.encode(state) == given, "evolve changed its input"
            state = after
            self.logs[mid].append(event)
        assert state is not None
        self.states[mid] = state
        assert phase_of(state) in entry.to, (phase_of(state), entry.to)
        self.accepted += 1

    def check_event(self, mid: str, event: Event) -> None:
        """Model checks for one event, before it is applied; and its round trips."""
        assert event.meeting_id == mid
        assert event_json.decode(msgspec.json.encode(event)) == event
        assert event_msgpack.decode(msgspec.msgpack.encode(event)) == event
        joined = self.joined[mid]
        state = self.states.get(mid)
        if isinstance(event, ParticipantJoined):
            assert event.participant_id not in joined, "two connections for one participant"
            joined[event.participant_id] = event.connection_id
            self.joins[mid] += 1
        elif isinstance(event, ParticipantLeft):
            assert joined.get(event.participant_id) == event.connection_id, (
                "a leave without a join of the same connection"
            )
            del joined[event.participant_id]
            self.leaves[mid] += 1
        elif isinstance(event, SessionStarted):
            assert state is not None and state.session_id is None and not joined
            self.sessions += 1
        elif isinstance(event, SessionEnded):
            assert state is not None and state.session_id == event.session_id
            assert not joined, "a session ended while participants remain"
        elif isinstance(event, EntryRequested | EntryResponded | EntryWithdrawn):
            assert state is not None
            if not isinstance(event, EntryRequested):
                assert state.waiting[event.participant_id].connection_id == event.connection_id

    # -- rules -----------------------------------------------------------------

    @rule(
        meeting=st.sampled_from(MEETINGS),
        policy=st.sampled_from(["replace", "reject"]),
        auto_close=st.sampled_from(["session-ends", "session-end-and-deactivate"]),
        limit=st.none() | st.integers(1, 4),
    )
    def init(self, meeting: str, policy: Any, auto_close: Any, limit: int | None) -> None:
        self.execute(
            InitMeeting(
                meeting_id=meeting,
                at=self.clock,
                duplicate_policy=policy,
                auto_close=auto_close,
                max_participants=limit,
            )
        )

    @rule(
        meeting=st.sampled_from(MEETINGS),
        pid=st.sampled_from(PEOPLE),
        permissions=st.sampled_from(PERMISSIONS),
        mode=st.sampled_from(MODES),
        mic=st.booleans(),
        webcam=st.booleans(),
        reuse=st.integers(0, 9),
        data=st.data(),
    )
    def join(
        self,
        meeting: str,
        pid: str,
        permissions: tuple[str, ...],
        mode: Any,
        mic: bool,
        webcam: bool,
        reuse: int,
        data: st.DataObject,
    ) -> None:
        cid = self.connection_of(meeting, pid, data) if reuse == 0 else self.fresh_connection()
        self.execute(
            Join(
                meeting_id=meeting,
                at=self.clock,
                participant_id=pid,
                connection_id=cid,
                session_id=f"s{self.sessions}",
                name=f"Name of {pid}",
                permissions=permissions,
                mode=mode,
                mic_enabled=mic,
                webcam_enabled=webcam,
                meta_data={"seat": reuse, "tags": ["a", "b"]},
            )
        )

    @rule(meeting=st.sampled_from(MEETINGS), pid=st.sampled_from(PEOPLE), data=st.data())
    def leave(self, meeting: str, pid: str, data: st.DataObject) -> None:
        reason = data.draw(st.sampled_from([1101, 1001, 1103]), label="reason")
        cid = self.connection_of(meeting, pid, data)
        self.execute(
            Leave(
                meeting_id=meeting,
                at=self.clock,
                participant_id=pid,
                connection_id=cid,
                reason=reason,
            )
        )

    @rule(
        meeting=st.sampled_from(MEETINGS), pid=st.none() | st.sampled_from(PEOPLE), data=st.data()
    )
    def end(self, meeting: str, pid: str | None, data: st.DataObject) -> None:
        cid = None if pid is None else self.connection_of(meeting, pid, data)
        self.execute(End(meeting_id=meeting, at=self.clock, participant_id=pid, connection_id=cid))

    @rule(
        meeting=st.sampled_from(MEETINGS),
        whom=st.sampled_from(PEOPLE),
        pid=st.none() | st.sampled_from(PEOPLE),
        data=st.data(),
    )
    def remove(self, meeting: str, whom: str, pid: str | None, data: st.DataObject) -> None:
        cid = None if pid is None else self.connection_of(meeting, pid, data)
        self.execute(
            RemoveParticipant(
                meeting_id=meeting,
                at=self.clock,
                target_id=whom,
                participant_id=pid,
                connection_id=cid,
            )
        )

    @rule(
        meeting=st.sampled_from(MEETINGS),
        pid=st.sampled_from(PEOPLE),
        kind=st.sampled_from(["mic", "webcam"]),
        enabled=st.booleans(),
        whom=st.none() | st.sampled_from(PEOPLE),
        data=st.data(),
    )
    def set_media(
        self,
        meeting: str,
        pid: str,
        kind: Any,
        enabled: bool,
        whom: str | None,
        data: st.DataObject,
    ) -> None:
        cid = self.connection_of(meeting, pid, data)
        self.execute(
            SetMedia(
                meeting_id=meeting,
                at=self.clock,
                participant_id=pid,
                connection_id=cid,
                kind=kind,
                enabled=enabled,
                target_id=whom,
            )
        )

    @rule(
        meeting=st.sampled_from(MEETINGS),
        pid=st.sampled_from(PEOPLE),
        mode=st.sampled_from(MODES),
        data=st.data(),
    )
    def change_mode(self, meeting: str, pid: str, mode: Any, data: st.DataObject) -> None:
        cid = self.connection_of(meeting, pid, data)
        self.execute(
            ChangeMode(
                meeting_id=meeting, at=self.clock, participant_id=pid, connection_id=cid, mode=mode
            )
        )

    @rule(
        meeting=st.sampled_from(MEETINGS),
        pid=st.sampled_from(PEOPLE),
        requester=st.sampled_from(PEOPLE),
        allowed=st.booleans(),
        data=st.data(),
    )
    def respond_entry(
        self, meeting: str, pid: str, requester: str, allowed: bool, data: st.DataObject
    ) -> None:
        cid = self.connection_of(meeting, pid, data)
        self.execute(
            RespondEntry(
                meeting_id=meeting,
                at=self.clock,
                participant_id=pid,
                connection_id=cid,
                requester_id=requester,
                allowed=allowed,
            )
        )

    @precondition(lambda self: self.accepted > 3)
    @rule(meeting=st.sampled_from(MEETINGS), on=st.booleans())
    def switch(self, meeting: str, on: bool) -> None:
        kind = Activate if on else Deactivate
        self.execute(kind(meeting_id=meeting, at=self.clock))

    # -- invariants ------------------------------------------------------------

    @invariant()
    def the_log_folds_to_the_live_state(self) -> None:
        for mid, state in self.states.items():
            assert meetcore.fold(self.logs[mid]) == state
            assert state.version == len(self.logs[mid])

    @invariant()
    def the_model_agrees(self) -> None:
        for mid, state in self.states.items():
            live = {p.participant_id: p.connection_id for p in state.participants.values()}
            assert live == self.joined[mid]
            assert len(state.participants) == self.joins[mid] - self.leaves[mid]
            assert (state.session_id is None) == (not state.participants)
            assert not (state.waiting.keys() & state.participants.keys())
            if not state.active:
                assert not state.participants and not state.waiting

    def teardown(self) -> None:
        if self.commands:
            assert run_commands(self.commands) == run_commands(list(self.commands)), (
                "the same commands gave a different log"
            )
            encoded = run_commands(self.commands)
            decoded = list(meetcore.read_jsonl(encoded.splitlines()))
            again = io.BytesIO()
            meetcore.write_jsonl(decoded, again)
            assert again.getvalue() == encoded


MeetingMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestMeetingMachine = MeetingMachine.TestCase


def test_a_long_random_walk_reaches_every_event() -> None:
    """Guard against a machine whose commands are nearly all rejected: a fixed random
    walk through the same checks must produce every kind of event and many sessions."""
    rng = random.Random(7)
    machine = MeetingMachine()
    for meeting in MEETINGS:
        machine.init(meeting, "replace", "session-ends", None)
    for _ in range(3000):
        meeting, pid = rng.choice(MEETINGS), rng.choice(PEOPLE)
        state = machine.states[meeting]
        live = state.participants.get(pid) or state.waiting.get(pid)
        if live is not None and rng.random() < 0.9:
            cid = live.connection_id
        else:
            cid = machine.fresh_connection()
        caller = {
            "meeting_id": meeting,
            "at": machine.clock,
            "participant_id": pid,
            "connection_id": cid,
        }
        roll = rng.random()
        command: Command
        if roll < 0.35:
            command = Join(
                **caller,
                session_id=f"s{machine.sessions}",
                name=pid,
                permissions=rng.choice(PERMISSIONS),
                mic_enabled=rng.random() < 0.5,
                mode=rng.choice(MODES),
            )
        elif roll < 0.6:
            command = Leave(**caller)
        elif roll < 0.7:
            command = SetMedia(
                **caller,
                kind=rng.choice(["mic", "webcam"]),
                enabled=rng.random() < 0.5,
                target_id=rng.choice([None, *PEOPLE]),
            )
        elif roll < 0.75:
            command = ChangeMode(**caller, mode=rng.choice(MODES))
        elif roll < 0.88:
            command = RespondEntry(
                **caller, requester_id=rng.choice(PEOPLE), allowed=rng.random() < 0.6
            )
        elif roll < 0.92:
            command = (
                End(**caller) if rng.random() < 0.5 else End(meeting_id=meeting, at=machine.clock)
            )
        elif roll < 0.96:
            command = RemoveParticipant(meeting_id=meeting, at=machine.clock, target_id=pid)
        else:
            command = (Deactivate if state.active else Activate)(
                meeting_id=meeting, at=machine.clock
            )
        machine.execute(command)
        machine.the_model_agrees()
    machine.the_log_folds_to_the_live_state()
    machine.teardown()
    seen = {type(e) for log in machine.logs.values() for e in log}
    assert seen == set(EVENT_TYPES), set(EVENT_TYPES) - seen
    assert machine.sessions > 10


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_evolve_and_fold_never_change_the_state_they_are_given(data: st.DataObject) -> None:
    """A meeting with people in it, then any event, valid or not (`InvalidLog`): the
    state given to `evolve` or `fold` is as it was, whatever they return or raise."""
    state = None
    commands: list[Command] = [InitMeeting(meeting_id="m0", at=1)]
    for n, pid in enumerate(data.draw(st.lists(st.sampled_from(PEOPLE), unique=True))):
        commands.append(
            Join(
                meeting_id="m0",
                at=2 + n,
                participant_id=pid,
                connection_id=f"c-{pid}",
                session_id="s0",
                name=pid,
            )
        )
    for command in commands:
        state = meetcore.fold(meetcore.decide(state, command), state)
    assert state is not None
    pid = data.draw(st.sampled_from(PEOPLE))
    fresh = meetcore.fold(meetcore.decide(None, commands[0]))
    join = Join(
        meeting_id="m0", at=9, participant_id=pid, connection_id="c-new", session_id="s1", name=pid
    )
    joined = [e for e in meetcore.decide(fresh, join) if isinstance(e, ParticipantJoined)]
    left = ParticipantLeft(
        meeting_id="m0",
        at=9,
        participant_id=pid,
        connection_id=data.draw(st.sampled_from([f"c-{pid}", "c-x"])),
        reason=LeaveReason.MANUAL_LEAVE_CALLED,
    )
    ended = SessionEnded(meeting_id="m0", at=9, session_id="s0", reason="empty")
    deactivated = MeetingDeactivated(meeting_id="m0", at=9)
    event = data.draw(st.sampled_from([left, ended, *joined, deactivated]))
    given = msgspec.json.encode(state)
    for apply in (meetcore.evolve, lambda s, e: meetcore.fold([e, e], s)):
        try:
            after = apply(state, event)
        except meetcore.InvalidLog:
            pass
        else:
            assert after is not state
        assert msgspec.json.encode(state) == given
