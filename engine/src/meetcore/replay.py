"""Replaying a log: fold each meeting's records, check the log's invariants, decide its
commands again (`docs/replay.md`). `meetcore replay` is this with a printer; an
application can feed `Replay` the records of any source (`read_jsonl`, a store's
`read_all`) and look at each step itself.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from meetcore._codes import Rejected
from meetcore._decider import InvalidLog, _evolve, decide
from meetcore._record import Record
from meetcore._state import MeetingState
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent

__all__ = ["BadRecord", "Difference", "Replay"]


class BadRecord(Exception):
    """A record that breaks the log's invariants."""

    def __init__(self, record: Record, reason: str) -> None:
        super().__init__(
            f"position {record.position} (meeting {record.meeting_id}, "
            f"version {record.version}): {reason}"
        )
        self.record = record
        self.reason = reason


class Difference(msgspec.Struct, kw_only=True, rename="camel", tag_field="kind", tag="difference"):
    """A command whose events today's `decide` gives differently from the log."""

    position: int
    meeting_id: str
    version: int
    command: AnyCommand
    recorded: list[AnyEvent]
    now: list[AnyEvent] | None
    rejected: str | None


class _Track:
    """One meeting as the replay goes: its state, and the command group being read."""

    __slots__ = ("cause", "first", "last", "now", "recorded", "state", "stopped")

    def __init__(self) -> None:
        self.state: MeetingState | None = None
        self.last: Record | None = None  # the latest record applied
        self.first: Record | None = None  # the first record of the current group
        self.cause: AnyCommand | None = None
        self.recorded: list[AnyEvent] = []
        self.now: tuple[AnyEvent, ...] | str = ()  # what decide says today, or why it refused
        self.stopped = False  # a record past --until was seen


class Replay:
    """Folds records into their meetings with `evolve`, in the order given (`feed` each
    record, then `finish`; `states()` are the meetings as they are then).

    With `verify`, checks every invariant of the log and raises `BadRecord` at
    the first record that breaks one (without it, only what `evolve` refuses).
    With `recheck`, decides each recorded command again against the state before
    it and reports each `Difference` to `on_difference`. `on_step(record, state)` is
    called after each record with the meeting's state, which the replay changes in
    place as it goes on: `copy()` it to keep it.
    """

    def __init__(
        self,
        *,
        verify: bool = False,
        recheck: bool = False,
        on_step: Callable[[Record, MeetingState], None] | None = None,
        on_difference: Callable[[Difference], None] | None = None,
    ) -> None:
        self.verify = verify
        self.recheck = recheck
        self.on_step = on_step
        self.on_difference = on_difference
        self.tracks: dict[str, _Track] = {}
        self.records = 0
        self.commands = 0  # command groups rechecked
        self.skipped = 0  # records with no cause, which cannot be rechecked
        self.differences = 0
        self._position: int | None = None

    def feed(self, record: Record) -> None:
        track = self.tracks.get(record.meeting_id)
        if track is None:
            track = self.tracks[record.meeting_id] = _Track()
        starts = track.last is None or record.cause != track.cause
        if starts:
            self._close(track)
        if self.verify:
            self._check(record, track)
        if starts:
            track.first, track.cause = record, record.cause
            if self.recheck:
                self._decide(track)
        try:
            track.state = _evolve(track.state, record.event)
        except InvalidLog as exc:
            raise BadRecord(record, str(exc)) from None
        track.last = record
        self.records += 1
        if self.recheck:
            track.recorded.append(record.event)
        if self.on_step is not None:
            self.on_step(record, track.state)

    def beyond(self, record: Record) -> None:
        """`record` is past where the replay stops: if it belongs to the command being
        read, that command is cut short and its boundary checks and recheck are skipped."""
        track = self.tracks.get(record.meeting_id)
        if track is not None and not track.stopped:
            track.stopped = True
            if track.first is not None and record.cause == track.cause:
                track.first = None
                track.recorded = []

    def states(self) -> dict[str, MeetingState]:
        """Each meeting replayed so far, as it is now (copies)."""
        return {m: t.state.copy() for m, t in self.tracks.items() if t.state is not None}

    def finish(self) -> None:
        """Close every meeting's last command group (its checks and its recheck)."""
        for track in self.tracks.values():
            self._close(track)

    def _check(self, record: Record, track: _Track) -> None:
        version = record.version
        expected = track.last.version + 1 if track.last is not None else 1
        if version != expected:
            if expected == 1:
                why = f"the meeting's first record is version {version}, not 1"
            elif version < expected:
                why = f"version {version} again: the meeting is at version {expected - 1} already"
            elif version == expected + 1:
                why = f"version {expected} is missing"
            else:
                why = f"versions {expected} to {version - 1} are missing"
            raise BadRecord(record, why)
        if self._position is not None and record.position <= self._position:
            raise BadRecord(record, f"its position does not follow position {self._position}")
        self._position = record.position
        if record.event.meeting_id != record.meeting_id:
            raise BadRecord(record, f"its event belongs to meeting {record.event.meeting_id!r}")
        if record.cause is not None and record.cause.meeting_id != record.meeting_id:
            raise BadRecord(
                record, f"its cause is a command for meeting {record.cause.meeting_id!r}"
            )

    def _close(self, track: _Track) -> None:
        """The end of a group of records with one cause: a command boundary."""
        state, last = track.state, track.last
        if state is None or last is None or track.first is None:
            return
        if self.verify and (state.session_id is not None) != bool(state.participants):
            if state.session_id is not None:
                why = f"session {state.session_id!r} is still open with nobody in it"
            else:
                why = f"{len(state.participants)} participants are in but no session is open"
            raise BadRecord(last, f"after this command {why}")
        if self.recheck:
            cause = track.cause
            if cause is None:
                self.skipped += len(track.recorded)
            else:
                self.commands += 1
                if track.now != tuple(track.recorded):
                    self.differences += 1
                    if self.on_difference is not None:
                        now = track.now
                        self.on_difference(
                            Difference(
                                position=track.first.position,
                                meeting_id=track.first.meeting_id,
                                version=track.first.version,
                                command=cause,
                                recorded=list(track.recorded),
                                now=None if isinstance(now, str) else list(now),
                                rejected=now if isinstance(now, str) else None,
                            )
                        )
        track.recorded = []
        track.first = None

    def _decide(self, track: _Track) -> None:
        if track.cause is None:
            track.now = ()
            return
        try:
            track.now = decide(track.state, track.cause)
        except Rejected as rejected:
            track.now = str(rejected)
        except Exception as exc:  # a bug in decide: report it as what today's code does
            track.now = f"decide raised {type(exc).__name__}: {exc}"
