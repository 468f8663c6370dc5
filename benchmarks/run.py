"""Benchmarks of meetcore's pure core: `uv run python benchmarks/run.py [--quick] [--json]`.

Not a test: it measures and reports, and never fails because something is slow.

`evolve` here is the engine's own, which updates the state in place (O(1) an event); the
public `meetcore.evolve` copies the state it is given first and costs O(participants).

Sections (run all, or pick with `--only NAME`):

- `churn`: `decide` + `evolve` over a join/leave churn of many meetings (one grows to
  1,000 participants), in commands/s against the 300,000/s target; beside it the same
  rules written as an `eventsourcing` library aggregate on the same commands, and the
  ratio of the two. Both are checked to give the same events before anything is timed.
- `scaling`: the cost of one join/leave pair in meetings of 10 to 10,000 participants,
  per command (`decide` + `evolve`) and per event (`evolve` alone). It must stay flat.
- `engine`: `Engine.execute` on the memory store, one command at a time, over a churn of
  1,000 meetings, against 100,000 commands/s; beside it an `eventsourcing` Application
  (in-memory POPO persistence, one save per command) on the same commands, which must be
  at least 4 times slower. Both are checked to give the same outcomes first.
- `replay`: `fold_jsonl` and `fold_msgpack` (decode + evolve, causes skipped) over a
  1,000,000-event log, against 1,000,000 events/s; beside them the full `read_jsonl` +
  `fold`, and decoding alone and evolving alone, to show where the time goes.
- `memory`: the RSS of an engine holding 10,000 meetings of 10 participants, measured in
  a fresh process, against 150 MB; tracemalloc shows where it goes.

To add a section, write a function `(Config) -> dict` (a JSON-able dict of results) and
a function `(dict) -> list[str]` that renders it, and append a `Section` to `SECTIONS`.
Workloads are built before the clock starts; every timing is the best of `--repeats`.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import random
import re
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast
from uuid import NAMESPACE_URL, UUID, uuid5

import anyio
import msgspec
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Recording

import meetcore
import meetcore._record
from meetcore import Engine, ErrorCode, LeaveReason, MeetingState, Rejected, decide
from meetcore._decider import _evolve as evolve  # in place (see the docstring)
from meetcore.commands import AnyCommand, Command, InitMeeting, Join, Leave
from meetcore.events import AnyEvent

TARGET_COMMANDS_PER_S = 300_000  # churn: decide + evolve
TARGET_ENGINE_COMMANDS_PER_S = 100_000  # engine: Engine.execute on the memory store
TARGET_ENGINE_RATIO = 4.0  # engine: at least this many times the eventsourcing Application
TARGET_REPLAY_EVENTS_PER_S = 1_000_000  # replay: fold_jsonl / fold_msgpack
TARGET_MEMORY_MB = 150  # memory: RSS of 10,000 meetings of 10 participants (MB = 2**20 bytes)
MB = 1 << 20
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
    gc_seconds: float = 0.0


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


class Meetings(Protocol):
    """Where `_handle` finds meetings: a dict (the churn section), or an Application's
    repository (the engine section), which loads the aggregate from its events."""

    def get(self, meeting_id: str, /) -> Meeting | None: ...

    def __contains__(self, meeting_id: object, /) -> bool: ...

    def __setitem__(self, meeting_id: str, meeting: Meeting, /) -> None: ...


def _handle(meetings: Meetings, command: Command) -> Meeting:
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
    _same_outcomes(
        commands,
        "meetcore and the eventsourcing peer",
        (ours, ours_end),
        outcomes_eventsourcing(commands),
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
        results[name] = _rates(runs[0], seconds)
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
# Helpers of the engine, replay and memory sections


class GcClock:
    """Time spent in the cyclic garbage collector while entered (through `gc.callbacks`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]  # per generation
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1

    def __enter__(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


@contextmanager
def gc_paused() -> Iterator[None]:
    """For untimed set-up that builds millions of objects: collecting them is wasted time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def verdict(ok: bool) -> str:
    return "PASS" if ok else "BELOW"


def _rates(stats: RunStats, seconds: float) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "commands": stats.commands,
        "events": stats.events,
        "rejected": stats.rejected,
        "commands_per_s": stats.commands / seconds,
        "events_per_s": stats.events / seconds,
        "us_per_command": seconds / stats.commands * 1e6,
    }


def _same_outcomes(
    commands: Sequence[Command],
    who: str,
    ours: tuple[list[Any], dict[str, Any]],
    theirs: tuple[list[Any], dict[str, Any]],
) -> None:
    """Stop the run if two implementations disagree on a command or on an end state."""
    if ours == theirs:
        return
    at = next((i for i, (a, b) in enumerate(zip(ours[0], theirs[0], strict=True)) if a != b), None)
    detail = (
        f"command {at}: {commands[at]!r}: {ours[0][at]} vs {theirs[0][at]}"
        if at is not None
        else "end states"
    )
    raise SystemExit(f"benchmark bug: {who} disagree at {detail}")


def _end(version: int, session_id: str | None, participants: Iterable[Any]) -> tuple[Any, ...]:
    """What the outcome checks compare of a meeting at the end."""
    return version, session_id, {p.participant_id: p.connection_id for p in participants}


# ---------------------------------------------------------------------------
# Section: engine
#
# `Engine.execute` on the memory store, no plugins: stamps the command, takes the
# meeting's lock, decides, appends records (with the command as their cause), evolves,
# tracks leases. Its peer is an eventsourcing `Application` on POPO (in-memory)
# persistence: the `Meeting` aggregate above, loaded from the repository for every
# command and saved after it, as an Application does.

ENGINE_OPTIONS: dict[str, Any] = {"store": "memory://", "autoload": False, "sweep_leases": False}


def engine_workload(config: Config) -> Workload:
    """The churn generator over 1,000 meetings of 5-20 participants (the first one is
    like the others: no 1,000-participant room, which the peer would replay per command)."""
    meetings = 100 if config.quick else 1_000
    return make_workload(
        seed=config.seed,
        meetings=meetings,
        churn=2_000 if config.quick else 50_000,
        big=20,
        big_share=1 / meetings,
    )


async def _engine_outcomes(commands: Sequence[Command]) -> tuple[list[Any], dict[str, Any]]:
    """What `Engine.execute` did with each command, and every meeting's end state."""
    out: list[Any] = []
    ends: dict[str, Any] = {}
    async with Engine.open(**ENGINE_OPTIONS) as engine:
        for command in cast("Sequence[AnyCommand]", commands):
            try:
                records = await engine.execute(command)
            except Rejected as exc:
                out.append(int(exc.code))
                continue
            out.append(tuple(type(r.event).__name__ for r in records))
        for meeting_id in dict.fromkeys(c.meeting_id for c in commands):
            s = await engine.state(meeting_id)
            if s is not None:
                ends[meeting_id] = _end(s.version, s.session_id, s.participants.values())
    return out, ends


async def _engine_pass(commands: Sequence[Command]) -> RunStats:
    """Every command through `engine.execute`, one at a time, into a fresh memory store."""
    events = rejected = 0
    async with Engine.open(**ENGINE_OPTIONS) as engine:
        execute = engine.execute
        with GcClock() as collector:
            started = time.perf_counter()
            for command in cast("Sequence[AnyCommand]", commands):
                try:
                    events += len(await execute(command))
                except Rejected:
                    rejected += 1
            seconds = time.perf_counter() - started
    return RunStats(seconds, len(commands), events, rejected, collector.seconds)


def run_engine(commands: Sequence[Command]) -> RunStats:
    return anyio.run(_engine_pass, commands)


class RepositoryMeetings:
    """`Meetings` out of an Application's repository: `get` loads the aggregate from its
    stored events (or from the repository's cache, when configured with one)."""

    def __init__(self, app: Application[UUID]) -> None:
        self._repository = app.repository

    def get(self, meeting_id: str, /) -> Meeting | None:
        try:
            meeting: Meeting = self._repository.get(Meeting.create_id(meeting_id))
        except AggregateNotFoundError:
            return None
        return meeting

    def __contains__(self, meeting_id: object, /) -> bool:
        return isinstance(meeting_id, str) and Meeting.create_id(meeting_id) in self._repository

    def __setitem__(self, meeting_id: str, meeting: Meeting, /) -> None:
        pass  # a new meeting is stored by the `save` that follows


class MeetingsApplication(Application[UUID]):
    """The engine's peer. Its command method loads the meeting from the repository, runs
    the command on the aggregate, and saves it: one `save` per command. A rejected
    command raises before anything is saved. Aggregate ids are uuid5 of the meeting id."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.meetings = RepositoryMeetings(self)

    def execute(self, command: Command) -> list[Recording[UUID]]:
        return self.save(_handle(self.meetings, command))


def peer_configs(meetings: int) -> dict[str, dict[str, str]]:
    """The Application's configurations, all on POPO (in-memory) persistence. Set here
    in full, so that no environment variable of the caller's changes them."""
    base = {
        "PERSISTENCE_MODULE": "eventsourcing.popo",
        "IS_SNAPSHOTTING_ENABLED": "n",
        "AGGREGATE_CACHE_MAXSIZE": "",
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "y",
    }
    cached = {**base, "AGGREGATE_CACHE_MAXSIZE": str(meetings)}
    return {
        # The default: every command rebuilds the meeting from all its stored events.
        "no_cache": base,
        # An LRU cache of every meeting: fast-forwarded from the store and deep-copied
        # for each command (the library's defaults once the cache is on).
        "cache": cached,
        # The same without the deep copy: the quickest configuration the library offers.
        "cache_no_deepcopy": {**cached, "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"},
    }


PEER_LABELS = {
    "no_cache": "no cache (default)",
    "cache": "AGGREGATE_CACHE_MAXSIZE",
    "cache_no_deepcopy": "cache, no deepcopy",
}


def make_application(env: dict[str, str]) -> MeetingsApplication:
    app = MeetingsApplication(env)
    repository = app.repository
    expected = (
        "eventsourcing.popo",
        bool(env["AGGREGATE_CACHE_MAXSIZE"]),
        env["DEEPCOPY_FROM_AGGREGATE_CACHE"] == "y",
    )
    actual = (
        type(app.recorder).__module__,
        repository.cache is not None,
        repository.deepcopy_from_cache,
    )
    if actual != expected:  # e.g. a MEETINGSAPPLICATION_* variable in the environment
        raise SystemExit(
            f"benchmark set-up: the Application is configured {actual}, not {expected}"
        )
    return app


def _peer_pass(
    commands: Sequence[Command], env: dict[str, str]
) -> tuple[RunStats, tuple[list[Any], dict[str, Any]]]:
    """Every command through a fresh Application; its outcomes are worked out after the
    clock stops (inside it, each command's recordings or rejection code is only kept)."""
    app = make_application(env)
    execute = app.execute
    kept: list[Any] = []
    keep = kept.append
    started = time.perf_counter()
    for command in commands:
        try:
            keep(execute(command))
        except Rejected as exc:
            keep(exc.code)
    seconds = time.perf_counter() - started
    out = [
        int(k) if isinstance(k, int) else tuple(type(r.domain_event).__name__ for r in k)
        for k in kept
    ]
    ends: dict[str, Any] = {}
    for meeting_id in dict.fromkeys(c.meeting_id for c in commands):
        m = app.meetings.get(meeting_id)
        if m is not None:
            ends[meeting_id] = _end(m.version, m.session_id, m.participants.values())
    rejected = sum(isinstance(o, int) for o in out)
    events = sum(len(o) for o in out if not isinstance(o, int))
    return RunStats(seconds, len(commands), events, rejected), (out, ends)


def _timed_peer(
    commands: Sequence[Command],
    env: dict[str, str],
    expected: tuple[list[Any], dict[str, Any]],
    runs: list[RunStats],
) -> float:
    stats, outcomes = _peer_pass(commands, env)
    _same_outcomes(commands, "Engine.execute and the eventsourcing Application", expected, outcomes)
    runs.append(stats)
    return stats.seconds


def engine(config: Config) -> dict[str, Any]:
    workload = engine_workload(config)
    commands = workload.commands
    configs = peer_configs(workload.meetings)

    # The pure core, the engine and the Application agree on every command and on every
    # meeting at the end, before anything is timed.
    ours = anyio.run(_engine_outcomes, commands)
    _same_outcomes(commands, "decide/evolve and Engine.execute", outcomes_meetcore(commands), ours)
    _same_outcomes(
        commands,
        "Engine.execute and the eventsourcing Application",
        ours,
        _peer_pass(commands, configs["cache_no_deepcopy"])[1],
    )
    rejected = sum(isinstance(o, int) for o in ours[0])
    if rejected != workload.expected_rejected:
        raise SystemExit(
            f"benchmark bug: {rejected} commands rejected, the generator expected "
            f"{workload.expected_rejected}"
        )

    runs: list[RunStats] = []
    seconds = best_of(config.repeats, partial(_timed, run_engine, commands, runs))
    best = min(runs, key=lambda r: r.seconds)
    ours_rates = _rates(best, seconds)
    ours_rates["gc_seconds"] = best.gc_seconds
    ours_rates["gc_share"] = best.gc_seconds / seconds
    ours_rates["us_per_command_without_gc"] = (seconds - best.gc_seconds) / best.commands * 1e6

    core_runs: list[RunStats] = []
    core_seconds = best_of(config.repeats, partial(_timed, run_meetcore, commands, core_runs))

    peers: dict[str, Any] = {}
    for name, env in configs.items():
        # The peer is 5-70 times slower: one run (no cache) or two make a fair best.
        repeats = 1 if name == "no_cache" else min(config.repeats, 2)
        peer_runs: list[RunStats] = []
        peer_seconds = best_of(repeats, partial(_timed_peer, commands, env, ours, peer_runs))
        peers[name] = {**_rates(peer_runs[0], peer_seconds), "repeats": repeats, "env": env}
    best_peer = max(peers, key=lambda n: peers[n]["commands_per_s"])
    rate = ours_rates["commands_per_s"]
    ratio = rate / peers[best_peer]["commands_per_s"]
    return {
        "workload": {
            "meetings": workload.meetings,
            "commands": len(commands),
            "largest_meeting": workload.largest,
            "counts": workload.counts,
            "rejected": rejected,
        },
        "engine": {**ours_rates, "repeats": config.repeats},
        "decide_evolve": {**_rates(core_runs[0], core_seconds), "repeats": config.repeats},
        "eventsourcing": peers,
        "best_eventsourcing": best_peer,
        "ratio_engine_to_eventsourcing": ratio,
        "ratios": {name: rate / p["commands_per_s"] for name, p in peers.items()},
        "target_commands_per_s": TARGET_ENGINE_COMMANDS_PER_S,
        "target_ratio": TARGET_ENGINE_RATIO,
        "verdict": verdict(rate >= TARGET_ENGINE_COMMANDS_PER_S),
        "verdict_ratio": verdict(ratio >= TARGET_ENGINE_RATIO),
    }


def render_engine(r: dict[str, Any]) -> list[str]:
    w = r["workload"]
    c = w["counts"]
    e = r["engine"]
    core = r["decide_evolve"]
    lines = [
        f"  {w['meetings']:,} meetings, {w['commands']:,} commands (largest meeting "
        f"{w['largest_meeting']} participants): {c['join']:,} joins, {c['leave']:,} leaves, "
        f"{c['duplicate_join']:,} duplicate joins, {w['rejected']:,} rejected",
        "",
        f"  {'':<38}{'commands/s':>12}{'us/command':>12}",
        f"  {'Engine.execute, memory store':<38}{e['commands_per_s']:>12,.0f}"
        f"{e['us_per_command']:>12.2f}   target {r['target_commands_per_s']:,}: {r['verdict']}",
        f"  {'  of which garbage collection':<38}{'':>12}"
        f"{e['us_per_command'] - e['us_per_command_without_gc']:>12.2f}"
        f"   ({e['gc_share']:.0%} of the time)",
        f"  {'decide+evolve alone, same commands':<38}{core['commands_per_s']:>12,.0f}"
        f"{core['us_per_command']:>12.2f}",
    ]
    for name, p in r["eventsourcing"].items():
        label = f"Application, {PEER_LABELS[name]}"
        runs = "1 run" if p["repeats"] == 1 else f"best of {p['repeats']}"
        lines.append(
            f"  {label:<38}{p['commands_per_s']:>12,.0f}{p['us_per_command']:>12.1f}"
            f"   engine is {r['ratios'][name]:.1f}x ({runs})"
        )
    lines.append(
        f"  engine / best Application ({PEER_LABELS[r['best_eventsourcing']]}): "
        f"{r['ratio_engine_to_eventsourcing']:.1f}x   target {r['target_ratio']:.0f}x: "
        f"{r['verdict_ratio']}"
    )
    return lines


# ---------------------------------------------------------------------------
# Section: replay


class _Entry(msgspec.Struct, rename="camel"):
    """A record's meeting, version and event, decoded whole: to pre-decode the events
    for evolving alone. (`fold_jsonl` decodes `meetcore._record._Entry`, which keeps
    joins' metaData raw; decoding alone times that.)"""

    meeting_id: str
    version: int
    event: AnyEvent


def build_log(config: Config, size: int) -> tuple[list[meetcore.Record], dict[str, MeetingState]]:
    """The first `size` events of a churn workload, decided and evolved, as records with
    their causes, as the engine writes them; and each meeting's state after them."""
    meetings = 100 if config.quick else 1_000
    workload = make_workload(
        seed=config.seed,
        meetings=meetings,
        churn=size + size // 10,
        big=200 if config.quick else 1_000,
    )
    states: dict[str, MeetingState] = {}
    records: list[meetcore.Record] = []
    for command in workload.commands:
        state = states.get(command.meeting_id)
        try:
            emitted = decide(state, command)
        except Rejected:
            continue
        for e in emitted:
            state = evolve(state, e)
            records.append(
                meetcore.Record(
                    meeting_id=command.meeting_id,
                    version=state.version,
                    position=len(records) + 1,
                    recorded_at=command.at,
                    event=e,
                    cause=cast("AnyCommand", command),
                )
            )
            if len(records) == size:
                break
        assert state is not None
        states[command.meeting_id] = state
        if len(records) == size:
            return records, states
    raise SystemExit(f"benchmark bug: the workload made {len(records):,} events, not {size:,}")


def read_and_fold(lines: Sequence[bytes]) -> dict[str, MeetingState]:
    """The full decode of every record, causes too, then `fold` per meeting."""
    events: dict[str, list[Any]] = {}
    for record in meetcore.read_jsonl(lines):
        events.setdefault(record.meeting_id, []).append(record.event)
    states: dict[str, MeetingState] = {}
    for meeting_id, evs in events.items():
        state = meetcore.fold(evs)
        assert state is not None
        states[meeting_id] = state
    return states


def _decode_all(decode: Callable[[bytes], Any], blobs: Sequence[bytes]) -> None:
    for blob in blobs:
        decode(blob)


def _evolve_all(entries: Sequence[_Entry]) -> dict[str, MeetingState]:
    states: dict[str, MeetingState] = {}
    get = states.get
    for entry in entries:
        states[entry.meeting_id] = evolve(get(entry.meeting_id), entry.event)
    return states


def _timed_call(fn: Callable[[], Any], out: list[Any]) -> float:
    """Time `fn()`; keep only its last result in `out` (to check it, untimed)."""
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    out[:] = [result]
    return seconds


def replay(config: Config) -> dict[str, Any]:
    size = 50_000 if config.quick else 1_000_000
    started = time.perf_counter()
    with gc_paused():
        records, states = build_log(config, size)
        kinds: dict[str, int] = {}
        for r in records:
            name = type(r.event).__name__
            kinds[name] = kinds.get(name, 0) + 1
        buffer = io.BytesIO()
        meetcore.write_jsonl(records, buffer)
        lines = buffer.getvalue().splitlines()
        del buffer
        blobs = [meetcore.encode_msgpack(r) for r in records]
        del records  # and with them the workload's commands, their causes
    gc.collect()
    build_seconds = time.perf_counter() - started

    def rate(seconds: float, repeats: int) -> dict[str, Any]:
        return {
            "seconds": seconds,
            "events_per_s": size / seconds,
            "us_per_event": seconds / size * 1e6,
            "repeats": repeats,
        }

    results: dict[str, Any] = {}
    out: list[Any] = []
    for name, fold, data in (
        ("fold_jsonl", meetcore.fold_jsonl, lines),
        ("fold_msgpack", meetcore.fold_msgpack, blobs),
    ):
        seconds = best_of(config.repeats, partial(_timed_call, partial(fold, data), out))
        if out[0] != states:
            raise SystemExit(f"benchmark bug: {name} does not give the states of the log")
        results[name] = rate(seconds, config.repeats)
        out.clear()

    # For contrast, and to see where the time goes: fewer repeats, these are not targets.
    few = min(config.repeats, 2)
    seconds = best_of(few, partial(_timed_call, partial(read_and_fold, lines), out))
    if out[0] != states:
        raise SystemExit("benchmark bug: read_jsonl + fold does not give the states of the log")
    out.clear()
    results["read_jsonl_fold"] = rate(seconds, few)
    for name, decoder, data in (
        ("decode_only_jsonl", msgspec.json.Decoder(meetcore._record._Entry), lines),
        ("decode_only_msgpack", msgspec.msgpack.Decoder(meetcore._record._Entry), blobs),
    ):
        seconds = best_of(
            few, partial(_timed_call, partial(_decode_all, decoder.decode, data), out)
        )
        results[name] = rate(seconds, few)
    with gc_paused():
        entries = [msgspec.msgpack.decode(b, type=_Entry) for b in blobs]
    seconds = best_of(few, partial(_timed_call, partial(_evolve_all, entries), out))
    if out[0] != states:
        raise SystemExit("benchmark bug: evolving the decoded events does not give the states")
    results["evolve_only"] = rate(seconds, few)
    out.clear()
    del entries

    return {
        "events": size,
        "meetings": len(states),
        "event_counts": kinds,
        "bytes_per_event": {
            "jsonl": sum(map(len, lines)) / size,
            "msgpack": sum(map(len, blobs)) / size,
        },
        "build_seconds": build_seconds,
        **results,
        "target_events_per_s": TARGET_REPLAY_EVENTS_PER_S,
        "verdict_jsonl": verdict(
            results["fold_jsonl"]["events_per_s"] >= TARGET_REPLAY_EVENTS_PER_S
        ),
        "verdict_msgpack": verdict(
            results["fold_msgpack"]["events_per_s"] >= TARGET_REPLAY_EVENTS_PER_S
        ),
    }


def render_replay(r: dict[str, Any]) -> list[str]:
    kinds = ", ".join(
        f"{n:,} {k}" for k, n in sorted(r["event_counts"].items(), key=lambda x: -x[1])
    )
    b = r["bytes_per_event"]
    target = r["target_events_per_s"]
    lines = [
        f"  {r['events']:,} events of {r['meetings']:,} meetings, with causes "
        f"({b['jsonl']:.0f} bytes/event as JSON Lines, {b['msgpack']:.0f} as msgpack): {kinds}",
        "",
        f"  {'':<40}{'events/s':>12}{'us/event':>10}",
    ]
    rows = (
        ("fold_jsonl (decode + evolve)", "fold_jsonl", r["verdict_jsonl"]),
        ("fold_msgpack (decode + evolve)", "fold_msgpack", r["verdict_msgpack"]),
        ("read_jsonl + fold per meeting", "read_jsonl_fold", None),
        ("  decoding alone, JSON Lines", "decode_only_jsonl", None),
        ("  decoding alone, msgpack", "decode_only_msgpack", None),
        ("  evolving alone (pre-decoded)", "evolve_only", None),
    )
    for label, key, v in rows:
        x = r[key]
        row = f"  {label:<40}{x['events_per_s']:>12,.0f}{x['us_per_event']:>10.3f}"
        if v is not None:
            row += f"   target {target:,}: {v}"
        lines.append(row)
    return lines


# ---------------------------------------------------------------------------
# Section: memory
#
# Measured in a fresh process (`memory_probe.py`) that imports what an embedder's
# does, meetcore and no more: RSS once the engine is open and empty, then once it
# holds the meetings. A second probe runs under tracemalloc (which costs memory of
# its own) to say where the growth is.

PROBE = Path(__file__).resolve().with_name("memory_probe.py")


def memory_commands(seed: int, meetings: int, participants: int) -> Iterator[AnyCommand]:
    """Each meeting initialized, then joined by `participants` people with what clients
    send: a name, small metaData, permissions."""
    rng = random.Random(seed)
    serial = 0
    for i, meeting_id in enumerate(_meeting_ids(rng, meetings)):
        yield InitMeeting(
            meeting_id=meeting_id,
            custom_room_id=f"team-{i}" if i % 4 == 1 else None,
            max_participants=rng.choice((None, 50, 100)),
        )
        for _ in range(participants):
            serial += 1
            r = rng.random()
            yield Join(
                meeting_id=meeting_id,
                participant_id=f"user-{rng.getrandbits(48):012x}",
                connection_id=f"conn-{rng.getrandbits(64):016x}",
                session_id=f"s-{rng.getrandbits(48):012x}",  # a fresh candidate, as servers send
                name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                permissions=("allow_join", "allow_mod") if r < 0.1 else ("allow_join",),
                mic_enabled=rng.random() < 0.5,
                webcam_enabled=rng.random() < 0.4,
                meta_data=_meta_data(rng, serial),
                mode="RECV_ONLY" if r > 0.9 else "SEND_AND_RECV",
            )


def _run_probe(commands: Path, trace: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONTRACEMALLOC", "PYTHONMALLOC")}
    done = subprocess.run(
        [sys.executable, str(PROBE), str(commands), *(["--trace"] if trace else [])],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise SystemExit(f"the memory probe failed:\n{done.stderr}")
    probe: dict[str, Any] = json.loads(done.stdout)
    return probe


FULL_MEETINGS = 10_000


def memory(config: Config) -> dict[str, Any]:
    meetings = 500 if config.quick else FULL_MEETINGS
    participants = 10
    with tempfile.TemporaryDirectory() as tmp:
        commands = Path(tmp) / "commands.jsonl"
        with commands.open("wb") as out:
            for command in memory_commands(config.seed, meetings, participants):
                out.write(msgspec.json.encode(command) + b"\n")
        probe = _run_probe(commands, trace=False)
        traced = _run_probe(commands, trace=True)
    # Checked once measured: the meetings are all there.
    if probe["records"] != meetings * (participants + 2) or set(probe["participants"].values()) != {
        participants
    }:
        raise SystemExit(f"memory probe: {probe['records']} records, not the meetings expected")
    baseline, built, after = (
        probe["baseline_bytes"],
        probe["built_bytes"],
        probe["after_gc_bytes"],
    )
    per_meeting = (after - baseline) / meetings
    projected = (baseline + per_meeting * FULL_MEETINGS) / MB
    total = after / MB if meetings == FULL_MEETINGS else projected
    return {
        "meetings": meetings,
        "participants": participants,
        "records": probe["records"],
        "baseline_mb": baseline / MB,
        "built_mb": built / MB,
        "after_gc_mb": after / MB,
        "engine_mb": (after - baseline) / MB,
        "per_meeting_kb": per_meeting / 1024,
        "projected_mb_at_full_size": projected,
        "full_size_meetings": FULL_MEETINGS,
        "measured_at_full_size": meetings == FULL_MEETINGS,
        "target_mb": TARGET_MEMORY_MB,
        "verdict": verdict(total < TARGET_MEMORY_MB) if after > 0 else "n/a (no /proc)",
        "traced_mb": traced["traced_mb"],
        "top_allocations": traced["top_allocations"],
    }


def render_memory(r: dict[str, Any]) -> list[str]:
    lines = [
        f"  {r['meetings']:,} meetings of {r['participants']} participants "
        f"({r['records']:,} records in the memory store), in a fresh process; RSS in MB (2^20)",
        "",
        f"  {'engine open, empty (baseline)':<40}{r['baseline_mb']:>10.1f}",
        f"  {'holding the meetings':<40}{r['built_mb']:>10.1f}",
        f"  {'  after gc.collect()':<40}{r['after_gc_mb']:>10.1f}"
        + (f"   target < {r['target_mb']}: {r['verdict']}" if r["measured_at_full_size"] else ""),
        f"  {'  growth':<40}{r['engine_mb']:>10.1f}   {r['per_meeting_kb']:.1f} KB per meeting",
    ]
    if not r["measured_at_full_size"]:
        lines.append(
            f"  {'projected for ' + format(r['full_size_meetings'], ',') + ' meetings':<40}"
            f"{r['projected_mb_at_full_size']:>10.1f}   target < {r['target_mb']}: {r['verdict']}"
        )
    lines += ["", f"  where the growth is (tracemalloc, {r['traced_mb']:.1f} MB traced):"]
    for row in r["top_allocations"]:
        lines.append(
            f"  {row['mb']:>8.1f} MB {row['blocks']:>9,}  {row['where']:<28} {row['code'][:60]}"
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
    Section(
        "engine",
        "Engine.execute on the memory store, beside an eventsourcing Application",
        engine,
        render_engine,
    ),
    Section(
        "replay",
        "fold_jsonl / fold_msgpack over a log with causes: decode + evolve",
        replay,
        render_replay,
    ),
    Section(
        "memory",
        "RSS of an engine holding 10,000 meetings of 10 participants",
        memory,
        render_memory,
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
        "targets": {
            "churn_commands_per_s": TARGET_COMMANDS_PER_S,
            "engine_commands_per_s": TARGET_ENGINE_COMMANDS_PER_S,
            "engine_ratio_to_eventsourcing": TARGET_ENGINE_RATIO,
            "replay_events_per_s": TARGET_REPLAY_EVENTS_PER_S,
            "memory_mb": TARGET_MEMORY_MB,
        },
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
