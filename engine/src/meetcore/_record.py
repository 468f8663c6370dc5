"""`Record`: one event as the log keeps it, and its JSON Lines and msgpack encodings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO

import msgspec

from meetcore._decider import InvalidLog
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent

__all__ = [
    "Record",
    "decode_msgpack",
    "encode_msgpack",
    "read_jsonl",
    "to_json",
    "write_jsonl",
]


class Record(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """An event in the log.

    `version` counts the meeting's events from 1; `position` is the event's place
    in the store's global order; `recorded_at` is when the store took it (unix
    ms); `cause` is the command that produced it, so the log can be re-decided.
    """

    meeting_id: str
    version: int
    position: int
    recorded_at: int
    event: AnyEvent
    cause: AnyCommand | None = None


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
