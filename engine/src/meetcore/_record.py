"""`Record`: one event as the log keeps it, and its JSON Lines and msgpack encodings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

import msgspec

from meetcore._decider import InvalidLog, evolve
from meetcore._state import MeetingState
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent

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
        # msgspec raises UnicodeDecodeError, not DecodeError, for a string that is not UTF-8
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise InvalidLog(f"{source}:{number}: not a meetcore record: {exc}") from None


def encode_msgpack(record: Record) -> bytes:
    """A record as msgpack (the stores' format)."""
    return _msgpack_encoder.encode(record)


def decode_msgpack(data: bytes) -> Record:
    """A record from msgpack; raises `InvalidLog` if `data` is not one."""
    try:
        return _msgpack_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidLog(f"not a meetcore record: {exc}") from None


class _Entry(msgspec.Struct, rename="camel"):
    """The part of a record that replaying to a state needs; the rest is skipped unread."""

    meeting_id: str
    version: int
    event: AnyEvent


_entry_json = msgspec.json.Decoder(_Entry)
_entry_msgpack = msgspec.msgpack.Decoder(_Entry)


def _fold(
    blobs: Iterable[bytes | str], decode: Callable[[Any], _Entry], source: str
) -> dict[str, MeetingState]:
    states: dict[str, MeetingState] = {}
    number = 0
    try:
        for number, blob in enumerate(blobs, 1):  # noqa: B007 - number names the bad line
            if not blob.strip():
                continue
            entry = decode(blob)
            state = states.get(entry.meeting_id)
            if entry.version != (state.version + 1 if state is not None else 1):
                raise InvalidLog(f"version {entry.version} of {entry.meeting_id!r} is out of order")
            state = evolve(state, entry.event)
            if state.meeting_id != entry.meeting_id:
                raise InvalidLog(f"an event of {state.meeting_id!r} is filed under another meeting")
            states[entry.meeting_id] = state
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise InvalidLog(f"{source}:{number}: not a meetcore record: {exc}") from None
    except InvalidLog as exc:
        raise InvalidLog(f"{source}:{number}: {exc}") from None
    return states


def fold_jsonl(lines: Iterable[bytes | str], *, source: str = "log") -> dict[str, MeetingState]:
    """Replay a JSON Lines log to each meeting's final state: the fast path.

    Causes are skipped, versions must run 1, 2, 3... per meeting. Raises
    `InvalidLog` naming the line (`source:N`) of the first bad record.
    """
    return _fold(lines, _entry_json.decode, source)


def fold_msgpack(blobs: Iterable[bytes], *, source: str = "log") -> dict[str, MeetingState]:
    """`fold_jsonl` for msgpack-encoded records (the stores' format)."""
    return _fold(blobs, _entry_msgpack.decode, source)
