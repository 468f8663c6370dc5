"""Every (kind of state, kind of command) pair either moves to a phase its table row
allows, or raises `Rejected` with a code its row documents; and `decide` raises
nothing but `Rejected` for any values whatsoever of the right types."""

from __future__ import annotations

import itertools
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meetcore
from meetcore import TRANSITIONS, MeetingState, Phase, Refusal, Rejected, Rule, phase_of
from meetcore._decider import COMMON_CODES
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
    Webhook,
)
from meetcore.events import AnyEvent

MID = "abc-def-ghi"
event_decoder = msgspec.json.Decoder(AnyEvent)


def join(pid: str, cid: str, *permissions: str, **fields: Any) -> Join:
    fields.setdefault("name", pid.title())
    return Join(
        meeting_id=MID,
        at=10,
        participant_id=pid,
        connection_id=cid,
        session_id="s1",
        permissions=permissions or ("allow_join",),
        **fields,
    )


def build(*commands: Command) -> MeetingState | None:
    state = None
    for command in commands:
        state = meetcore.fold(meetcore.decide(state, command), state)
    return state


def init(**config: Any) -> InitMeeting:
    return InitMeeting(meeting_id=MID, at=1, **config)


#: One state of each kind the rules tell apart.
STATES: dict[str, MeetingState | None] = {
    "absent": None,
    "idle": build(init()),
    "idle, someone waiting": build(init(), join("guest", "cg", "ask_join")),
    "in session, alone": build(init(), join("alice", "ca", mic_enabled=True)),
    "in session, moderated": build(
        init(),
        join("mod", "cm", "allow_join", "allow_mod", webcam_enabled=True),
        join("alice", "ca", mic_enabled=True),
        join("viewer", "cv", mode="SIGNALLING_ONLY"),
        join("guest", "cg", "ask_join"),
    ),
    "in session, full, rejecting duplicates": build(
        init(max_participants=2, duplicate_policy="reject"),
        join("mod", "cm", "allow_join", "allow_mod"),
        join("alice", "ca"),
        join("guest", "cg", "ask_join"),
    ),
    "in session, closes on end": build(
        init(auto_close="session-end-and-deactivate"),
        join("alice", "ca"),
        join("guest", "cg", "ask_join"),
    ),
    "deactivated": build(init(), join("alice", "ca"), Deactivate(meeting_id=MID, at=20)),
}


def candidates() -> list[Command]:
    """Commands of every kind: valid, from strangers, stale connections, bad values."""
    at = 100
    people = [("mod", "cm"), ("alice", "ca"), ("viewer", "cv"), ("guest", "cg"), ("alice", "old")]
    people += [("ghost", "cx"), ("", "c0"), ("has space", "c1")]
    out: list[Command] = [init(), init(custom_room_id="bad id"), init(max_participants=0)]
    out += [InitMeeting(meeting_id="no/slash", at=at), InitMeeting(meeting_id=MID, at=-1)]
    for url, names in [("http://\ud800", ()), ("https://x", ("\ud800",)), ("ftp://x", ())]:
        out.append(init(webhook=Webhook(end_point=url, events=names)))
    for (pid, cid), perms in itertools.product(
        people,
        [
            ("allow_join",),
            ("ask_join",),
            ("allow_join", "allow_mod"),
            ("ask_join", "allow_mod"),
            (),
        ],
    ):
        out.append(join(pid, cid, *perms))
    out += [join("new", "cn", meta_data={"x": "y" * 5000}), join("new", "cn", name="a\nb")]
    out += [join("new", "cn", mode="RECV_ONLY", mic_enabled=True), join("new", "c n")]
    for pid, cid in people:
        caller = {"meeting_id": MID, "at": at, "participant_id": pid, "connection_id": cid}
        out += [
            Leave(**caller),
            Leave(**caller, reason=1001),
            End(**caller),
            ChangeMode(**caller, mode="VIEWER"),
        ]
        out += [ChangeMode(**caller, mode="SEND_AND_RECV")]
        for target in ("alice", "mod", "ghost"):
            out.append(RemoveParticipant(**caller, target_id=target))
            out.append(RespondEntry(**caller, requester_id=target, allowed=True))
        for kind, enabled, target2 in itertools.product(
            ("mic", "webcam"), (True, False), (None, "alice", "mod", "ghost")
        ):
            out.append(SetMedia(**caller, kind=kind, enabled=enabled, target_id=target2))  # type: ignore[arg-type]
        out.append(RespondEntry(**caller, requester_id="guest", allowed=False))
        out.append(RespondEntry(**caller, requester_id="guest", allowed=True))
    out += [End(meeting_id=MID, at=at), RemoveParticipant(meeting_id=MID, at=at, target_id="alice")]
    out += [Deactivate(meeting_id=MID, at=at), Activate(meeting_id=MID, at=at)]
    out += [Leave(meeting_id="other", at=at, participant_id="alice", connection_id="ca")]
    out += [Deactivate(meeting_id=MID, at=at, command_id="has space")]
    return out


