"""The `meetcore` command line: replay, verify and recheck a log; export; inspect; plugins; schemas.

`main()` builds the plugin manager once and runs the group that `build_cli(pm)`
makes; plugins add their own commands through `meetcore_register_commands(cli)`
(their callbacks find the plugin manager in `ctx.obj`).

A user's mistake is one line on stderr, `meetcore: error: ...`, never a traceback.
Exit codes: 0 done; 1 the data is bad (an invalid log, a line that is not a
record, an unknown meeting) or a check failed (`--verify`, `--recheck`,
`schemas --check`); 2 the command line is wrong (a bad option, a file that
cannot be read, a store that cannot be opened).

`replay`, `export` and `inspect` read a SOURCE (positional, or `--store SOURCE`):
a JSON Lines file, `-` for stdin, a store URL, or the path of an SQLite store.
Stores are opened read-only (`meetcore_open_store(url, read_only=True)`): reading
never creates nor changes a file. Logs are streamed: a JSON Lines file is read a
line at a time (`.gz` files too), a store page by page, and each record is folded
into its meeting with `evolve` as it arrives; only the meetings' states stay in memory.
"""

from __future__ import annotations

import functools
import gzip
import os
import stat
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, Final, TypeVar, cast
from urllib.parse import quote

import anyio.from_thread
import click
import msgspec
import pluggy

from meetcore._decider import InvalidLog
from meetcore._plugins import (
    AUTOLOAD_ENV,
    BUILTIN_PLUGINS,
    UnknownScheme,
    open_store,
    plugin_manager,
)
from meetcore._record import Record, read_jsonl, write_jsonl
from meetcore._schemas import check as check_schemas
from meetcore._schemas import write as write_schemas
from meetcore._state import MeetingState
from meetcore._store import EventStore, StoreError
from meetcore._text import _printable, one_line
from meetcore._time import iso_time
from meetcore.commands import Command
from meetcore.events import (
    AnyEvent,
    EntryRequested,
    EntryResponded,
    EntryWithdrawn,
    Event,
    MediaChanged,
    MeetingInitialized,
    ModeChanged,
    ParticipantJoined,
    ParticipantLeft,
    SessionEnded,
    SessionStarted,
)
from meetcore.replay import BadRecord, Difference, Replay

__all__ = ["CliError", "build_cli", "main", "one_line"]

#: A JSON Lines line longer than this is refused rather than read into memory.
MAX_LINE: Final = 1 << 20
#: Records asked of a store at a time.
PAGE: Final = 1000
#: Bytes of output gathered before they are written.
OUTPUT_BUFFER: Final = 1 << 16
#: The first bytes of every SQLite database file.
SQLITE_HEADER: Final = b"SQLite format 3\x00"

T = TypeVar("T")


class CliError(click.ClickException):
    """The data is bad or a check failed: one line on stderr, exit 1."""

    exit_code = 1


class UsageProblem(click.ClickException):
    """What the command line names cannot be used (a file, a store URL, a port): one
    line on stderr, exit 2. Plugins' commands raise it too."""

    exit_code = 2


class _Finished:
    """What the group's `invoke` returns, so `main` can tell it from `ctx.exit(code)`."""


_FINISHED: Final = _Finished()
_NO_ARGS_IS_HELP: Final[tuple[type[Exception], ...]] = tuple(
    kind for kind in [getattr(click.exceptions, "NoArgsIsHelpError", None)] if kind is not None
)


def _echo_error(message: str) -> None:
    click.echo(f"meetcore: error: {one_line(message)}", err=True)


class MeetcoreGroup(click.Group):
    """A click group whose errors are one line: `meetcore: error: ...`."""

    def invoke(self, ctx: click.Context) -> Any:
        super().invoke(ctx)
        return _FINISHED

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # `meetcore` alone prints the help
            show: Callable[[], None] = exc.show  # type: ignore[attr-defined]
            show()
            sys.exit(2)
        except click.ClickException as exc:
            message = exc.format_message()
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                message = f"{one_line(message)} (see '{exc.ctx.command_path} --help')"
            _echo_error(message)
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            _echo_error("aborted")
            sys.exit(130 if isinstance(exc.__cause__, KeyboardInterrupt) else 1)
        sys.exit(result if isinstance(result, int) else 0)  # an int: `ctx.exit(code)`


