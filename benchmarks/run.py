"""Benchmarks of meetcore's pure core: `uv run python benchmarks/run.py [--quick] [--json]`.

Not a test: it measures and reports, and never fails because something is slow.

Sections (run all, or pick with `--only NAME`):

- `churn`: `decide` + `evolve` over a join/leave churn of many meetings (one grows to
  1,000 participants), in commands/s against the 300,000/s target; beside it the same
  rules written as an `eventsourcing` library aggregate on the same commands, and the
  ratio of the two. Both are checked to give the same events before anything is timed.
- `scaling`: the cost of one join/leave pair in meetings of 10 to 10,000 participants,
  per command (`decide` + `evolve`) and per event (`evolve` alone). It must stay flat.

To add a section, write a function `(Config) -> dict` (a JSON-able dict of results) and
a function `(dict) -> list[str]` that renders it, and append a `Section` to `SECTIONS`.
Workloads are built before the clock starts; every timing is the best of `--repeats`.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import random
import re
import string
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate, event

import meetcore
from meetcore import ErrorCode, LeaveReason, MeetingState, Rejected, decide, evolve
from meetcore.commands import Command, InitMeeting, Join, Leave

TARGET_COMMANDS_PER_S = 300_000
E = ErrorCode


@dataclass(frozen=True)
class Config:
    """What every section is given: the size of the run and how to time it."""

    quick: bool
    repeats: int
    seed: int


@dataclass(frozen=True)
class Section:
    """One benchmark: `run` measures and returns JSON-able results, `render` shows them."""

    name: str
    title: str
    run: Callable[[Config], dict[str, Any]]
    render: Callable[[dict[str, Any]], list[str]]


def best_of(repeats: int, once: Callable[[], float]) -> float:
    """The least of `repeats` timings; `once` sets itself up and returns only its timed part."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        best = min(best, once())
    return best


# ---------------------------------------------------------------------------
# The workload: InitMeeting for every meeting, then a seeded join/leave churn

FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Linus", "Margaret", "Guido")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Perlman", "Hamilton")
ROLES = ("host", "speaker", "attendee", "attendee", "attendee", "guest")
LOCALES = ("en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "pt-BR")
OSES = ("macOS", "Windows", "Linux", "iOS", "Android")
BROWSERS = ("Chrome", "Firefox", "Safari", "Edge")


@dataclass
class _Room:
    """The generator's own model of one meeting, to know what each command will do."""

    meeting_id: str
    target: int
    ramping: bool = True
    draining: bool = False
    sessions: int = 0
    joined: dict[str, str] = field(default_factory=dict)  # participant id -> connection id
    order: list[str] = field(default_factory=list)  # joined ids, for a uniform random pick
    where: dict[str, int] = field(default_factory=dict)  # participant id -> index in order
    stale: list[tuple[str, str]] = field(default_factory=list)  # replaced connections
    peak: int = 0

    def add(self, pid: str, cid: str) -> None:
        self.where[pid] = len(self.order)
        self.order.append(pid)
        self.joined[pid] = cid
        self.peak = max(self.peak, len(self.order))

    def remove(self, pid: str) -> None:
        i = self.where.pop(pid)
        last = self.order.pop()
        if last != pid:
            self.order[i] = last
            self.where[last] = i
        del self.joined[pid]


@dataclass(frozen=True)
class Workload:
    """Pre-built commands and what the generator expects of them."""

    commands: tuple[Command, ...]
    meetings: int
    largest: int  # the most participants one meeting reaches
    counts: dict[str, int]  # how many of each kind of command
    expected_rejected: int


def _meeting_ids(rng: random.Random, n: int) -> list[str]:
    """Generated-style room ids (`abc-def-ghi`), unique."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        ids["-".join("".join(rng.choices(string.ascii_lowercase, k=3)) for _ in range(3))] = None
    return list(ids)


def _meta_data(rng: random.Random, n: int) -> dict[str, Any]:
    r = rng.random()
    if r < 0.3:
        return {}
    meta: dict[str, Any] = {
        "role": rng.choice(ROLES),
        "avatar": f"https://cdn.example.com/avatars/{n}.png",
    }
    if r > 0.8:
        meta["locale"] = rng.choice(LOCALES)
        meta["device"] = {"os": rng.choice(OSES), "browser": rng.choice(BROWSERS)}
        meta["tags"] = rng.sample(["beta", "vip", "staff", "press", "mobile"], k=2)
    return meta


def make_workload(
    *,
    seed: int,
    meetings: int,
    churn: int,
    big: int,
    small: tuple[int, int] = (5, 20),
    big_share: float = 0.25,
) -> Workload:
    """`meetings` rooms (the first grows to `big` participants, the others to 5-20), then
    `churn` joins and leaves: nearly all accepted, with some duplicate-id joins (the old
    connection is replaced), a few client retries (3054) and stale leaves (3035)."""
    rng = random.Random(seed)
    at = 1_760_000_000_000
    commands: list[Command] = []
    counts = dict.fromkeys(
        ("init", "join", "leave", "duplicate_join", "retry_join", "stale_leave"), 0
    )
    rooms = [
        _Room(mid, big if i == 0 else rng.randint(*small))
        for i, mid in enumerate(_meeting_ids(rng, meetings))
    ]
    for i, room in enumerate(rooms):
        at += rng.randint(0, 20)
        commands.append(
            InitMeeting(
                meeting_id=room.meeting_id,
                at=at,
                custom_room_id=f"team-{i}" if i % 4 == 1 else None,
                max_participants=None if i == 0 else rng.choice((None, 50, 100)),
            )
        )
        counts["init"] += 1

    serial = 0

    def join(room: _Room, pid: str, cid: str) -> Join:
        nonlocal serial
        serial += 1
        if not room.joined:
            room.sessions += 1
        r = rng.random()
        return Join(
            meeting_id=room.meeting_id,
            at=at,
            participant_id=pid,
            connection_id=cid,
            session_id=f"{room.meeting_id}-s{room.sessions}",
            name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            permissions=("allow_join", "allow_mod") if r < 0.1 else ("allow_join",),
            mic_enabled=rng.random() < 0.5,
            webcam_enabled=rng.random() < 0.4,
            meta_data=_meta_data(rng, serial),
            mode="RECV_ONLY" if r > 0.9 else "CONFERENCE" if r > 0.85 else "SEND_AND_RECV",
        )

    def leave(room: _Room, pid: str, cid: str) -> Leave:
        reason = (
            LeaveReason.WEBSOCKET_DISCONNECTED
            if rng.random() < 0.1
            else LeaveReason.MANUAL_LEAVE_CALLED
        )
        return Leave(
            meeting_id=room.meeting_id, at=at, participant_id=pid, connection_id=cid, reason=reason
        )

    def new_connection() -> str:
        return f"conn-{rng.getrandbits(64):016x}"

    small_rooms = rooms[1:] or rooms
    expected_rejected = 0
    for _ in range(churn):
        at += rng.randint(0, 5)
        room = rooms[0] if rng.random() < big_share else rng.choice(small_rooms)
        n = len(room.order)
        r = rng.random()
        if r < 0.01 and room.stale:  # a leave from a connection that was replaced
            pid, cid = room.stale.pop(rng.randrange(len(room.stale)))
            commands.append(leave(room, pid, cid))
            counts["stale_leave"] += 1
            expected_rejected += 1
        elif r < 0.015 and n:  # a client retries a join that went through
            pid = rng.choice(room.order)
            commands.append(join(room, pid, room.joined[pid]))
            counts["retry_join"] += 1
            expected_rejected += 1
        elif r < 0.045 and n:  # the same participant joins again: replaces the old connection
            pid = rng.choice(room.order)
            cid = new_connection()
            room.stale.append((pid, room.joined[pid]))
            room.joined[pid] = cid
            commands.append(join(room, pid, cid))
            counts["duplicate_join"] += 1
        else:
            if room.ramping and n >= room.target:
                room.ramping = False
            if not room.ramping and not room.draining and room is not rooms[0]:
                room.draining = rng.random() < 0.002  # small meetings end now and then
            if room.draining:
                p_join = 0.1
            elif room.ramping:
                p_join = 0.9
            else:  # hover just under the target
                p_join = 0.5 + 0.5 * (room.target - n) / room.target
            if n == 0 or (n < room.target and rng.random() < p_join):
                pid = f"user-{rng.getrandbits(48):012x}"
                cid = new_connection()
                commands.append(join(room, pid, cid))
                room.add(pid, cid)
                counts["join"] += 1
                if room.draining:  # the room emptied: a new session begins, to a new size
                    room.draining, room.ramping = False, True
                    room.target = rng.randint(*small)
            else:
                pid = room.order[rng.randrange(n)]
                commands.append(leave(room, pid, room.joined[pid]))
                room.remove(pid)
                counts["leave"] += 1
    return Workload(
        commands=tuple(commands),
        meetings=meetings,
        largest=max(room.peak for room in rooms),
        counts=counts,
        expected_rejected=expected_rejected,
    )


def churn_workload(config: Config) -> Workload:
    if config.quick:
        return make_workload(seed=config.seed, meetings=20, churn=4_000, big=200)
    return make_workload(seed=config.seed, meetings=200, churn=120_000, big=1_000)


# ---------------------------------------------------------------------------
# meetcore: decide, then evolve each event


@dataclass
class RunStats:
    seconds: float
    commands: int
    events: int
    rejected: int


def run_meetcore(commands: Sequence[Command]) -> RunStats:
    """Every command through `decide` and its events through `evolve`, one state per meeting."""
    states: dict[str, MeetingState | None] = {}
    events = rejected = 0
    started = time.perf_counter()
    for command in commands:
        state = states.get(command.meeting_id)
        try:
            emitted = decide(state, command)
        except Rejected:
            rejected += 1
            continue
        for e in emitted:
            state = evolve(state, e)
        states[command.meeting_id] = state
        events += len(emitted)
    return RunStats(time.perf_counter() - started, len(commands), events, rejected)


def outcomes_meetcore(commands: Sequence[Command]) -> tuple[list[Any], dict[str, Any]]:
    """What each command did (event type names, or the rejection code), and the end states."""
    states: dict[str, MeetingState | None] = {}
    out: list[Any] = []
    for command in commands:
        state = states.get(command.meeting_id)
        try:
            emitted = decide(state, command)
        except Rejected as exc:
            out.append(int(exc.code))
            continue
        out.append(tuple(type(e).__name__ for e in emitted))
        state = meetcore.fold(emitted, state)
        states[command.meeting_id] = state
    ends = {
        mid: (
            s.version,
            s.session_id,
            {p.participant_id: p.connection_id for p in s.participants.values()},
        )
        for mid, s in states.items()
        if s is not None
    }
    return out, ends


# ---------------------------------------------------------------------------
# The same rules as an eventsourcing aggregate (InitMeeting, Join and Leave)
#
# Written the way that library's docs write aggregates: public command methods check
# the command and raise `Rejected`, then call `@event` methods, whose bodies apply the
# event (they run again when the aggregate is rebuilt from its log). No persistence:
# each command's events are taken with `collect_events()`, as an application would
# before saving them. The checks are meetcore's, with the same encoders (msgspec), so
# the ratio measures the way the rules are run, not different rules.

MEETING_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
PARTICIPANT_ID = re.compile(r"[^\s\x00-\x1f\x7f\ud800-\udfff]{1,64}")
TOKEN_ID = re.compile(r"[^\s\x00-\x1f\x7f\ud800-\udfff]{1,128}")
PERMISSIONS = frozenset({"allow_join", "ask_join", "allow_mod"})
MODES = {
    "SEND_AND_RECV": "SEND_AND_RECV",
    "SIGNALLING_ONLY": "SIGNALLING_ONLY",
    "RECV_ONLY": "RECV_ONLY",
    "CONFERENCE": "SEND_AND_RECV",
    "VIEWER": "SIGNALLING_ONLY",
}
LEAVE_REASONS = {int(r): r for r in LeaveReason}
_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode
_msgpack_encode = msgspec.msgpack.encode


def _invalid(message: str) -> Rejected:
    return Rejected(E.INVALID_PARAMETER, message)


def _check_id(value: str, pattern: re.Pattern[str], what: str, code: ErrorCode) -> None:
    if pattern.fullmatch(value) is None:
        raise Rejected(code, f"{what} {value[:80]!r} is invalid")


def _check_common(at: int, command_id: str | None) -> None:
    if at < 0:
        raise _invalid(f"at must be unix milliseconds, not {at}")
    if command_id is not None and TOKEN_ID.fullmatch(command_id) is None:
        raise _invalid("commandId must be 1 to 128 characters with no whitespace")


def _normalized_meta_data(value: dict[str, Any]) -> dict[str, Any]:
    if not value:
        return {}
    try:
        encoded = _json_encode(value)
        if len(encoded) <= 4096:
            normalized: dict[str, Any] = _json_decode(encoded)
            _msgpack_encode(normalized)
            return normalized
    except Exception as exc:
        raise _invalid(f"metaData must be a JSON object ({str(exc)[:100]})") from None
    raise _invalid(f"metaData is {len(encoded)} bytes encoded, more than 4096")


def _asks_to_join(permissions: tuple[str, ...]) -> bool:
    unknown = [p for p in permissions if p not in PERMISSIONS]
    if unknown:
        raise Rejected(E.INVALID_PERMISSIONS, f"unknown permission {unknown[0][:40]!r}")
    if "ask_join" in permissions:
        if "allow_join" in permissions or "allow_mod" in permissions:
            raise Rejected(
                E.INVALID_PERMISSIONS, "ask_join cannot be combined with allow_join or allow_mod"
            )
        return True
    if "allow_join" not in permissions:
        raise Rejected(E.INVALID_PERMISSIONS, "joining needs allow_join or ask_join")
    return False


class OutOfWorkload(Exception):
    """A command the peer was not written for: the benchmark's workload never sends it."""


@dataclass(frozen=True, slots=True)
class EsParticipant:
    participant_id: str
    connection_id: str
    name: str
    meta_data: dict[str, Any]
    mic_enabled: bool
    webcam_enabled: bool
    mode: str
    permissions: tuple[str, ...]
    multistream: bool
    debug_mode: bool
    joined_at: int


class Meeting(Aggregate):
    """A meeting as an eventsourcing aggregate: the benchmark's peer of decide/evolve."""

    @staticmethod
    def create_id(meeting_id: str) -> UUID:
        return uuid5(NAMESPACE_URL, meeting_id)

    @classmethod
    def init_meeting(
        cls,
        *,
        meeting_id: str,
        at: int,
        custom_room_id: str | None = None,
        max_participants: int | None = None,
        auto_close: str = "session-ends",
        duplicate_policy: str = "replace",
        webhook: Any = None,
        command_id: str | None = None,
    ) -> Meeting:
        _check_common(at, command_id)
        _check_id(meeting_id, MEETING_ID, "meeting id", E.INVALID_MEETING_ID)
        if custom_room_id is not None:
            _check_id(custom_room_id, MEETING_ID, "customRoomId", E.INVALID_PARAMETER)
        if max_participants is not None and not 1 <= max_participants <= 1_000_000:
            raise _invalid(f"maxParticipants must be 1 to 1000000, not {max_participants}")
        if auto_close not in ("session-ends", "session-end-and-deactivate"):
            raise _invalid(f"autoClose {auto_close[:40]!r} is not a known type")
        if duplicate_policy not in ("replace", "reject"):
            raise _invalid(f"duplicatePolicy {duplicate_policy[:40]!r} is not replace or reject")
        if webhook is not None:
            raise OutOfWorkload("webhooks are not in the benchmark workload")
        return cls(
            meeting_id=meeting_id,
            at=at,
            custom_room_id=custom_room_id,
            max_participants=max_participants,
            auto_close=auto_close,
            duplicate_policy=duplicate_policy,
        )

    @event("MeetingInitialized")
    def __init__(
        self,
        *,
        meeting_id: str,
        at: int,
        custom_room_id: str | None,
        max_participants: int | None,
        auto_close: str,
        duplicate_policy: str,
    ) -> None:
        self.meeting_id = meeting_id
        self.created_at = at
        self.custom_room_id = custom_room_id
        self.max_participants = max_participants
        self.auto_close = auto_close
        self.duplicate_policy = duplicate_policy
        self.active = True
        self.session_id: str | None = None
        self.session_started_at: int | None = None
        self.participants: dict[str, EsParticipant] = {}

    # -- commands

    def join(
        self,
        *,
        at: int,
        participant_id: str,
        connection_id: str,
        session_id: str,
        name: str,
        permissions: tuple[str, ...] = ("allow_join",),
        mic_enabled: bool = False,
        webcam_enabled: bool = False,
        meta_data: dict[str, Any] | None = None,
        mode: str = "SEND_AND_RECV",
        multistream: bool = True,
        debug_mode: bool = False,
        command_id: str | None = None,
    ) -> None:
        _check_common(at, command_id)
        if not self.active:
            raise Rejected(E.MEETING_ID_DISABLED, "the meeting is deactivated")
        pid, cid = participant_id, connection_id
        _check_id(pid, PARTICIPANT_ID, "participant id", E.INVALID_PARTICIPANT_ID)
        _check_id(cid, TOKEN_ID, "connection id", E.INVALID_PARAMETER)
        if len(name) > 256 or not name.isprintable():
            raise _invalid("name must be at most 256 printable characters")
        stream_mode = MODES.get(mode)
        if stream_mode is None:
            raise _invalid(f"mode {mode[:40]!r} is not one of {', '.join(MODES)}")
        normalized = _normalized_meta_data(meta_data or {})
        if _asks_to_join(permissions):
            raise OutOfWorkload("ask_join (the waiting room) is not in the workload")
        joined = self.participants.get(pid)
        if joined is not None and joined.connection_id == cid:
            raise Rejected(E.ALREADY_IN_REQUESTED_STATE, f"{pid!r} already joined on {cid!r}")
        if joined is not None and self.duplicate_policy == "reject":
            raise Rejected(
                E.DUPLICATE_PARTICIPANT, f"participant {pid!r} is already in the meeting"
            )
        limit = self.max_participants
        if joined is None and limit is not None and len(self.participants) >= limit:
            raise Rejected(E.MAX_PARTICIPANT_REACHED, f"the meeting is full ({limit} participants)")
        opens_session = self.session_id is None
        if opens_session:
            _check_id(session_id, TOKEN_ID, "session id", E.INVALID_PARAMETER)

        if joined is not None:  # replaced in place: the session goes on
            self.participant_left(
                at=at,
                participant_id=pid,
                connection_id=joined.connection_id,
                reason=LeaveReason.DUPLICATE_PARTICIPANT,
            )
        if opens_session:
            self.session_started(at=at, session_id=session_id)
        sends = stream_mode == "SEND_AND_RECV"
        self.participant_joined(
            at=at,
            participant_id=pid,
            connection_id=cid,
            name=name,
            meta_data=normalized,
            mic_enabled=mic_enabled and sends,
            webcam_enabled=webcam_enabled and sends,
            mode=stream_mode,
            permissions=permissions,
            multistream=multistream,
            debug_mode=debug_mode,
        )

    def leave(
        self,
        *,
        at: int,
        participant_id: str,
        connection_id: str,
        reason: int = LeaveReason.MANUAL_LEAVE_CALLED,
        command_id: str | None = None,
    ) -> None:
        _check_common(at, command_id)
        if not self.active:
            raise Rejected(E.ACTION_BEFORE_JOINED, "nobody is in a deactivated meeting")
        leave_reason = LEAVE_REASONS.get(reason)
        if leave_reason is None:
            raise _invalid(f"leave reason {reason!r} is not a LeaveReason")
        joined = self.participants.get(participant_id)
        if joined is None or joined.connection_id != connection_id:
            stale = " (a newer connection replaced it)" if joined is not None else ""
            raise Rejected(
                E.ACTION_BEFORE_JOINED,
                f"participant {participant_id[:64]!r} is not in the meeting on connection "
                f"{connection_id[:128]!r}{stale}",
            )
        self.participant_left(
            at=at, participant_id=participant_id, connection_id=connection_id, reason=leave_reason
        )
        if not self.participants:
            assert self.session_id is not None
            self.session_ended(at=at, session_id=self.session_id, reason="empty")
            if self.auto_close == "session-end-and-deactivate":
                self.meeting_deactivated(at=at)

    # -- events: each body applies its event

    @event("SessionStarted")
    def session_started(self, *, at: int, session_id: str) -> None:
        self.session_id = session_id
        self.session_started_at = at

    @event("ParticipantJoined")
    def participant_joined(
        self,
        *,
        at: int,
        participant_id: str,
        connection_id: str,
        name: str,
        meta_data: dict[str, Any],
        mic_enabled: bool,
        webcam_enabled: bool,
        mode: str,
        permissions: tuple[str, ...],
        multistream: bool,
        debug_mode: bool,
    ) -> None:
        self.participants[participant_id] = EsParticipant(
            participant_id=participant_id,
            connection_id=connection_id,
            name=name,
            meta_data=meta_data,
            mic_enabled=mic_enabled,
            webcam_enabled=webcam_enabled,
            mode=mode,
            permissions=permissions,
            multistream=multistream,
            debug_mode=debug_mode,
            joined_at=at,
        )

    @event("ParticipantLeft")
    def participant_left(
        self, *, at: int, participant_id: str, connection_id: str, reason: LeaveReason
    ) -> None:
        del self.participants[participant_id]

    @event("SessionEnded")
    def session_ended(self, *, at: int, session_id: str, reason: str) -> None:
        self.session_id = None
        self.session_started_at = None

    @event("MeetingDeactivated")
    def meeting_deactivated(self, *, at: int) -> None:
        self.active = False


def _handle(meetings: dict[str, Meeting], command: Command) -> Meeting:
    """The command handler an application would have: find the aggregate, call it."""
    kind = type(command)
    if kind is Join:
        assert isinstance(command, Join)
        meeting = meetings.get(command.meeting_id)
        if meeting is None:
            raise Rejected(E.INVALID_MEETING_ID, "the meeting does not exist")
        meeting.join(
            at=command.at,
            participant_id=command.participant_id,
            connection_id=command.connection_id,
            session_id=command.session_id,
            name=command.name,
            permissions=command.permissions,
            mic_enabled=command.mic_enabled,
            webcam_enabled=command.webcam_enabled,
            meta_data=command.meta_data,
            mode=command.mode,
            multistream=command.multistream,
            debug_mode=command.debug_mode,
            command_id=command.command_id,
        )
        return meeting
    if kind is Leave:
        assert isinstance(command, Leave)
        meeting = meetings.get(command.meeting_id)
        if meeting is None:
            raise Rejected(E.INVALID_MEETING_ID, "the meeting does not exist")
        meeting.leave(
            at=command.at,
            participant_id=command.participant_id,
            connection_id=command.connection_id,
            reason=command.reason,
            command_id=command.command_id,
        )
        return meeting
    if kind is InitMeeting:
        assert isinstance(command, InitMeeting)
        if command.meeting_id in meetings:
            raise Rejected(E.INVALID_MEETING_ID, "the meeting already exists")
        meeting = Meeting.init_meeting(
            meeting_id=command.meeting_id,
            at=command.at,
            custom_room_id=command.custom_room_id,
            max_participants=command.max_participants,
            auto_close=command.auto_close,
            duplicate_policy=command.duplicate_policy,
            webhook=command.webhook,
            command_id=command.command_id,
        )
        meetings[command.meeting_id] = meeting
        return meeting
    raise OutOfWorkload(f"{kind.__name__} is not in the benchmark workload")


def run_eventsourcing(commands: Sequence[Command]) -> RunStats:
    """Every command through the aggregate, and its events taken with `collect_events()`."""
    meetings: dict[str, Meeting] = {}
    events = rejected = 0
    started = time.perf_counter()
    for command in commands:
        try:
            meeting = _handle(meetings, command)
        except Rejected:
            rejected += 1
            continue
        events += len(meeting.collect_events())
    return RunStats(time.perf_counter() - started, len(commands), events, rejected)


def outcomes_eventsourcing(commands: Sequence[Command]) -> tuple[list[Any], dict[str, Any]]:
    meetings: dict[str, Meeting] = {}
    out: list[Any] = []
    for command in commands:
        try:
            meeting = _handle(meetings, command)
        except Rejected as exc:
            out.append(int(exc.code))
            continue
        out.append(tuple(type(e).__name__ for e in meeting.collect_events()))
    ends = {
        mid: (
            m.version,
            m.session_id,
            {p.participant_id: p.connection_id for p in m.participants.values()},
        )
        for mid, m in meetings.items()
    }
    return out, ends


# ---------------------------------------------------------------------------
# Section: churn


def _timed(
    runner: Callable[[Sequence[Command]], RunStats],
    commands: Sequence[Command],
    runs: list[RunStats],
) -> float:
    """Run `runner` over `commands` from fresh meetings, keep its stats, return its time."""
    stats = runner(commands)
    runs.append(stats)
    return stats.seconds


def churn(config: Config) -> dict[str, Any]:
    workload = churn_workload(config)
    commands = workload.commands

    # Both give the same events for every command (and warm up) before anything is timed.
    ours, ours_end = outcomes_meetcore(commands)
    theirs, theirs_end = outcomes_eventsourcing(commands)
    if ours != theirs or ours_end != theirs_end:
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), None)
        detail = (
            f"command {at}: {commands[at]!r}: {ours[at]} vs {theirs[at]}"
            if at is not None
            else "end states"
        )
        raise SystemExit(
            f"benchmark bug: the eventsourcing peer disagrees with meetcore at {detail}"
        )
    rejected = sum(isinstance(o, int) for o in ours)
    if rejected != workload.expected_rejected:
        raise SystemExit(
            f"benchmark bug: {rejected} commands rejected, the generator expected "
            f"{workload.expected_rejected}"
        )

    results: dict[str, Any] = {}
    for name, runner in (("meetcore", run_meetcore), ("eventsourcing", run_eventsourcing)):
        runs: list[RunStats] = []
        seconds = best_of(config.repeats, partial(_timed, runner, commands, runs))
        stats = runs[0]
        results[name] = {
            "seconds": seconds,
            "commands": stats.commands,
            "events": stats.events,
            "rejected": stats.rejected,
            "commands_per_s": stats.commands / seconds,
            "events_per_s": stats.events / seconds,
            "us_per_command": seconds / stats.commands * 1e6,
        }
    ours_rate = results["meetcore"]["commands_per_s"]
    return {
        "workload": {
            "meetings": workload.meetings,
            "commands": len(commands),
            "largest_meeting": workload.largest,
            "counts": workload.counts,
            "rejected": rejected,
        },
        **results,
        "ratio_meetcore_to_eventsourcing": ours_rate / results["eventsourcing"]["commands_per_s"],
        "target_commands_per_s": TARGET_COMMANDS_PER_S,
        "verdict": "PASS" if ours_rate >= TARGET_COMMANDS_PER_S else "BELOW",
    }


