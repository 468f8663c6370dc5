"""The `meetcore` command line, through click's CliRunner and as a real process.

The example logs in docs/examples are made here, by real commands run through an
`Engine` on a memory store with a fake clock; a test regenerates them and fails
when the committed files differ. `uv run python tests/cli/test_cli.py` rewrites them.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import anyio
import click
import msgspec
import pluggy
import pytest
from click.testing import CliRunner, Result

import meetcore
import meetcore_sqlite
from meetcore import Engine, MemoryStore, Record, Rejected, StoreError, hookimpl
from meetcore.cli import build_cli
from meetcore.commands import (
    AnyCommand,
    End,
    InitMeeting,
    Join,
    Leave,
    RespondEntry,
    SetMedia,
)
from meetcore.events import AnyEvent, ParticipantJoined, ParticipantLeft

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
MEETING = EXAMPLES / "meeting.jsonl"
TAMPERED = EXAMPLES / "tampered.jsonl"
CHANGED = EXAMPLES / "changed.jsonl"
MID = "abc-def-ghi"
#: 2024-06-01T10:00:00Z
START = 1_717_236_000_000
MINUTE = 60_000

# ---------------------------------------------------------------------------
# The example logs


def _join(at: int, pid: str, cid: str, session: str, name: str, **fields: object) -> tuple:
    command = Join(
        meeting_id=MID,
        participant_id=pid,
        connection_id=cid,
        session_id=session,
        name=name,
        **fields,  # type: ignore[arg-type]
    )
    return at, command


def _script() -> list[tuple[int, AnyCommand]]:
    """The seeds' flow, one command a step, at minutes after 10:00 on 2024-06-01."""
    m = MINUTE
    moderator = ("allow_join", "allow_mod")
    day_two = START + 24 * 60 * m - 60 * m  # 2024-06-02T09:00:00Z
    return [
        (-5 * m, InitMeeting(meeting_id=MID)),
        _join(0, "49151", "c-kafka-laptop", "s-1", "Franz Kafka", mic_enabled=True),
        _join(40_000, "max", "c-max", "s-1", "Max Brod", permissions=moderator),
        # Kafka picks up his phone: the laptop's connection is replaced (1011)
        _join(5 * m, "49151", "c-kafka-phone", "s-1", "Franz Kafka"),
        # the laptop's late leave is stale: rejected (3035), not in the log
        (
            5 * m + 1000,
            Leave(meeting_id=MID, participant_id="49151", connection_id="c-kafka-laptop"),
        ),
        _join(7 * m, "felice", "c-felice", "s-1", "Felice Bauer", permissions=("ask_join",)),
        (
            7 * m + 9000,
            RespondEntry(
                meeting_id=MID,
                participant_id="max",
                connection_id="c-max",
                requester_id="felice",
                allowed=True,
            ),
        ),
        (
            7 * m + 30_000,
            SetMedia(
                meeting_id=MID,
                participant_id="felice",
                connection_id="c-felice",
                kind="mic",
                enabled=True,
            ),
        ),
        (
            8 * m,
            SetMedia(
                meeting_id=MID,
                participant_id="49151",
                connection_id="c-kafka-phone",
                kind="webcam",
                enabled=True,
            ),
        ),
        (
            12 * m,
            SetMedia(
                meeting_id=MID,
                participant_id="max",
                connection_id="c-max",
                kind="mic",
                enabled=False,
                target_id="felice",
            ),
        ),
        (
            15 * m,
            SetMedia(
                meeting_id=MID,
                participant_id="felice",
                connection_id="c-felice",
                kind="mic",
                enabled=True,
            ),
        ),
        (45 * m, End(meeting_id=MID, participant_id="max", connection_id="c-max")),
        # the next day, a new session in the same room
        _join(day_two - START, "49151", "c-kafka-desk", "s-2", "Franz Kafka"),
        _join(day_two - START + 20_000, "max", "c-max-2", "s-2", "Max Brod", permissions=moderator),
        (
            day_two - START + 30 * m,
            Leave(meeting_id=MID, participant_id="49151", connection_id="c-kafka-desk"),
        ),
        (
            day_two - START + 31 * m,
            Leave(
                meeting_id=MID,
                participant_id="max",
                connection_id="c-max-2",
                reason=meetcore.LeaveReason.WEBSOCKET_DISCONNECTED,
            ),
        ),
    ]


def record(script: Iterable[tuple[int, AnyCommand]], start: int = START) -> list[Record]:
    """Run the commands (at `start` + their offset, in ms) through an Engine on a memory
    store; rejected ones leave no trace, as in production. Returns the store's log."""

    async def go() -> list[Record]:
        now = start
        store = MemoryStore(clock=lambda: now)
        async with Engine.open(
            store=store, clock=lambda: now, autoload=False, sweep_leases=False
        ) as engine:
            for offset, command in script:
                now = start + offset
                with contextlib.suppress(Rejected):
                    await engine.execute(command)
        return await store.read_all(0, limit=1_000_000)

    return anyio.run(go)


def encode(records: Iterable[Record]) -> bytes:
    out = io.BytesIO()
    meetcore.write_jsonl(records, out)
    return out.getvalue()