# ---------------------------------------------------------------------------
# Reading a log: a JSON Lines file or a store


def _lines(stream: IO[bytes], name: str) -> Iterator[bytes]:
    """The stream's lines, refusing one longer than `MAX_LINE` before reading all of it."""
    number = 0
    while True:
        try:
            line = stream.readline(MAX_LINE + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise CliError(f"cannot read {name}: {_os_reason(exc)}") from None
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            raise CliError(
                f"{name}:{number}: not a meetcore record: the line is longer than "
                f"{MAX_LINE >> 20} MiB"
            )
        yield line


def _standard(name: str) -> IO[bytes]:
    """sys.stdin's or sys.stdout's bytes (click's CliRunner replaces both)."""
    stream = getattr(sys, name)
    return cast(IO[bytes], getattr(stream, "buffer", stream))


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _file_records(stream: IO[bytes], name: str) -> Iterator[Record]:
    try:
        yield from read_jsonl(_lines(stream, name), source=name)
    except InvalidLog as exc:
        raise CliError(str(exc)) from None


@contextmanager
def _open_file(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield _standard("stdin")
        return
    try:
        stream = cast(
            IO[bytes],
            gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb"),  # noqa: SIM115
        )
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise UsageProblem(f"cannot read {path}: {_os_reason(exc)}") from None
    with stream:
        yield stream


class _Store:
    """An `EventStore` driven from synchronous code through a blocking portal."""

    def __init__(self, portal: anyio.from_thread.BlockingPortal, store: EventStore, url: str):
        self.portal = portal
        self.store = store
        self.url = url

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return _store_call(self.url, lambda: self.portal.call(function, *args))

    def records(self, meeting_id: str | None = None) -> Iterator[Record]:
        """The meeting's records, or every record in position order, page by page."""
        if meeting_id is not None:
            records: list[Record] = self.call(self.store.read, meeting_id, 0)
            yield from records
            return
        last: int | None = None
        while True:
            page: list[Record] = self.call(self.store.read_all, last or 0, PAGE)
            # A store may hand back the record at `after_position` again: skip what was seen.
            fresh = page if last is None else [r for r in page if r.position > last]
            if not fresh:
                return
            yield from fresh
            last = fresh[-1].position


def _store_call(url: str, function: Callable[[], T]) -> T:
    """Run a store operation; whatever goes wrong in the store is one line, exit 1."""
    try:
        return function()
    except (StoreError, InvalidLog) as exc:
        raise CliError(f"store {url}: {exc}") from None
    except OSError as exc:
        raise CliError(f"store {url}: {_os_reason(exc)}") from None
    except Exception as exc:  # a third-party store's own exception
        raise CliError(f"store {url}: {type(exc).__name__}: {exc}") from None


@contextmanager
def _open_store(pm: pluggy.PluginManager, url: str, name: str) -> Iterator[_Store]:
    """The store `url` names, opened read-only; `name` is what the command line said."""
    with anyio.from_thread.start_blocking_portal() as portal:
        try:
            # In the portal's event loop: a store may bind itself to the loop it opens in.
            store = portal.call(functools.partial(open_store, pm, url, read_only=True))
        except UnknownScheme as exc:
            said = str(exc) if name == url else f"{name} is an SQLite database, and {exc}"
            raise UsageProblem(said) from None
        except StoreError as exc:
            raise UsageProblem(str(exc)) from None
        except Exception as exc:
            raise UsageProblem(f"cannot open store {name}: {type(exc).__name__}: {exc}") from None
        opened = _Store(portal, store, name)
        try:
            yield opened
        finally:
            opened.call(store.close)


def _is_sqlite(path: str) -> bool:
    """Whether `path` is a regular file that starts as an SQLite database does (read,
    never written; a pipe is not read, so that nothing of it is lost)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as file:
            return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except (OSError, ValueError):  # missing, unreadable, a NUL byte: said when it is read
        return False


@contextmanager
def _records(
    pm: pluggy.PluginManager, source: str, meeting_id: str | None
) -> Iterator[tuple[str, Iterator[Record]]]:
    """(name, records) of SOURCE: a store URL (with "://"), the path of an SQLite store,
    a JSON Lines file, or "-" for stdin; only `meeting_id`'s records if it is given."""
    records: Iterator[Record]
    with ExitStack() as stack:
        if "://" in source or _is_sqlite(source):
            url = source if "://" in source else "sqlite:///" + quote(source)
            records = stack.enter_context(_open_store(pm, url, source)).records(meeting_id)
            name = source
        else:
            name = "<stdin>" if source == "-" else source
            records = _file_records(stack.enter_context(_open_file(source)), name)
        if meeting_id is not None:
            records = (record for record in records if record.meeting_id == meeting_id)
        yield name, records


# ---------------------------------------------------------------------------
# Showing records and states to a person


def _tag(message: Event | Command) -> str:
    return str(type(message).__struct_config__.tag)


def _id(value: str | None) -> str:
    """An id as typed, or quoted when it holds spaces or unprintable characters."""
    if value is None:
        return "-"
    return value if value and value.isprintable() and " " not in value else repr(value)


def _name(value: str) -> str:
    return f'"{value}"' if value.isprintable() and '"' not in value else repr(value)


def describe(event: Event) -> str:
    """Who an event is about and how, in a few words."""
    if isinstance(event, ParticipantJoined | EntryRequested):
        flags = list(event.permissions)
        flags += [
            kind
            for kind, on in (("mic", event.mic_enabled), ("webcam", event.webcam_enabled))
            if on
        ]
        if event.mode != "SEND_AND_RECV":
            flags.append(event.mode)
        text = f"{_id(event.participant_id)} on {_id(event.connection_id)} {_name(event.name)}"
        text += f" [{', '.join(flags)}]"
        return text + (" asks to join" if isinstance(event, EntryRequested) else "")
    if isinstance(event, ParticipantLeft | EntryWithdrawn):
        reason = event.reason
        return (
            f"{_id(event.participant_id)} on {_id(event.connection_id)}: "
            f"{int(reason)} {getattr(reason, 'name', '')}".rstrip()
        )
    if isinstance(event, EntryResponded):
        answer = "allowed" if event.allowed else "denied"
        who = f"{_id(event.participant_id)} on {_id(event.connection_id)}"
        return f"{who} {answer} by {_id(event.responder_id)}"
    if isinstance(event, SessionStarted):
        return f"session {_id(event.session_id)}"
    if isinstance(event, SessionEnded):
        return f"session {_id(event.session_id)} ({event.reason})"
    if isinstance(event, MediaChanged):
        text = f"{_id(event.participant_id)} {event.kind} {'on' if event.enabled else 'off'}"
        return text + (f" by {_id(event.by)}" if event.by is not None else "")
    if isinstance(event, ModeChanged):
        return f"{_id(event.participant_id)} -> {event.mode}"
    if isinstance(event, MeetingInitialized):
        return _room(
            event.custom_room_id, event.max_participants, event.auto_close, event.duplicate_policy
        )
    return ""


def _room(custom: str | None, limit: int | None, auto_close: str, duplicates: str) -> str:
    parts = [f"autoClose={auto_close}", f"duplicatePolicy={duplicates}"]
    if limit is not None:
        parts.insert(0, f"maxParticipants={limit}")
    if custom is not None:
        parts.insert(0, f"customRoomId={_id(custom)}")
    return " ".join(parts)


def _command(command: Command) -> str:
    caller = getattr(command, "participant_id", None)
    text = _tag(command)
    if caller is not None:
        text += f" by {_id(caller)} on {_id(getattr(command, 'connection_id', None))}"
    return text


def state_lines(state: MeetingState, last: Record) -> list[str]:
    """A meeting's state for a person: a header, its room, participants and waiting."""
    session = (
        f"session {_id(state.session_id)} open since {iso_time(state.session_started_at or 0)}"
        if state.session_id is not None
        else "no session open"
    )
    lines = [
        f"meeting {state.meeting_id} at version {state.version} ({iso_time(last.event.at)}): "
        f"{'active' if state.active else 'deactivated'}, {session}",
        "  room: "
        + _room(
            state.custom_room_id, state.max_participants, state.auto_close, state.duplicate_policy
        ),
    ]
    rows = [
        (
            _id(p.participant_id),
            _id(p.connection_id),
            _name(p.name),
            ", ".join(
                [*p.permissions]
                + [k for k, on in (("mic", p.mic_enabled), ("webcam", p.webcam_enabled)) if on]
                + ([p.mode] if p.mode != "SEND_AND_RECV" else [])
            ),
            f"since {iso_time(p.joined_at)}",
        )
        for p in state.participants.values()
    ]
    lines.append(f"  participants ({len(rows)}):" if rows else "  participants: none")
    lines += _table(rows, indent=4)
    waiting = [
        (_id(w.participant_id), _id(w.connection_id), _name(w.name), f"since {iso_time(w.at)}")
        for w in state.waiting.values()
    ]
    if waiting:
        lines.append(f"  waiting ({len(waiting)}):")
        lines += _table(waiting, indent=4)
    return lines


def _table(rows: Sequence[Sequence[str]], indent: int = 0) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        " " * indent
        + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


# ---------------------------------------------------------------------------
# Output: lines for a person, or JSON Lines for a program


class Step(msgspec.Struct, kw_only=True, rename="camel", tag_field="kind", tag="record"):
    """A timeline entry of `replay --json`: a record and the participant count after it."""

    position: int
    meeting_id: str
    version: int
    time: str
    participants: int
    event: AnyEvent


class FinalState(msgspec.Struct, kw_only=True, rename="camel", tag_field="kind", tag="state"):
    """A meeting's state at the end of the replay (or from `inspect`)."""

    meeting_id: str
    version: int
    time: str
    state: MeetingState


class Verified(msgspec.Struct, kw_only=True, rename="camel", tag_field="kind", tag="verified"):
    """`--verify` found the log valid."""

    records: int
    meetings: int


class Invalid(msgspec.Struct, kw_only=True, rename="camel", tag_field="kind", tag="invalid"):
    """`--verify` (or a replay) stopped at a bad record."""

    position: int
    meeting_id: str
    version: int
    reason: str


class Rechecked(msgspec.Struct, kw_only=True, rename="camel", tag_field="kind", tag="rechecked"):
    """The summary of `--recheck`."""

    commands: int
    records: int
    meetings: int
    differences: int
    skipped: int


class _Output:
    """Buffered stdout, as text lines or JSON Lines."""

    def __init__(self, as_json: bool, *, meeting_column: bool = False) -> None:
        self.as_json = as_json
        self.meeting_column = meeting_column
        self.stream = _standard("stdout")
        self.buffer = bytearray()
        self.encoder = msgspec.json.Encoder()
        self.header = False

    def line(self, text: str = "") -> None:
        self.buffer += _printable(text).encode("utf-8", "backslashreplace") + b"\n"
        if len(self.buffer) >= OUTPUT_BUFFER:
            self.flush()

    def json(self, value: object) -> None:
        self.encoder.encode_into(value, self.buffer, -1)
        self.buffer += b"\n"
        if len(self.buffer) >= OUTPUT_BUFFER:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.stream.write(self.buffer)
            self.buffer.clear()
        self.stream.flush()

    def step(self, record: Record, state: MeetingState) -> None:
        event = record.event
        if self.as_json:
            self.json(
                Step(
                    position=record.position,
                    meeting_id=record.meeting_id,
                    version=record.version,
                    time=iso_time(event.at),
                    participants=len(state.participants),
                    event=event,
                )
            )
            return
        meeting = f"{record.meeting_id:<11}  " if self.meeting_column else ""
        if not self.header:
            self.header = True
            head = f"{'meeting':<11}  " if self.meeting_column else ""
            self.line(
                f"{'position':>8}  {head}{'version':>7}  {'time':<24}  {'event':<20}  joined  who"
            )
        self.line(
            f"{record.position:>8}  {meeting}{record.version:>7}  {iso_time(event.at):<24}  "
            f"{_tag(event):<20}  {len(state.participants):>6}  {describe(event)}".rstrip()
        )

    def final(self, state: MeetingState, last: Record, *, blank: bool) -> None:
        if self.as_json:
            self.json(
                FinalState(
                    meeting_id=state.meeting_id,
                    version=state.version,
                    time=iso_time(last.event.at),
                    state=state,
                )
            )
            return
        if blank:
            self.line()
        for text in state_lines(state, last):
            self.line(text)

    def difference(self, found: Difference) -> None:
        if self.as_json:
            self.json(found)
            return
        recorded = ", ".join(_tag(e) for e in found.recorded)
        self.line(
            f"position {found.position} (meeting {found.meeting_id}, version {found.version}): "
            f"{_command(found.command)}"
        )
        self.line(f"  recorded: {recorded}")
        if found.now is None:
            rejected = str(found.rejected)
            crashed = rejected.startswith("decide raised")
            self.line(f"  now:      {rejected if crashed else f'rejected, {rejected}'}")
            return
        self.line(f"  now:      {', '.join(_tag(e) for e in found.now) or 'no events'}")
        for number, (was, now) in enumerate(zip(found.recorded, found.now, strict=False), 1):
            if was != now:
                self.line(f"  event {number} recorded: {self.encoder.encode(was).decode()}")
                self.line(f"  event {number} now:      {self.encoder.encode(now).decode()}")
                break


# ---------------------------------------------------------------------------
# Commands


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


_SOURCES: Final = "a JSON Lines file, - for stdin, or a store such as sqlite:///meetcore.db"


def _source(command: Callable[..., None]) -> Callable[..., None]:
    """The SOURCE a command reads: an argument, or `--store SOURCE` (the older
    spelling); exactly one of the two."""

    @functools.wraps(command)
    def read(*args: Any, source: str | None, store: str | None, **options: Any) -> None:
        if source is not None and store is not None:
            raise click.UsageError(
                f"SOURCE is given twice ({source!r} and --store {store!r}): give one",
                click.get_current_context(),
            )
        if source is None and store is None:
            raise click.UsageError(
                f"Missing argument 'SOURCE': {_SOURCES}", click.get_current_context()
            )
        given = store if source is None else source
        if not given:
            raise click.UsageError(f"SOURCE is empty: name {_SOURCES}", click.get_current_context())
        command(*args, source=given, **options)

    click.argument("source", required=False, metavar="SOURCE")(read)
    click.option("--store", metavar="SOURCE", help="The same as the SOURCE argument.")(read)
    return read


@click.command()
@_source
@click.option("--meeting", "meeting_id", metavar="ID", help="Only this meeting's records.")
@click.option(
    "--until",
    type=click.IntRange(min=1),
    metavar="V",
    help="Stop each meeting after its version V.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Check every invariant of the log; exit 1 at the first bad record.",
)
@click.option(
    "--recheck",
    is_flag=True,
    help="Decide every recorded command again with today's code; exit 1 if any differs.",
)
@click.option("--json", "as_json", is_flag=True, help="Write JSON Lines (see docs/replay.md).")
@click.pass_obj
def replay(
    pm: pluggy.PluginManager,
    source: str,
    meeting_id: str | None,
    until: int | None,
    verify: bool,
    recheck: bool,
    as_json: bool,
) -> None:
    """Replay a log: its timeline and each meeting's final state.

    SOURCE is a JSON Lines file (one meetcore.Record a line, as `meetcore export`
    writes it; `.gz` too; `-` for stdin), a store URL such as sqlite:///meetcore.db,
    or an SQLite store's file (meetcore.db). A store is opened read-only: nothing is
    created or changed.
    """
    out = _Output(as_json, meeting_column=meeting_id is None)
    checking = verify or recheck
    run = Replay(
        verify=verify,
        recheck=recheck,
        on_step=None if checking else out.step,
        on_difference=out.difference,
    )
    try:
        with _records(pm, source, meeting_id) as (name, records):
            for record in records:
                if until is not None and record.version > until:
                    run.beyond(record)
                    if meeting_id is not None:
                        break
                    continue
                run.feed(record)
            run.finish()
    except BadRecord as bad:
        if as_json:
            record = bad.record
            out.json(
                Invalid(
                    position=record.position,
                    meeting_id=record.meeting_id,
                    version=record.version,
                    reason=bad.reason,
                )
            )
        raise CliError(str(bad)) from None
    finally:
        out.flush()
    if not run.tracks:
        if meeting_id is not None:
            raise CliError(f"no records of meeting {meeting_id!r} in {name}")
        raise CliError(f"{name} holds no records")
    meetings = _plural(len(run.tracks), "meeting")
    if not checking:
        for track in run.tracks.values():
            assert track.state is not None
            assert track.last is not None
            out.final(track.state, track.last, blank=True)
    if verify:
        if as_json:
            out.json(Verified(records=run.records, meetings=len(run.tracks)))
        else:
            out.line(f"verified {_plural(run.records, 'record')} of {meetings}: OK")
    if recheck:
        if as_json:
            out.json(
                Rechecked(
                    commands=run.commands,
                    records=run.records,
                    meetings=len(run.tracks),
                    differences=run.differences,
                    skipped=run.skipped,
                )
            )
        else:
            verdict = f"{run.differences} differ" if run.differences else "identical"
            skipped = (
                f" ({_plural(run.skipped, 'record')} without a cause skipped)"
                if run.skipped
                else ""
            )
            out.line(
                f"rechecked {_plural(run.commands, 'command')} ({_plural(run.records, 'record')}) "
                f"of {meetings}: {verdict}{skipped}"
            )
    out.flush()
    if run.differences:
        raise click.exceptions.Exit(1)


@click.command(short_help="Write a log's records as JSON Lines.")
@_source
@click.option("--meeting", "meeting_id", metavar="ID", help="Only this meeting's records.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE instead of stdout.",
)
@click.pass_obj
def export(
    pm: pluggy.PluginManager, source: str, meeting_id: str | None, output: Path | None
) -> None:
    """Write a log's records as JSON Lines, one meetcore.Record a line.

    SOURCE is a store URL such as sqlite:///meetcore.db, an SQLite store's file, or a
    JSON Lines file (`.gz` too; `-` for stdin), as for `meetcore replay`. A store is
    opened read-only and written in position order, page by page.
    """
    if output is not None and _is_sqlite(str(output)):  # a store, perhaps SOURCE itself
        raise UsageProblem(f"{output} is an SQLite database: export does not overwrite it")
    with _records(pm, source, meeting_id) as (name, records):
        if output is None:
            stream = _standard("stdout")
            count = write_jsonl(records, stream)
            stream.flush()
        else:
            partial = output.with_name(output.name + ".part")
            try:
                with open(partial, "wb") as file:
                    count = write_jsonl(records, file)
                os.replace(partial, output)
            except OSError as exc:
                partial.unlink(missing_ok=True)
                raise UsageProblem(f"cannot write {output}: {_os_reason(exc)}") from None
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
    if meeting_id is not None and count == 0:
        raise CliError(f"meeting {meeting_id!r} is not in {name}")
    if output is not None:
        click.echo(f"wrote {_plural(count, 'record')} to {output}", err=True)


@click.command()
@_source
@click.option("--meeting", "meeting_id", required=True, metavar="ID", help="The meeting to show.")
@click.option("--json", "as_json", is_flag=True, help="Write the state as JSON.")
@click.pass_obj
def inspect(pm: pluggy.PluginManager, source: str, meeting_id: str, as_json: bool) -> None:
    """Show a meeting's current state, folded from its records.

    SOURCE is a store URL such as sqlite:///meetcore.db, an SQLite store's file, or a
    JSON Lines file (`.gz` too; `-` for stdin), as for `meetcore replay`. A store is
    opened read-only.
    """
    run = Replay()
    with _records(pm, source, meeting_id) as (name, records):
        try:
            for record in records:
                run.feed(record)
        except BadRecord as bad:
            raise CliError(str(bad)) from None
    track = run.tracks.get(meeting_id)
    if track is None or track.state is None or track.last is None:
        raise CliError(f"meeting {meeting_id!r} is not in {name}")
    out = _Output(as_json)
    out.final(track.state, track.last, blank=False)
    out.flush()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Write a JSON array.")
@click.pass_obj
def plugins(pm: pluggy.PluginManager, as_json: bool) -> None:
    """List the loaded plugins and the hooks each implements."""
    builtins = {id(plugin) for _, plugin in BUILTIN_PLUGINS}
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows: list[dict[str, Any]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        dist = dists.get(id(plugin))
        rows.append(
            {
                "name": name,
                "builtin": id(plugin) in builtins,
                "distribution": (
                    {"name": dist.project_name, "version": dist.version}
                    if dist is not None
                    else None
                ),
                "hooks": sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()),
            }
        )
    if as_json:
        click.echo(msgspec.json.encode(rows).decode())
        return
    table = [("plugin", "from", "hooks")]
    for row in rows:
        dist = row["distribution"]
        origin = (
            "built-in"
            if row["builtin"]
            else f"{dist['name']} {dist['version']}"
            if dist is not None
            else "registered"
        )
        table.append((row["name"], origin, ", ".join(row["hooks"]) or "-"))
    for text in _table(table):
        click.echo(text)


@click.command(short_help="Write or check the JSON Schemas.")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a file is missing or stale.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="Where the schema files are.",
)
@click.pass_obj
def schemas(pm: pluggy.PluginManager, check: bool, directory: Path) -> None:
    """Write the JSON Schemas of commands, events and records (generated from the types),
    and those plugins add (`meetcore_schemas`)."""
    if check:
        stale = check_schemas(directory, pm)
        if stale:
            again = "meetcore schemas" + (
                "" if directory == Path("schemas") else f" --dir {directory}"
            )
            raise CliError(
                f"stale schemas in {directory}: {', '.join(stale)} (run '{again}' to rewrite them)"
            )
        click.echo(f"schemas in {directory} are up to date")
        return
    try:
        changed = write_schemas(directory, pm)
    except OSError as exc:
        raise UsageProblem(f"cannot write schemas to {directory}: {_os_reason(exc)}") from None
    if changed:
        click.echo(f"wrote {', '.join(changed)} to {directory}")
    else:
        click.echo(f"schemas in {directory} are up to date")


COMMANDS: Final[tuple[click.Command, ...]] = (replay, export, inspect, plugins, schemas)


def build_cli(pm: pluggy.PluginManager) -> click.Group:
    """The `meetcore` group with the built-in commands and those plugins register."""
    group = MeetcoreGroup(
        name="meetcore",
        help="meetcore: an event-sourced meeting engine with VideoSDK's API shape.",
        context_settings={"obj": pm, "help_option_names": ["-h", "--help"]},
    )
    click.version_option(package_name="meetcore", prog_name="meetcore")(group)
    for command in COMMANDS:
        group.add_command(command)
    pm.hook.meetcore_register_commands(cli=group, pluginmanager=pm)
    return group


def main(args: Sequence[str] | None = None) -> None:
    """The `meetcore` console script."""
    try:
        cli = build_cli(plugin_manager())
    except Exception as exc:
        _echo_error(
            f"a plugin failed to load: {type(exc).__name__}: {exc} "
            f"(set {AUTOLOAD_ENV}=1 to run without installed plugins)"
        )
        sys.exit(1)
    cli.main(args, prog_name="meetcore")


if __name__ == "__main__":
    main()