def render_churn(r: dict[str, Any]) -> list[str]:
    w = r["workload"]
    c = w["counts"]
    lines = [
        f"  {w['meetings']} meetings, {w['commands']:,} commands (largest meeting "
        f"{w['largest_meeting']:,} participants): {c['join']:,} joins, {c['leave']:,} leaves, "
        f"{c['duplicate_join']:,} duplicate joins, {w['rejected']:,} rejected",
        "",
        f"  {'':<15}{'commands/s':>12}{'events/s':>12}{'us/command':>12}",
    ]
    for name in ("meetcore", "eventsourcing"):
        x = r[name]
        row = (
            f"  {name:<15}{x['commands_per_s']:>12,.0f}{x['events_per_s']:>12,.0f}"
            f"{x['us_per_command']:>12.2f}"
        )
        if name == "meetcore":
            row += f"   target {r['target_commands_per_s']:,}: {r['verdict']}"
        lines.append(row)
    lines.append(f"  meetcore / eventsourcing: {r['ratio_meetcore_to_eventsourcing']:.1f}x")
    return lines


# ---------------------------------------------------------------------------
# Section: scaling


def _joins(meeting_id: str, prefix: str, n: int) -> list[Join]:
    return [
        Join(
            meeting_id=meeting_id,
            at=1_760_000_000_000 + i,
            participant_id=f"{prefix}-{i}",
            connection_id=f"{prefix}-conn-{i}",
            session_id="s1",
            name=f"Participant {i}",
            mic_enabled=True,
            meta_data={"role": "attendee", "avatar": f"https://cdn.example.com/avatars/{i}.png"},
        )
        for i in range(n)
    ]