def decode(log: bytes) -> list[Record]:
    return list(meetcore.read_jsonl(log.splitlines()))


def example_log() -> bytes:
    return encode(record(_script()))


def tampered_log(log: bytes) -> bytes:
    """The example with one record edited: when the moderator ends the meeting, Kafka's
    leave names his stale laptop connection instead of the phone he is on."""
    records = decode(log)
    for i, r in enumerate(records):
        event = r.event
        if isinstance(event, ParticipantLeft) and event.connection_id == "c-kafka-phone":
            event = msgspec.structs.replace(event, connection_id="c-kafka-laptop")
            records[i] = msgspec.structs.replace(r, event=event)
    return encode(records)


def changed_log(log: bytes) -> bytes:
    """The example as if older code had decided two commands differently: the Join
    admitted by the moderator wrote the name in capitals, and End let a participant
    who is no moderator end the meeting for everyone."""
    records = decode(log)
    joined = records[8].event
    assert isinstance(joined, ParticipantJoined)
    records = edited(records, 8, event=msgspec.structs.replace(joined, name="FELICE BAUER"))
    end = records[13].cause
    assert isinstance(end, End)
    not_mod = msgspec.structs.replace(end, participant_id="felice", connection_id="c-felice")
    for i in range(13, 17):
        records = edited(records, i, cause=not_mod)
    return encode(records)


def write_examples() -> None:
    EXAMPLES.mkdir(parents=True, exist_ok=True)
    log = example_log()
    MEETING.write_bytes(log)
    TAMPERED.write_bytes(tampered_log(log))
    CHANGED.write_bytes(changed_log(log))


def test_example_logs_are_current() -> None:
    log = example_log()
    assert example_log() == log, "the example log is not deterministic"
    hint = "run `uv run python tests/cli/test_cli.py` to rewrite docs/examples"
    assert MEETING.read_bytes() == log, hint
    assert TAMPERED.read_bytes() == tampered_log(log), hint
    assert CHANGED.read_bytes() == changed_log(log), hint


def test_the_example_log_tells_the_seeds_story() -> None:
    records = decode(MEETING.read_bytes())
    assert [r.version for r in records] == list(range(1, len(records) + 1))
    reasons = [r.event.reason for r in records if isinstance(r.event, ParticipantLeft)]
    assert reasons == [1011, 1008, 1008, 1008, 1101, 1001]
    joined = {r.event.participant_id for r in records if isinstance(r.event, ParticipantJoined)}
    assert joined == {"49151", "max", "felice"}
    # the stale leave was rejected: nothing in the log came from it
    assert not any(
        isinstance(r.cause, Leave) and r.cause.connection_id == "c-kafka-laptop" for r in records
    )


# ---------------------------------------------------------------------------
# Helpers


def two_meetings() -> list[Record]:
    """Two meetings interleaved in one log."""
    other = "xyz-uvw-rst"
    script: list[tuple[int, AnyCommand]] = [
        (0, InitMeeting(meeting_id=MID)),
        (1, InitMeeting(meeting_id=other)),
        _join(2, "49151", "c-1", "s-1", "Franz Kafka"),
        (
            3,
            Join(
                meeting_id=other,
                participant_id="ottla",
                connection_id="c-2",
                session_id="s-9",
                name="Ottla",
            ),
        ),
        (4, Leave(meeting_id=MID, participant_id="49151", connection_id="c-1")),
    ]
    return record((offset * 1000, command) for offset, command in script)


class ListStore:
    """An `EventStore` over a list of records, for the store-URL paths."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = list(records)
        self.closed = False

    async def append(self, *args: object) -> list[Record]:
        raise AssertionError("the command line only reads stores; it must never append")

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        return [r for r in self.records if r.meeting_id == meeting_id and r.version > after_version]

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        return [r for r in self.records if r.position > after_position][:limit]

    async def close(self) -> None:
        self.closed = True


class BrokenStore(ListStore):
    def __init__(self, error: Exception) -> None:
        super().__init__([])
        self.error = error

    async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
        raise self.error

    async def read(self, meeting_id: str, after_version: int = 0) -> list[Record]:
        raise self.error


class StorePlugin:
    """Opens `test://example` (the example log), `test://two`, `test://empty`, and
    `test://lost` and `test://crash`, whose reads fail."""

    def __init__(self) -> None:
        self.opened: list[ListStore] = []
        self.example = decode(MEETING.read_bytes())
        self.two = two_meetings()  # not from inside the store's event loop

    @hookimpl
    def meetcore_open_store(self, url: str) -> ListStore | None:
        if not url.startswith("test://"):
            return None
        stores = {
            "example": lambda: ListStore(self.example),
            "two": lambda: ListStore(self.two),
            "empty": lambda: ListStore([]),
            "lost": lambda: BrokenStore(StoreError("the database is gone")),
            "crash": lambda: BrokenStore(RuntimeError("boom")),
        }
        store = stores[url.removeprefix("test://")]()
        self.opened.append(store)
        return store


def manager(*plugins: object) -> pluggy.PluginManager:
    return meetcore.plugin_manager(plugins, autoload=False)


def run(
    *args: str | Path, input: bytes | None = None, pm: pluggy.PluginManager | None = None
) -> Result:
    cli = build_cli(pm if pm is not None else manager(StorePlugin()))
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, prog_name="meetcore")


def failed(result: Result, code: int) -> str:
    """Check the command failed with `code` and one line on stderr; returns the line."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("meetcore: error: ")
    return lines[0].removeprefix("meetcore: error: ")


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def edited(records: list[Record], index: int, **fields: object) -> list[Record]:
    records = list(records)
    records[index] = msgspec.structs.replace(records[index], **fields)
    return records


