"""Group commit as the durable stores do it: appends queue up (`QueuedAppend`), one
transaction takes them as a group, checks each one's expected version, numbers and
encodes the records of those that fit (`NumberedGroup`), commits once, and then gives
every caller its own outcome (`NumberedGroup.settle`). How the group is gathered,
checked against the database and written is each store's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from meetcore._record import Record, encode_msgpack
from meetcore._store import Conflict, StoreError
from meetcore._text import is_text
from meetcore.commands import AnyCommand
from meetcore.events import AnyEvent

__all__ = ["NumberedGroup", "QueuedAppend", "check_append"]


def check_append(meeting_id: str, events: Sequence[AnyEvent]) -> None:
    """Refuse (`ValueError`) an append no durable store can take: an event of another
    meeting, or a meeting id that is not valid text (UTF-8)."""
    if any(e.meeting_id != meeting_id for e in events):
        raise ValueError(f"every event appended to {meeting_id!r} must belong to it")
    if not is_text(meeting_id):
        raise ValueError(f"meeting id {meeting_id!r} is not valid text (UTF-8)")


class QueuedAppend:
    """One queued append and, once its group is committed or refused, its outcome."""

    __slots__ = ("cause", "error", "events", "expected", "meeting_id", "records")

    def __init__(
        self,
        meeting_id: str,
        expected: int,
        events: Sequence[AnyEvent],
        cause: AnyCommand | None,
    ) -> None:
        self.meeting_id = meeting_id
        self.expected = expected
        self.events = events
        self.cause = cause
        self.records: list[Record] | None = None
        self.error: Exception | None = None

    @property
    def settled(self) -> bool:
        """Whether it has its outcome: its records, or the error that refused it."""
        return self.records is not None or self.error is not None

    def result(self) -> list[Record]:
        """Its records, or the error that refused it, raised."""
        if self.error is not None:
            raise self.error
        assert self.records is not None
        return self.records


class NumberedGroup:
    """A group's appends numbered in turn, as one transaction writes them: each one's
    outcome (its records, a `Conflict`, or a `StoreError` when the log cannot hold it),
    the meetings' versions as the group leaves them, and the last position.

    `fail` makes the store's `StoreError` of a reason; `encode` gives a record's bytes
    and may refuse one (raise) that the store cannot hold.
    """

    __slots__ = ("encode", "fail", "now", "outcomes", "position", "versions")

    def __init__(
        self,
        position: int,
        now: int,
        fail: Callable[[str], StoreError],
        encode: Callable[[Record], bytes] = encode_msgpack,
    ) -> None:
        self.position = position
        self.now = now
        self.fail = fail
        self.encode = encode
        self.outcomes: list[list[Record] | Exception] = []
        self.versions: dict[str, int] = {}

    def number(self, item: QueuedAppend, actual: int) -> list[tuple[Record, bytes]]:
        """Number `item`'s records after `actual`, its meeting's version, with their
        encodings; none when it expects another version (a `Conflict`) or cannot be
        stored (not encodable, too big: this append alone fails)."""
        meeting_id = item.meeting_id
        if actual != item.expected:
            self.outcomes.append(Conflict(meeting_id, item.expected, actual))
            self.versions[meeting_id] = actual
            return []
        try:
            records = Record.numbered(
                item.events,
                after_version=actual,
                after_position=self.position,
                recorded_at=self.now,
                cause=item.cause,
            )
            encoded = [(record, self.encode(record)) for record in records]
        except Exception as exc:
            self.outcomes.append(self.fail(f"cannot store the append to {meeting_id!r}: {exc}"))
            return []
        self.position += len(records)
        self.versions[meeting_id] = actual + len(records)
        self.outcomes.append(records)
        return encoded

    def settle(self, group: Sequence[QueuedAppend]) -> int:
        """The group is committed: give each of its appends its outcome. How many
        appends wrote records."""
        for item, outcome in zip(group, self.outcomes, strict=True):
            if isinstance(outcome, Exception):
                item.error = outcome
            else:
                item.records = outcome
        return sum(1 for item in group if item.records)