def _drive(state: MeetingState | None, commands: Iterable[Command]) -> MeetingState | None:
    for command in commands:
        for e in decide(state, command):
            state = evolve(state, e)
    return state


def scaling(config: Config) -> dict[str, Any]:
    sizes = (10, 100, 1_000, 10_000)
    pairs = 1_000 if config.quick else 20_000
    rows = []
    for size in sizes:
        mid = f"scale-{size}"
        state = _drive(None, [InitMeeting(meeting_id=mid, at=1_760_000_000_000)])
        state = _drive(state, _joins(mid, "base", size))
        assert state is not None
        assert len(state.participants) == size
        churn_commands: list[Command] = []
        for j in _joins(mid, "churn", pairs):
            churn_commands.append(j)
            churn_commands.append(
                Leave(
                    meeting_id=mid,
                    at=j.at,
                    participant_id=j.participant_id,
                    connection_id=j.connection_id,
                )
            )
        # Each join/leave pair leaves the participants as they were, so every repeat
        # starts from the same meeting. The first pass also records the events.
        events: list[Any] = []
        for command in churn_commands:
            emitted = decide(state, command)
            for e in emitted:
                state = evolve(state, e)
            events.extend(emitted)
        assert len(state.participants) == size

        def both(state: MeetingState = state, commands: list[Command] = churn_commands) -> float:
            started = time.perf_counter()
            for command in commands:
                for e in decide(state, command):
                    state = evolve(state, e)
            return time.perf_counter() - started

        def evolve_only(state: MeetingState = state, events: list[Any] = events) -> float:
            started = time.perf_counter()
            for e in events:
                state = evolve(state, e)
            return time.perf_counter() - started

        per_command = best_of(config.repeats, both) / len(churn_commands)
        per_event = best_of(config.repeats, evolve_only) / len(events)
        rows.append(
            {
                "participants": size,
                "us_per_command": per_command * 1e6,
                "us_per_event_evolve": per_event * 1e6,
            }
        )
    first, last = rows[0], rows[-1]
    ratio_command = last["us_per_command"] / first["us_per_command"]
    ratio_evolve = last["us_per_event_evolve"] / first["us_per_event_evolve"]
    return {
        "pairs": pairs,
        "rows": rows,
        "ratio_command": ratio_command,
        "ratio_evolve": ratio_evolve,
        "flat": ratio_command < 1.5 and ratio_evolve < 1.5,
    }