def write(tmp_path: Path, records: Iterable[Record], name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(encode(records))
    return path


@pytest.fixture(scope="module")
def example() -> list[Record]:
    return decode(MEETING.read_bytes())


# ---------------------------------------------------------------------------
# replay


def test_replay_shows_the_timeline_and_the_final_state() -> None:
    result = run("replay", MEETING)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["position", "meeting", "version", "time", "event", "joined", "who"]
    assert lines[1].split()[:5] == [
        "1",
        MID,
        "1",
        "2024-06-01T09:55:00.000Z",
        "meeting-initialized",
    ]
    left = next(line for line in lines if "1011" in line)
    assert left.split() == [
        "5",
        MID,
        "5",
        "2024-06-01T10:05:00.000Z",
        "participant-left",
        "1",
        "49151",
        "on",
        "c-kafka-laptop:",
        "1011",
        "DUPLICATE_PARTICIPANT",
    ]
    assert sum(1 for line in lines if re.match(r"\s+\d+\s+abc", line)) == 23
    assert lines[-3:] == [
        "meeting abc-def-ghi at version 23 (2024-06-02T09:31:00.000Z): active, no session open",
        "  room: autoClose=session-ends duplicatePolicy=replace",
        "  participants: none",
    ]
    assert result.stderr == ""


def test_replay_until_stops_at_a_version() -> None:
    result = run("replay", MEETING, "--meeting", MID, "--until", "9")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["position", "version"]  # no meeting column
    assert [line.split()[1] for line in lines[1:10]] == [str(v) for v in range(1, 10)]
    assert "at version 9 (2024-06-01T10:07:09.000Z): active, session s-1 open since" in lines[11]
    assert lines[13] == "  participants (3):"
    assert lines[14].split()[:4] == ["max", "c-max", '"Max', 'Brod"']
    assert lines[15].split()[:2] == ["49151", "c-kafka-phone"]
    assert lines[16].split()[:2] == ["felice", "c-felice"]
    assert len(lines) == 17


def test_until_in_the_middle_of_a_command_is_not_a_broken_invariant() -> None:
    # version 2 (session-started) and 3 (participant-joined) come from one Join
    result = run("replay", MEETING, "--until", "2")
    assert "session s-1 open since" in result.stdout
    assert "participants: none" in result.stdout
    for args in (["--until", "2"], ["--until", "2", "--meeting", MID]):
        result = run("replay", MEETING, "--verify", "--recheck", *args)
        assert result.exit_code == 0, result.output
        assert "verified 2 records of 1 meeting: OK" in result.stdout
        assert "rechecked 1 command (2 records) of 1 meeting: identical" in result.stdout


def test_until_reads_no_further_than_it_needs(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(MEETING.read_bytes() + b"this line is not a record\n")
    assert run("replay", log, "--meeting", MID, "--until", "9").exit_code == 0
    assert failed(run("replay", log), 1).startswith(f"{log}:24: not a meetcore record")


def test_replay_of_several_meetings(tmp_path: Path) -> None:
    log = write(tmp_path, two_meetings())
    result = run("replay", log)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines[1:8]] == [
        MID,
        "xyz-uvw-rst",
        MID,
        MID,
        "xyz-uvw-rst",
        "xyz-uvw-rst",
        MID,
    ]
    states = [line for line in lines if line.startswith("meeting ")]
    assert [s.split()[1] for s in states] == [MID, "xyz-uvw-rst"]
    assert "session s-9 open" in states[1]

    result = run("replay", log, "--meeting", "xyz-uvw-rst")
    assert result.exit_code == 0, result.output
    assert MID not in result.stdout
    assert len(result.stdout.splitlines()) == 1 + 3 + 1 + 4

    result = run("replay", log, "--until", "1", "--json")
    assert [(e["meetingId"], e["version"]) for e in json_lines(result.stdout)] == [
        (MID, 1),
        ("xyz-uvw-rst", 1),
        (MID, 1),
        ("xyz-uvw-rst", 1),
    ]
    result = run("replay", log, "--verify")
    assert result.stdout == "verified 8 records of 2 meetings: OK\n"


def test_replay_json_is_json_lines_of_records_then_states(example: list[Record]) -> None:
    result = run("replay", MEETING, "--json")
    assert result.exit_code == 0, result.output
    entries = json_lines(result.stdout)
    assert [e["kind"] for e in entries] == ["record"] * 23 + ["state"]
    step = entries[4]
    assert step["position"] == 5
    assert step["meetingId"] == MID
    assert step["version"] == 5
    assert step["time"] == "2024-06-01T10:05:00.000Z"
    assert step["participants"] == 1
    event = msgspec.json.decode(json.dumps(step["event"]), type=AnyEvent)
    assert event == example[4].event
    final = entries[-1]
    assert final["version"] == 23
    assert final["time"] == "2024-06-02T09:31:00.000Z"
    state = msgspec.json.decode(json.dumps(final["state"]), type=meetcore.MeetingState)
    assert state == meetcore.fold(r.event for r in example)


def test_replay_reads_stdin_and_gzip(tmp_path: Path) -> None:
    result = run("replay", "-", "--verify", input=MEETING.read_bytes())
    assert result.stdout == "verified 23 records of 1 meeting: OK\n"
    packed = tmp_path / "meeting.jsonl.gz"
    packed.write_bytes(gzip.compress(MEETING.read_bytes()))
    assert run("replay", packed, "--verify").stdout == "verified 23 records of 1 meeting: OK\n"


def test_replay_from_a_store_url() -> None:
    plugin = StorePlugin()
    result = run("replay", "test://example", pm=manager(plugin))
    assert result.exit_code == 0, result.output
    assert result.stdout == run("replay", MEETING).stdout
    assert plugin.opened[0].closed
    result = run("replay", "test://two", "--meeting", "xyz-uvw-rst", "--verify")
    assert result.stdout == "verified 3 records of 1 meeting: OK\n"


def test_a_store_that_repeats_the_last_record_is_paged_through(example: list[Record]) -> None:
    class Repeating(ListStore):  # read_all returns positions >= after_position
        async def read_all(self, after_position: int = 0, limit: int = 1000) -> list[Record]:
            return [r for r in self.records if r.position >= after_position][:limit]

    class Plugin:
        @hookimpl
        def meetcore_open_store(self, url: str) -> ListStore:
            return Repeating(example)

    result = run("replay", "repeat://", "--verify", pm=manager(Plugin()))
    assert result.stdout == "verified 23 records of 1 meeting: OK\n"


# ---------------------------------------------------------------------------
# --verify


def test_verify_a_valid_log() -> None:
    result = run("replay", MEETING, "--verify")
    assert result.exit_code == 0
    assert result.stdout == "verified 23 records of 1 meeting: OK\n"
    assert json_lines(run("replay", MEETING, "--verify", "--json").stdout) == [
        {"kind": "verified", "records": 23, "meetings": 1}
    ]


def test_verify_names_the_tampered_record() -> None:
    result = run("replay", TAMPERED, "--verify")
    assert failed(result, 1) == (
        "position 15 (meeting abc-def-ghi, version 15): "
        "'49151' leaves from a connection it did not join on"
    )
    assert result.stdout == ""
    result = run("replay", TAMPERED, "--verify", "--json")
    assert json_lines(result.stdout) == [
        {
            "kind": "invalid",
            "position": 15,
            "meetingId": MID,
            "version": 15,
            "reason": "'49151' leaves from a connection it did not join on",
        }
    ]
    failed(result, 1)
    # a plain replay stops there too, after showing the records before it
    result = run("replay", TAMPERED)
    assert failed(result, 1).startswith("position 15 ")
    assert len(result.stdout.splitlines()) == 15


def _renumbered(records: list[Record]) -> list[Record]:
    return [msgspec.structs.replace(r, version=i, position=i) for i, r in enumerate(records, 1)]


def at(position: int, version: int) -> str:
    return f"position {position} (meeting {MID}, version {version}): "


def _bad_logs(log: list[Record]) -> dict[str, tuple[list[Record], str]]:
    left = next(i for i, r in enumerate(log) if isinstance(r.event, ParticipantLeft))
    wrong_id = msgspec.structs.replace(log[left].event, participant_id="p2")
    other = msgspec.structs.replace(log[3].event, meeting_id="xyz-uvw-rst")
    cause = log[3].cause
    assert cause is not None
    return {
        "gap": (
            log[:6] + log[7:],
            at(8, 8) + "version 7 is missing",
        ),
        "repeat": (
            log[:6] + log[5:],
            at(6, 6) + "version 6 again: the meeting is at version 6 already",
        ),
        "first": (
            log[1:],
            at(2, 2) + "the meeting's first record is version 2, not 1",
        ),
        "big gap": (
            log[:6] + log[9:],
            at(10, 10) + "versions 7 to 9 are missing",
        ),
        "position": (
            edited(log, 4, position=2),
            at(2, 5) + "its position does not follow position 4",
        ),
        "event meeting": (
            edited(log, 3, event=other),
            at(4, 4) + "its event belongs to meeting 'xyz-uvw-rst'",
        ),
        "cause meeting": (
            edited(log, 3, cause=msgspec.structs.replace(cause, meeting_id="xyz-uvw-rst")),
            at(4, 4) + "its cause is a command for meeting 'xyz-uvw-rst'",
        ),
        "not there": (
            edited(log, left, event=wrong_id),
            at(5, 5) + "ParticipantLeft names 'p2', who is not there",
        ),
        "empty session": (
            _renumbered(log[:2] + log[3:]),
            at(2, 2) + "after this command session 's-1' is still open with nobody in it",
        ),
        "session never ends": (
            _renumbered(log[:16] + log[17:]),
            at(16, 16) + "after this command session 's-1' is still open with nobody in it",
        ),
        "joined twice": (
            _renumbered(log[:3] + log[2:]),
            at(4, 4) + "'49151' joins",  # evolve's message goes on
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "gap",
        "big gap",
        "repeat",
        "first",
        "position",
        "event meeting",
        "cause meeting",
        "not there",
        "empty session",
        "session never ends",
        "joined twice",
    ],
)
def test_verify_finds_a_broken_invariant(tmp_path: Path, example: list[Record], case: str) -> None:
    records, message = _bad_logs(example)[case]
    assert failed(run("replay", write(tmp_path, records), "--verify"), 1).startswith(message)


def test_verify_without_causes(tmp_path: Path, example: list[Record]) -> None:
    log = write(tmp_path, [msgspec.structs.replace(r, cause=None) for r in example])
    result = run("replay", log, "--verify", "--recheck")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "verified 23 records of 1 meeting: OK",
        "rechecked 0 commands (23 records) of 1 meeting: identical "
        "(23 records without a cause skipped)",
    ]