CANDIDATES = candidates()


def check(state: MeetingState | None, command: Command) -> str:
    """Decide `command`, hold the outcome to the table; returns "accepted" or the code."""
    before = state.copy() if state is not None else None
    row = TRANSITIONS[(phase_of(state), type(command))]
    try:
        events = meetcore.decide(state, command)
    except Rejected as rejected:
        documented = {row.code} if isinstance(row, Refusal) else set(row.codes)
        assert rejected.code in documented | COMMON_CODES, (command, rejected)
        assert state == before
        return rejected.code.name
    assert isinstance(row, Rule), f"{command} was accepted where the table refuses it"
    assert state == before, "decide changed its input"
    after = meetcore.fold(events, state.copy() if state is not None else None)
    assert after is not None
    assert phase_of(after) in row.to, (command, phase_of(after), row.to)
    assert after.version == (state.version if state else 0) + len(events)
    for event in events:
        assert event_decoder.decode(msgspec.json.encode(event)) == event
    return "accepted"


def test_the_table_has_a_row_for_every_phase_and_command() -> None:
    assert set(TRANSITIONS) == set(itertools.product(Phase, COMMAND_TYPES))


def test_every_state_kind_is_what_its_name_says() -> None:
    phases = {name: phase_of(state) for name, state in STATES.items()}
    assert set(phases.values()) == set(Phase)


@pytest.mark.parametrize("name", list(STATES))
def test_every_command_in_every_state_follows_the_table(name: str) -> None:
    state = STATES[name]
    outcomes = {check(state, command) for command in CANDIDATES}
    # every state accepts something and rejects something: the candidates are not all duds
    assert "accepted" in outcomes
    assert len(outcomes) > 1


def test_every_rule_row_accepts_some_candidate() -> None:
    accepted_rows = set()
    for state in STATES.values():
        for command in CANDIDATES:
            if check(state, command) == "accepted":
                accepted_rows.add((phase_of(state), type(command)))
    rule_rows = {key for key, row in TRANSITIONS.items() if isinstance(row, Rule)}
    assert accepted_rows == rule_rows


# -- any values of the right types ------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
hostile_text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(
        ["", " ", "alice", "mod", "guest", "ca", "cm", "cg", MID, "\ud800", "\x00", "a" * 65]
    ),
    st.text(min_size=60, max_size=3000),
)


def strategy_for(t: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.StrType):
        return hostile_text
    if isinstance(t, mi.IntType):
        return st.integers(-(2**70), 2**70) | st.sampled_from([0, -1, 1, 10, 1001, 1101, 2**63])
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.EnumType):
        return st.sampled_from(list(t.cls))
    if isinstance(t, mi.VarTupleType):
        return st.lists(strategy_for(t.item_type), max_size=4).map(tuple)
    if isinstance(t, mi.DictType):
        return st.dictionaries(hostile_text, json_values | st.integers(2**64, 2**80), max_size=5)
    if isinstance(t, mi.UnionType):
        return st.one_of(*(strategy_for(x) for x in t.types))
    if isinstance(t, mi.StructType):
        return st.builds(t.cls, **{f.name: strategy_for(f.type) for f in t.fields})
    raise AssertionError(f"no strategy for {t}")


def command_strategy(cls: type[Command]) -> st.SearchStrategy[Command]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {f.name: strategy_for(f.type) for f in info.fields}
    fields["meeting_id"] = st.just(MID) | hostile_text
    return st.builds(cls, **fields)


any_command = st.one_of(*(command_strategy(cls) for cls in COMMAND_TYPES))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state_name=st.sampled_from(list(STATES)), command=any_command)
def test_decide_raises_only_rejected_whatever_the_values(state_name: str, command: Command) -> None:
    check(STATES[state_name], command)


def test_wrong_types_fail_when_built_with_the_field_named() -> None:
    with pytest.raises(TypeError, match=r"Join\.participant_id must be a str, got int 7"):
        Join(meeting_id=MID, at=1, participant_id=7, connection_id="c", session_id="s", name="n")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Missing required argument 'connection_id'"):
        Join(meeting_id=MID, at=1, participant_id="p", session_id="s", name="n")  # type: ignore[call-arg]
    with pytest.raises(msgspec.ValidationError, match=r"Expected `int`, got `str` - at `\$.at`"):
        msgspec.json.decode(
            b'{"type":"leave","meetingId":"m","at":"1","participantId":"p","connectionId":"c"}',
            type=meetcore.commands.AnyCommand,
        )