def render_scaling(r: dict[str, Any]) -> list[str]:
    lines = [
        f"  {r['pairs']:,} join/leave pairs of one participant into a meeting of N",
        "",
        f"  {'participants':>12}{'us/command':>14}{'us/event':>12}",
        f"  {'':>12}{'decide+evolve':>14}{'evolve':>12}",
    ]
    for row in r["rows"]:
        lines.append(
            f"  {row['participants']:>12,}{row['us_per_command']:>14.3f}"
            f"{row['us_per_event_evolve']:>12.3f}"
        )
    sizes = r["rows"][0]["participants"], r["rows"][-1]["participants"]
    lines.append(
        f"  {sizes[1]:,} vs {sizes[0]:,}: {r['ratio_command']:.2f}x per command, "
        f"{r['ratio_evolve']:.2f}x per event: {'flat (O(1))' if r['flat'] else 'GROWS'}"
    )
    return lines


# ---------------------------------------------------------------------------

SECTIONS: list[Section] = [
    Section(
        "churn",
        "decide+evolve on a join/leave churn, beside an eventsourcing aggregate",
        churn,
        render_churn,
    ),
    Section(
        "scaling",
        "cost per command and per event against participant count",
        scaling,
        render_scaling,
    ),
]


def main(argv: Sequence[str] | None = None) -> int:
    names = [s.name for s in SECTIONS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a small workload, for a smoke test")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--only",
        action="append",
        choices=names,
        metavar="NAME",
        help=f"run only this section (repeatable): {', '.join(names)}",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="timings per measurement, the best is kept (default 5, 1 with --quick)",
    )
    parser.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run under cProfile and print the top functions to stderr",
    )
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    config = Config(quick=args.quick, repeats=max(1, repeats), seed=args.seed)
    chosen = [s for s in SECTIONS if not args.only or s.name in args.only]

    meta = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "meetcore": _version("meetcore"),
        "eventsourcing": _version("eventsourcing"),
        "msgspec": msgspec.__version__,
        "quick": config.quick,
        "repeats": config.repeats,
        "seed": config.seed,
        "gc": "enabled during timing",
        "target_commands_per_s": TARGET_COMMANDS_PER_S,
    }
    if not args.json:
        print(
            f"meetcore benchmarks: Python {meta['python']} on {meta['machine']}, "
            f"best of {config.repeats}, seed {config.seed}{', quick' if config.quick else ''}"
        )
    profiler = cProfile.Profile() if args.profile else None
    results: dict[str, Any] = {}
    for section in chosen:
        if not args.json:
            print(f"\n{section.name}: {section.title}", flush=True)
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        results[section.name] = section.run(config)
        if profiler is not None:
            profiler.disable()
        results[section.name]["wall_seconds"] = time.perf_counter() - started
        if not args.json:
            print("\n".join(section.render(results[section.name])), flush=True)
    if args.json:
        print(json.dumps({"meta": meta, "sections": results}, indent=2))
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