# ---------------------------------------------------------------------------
# --recheck


def test_recheck_an_unchanged_log() -> None:
    result = run("replay", MEETING, "--recheck")
    assert result.exit_code == 0, result.output
    assert result.stdout == "rechecked 15 commands (23 records) of 1 meeting: identical\n"
    assert json_lines(run("replay", MEETING, "--recheck", "--json").stdout) == [
        {
            "kind": "rechecked",
            "commands": 15,
            "records": 23,
            "meetings": 1,
            "differences": 0,
            "skipped": 0,
        }
    ]


def test_recheck_reports_what_todays_code_decides_differently() -> None:
    log = CHANGED
    result = run("replay", log, "--recheck")
    assert result.exit_code == 1
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "position 8 (meeting abc-def-ghi, version 8): respond-entry by max on c-max",
        "  recorded: entry-responded, participant-joined",
        "  now:      entry-responded, participant-joined",
        lines[3],
    ]
    assert lines[3].startswith("  event 2 recorded: ") and "FELICE BAUER" in lines[3]
    assert lines[4].startswith("  event 2 now:      ") and '"Felice Bauer"' in lines[4]
    assert lines[5:7] == [
        "position 14 (meeting abc-def-ghi, version 14): end by felice on c-felice",
        "  recorded: participant-left, participant-left, participant-left, session-ended",
    ]
    assert lines[7].startswith("  now:      rejected, 4025 UNAUTHORIZED_REQUEST: ")
    assert lines[8:] == ["rechecked 15 commands (23 records) of 1 meeting: 2 differ"]

    entries = json_lines(run("replay", log, "--recheck", "--json").stdout)
    assert [e["kind"] for e in entries] == ["difference", "difference", "rechecked"]
    first, second, summary = entries
    assert first["position"] == 8
    assert first["command"]["type"] == "respond-entry"  # type: ignore[index]
    assert [e["name"] for e in first["recorded"][1:]] == ["FELICE BAUER"]  # type: ignore[index]
    assert [e["name"] for e in first["now"][1:]] == ["Felice Bauer"]  # type: ignore[index]
    assert first["rejected"] is None
    assert second["now"] is None
    assert str(second["rejected"]).startswith("4025 ")
    assert summary["differences"] == 2

    both = run("replay", log, "--recheck", "--verify")
    assert both.exit_code == 1
    assert "verified 23 records of 1 meeting: OK" in both.stdout


