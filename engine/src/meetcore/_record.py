"""`Record`: one event as the log keeps it, and its JSON Lines and msgpack encodings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Final, Union, cast

import msgspec

if TYPE_CHECKING:
    from typing_extensions import Buffer

from meetcore._decider import _APPLY, InvalidLog, _on_initialized
from meetcore._state import MeetingState
from meetcore.commands import AnyCommand
from meetcore.events import (
    EVENT_TYPES,
    AnyEvent,
    EntryRequested,
    Event,
    MeetingInitialized,
    ParticipantJoined,
)

__all__ = [
    "Record",
    "decode_msgpack",
    "encode_msgpack",
    "fold_jsonl",
    "fold_msgpack",
    "read_jsonl",
    "to_json",
    "write_jsonl",
]


class Record(msgspec.Struct, frozen=True, kw_only=True, rename="camel", gc=False):
    """An event in the log.

    `version` counts the meeting's events from 1; `position` is the event's place
    in the store's global order; `recorded_at` is when the store took it (unix
    ms); `cause` is the command that produced it, so the log can be re-decided.
    Like events, records are untracked by the garbage collector (no cycles possible).
    """

    meeting_id: str
    version: int
    position: int
    recorded_at: int
    event: AnyEvent
    cause: AnyCommand | None = None

    @classmethod
    def numbered(
        cls,
        events: Sequence[AnyEvent],
        *,
        after_version: int,
        after_position: int,
        recorded_at: int,
        cause: AnyCommand | None,
    ) -> list[Record]:
        """One append's records, as a store makes them: `events` (all of one meeting)
        numbered on from the meeting's last version and the store's last position."""
        return [
            cls(
                meeting_id=event.meeting_id,
                version=after_version + i,
                position=after_position + i,
                recorded_at=recorded_at,
                event=event,
                cause=cause,
            )
            for i, event in enumerate(events, 1)
        ]


_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(Record)
_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder(Record)


def to_json(value: object) -> bytes:
    """Encode a record, event, command or state as JSON (camelCase fields)."""
    return _json_encoder.encode(value)


def write_jsonl(records: Iterable[Record], stream: IO[bytes]) -> int:
    """Write records as JSON Lines, one record a line; returns how many."""
    count = 0
    buffer = bytearray()
    for record in records:
        _json_encoder.encode_into(record, buffer, -1)
        buffer += b"\n"
        count += 1
        if len(buffer) >= 1 << 20:
            stream.write(buffer)
            buffer.clear()
    stream.write(buffer)
    return count


def read_jsonl(lines: Iterable[bytes | str], *, source: str = "log") -> Iterator[Record]:
    """Decode JSON Lines records; blank lines are skipped.

    Raises `InvalidLog` naming the line (`source:N`) for a line that is not a record.
    """
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield _json_decoder.decode(line)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise InvalidLog(
                f"{source}:{number}: not a meetcore record: {_why(exc, line)}"
            ) from None


def _why(exc: Exception, line: bytes | str) -> str:
    """Why a JSON line is not a record. Text that is not UTF-8 is said in our words:
    msgspec's (and its exception type) changed between releases."""
    if not isinstance(line, str):
        try:
            bytes(line).decode()
        except UnicodeDecodeError as bad:
            return f"not UTF-8 text (byte {bad.start + 1} of the line)"
    return str(exc)


def encode_msgpack(record: Record) -> bytes:
    """A record as msgpack (the stores' format)."""
    return _msgpack_encoder.encode(record)


def decode_msgpack(data: bytes) -> Record:
    """A record from msgpack; raises `InvalidLog` if `data` is not one."""
    try:
        return _msgpack_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidLog(f"not a meetcore record: {exc}") from None


# The fast fold. Records are decoded as `_Entry`: causes and record numbers are
# skipped unread, and a join's metaData is kept as raw bytes (`msgspec.Raw`, a
# view of the line) and decoded only for the participants still there at the end:
# in a long log most participants have left, and allocating and freeing their
# metaData was a third of the fold's time.


class _JoinedLazily(ParticipantJoined, frozen=True, kw_only=True, tag="participant-joined"):
    meta_data: msgspec.Raw  # type: ignore[assignment]


class _RequestedLazily(EntryRequested, frozen=True, kw_only=True, tag="entry-requested"):
    meta_data: msgspec.Raw  # type: ignore[assignment]