# ---------------------------------------------------------------------------
# export and inspect


def test_export_writes_the_store_as_json_lines(tmp_path: Path) -> None:
    result = run("export", "--store", "test://example")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == MEETING.read_bytes()

    result = run("export", "--store", "test://two", "--meeting", "xyz-uvw-rst")
    assert [r.meeting_id for r in decode(result.stdout_bytes)] == ["xyz-uvw-rst"] * 3

    out = tmp_path / "out.jsonl"
    result = run("export", "--store", "test://example", "--meeting", MID, "--output", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == MEETING.read_bytes()
    assert result.stderr == f"wrote 23 records to {out}\n"
    assert not (tmp_path / "out.jsonl.part").exists()

    result = run("export", "--store", "test://empty")
    assert result.exit_code == 0
    assert result.stdout_bytes == b""


def test_export_errors(tmp_path: Path) -> None:
    assert failed(run("export", "--store", "test://example", "--meeting", "nope"), 1) == (
        "meeting 'nope' is not in test://example"
    )
    assert "cannot write" in failed(
        run("export", "--store", "test://example", "-o", tmp_path / "no" / "such" / "f"), 2
    )
    assert failed(run("export", "--store", "test://lost"), 1) == (
        "store test://lost: the database is gone"
    )
    assert failed(run("export", "--store", "test://crash"), 1) == (
        "store test://crash: RuntimeError: boom"
    )
    assert failed(run("export"), 2).startswith("Missing argument 'SOURCE': a JSON Lines file")
    assert failed(run("export", "--store", tmp_path / "meetcore.db"), 2) == (
        f"cannot read {tmp_path / 'meetcore.db'}: No such file or directory"
    )
    assert failed(run("export", "--store", "nosuch://x"), 2) == (
        "no plugin opens nosuch:// store URLs (is its plugin installed?)"
    )


def test_inspect_shows_the_current_state() -> None:
    result = run("inspect", "--store", "test://two", "--meeting", "xyz-uvw-rst")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("meeting xyz-uvw-rst at version 3 (")
    assert "session s-9 open since" in lines[0]
    assert lines[2] == "  participants (1):"
    assert lines[3].split()[:3] == ["ottla", "c-2", '"Ottla"']

    result = run("inspect", "--store", "test://example", "--meeting", MID, "--json")
    document = json.loads(result.stdout)
    assert document["kind"] == "state"
    assert document["version"] == 23
    assert document["state"]["meetingId"] == MID
    assert document["state"]["participants"] == {}


def test_inspect_errors() -> None:
    assert failed(run("inspect", "--store", "test://example", "--meeting", "nope"), 1) == (
        "meeting 'nope' is not in test://example"
    )
    assert "Missing option '--meeting'" in failed(run("inspect", "--store", "test://example"), 2)
    assert failed(run("inspect", "--store", "test://lost", "--meeting", MID), 1) == (
        "store test://lost: the database is gone"
    )


# ---------------------------------------------------------------------------
# plugins, schemas, and commands from plugins


class Greeter:
    """A plugin that adds a command and vetoes nothing."""

    @hookimpl
    def meetcore_register_commands(self, cli: click.Group) -> None:
        @cli.command()
        @click.pass_obj
        def hello(pm: pluggy.PluginManager) -> None:
            """Say hello."""
            click.echo(f"hello from a plugin; {len(pm.get_plugins())} plugins")

    @hookimpl
    def meetcore_check_command(self, command: object, state: object, principal: object) -> None:
        return None


def test_plugins_can_add_commands() -> None:
    result = run("hello", pm=manager(Greeter()))
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello from a plugin; 2 plugins\n"
    assert "hello" in run("--help", pm=manager(Greeter())).stdout
    assert failed(run("hello"), 2).startswith("No such command 'hello'")


def test_plugins_lists_plugins_and_their_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    greeter = Greeter()
    pm = manager(greeter)

    class Dist:
        project_name = "meetcore-greeter"
        version = "1.2.3"

    monkeypatch.setattr(pm, "list_plugin_distinfo", lambda: [(greeter, Dist())])
    result = run("plugins", pm=pm)
    assert result.exit_code == 0, result.output
    rows = [line.split(None, 2) for line in result.stdout.splitlines()]
    assert rows[0] == ["plugin", "from", "hooks"]
    assert rows[1] == ["meetcore.memory", "built-in", "meetcore_open_store"]
    assert rows[2][1:] == [
        "meetcore-greeter",
        "1.2.3  meetcore_check_command, meetcore_register_commands",
    ]

    plugins = json.loads(run("plugins", "--json", pm=pm).stdout)
    assert plugins == [
        {
            "name": "meetcore.memory",
            "builtin": True,
            "distribution": None,
            "hooks": ["meetcore_open_store"],
        },
        {
            "name": plugins[1]["name"],
            "builtin": False,
            "distribution": {"name": "meetcore-greeter", "version": "1.2.3"},
            "hooks": ["meetcore_check_command", "meetcore_register_commands"],
        },
    ]
    result = run("plugins", pm=manager(StorePlugin()))
    assert result.stdout.splitlines()[2].split()[1:] == ["registered", "meetcore_open_store"]


def test_schemas_writes_and_checks(tmp_path: Path) -> None:
    target = tmp_path / "schemas"
    result = run("schemas", "--check", "--dir", target)
    assert failed(result, 1) == (
        f"stale schemas in {target}: commands.json, events.json, record.json "
        f"(run 'meetcore schemas --dir {target}' to rewrite them)"
    )
    result = run("schemas", "--dir", target)
    assert result.exit_code == 0
    assert result.stdout == f"wrote commands.json, events.json, record.json to {target}\n"
    assert sorted(p.name for p in target.iterdir()) == [
        "commands.json",
        "events.json",
        "record.json",
    ]
    assert run("schemas", "--dir", target).stdout == f"schemas in {target} are up to date\n"
    assert run("schemas", "--check", "--dir", target).exit_code == 0
    (target / "events.json").write_text("{}")
    assert "events.json" in failed(run("schemas", "--check", "--dir", target), 1)
    assert run("schemas", "--dir", target).stdout == f"wrote events.json to {target}\n"
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert failed(run("schemas", "--dir", blocker / "x"), 2).startswith(
        f"cannot write schemas to {blocker / 'x'}"
    )


def test_the_group_helps_and_tells_its_version() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("replay", "export", "inspect", "plugins", "schemas"):
        assert name in result.stdout
    assert "Usage: meetcore" in run().output
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("meetcore, version ")
    assert run("replay", "--help").exit_code == 0


def test_main_reports_a_plugin_that_fails_to_load(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import meetcore.cli

    def broken(*args: object, **kwargs: object) -> pluggy.PluginManager:
        raise pluggy.PluginValidationError(object(), "unknown hook 'meetcore_nope'")

    monkeypatch.setattr(meetcore.cli, "plugin_manager", broken)
    with pytest.raises(SystemExit) as exit:
        meetcore.cli.main(["plugins"])
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("meetcore: error: a plugin failed to load: PluginValidationError: ")
    assert "MEETCORE_DISABLE_PLUGIN_AUTOLOAD=1" in err


# ---------------------------------------------------------------------------
# Hostile input: one line, the right exit code, never a traceback


def _hostile(tmp_path: Path) -> dict[str, tuple[list[str], int, str]]:
    def file(name: str, content: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(content)
        return str(path)

    good = MEETING.read_bytes().splitlines(keepends=True)
    return {
        "missing file": (
            ["replay", str(tmp_path / "nope.jsonl")],
            2,
            "cannot read .*nope.jsonl: No such file or directory",
        ),
        "directory": (["replay", str(tmp_path)], 2, "cannot read .*: Is a directory"),
        "empty file": (["replay", file("empty.jsonl", b"")], 1, ".*empty.jsonl holds no records"),
        "blank lines": (
            ["replay", file("blank.jsonl", b"\n  \n\n")],
            1,
            ".*blank.jsonl holds no records",
        ),
        "malformed line": (
            ["replay", file("bad.jsonl", good[0] + b'{"meetingId": "abc-def-ghi", "vers\n')],
            1,
            r".*bad.jsonl:2: not a meetcore record: JSON is malformed: .*",
        ),
        "json, not a record": (
            ["replay", file("json.jsonl", b'{"hello": "world"}\n')],
            1,
            r".*json.jsonl:1: not a meetcore record: Object missing required field `meetingId`",
        ),
        "a record of something else": (
            [
                "replay",
                file("other.jsonl", good[0].replace(b"meeting-initialized", b"meeting-exploded")),
            ],
            1,
            r".*other.jsonl:1: not a meetcore record: "
            r"Invalid value 'meeting-exploded' - at `\$.event.type`",
        ),
        "binary garbage": (
            ["replay", file("garbage.bin", bytes(range(256)) * 64)],
            1,
            r".*garbage.bin:1: not a meetcore record: .*",
        ),
        "not utf-8": (
            [
                "replay",
                file("latin1.jsonl", good[2].replace(b"Franz Kafka", "Fränz".encode("latin-1"))),
            ],
            1,
            r".*latin1.jsonl:1: not a meetcore record: not UTF-8 text "
            rf"\(byte {good[2].index(b'Franz') + 3} of the line\)",
        ),
        "huge line": (
            ["replay", file("huge.jsonl", good[0] + b"[" + b"1," * (1 << 20) + b"1]\n")],
            1,
            r".*huge.jsonl:2: not a meetcore record: the line is longer than 1 MiB",
        ),
        "broken gzip": (
            ["replay", file("log.jsonl.gz", gzip.compress(MEETING.read_bytes())[:-40])],
            1,
            r"cannot read .*log.jsonl.gz: "
            r"Compressed file ended before the end-of-stream marker was reached",
        ),
        "not gzip": (
            ["replay", file("plain.gz", MEETING.read_bytes())],
            1,
            r"cannot read .*plain.gz: Not a gzipped file .*",
        ),
        "unknown meeting": (
            ["replay", str(MEETING), "--meeting", "nope"],
            1,
            r"no records of meeting 'nope' in .*meeting.jsonl",
        ),
        "unknown scheme": (
            ["replay", "postgresql://db/meetcore"],
            2,
            r"no plugin opens postgresql:// store URLs \(is its plugin installed\?\)",
        ),
        "empty store": (["replay", "test://empty"], 1, r"test://empty holds no records"),
        "failing store": (["replay", "test://lost"], 1, r"store test://lost: the database is gone"),
        "bad --until": (
            ["replay", str(MEETING), "--until", "0"],
            2,
            r"Invalid value for '--until': 0 is not in the range x>=1. "
            r"\(see 'meetcore replay --help'\)",
        ),
        "not a number": (
            ["replay", str(MEETING), "--until", "soon"],
            2,
            r"Invalid value for '--until': .*",
        ),
        "unknown option": (["replay", str(MEETING), "--fast"], 2, r"No such option '--fast'.*"),
        "missing source": (
            ["replay"],
            2,
            r"Missing argument 'SOURCE': a JSON Lines file, - for stdin, or a store such as "
            r"sqlite:///meetcore.db \(see 'meetcore replay --help'\)",
        ),
        "unknown command": (["replay-all"], 2, r"No such command 'replay-all'.*"),
    }


HOSTILE = [
    "missing file",
    "directory",
    "empty file",
    "blank lines",
    "malformed line",
    "json, not a record",
    "a record of something else",
    "binary garbage",
    "not utf-8",
    "huge line",
    "broken gzip",
    "not gzip",
    "unknown meeting",
    "unknown scheme",
    "empty store",
    "failing store",
    "bad --until",
    "not a number",
    "unknown option",
    "missing source",
    "unknown command",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_is_one_clear_line(tmp_path: Path, case: str) -> None:
    args, code, pattern = _hostile(tmp_path)[case]
    line = failed(run(*args), code)
    assert re.fullmatch(pattern, line), line
    for flag in ("--verify", "--recheck", "--json"):
        if args[0] == "replay" and code == 1:
            assert failed(run(*args, flag), code) == line


def test_unprintable_ids_in_a_log_do_not_break_the_lines(
    tmp_path: Path, example: list[Record]
) -> None:
    odd = "49151\n\x1b[2J"
    records = [
        msgspec.structs.replace(r, event=msgspec.structs.replace(r.event, participant_id=odd))
        if getattr(r.event, "participant_id", None) == "49151"
        else r
        for r in example
    ]
    result = run("replay", write(tmp_path, records), "--until", "9")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(
        run("replay", MEETING, "--until", "9").stdout.splitlines()
    )
    assert "\x1b" not in result.stdout
    assert "'49151\\n\\x1b[2J'" in result.stdout


def test_hostile_cases_are_all_tested(tmp_path: Path) -> None:
    assert sorted(_hostile(tmp_path)) == sorted(HOSTILE)


# ---------------------------------------------------------------------------
# As a real process


def _process(*args: str | Path, script: bool = False) -> subprocess.CompletedProcess[str]:
    if script:
        command = [str(Path(sys.executable).parent / "meetcore")]
    else:
        command = [sys.executable, "-m", "meetcore.cli"]
    env = {**os.environ, "MEETCORE_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )


def test_as_a_process_python_m() -> None:
    done = _process("replay", "docs/examples/meeting.jsonl", "--verify", "--recheck")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "verified 23 records of 1 meeting: OK\n"
        "rechecked 15 commands (23 records) of 1 meeting: identical\n"
    )
    done = _process("replay", "docs/examples/tampered.jsonl", "--verify")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "meetcore: error: position 15 (meeting abc-def-ghi, version 15): "
        "'49151' leaves from a connection it did not join on\n"
    )


def test_as_the_console_script() -> None:
    done = _process("replay", "docs/examples/nope.jsonl", script=True)
    assert done.returncode == 2
    assert done.stderr == (
        "meetcore: error: cannot read docs/examples/nope.jsonl: No such file or directory\n"
    )
    done = _process("plugins", script=True)
    assert done.returncode == 0, done.stderr
    assert "meetcore.memory" in done.stdout


# ---------------------------------------------------------------------------
# docs/replay.md and docs/storage.md: every `$ meetcore ...` in their console blocks runs,
# with the output shown, in a directory holding docs/examples and meetcore.db (an SQLite
# store that holds meeting.jsonl)

REPLAY_MD = ROOT / "docs" / "replay.md"
STORAGE_MD = ROOT / "docs" / "storage.md"
CONSOLE = re.compile(r"^```console\n(.*?)^```", re.S | re.M)


def _documented(page: Path) -> list[list[tuple[str, int, str]]]:
    """Each console block of `page`, as the (command line, exit code, expected output)
    of each of its `$ meetcore` lines (other commands, such as sqlite3, are left to the
    reader).

    A line `...` in the output stands for any number of lines; a comment `# exit N`
    after the command gives its exit code (0 otherwise).
    """
    blocks = []
    for block in CONSOLE.finditer(page.read_text()):
        examples = []
        command: str | None = None
        output: list[str] = []
        for line in [*block.group(1).splitlines(), "$ "]:
            if line.startswith("$ "):
                if command and command.startswith("meetcore "):
                    code = re.search(r"#\s*exit (\d+)", command)
                    examples.append((command, int(code.group(1)) if code else 0, "\n".join(output)))
                command, output = line[2:].strip(), []
            else:
                output.append(line)
        if examples:
            blocks.append(examples)
    return blocks


def test_docs_show_commands() -> None:
    commands = [c for block in _documented(REPLAY_MD) for c, _, _ in block]
    assert len(commands) >= 8
    for flag in ("--until", "--verify", "--recheck", "--json", "--meeting", "--store"):
        assert any(flag in c for c in commands), flag
    for command in ("meetcore export meetcore.db", "meetcore inspect meetcore.db"):
        assert any(c.startswith(command) for c in commands), command
    assert any("meetcore.db" in c for block in _documented(STORAGE_MD) for c, _, _ in block)


@pytest.mark.parametrize(
    "block",
    [(page.name, block) for page in (REPLAY_MD, STORAGE_MD) for block in _documented(page)],
    ids=lambda b: f"{b[0]}: {b[1][0][0]}",
)
def test_docs_commands_run_as_shown(
    block: tuple[str, list[tuple[str, int, str]]],
    tmp_path: Path,
    make_store: Callable[[Path], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block's commands, one after the other, in one directory."""
    shutil.copytree(EXAMPLES, tmp_path / "docs" / "examples")
    make_store(tmp_path / "meetcore.db")
    monkeypatch.chdir(tmp_path)
    for command, code, expected in block[1]:
        args = shlex.split(command, comments=True)
        result = run(*args[1:], pm=manager(meetcore_sqlite))
        assert "Traceback" not in result.output
        assert result.exit_code == code, (command, result.output)
        pattern = "".join(
            "(?:.*\n)*?" if line == "..." else re.escape(line.rstrip()) + "\n"
            for line in expected.splitlines()
        )
        output = "".join(line.rstrip() + "\n" for line in result.output.splitlines())
        assert re.fullmatch(pattern, output), (command, output)


if __name__ == "__main__":
    write_examples()
    print(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in (MEETING, TAMPERED, CHANGED))}")