_LAZY: Final[dict[type[Event], type[Event]]] = {
    ParticipantJoined: _JoinedLazily,
    EntryRequested: _RequestedLazily,
}
_PUBLIC: Final = {lazy: public for public, lazy in _LAZY.items()}
_Entry = msgspec.defstruct(
    "_Entry",
    [
        ("meeting_id", str),
        ("version", int),
        ("event", Union[tuple(_LAZY.get(t, t) for t in EVENT_TYPES)]),  # noqa: UP007
    ],
    rename="camel",
    gc=False,  # like records and events
)
#: `evolve`'s handlers, by the types `_Entry` decodes
_APPLY_LAZY: Final = {_LAZY.get(t, t): apply for t, apply in _APPLY.items()}
_entry_json = msgspec.json.Decoder(_Entry)
_entry_msgpack = msgspec.msgpack.Decoder(_Entry)
_meta_json = msgspec.json.Decoder(dict[str, Any])
_meta_msgpack = msgspec.msgpack.Decoder(dict[str, Any])


def _fold(
    blobs: Iterable[bytes | str],
    decode: Callable[[Any], Any],
    decode_meta_data: Callable[[Any], dict[str, Any]],
    source: str,
) -> dict[str, MeetingState]:
    states: dict[str, MeetingState] = {}
    get = states.get
    number = 0
    try:
        for number, blob in enumerate(blobs, 1):  # noqa: B007 - number names the bad line
            if not blob or blob.isspace():
                continue
            if type(blob) is not bytes and type(blob) is not str:
                blob = bytes(cast("Buffer", blob))  # a Raw points into its line: keep it
            entry = decode(blob)
            meeting_id: str = entry.meeting_id
            event = entry.event
            state = get(meeting_id)
            # `evolve`, inlined (a Python call less per event)
            if entry.version != (state.version + 1 if state is not None else 1):
                raise InvalidLog(f"version {entry.version} of {meeting_id!r} is out of order")
            if event.meeting_id != meeting_id:
                raise InvalidLog(f"an event of {event.meeting_id!r} is filed under another meeting")
            if state is None:
                if type(event) is not MeetingInitialized:
                    raise InvalidLog(f"{_name(event)} before the meeting was initialized")
                state = states[meeting_id] = _on_initialized(None, event)
            else:
                try:
                    _APPLY_LAZY[type(event)](state, event)
                except KeyError as exc:
                    raise InvalidLog(
                        f"{_name(event)} names {exc.args[0]!r}, who is not there"
                    ) from None
            state.version += 1
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        why = _why(exc, blob) if decode == _entry_json.decode else str(exc)
        raise InvalidLog(f"{source}:{number}: not a meetcore record: {why}") from None
    except InvalidLog as exc:
        raise InvalidLog(f"{source}:{number}: {exc}") from None
    for state in states.values():
        _decode_meta_data(state, decode_meta_data, source)
    return states


def _name(event: Event) -> str:
    """The event's type as the log names it (the lazy types are the fold's own)."""
    return _PUBLIC.get(type(event), type(event)).__name__


def _decode_meta_data(
    state: MeetingState, decode: Callable[[Any], dict[str, Any]], source: str
) -> None:
    """Decode the metaData the fold kept raw, of the participants in or waiting at the end."""
    try:
        for pid, p in state.participants.items():
            state.participants[pid] = msgspec.structs.replace(p, meta_data=decode(p.meta_data))
        for pid, e in state.waiting.items():
            fields = msgspec.structs.asdict(e)
            fields["meta_data"] = decode(e.meta_data)
            state.waiting[pid] = EntryRequested(**fields)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidLog(
            f"{source}: the metaData of {pid!r} in {state.meeting_id!r} is not valid: {exc}"
        ) from None


def fold_jsonl(lines: Iterable[bytes | str], *, source: str = "log") -> dict[str, MeetingState]:
    """Replay a JSON Lines log to each meeting's final state: the fast path.

    Versions must run 1, 2, 3... per meeting. Raises `InvalidLog` naming the line
    (`source:N`) of the first bad record. Causes are skipped unread, and so is the
    metaData of a participant who left before the end; the metaData of those still
    there is decoded at the end, and an error in it names the participant, not the
    line. `meetcore replay --verify` checks every field of every record.
    """
    return _fold(lines, _entry_json.decode, _meta_json.decode, source)


def fold_msgpack(blobs: Iterable[bytes], *, source: str = "log") -> dict[str, MeetingState]:
    """`fold_jsonl` for msgpack-encoded records (the stores' format)."""
    return _fold(blobs, _entry_msgpack.decode, _meta_msgpack.decode, source)
